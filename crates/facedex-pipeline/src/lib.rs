//! The pipeline's stages without a broker: list an archive ([`archive`]), fetch, decode,
//! letterbox, detect, align and embed one photo ([`ingest`]) through a [`models::FaceModels`]
//! (in-process with dynamic batching, or a remote `facedex embed`), and run them all in one
//! process with bounded queues ([`local`]). Knows nothing of Kafka or gRPC: `facedex-kafka`
//! and `facedex-server` plug these stages into a broker and the network.

pub mod archive;
pub mod batcher;
pub mod config;
pub mod error;
pub mod ingest;
pub mod local;
pub mod messages;
pub mod metrics;
pub mod models;

pub use archive::{Archive, ArchiveRegistry};
pub use config::{ArchiveConfig, IngestConfig};
pub use error::{PipelineError, Result};
pub use ingest::Ingestor;
pub use messages::{DeadLetter, FaceBatch, ImageRef, PipelineFace, StageTimings};
pub use models::{FaceModels, LocalModels, ModelInfo};
