//! The FaceSearch gRPC service over a face store: thin handlers (validate, convert, call, map
//! the error), health and reflection on the same port, bearer-token auth and TLS from config,
//! and the snapshot schedule.

mod config;
mod error;
mod server;
mod service;

pub use config::{ServerConfig, TlsConfig};
pub use error::ServiceError;
pub use server::{BoundServer, ServerError};
pub use service::{FaceSearchService, SharedAnalyzer};
