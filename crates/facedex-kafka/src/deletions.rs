//! A user's deletion on an indexer, through the faces topic: one record on each partition of
//! the indexer's shard (a deletion by face ids or by URI prefix may touch any of them), in
//! order with the photos' own records, and answered once this indexer has applied them all,
//! so the caller reads its own write. Every replica of the shard applies the same records, and
//! a replay from a snapshot's offsets deletes again, which changes nothing: deletions are
//! journaled, so a replayed face batch never brings a deleted face back either.

use std::sync::Arc;
use std::time::Duration;

use facedex_index::{DeleteSelector, FaceId, FaceStore};
use rdkafka::producer::FutureProducer;

use crate::client::{partitions_of, producer, publish_record_to, wait_until_applied};
use crate::config::KafkaConfig;
use crate::error::{KafkaStageError, Result};
use crate::records::{FacesRecordKind, RECORD_KIND_HEADER, encode_deletion};

/// The faces topic as an indexer's FaceSearch writes deletions to it.
pub struct FaceDeletionLog {
    producer: FutureProducer,
    /// The faces topic.
    pub topic: String,
    /// The shard's partitions of the faces topic.
    partitions: Vec<i32>,
    store: Arc<FaceStore>,
    /// How long a deletion may take to come back from the topic.
    wait_limit: Duration,
}

/// What a deletion did: the faces it removed here and where its records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The faces of this shard it removed.
    pub face_ids: Vec<FaceId>,
    /// Each record's partition and offset.
    pub written: Vec<(i32, i64)>,
}

impl FaceDeletionLog {
    /// A log over `config`'s faces topic for the indexer of `store` (its shard
    /// `config.kafka.indexer_shard`); a deletion not applied within `wait_limit` of being
    /// written is answered with an error (it is still applied when it arrives).
    pub fn new(config: &KafkaConfig, store: Arc<FaceStore>, wait_limit: Duration) -> Result<Self> {
        let topic = config.topics.faces.clone();
        let partitions = config.indexer_shard.owned(partitions_of(config, &topic)?);
        if partitions.is_empty() {
            return Err(KafkaStageError::EmptyShard {
                shard: config.indexer_shard,
                topic,
            });
        }
        Ok(Self {
            producer: producer(config)?,
            topic,
            partitions,
            store,
            wait_limit,
        })
    }

    /// Writes `selector` to every partition of the shard, waits until this indexer applied
    /// them, and returns what it deleted.
    pub async fn submit(&self, selector: &DeleteSelector) -> Result<Deletion> {
        // What the records will remove here: the faces of the selector now, before a photo
        // arriving meanwhile could add more.
        let face_ids = self.store.index().resolve(selector)?;
        let payload = encode_deletion(selector);
        let header = Some((RECORD_KIND_HEADER, FacesRecordKind::Deletion.label()));
        let mut written = Vec::with_capacity(self.partitions.len());
        for partition in &self.partitions {
            let at = publish_record_to(
                &self.producer,
                &self.topic,
                Some(*partition),
                "deletion",
                Some(&payload),
                header,
            )
            .await?;
            written.push(at);
        }
        wait_until_applied(&self.store, "deletion", &self.topic, &written, self.wait_limit).await?;
        Ok(Deletion { face_ids, written })
    }
}
