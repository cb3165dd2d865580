//! The pipeline's stages without a broker, one module each, in the order a photo meets
//! them: [`archive`] lists and fetches photos, [`ingest`] turns one into a face batch or a
//! dead letter, [`embed`] is the models' front end (batched across callers, in this process or
//! remote), [`indexer`] applies face batches to the index, and [`local`] wires them together
//! in one process with bounded queues; [`plan`] compares a re-run's listing with the index.
//! Knows nothing of Kafka or gRPC: `facedex-kafka` and `facedex-server` plug these stages into
//! a broker and the network.

pub mod archive;
pub mod config;
pub mod embed;
pub mod error;
pub mod events;
pub mod failure;
pub mod indexer;
pub mod ingest;
pub mod local;
pub mod messages;
pub mod metrics;
pub mod plan;

pub use archive::{Archive, ArchiveRegistry};
pub use config::{ArchiveConfig, IngestConfig};
pub use embed::{
    AnalyzedPhoto, AttributeModelInfo, BatchingConfig, FaceModels, LocalModels, ModelInfo, PhotoAnalyzer, Wanted,
};
pub use error::{PipelineError, Result, describe};
pub use failure::PhotoFailureKind;
pub use indexer::{
    IndexInput, IndexUpdate, IndexerConfig, IndexerCounters, IndexerStage, Refusal, RefusalKind, SourcePosition,
};
pub use ingest::Ingestor;
pub use messages::{DeadLetter, FaceBatch, ImageRef, ImageRemoval, PipelineFace, StageTimings};
