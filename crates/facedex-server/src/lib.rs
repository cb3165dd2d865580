//! facedex's gRPC side, one module per service: [`search`] is FaceSearch over a face store
//! (thin handlers, health and reflection, bearer-token auth, TLS, the snapshot schedule) and
//! [`embed`] is the internal Embedder service with its client, which ingest workers use as
//! their models. The domain lives in `facedex-index` and `facedex-pipeline`; the conversions
//! in `facedex-proto`.

mod bearer;
mod config;
pub mod embed;
mod error;
pub mod metrics;
pub mod search;
mod undecodable;

pub use bearer::BearerToken;
pub use config::{EmbedConfig, ServerConfig, TlsConfig};
pub use embed::client::{EmbedClientAuth, RemoteModels};
pub use embed::service::{EmbedderService, serve_embedder};
pub use error::ServiceError;
pub use search::access::AccessTokens;
pub use search::server::{BoundServer, ServerError};
pub use search::service::FaceSearchService;
