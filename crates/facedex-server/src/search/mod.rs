//! The FaceSearch service: [`service`] holds the handlers (validate, convert, call, map the
//! error), [`server`] runs them with health, reflection, auth, TLS and the snapshot schedule.

pub(crate) mod access;
pub mod server;
pub mod service;
