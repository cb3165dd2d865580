//! facedex's gRPC side, one module per service: [`search`] is FaceSearch over a face store
//! (thin handlers, health and reflection, bearer-token auth, TLS, the snapshot schedule),
//! [`people`] the People service beside it (persons listed, shown and edited), and
//! [`embed`] is the internal Embedder service with its client, which ingest workers use as
//! their models; [`router`] serves FaceSearch over an index split into shards, taking answers
//! only from the shard it asked (`shard_header`). The domain
//! lives in `facedex-index` and `facedex-pipeline`; the conversions in `facedex-proto`.

mod access;
mod bearer;
mod calls;
mod config;
pub mod embed;
mod error;
pub mod metrics;
pub mod people;
mod replicas;
pub mod router;
pub mod search;
mod shard_header;
mod undecodable;

pub use access::{Access, AccessTokens, TokenProblem};
pub use bearer::BearerToken;
pub use config::{
    DEFAULT_MIN_SCORE, EmbedConfig, MAX_ROUTER_SHARDS, MAX_SHARD_REPLICAS, RouterConfig, ServerConfig, TlsConfig,
};
pub use embed::client::{EmbedClientAuth, RemoteModels};
pub use embed::service::{EmbedderService, serve_embedder};
pub use error::ServiceError;
pub use people::editor::{PeopleEditor, StoreEditor};
pub use people::service::PeopleService;
pub use replicas::{ReplicaFailure, ReplicaFailureKind};
pub use router::server::serve_router;
pub use router::service::RouterService;
pub use router::shards::ShardSet;
pub use search::deleter::{Deleted, FaceDeleter, StoreDeleter};
pub use search::server::{ApiServices, BoundServer, ServerError};
pub use search::service::FaceSearchService;
pub use shard_header::SHARD_HEADER;
