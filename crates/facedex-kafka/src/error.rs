//! [`KafkaStageError`]: the Kafka roles' one error type.

use facedex_pipeline::PipelineError;
use rdkafka::error::KafkaError;

/// Result of the Kafka roles.
pub type Result<T, E = KafkaStageError> = std::result::Result<T, E>;

/// Why a Kafka role stopped.
#[derive(Debug, thiserror::Error)]
pub enum KafkaStageError {
    /// The client could not be created, or a broker call failed.
    #[error("kafka {operation} failed: {source}")]
    Kafka {
        /// What was being done.
        operation: &'static str,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// A topic the role needs does not exist (and topic creation is off).
    #[error("topic {topic:?} does not exist on {brokers}: create it or set kafka.create_topics = true")]
    MissingTopic {
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        brokers: String,
    },
    /// A read made no progress for too long (a broker that answers metadata but not fetches).
    #[error("{what} made no progress for {waited_secs} s")]
    Stalled {
        /// What was being read.
        what: String,
        /// How long it waited.
        waited_secs: u64,
    },
    /// The indexer's shard owns none of the faces topic's partitions.
    #[error("shard {shard} owns no partition of {topic}: the topic has fewer partitions than shards")]
    EmptyShard {
        /// The shard.
        shard: crate::Shard,
        /// The faces topic.
        topic: String,
    },
    /// The data directory's snapshot applied a faces partition this indexer's shard does not
    /// own: it was written by an indexer of another shard (or before the shards were split).
    #[error(
        "the index in this data directory holds {topic} partition {partition}, which shard {shard} does not own; give each shard its own data directory (or start this one with the shard that wrote it)"
    )]
    ForeignShardData {
        /// This indexer's shard.
        shard: crate::Shard,
        /// The faces topic.
        topic: String,
        /// A partition of another shard.
        partition: i32,
    },
    /// A pipeline stage failed for a reason of its own (models, archive, index).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The index refused a people edit before it was written to the topic.
    #[error(transparent)]
    Index(#[from] facedex_index::IndexError),
    /// A people edit or a deletion was written but this indexer did not apply it in time (it
    /// will, once it reaches the record).
    #[error(
        "the {write} at {topic} partition {partition} offset {offset} was not applied within {waited_ms} ms; the indexer is behind or stopped, and applies it when it gets there"
    )]
    WriteNotApplied {
        /// What was written: "people edit" or "deletion".
        write: &'static str,
        /// The topic written to.
        topic: String,
        /// Where the edit was written.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// How long it was waited for.
        waited_ms: u64,
    },
}

impl KafkaStageError {
    /// Wraps a librdkafka error with what was being done.
    pub fn kafka(operation: &'static str) -> impl FnOnce(KafkaError) -> Self {
        move |source| Self::Kafka { operation, source }
    }
}
