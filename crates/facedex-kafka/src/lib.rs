//! The pipeline's roles over Kafka. [`enqueue`] publishes an archive's photos to the images
//! topic; [`ingest_worker`] consumes it in a consumer group, runs `facedex-pipeline`'s ingest
//! step and publishes face batches or dead letters before committing; [`indexer`] applies face
//! batches and people edits to a `FaceStore` and keeps the applied offsets in its snapshots;
//! [`people_edits`] writes users' edits for every indexer to apply, [`deletions`] their
//! deletions; [`shard`] says which faces partitions an indexer serves. Offsets are committed
//! only after the work they cover is durable ([`offsets`]).

pub mod catalog;
pub mod client;
pub mod config;
pub mod deletions;
pub mod enqueue;
pub mod error;
pub mod indexer;
pub mod ingest_worker;
pub mod metrics;
pub mod offsets;
pub mod people_edits;
pub mod progress;
pub mod records;
pub mod shard;

pub use config::{KafkaConfig, TopicsConfig};
pub use error::{KafkaStageError, Result};
pub use shard::{InvalidShard, Shard};
