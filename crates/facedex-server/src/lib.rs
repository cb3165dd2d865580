//! The FaceSearch gRPC service over a face store: thin handlers (validate, convert, call, map
//! the error), health and reflection on the same port, bearer-token auth and TLS from config,
//! and the snapshot schedule; and the internal Embedder service of `facedex embed` with its
//! client, which the ingest workers use as their models.

mod config;
mod embed_service;
mod error;
pub mod metrics;
mod remote_models;
mod server;
mod service;

pub use config::{EmbedConfig, ServerConfig, TlsConfig};
pub use embed_service::{EmbedderService, serve_embedder};
pub use error::ServiceError;
pub use remote_models::RemoteModels;
pub use server::{BoundServer, ServerError};
pub use service::{FaceSearchService, SharedAnalyzer};
