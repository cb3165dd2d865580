//! The FaceSearch service: [`service`] holds the handlers (validate, convert, call, map the
//! error), [`server`] runs them and the People service with health, reflection, auth, TLS and
//! the snapshot schedule; [`deleter`] says where a Delete goes.

pub mod deleter;
pub mod server;
pub mod service;
