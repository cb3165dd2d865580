//! The FaceSearch service: [`service`] holds the handlers (validate, convert, call, map the
//! error), [`server`] runs them and the People service with health, reflection, auth, TLS and
//! the snapshot schedule.

pub mod server;
pub mod service;
