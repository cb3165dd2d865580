//! `[kafka]` settings: brokers, topic names, consumer groups, topic creation and any extra
//! librdkafka property (`FACEDEX__KAFKA__…` in the environment).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::shard::Shard;

/// Topic names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// `ImageRef`s from `facedex enqueue`.
    pub images: String,
    /// `FaceBatch`es from ingest workers.
    pub faces: String,
    /// `DeadLetter`s of photos that cannot be indexed.
    pub dead_letter: String,
    /// `CatalogRecord`s keyed by photo URI, compacted: what became of each photo, read by
    /// `facedex enqueue` to skip unchanged photos and find gone ones.
    pub catalog: String,
    /// `EnqueueRun`s keyed by archive root, compacted: each archive's last enqueue plan, for
    /// `facedex status`.
    pub runs: String,
    /// `PeopleEditRecord`s, one partition: users' edits of the people, applied in order by
    /// every indexer.
    pub people_edits: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            images: "facedex.images".into(),
            faces: "facedex.faces".into(),
            dead_letter: "facedex.dead-letter".into(),
            catalog: "facedex.catalog".into(),
            runs: "facedex.runs".into(),
            people_edits: "facedex.people-edits".into(),
        }
    }
}

/// How the roles reach Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port,host:port`.
    pub brokers: String,
    /// Topic names.
    pub topics: TopicsConfig,
    /// Consumer group of the ingest workers.
    pub ingest_group: String,
    /// Group the indexer commits its applied offsets to (for lag monitoring; the indexer
    /// itself resumes from the offsets in its snapshot).
    pub indexer_group: String,
    /// The faces partitions an indexer serves, `INDEX/COUNT` (partitions p with p mod COUNT =
    /// INDEX); indexers with the same shard are its replicas.
    pub indexer_shard: Shard,
    /// Create missing topics at start (needs the admin API).
    pub create_topics: bool,
    /// Partitions of topics created here: the most ingest workers that can share the work.
    pub partitions: i32,
    /// Replication factor of topics created here.
    pub replication_factor: i32,
    /// How long a send may wait in the producer queue before failing.
    pub produce_timeout_ms: u64,
    /// How often consumers report their lag per partition to the metrics (0: never).
    pub statistics_interval_ms: u64,
    /// Extra librdkafka properties for every client (`security.protocol`, `sasl.mechanism`, …).
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topics: TopicsConfig::default(),
            ingest_group: "facedex-ingest".into(),
            indexer_group: "facedex-indexer".into(),
            indexer_shard: Shard::WHOLE,
            create_topics: true,
            partitions: 12,
            replication_factor: 1,
            produce_timeout_ms: 30_000,
            statistics_interval_ms: 5_000,
            client: BTreeMap::new(),
        }
    }
}
