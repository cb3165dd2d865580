//! `facedex indexer`'s Kafka side: reads its shard's partitions of the faces topic (every one
//! by default; see [`crate::shard`]) and the one of the people-edits topic itself (no group
//! rebalancing) from the offsets stored in its newest snapshot, so a restart resumes exactly
//! where the durable index ends, and hands each record (a photo's faces, permanent failure or
//! removal, a user's people edit: see [`crate::records`]) to the shared indexer stage
//! (`facedex_pipeline::indexer`), which applies them in batches and snapshots. After each
//! snapshot the offsets it made durable are committed to the indexer's consumer group, so
//! tools see its lag; replays are idempotent upserts, and edits replay onto the snapshot that
//! came before them. A data directory holds one shard: an indexer refuses one whose snapshot
//! applied partitions of another.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use facedex_index::{AppliedOffsets, FaceStore};
use facedex_pipeline::indexer::{IndexInput, IndexRecord, IndexerConfig, IndexerStage, SourcePosition};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

pub use facedex_pipeline::indexer::IndexerCounters;

use crate::client::{consumer_config, partitions_of, pause_after_consumer_error};
use crate::config::KafkaConfig;
use crate::error::{KafkaStageError, Result};
use crate::metrics::LagReporter;
use crate::records::{Watermark, index_record, people_edit};
use crate::shard::Shard;

/// Consumes the faces topic into `store` until `cancel`; the stage snapshots every
/// `snapshot_interval` when something changed, and once more at the end.
pub async fn run_indexer(
    config: &KafkaConfig,
    store: Arc<FaceStore>,
    snapshot_interval: Duration,
    counters: Arc<IndexerCounters>,
    cancel: CancellationToken,
) -> Result<()> {
    let topic: Arc<str> = Arc::from(config.topics.faces.as_str());
    let edits_topic: Arc<str> = Arc::from(config.topics.people_edits.as_str());
    let applied = store.index().applied_offsets();
    let shard = config.indexer_shard;
    crate::metrics::record_shard(shard);
    let consumer: StreamConsumer<LagReporter> = consumer_config(config, &config.indexer_group)
        .create_with_context(LagReporter::new(&config.indexer_group, |_| {}))
        .map_err(KafkaStageError::kafka("creating the indexer consumer"))?;
    let mut assignment = TopicPartitionList::new();
    for read in [&topic, &edits_topic] {
        let resume_at = applied.get(&**read);
        let mut partitions = partitions_of(config, read)?;
        if read == &topic {
            // Faces of another shard in this data directory would be served twice, and their
            // updates never read: a snapshot belongs to the shard that wrote it.
            let foreign =
                resume_at.and_then(|applied| applied.keys().copied().find(|partition| !shard.owns(*partition)));
            if let Some(partition) = foreign {
                return Err(KafkaStageError::ForeignShardData {
                    shard,
                    topic: topic.to_string(),
                    partition,
                });
            }
            partitions = shard.owned(partitions);
            if partitions.is_empty() {
                return Err(KafkaStageError::EmptyShard {
                    shard,
                    topic: topic.to_string(),
                });
            }
        }
        for partition in partitions {
            let start = resume_at
                .and_then(|applied| applied.get(&partition))
                .map_or(Offset::Beginning, |next| Offset::Offset(*next));
            tracing::info!(topic = %read, partition, ?start, "indexer resumes");
            assignment
                .add_partition_offset(read, partition, start)
                .map_err(KafkaStageError::kafka("building the assignment"))?;
        }
    }
    consumer
        .assign(&assignment)
        .map_err(KafkaStageError::kafka("assigning the faces and people-edits topics"))?;
    consumer.context().assigned(assignment.count());

    let stage = IndexerStage::spawn(
        store,
        IndexerConfig {
            snapshot_interval: Some(snapshot_interval.max(Duration::from_millis(100))),
            ..IndexerConfig::default()
        },
        counters,
    );
    let mut durable = stage.durable_offsets();
    let mut gate = EditGate::new(applied.get(&*topic).cloned().unwrap_or_default());
    let mut edits_partition = TopicPartitionList::new();
    edits_partition.add_partition(&edits_topic, 0);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            changed = durable.changed() => {
                if changed.is_err() {
                    break; // the stage stopped; its error comes from `finish`
                }
                let offsets = durable.borrow_and_update().clone();
                commit_durable(&consumer, &[&topic, &edits_topic], &offsets)?;
            }
            received = consumer.recv() => {
                let message = match received {
                    Ok(message) => message,
                    Err(error) => {
                        pause_after_consumer_error("faces", &error).await;
                        continue;
                    }
                };
                let position = |topic: &Arc<str>| SourcePosition {
                    topic: Arc::clone(topic),
                    partition: message.partition(),
                    next_offset: message.offset() + 1,
                };
                let mut ready = Vec::with_capacity(1);
                if message.topic() == &*edits_topic {
                    let (mut update, mut watermark) = people_edit(&message, &topic);
                    // Faces of other shards are not read here: an edit waits only for this
                    // shard's. An edit whose writer read none of them is another shard's,
                    // about persons this index does not hold: passed over, not refused.
                    let for_this_shard = edit_is_for(shard, &watermark);
                    watermark.retain(|partition, _| shard.owns(*partition));
                    if !for_this_shard && update.is_ok() {
                        update = Ok(IndexRecord::Skipped("a people edit of another shard"));
                    }
                    let input = IndexInput { position: Some(position(&edits_topic)), update };
                    let was_holding = gate.is_holding();
                    ready.extend(gate.offer(input, watermark));
                    if gate.is_holding() && !was_holding {
                        // Later edits wait in the topic, not in memory.
                        consumer.pause(&edits_partition).map_err(KafkaStageError::kafka("pausing the people edits"))?;
                    }
                } else {
                    let update = index_record(&message);
                    ready.push(IndexInput { position: Some(position(&topic)), update });
                    gate.faces_sent(message.partition(), message.offset() + 1);
                    let was_holding = gate.is_holding();
                    ready.extend(gate.release());
                    if was_holding && !gate.is_holding() {
                        consumer.resume(&edits_partition).map_err(KafkaStageError::kafka("resuming the people edits"))?;
                    }
                }
                let mut stopped = false;
                for input in ready {
                    stopped |= stage.send(input).await.is_err();
                }
                if stopped {
                    break;
                }
            }
        }
    }
    let durable = stage.durable_offsets();
    stage.finish().await?;
    let offsets = durable.borrow().clone();
    commit_durable(&consumer, &[&topic, &edits_topic], &offsets)
}

/// Commits the offsets a snapshot made durable to the indexer's group (for monitoring only:
/// the indexer itself resumes from its snapshot).
fn commit_durable(
    consumer: &StreamConsumer<LagReporter>,
    topics: &[&Arc<str>],
    applied: &AppliedOffsets,
) -> Result<()> {
    let mut offsets = TopicPartitionList::new();
    for topic in topics {
        for (partition, next) in applied.get(&***topic).into_iter().flatten() {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(KafkaStageError::kafka("building a commit"))?;
        }
    }
    if offsets.count() > 0
        && let Err(error) = consumer.commit(&offsets, CommitMode::Async)
    {
        tracing::warn!(%error, "cannot commit the indexer's offsets (monitoring only)");
    }
    Ok(())
}

/// People edits held until the face records before them (their watermark) have gone to the
/// stage, which applies in the order it receives: an edit never runs ahead of the faces it
/// names, however the partitions' records interleave.
struct EditGate {
    /// The next offset of each faces partition sent to the stage.
    sent: BTreeMap<i32, i64>,
    /// Edits waiting, in topic order.
    held: VecDeque<(IndexInput, Watermark)>,
}

impl EditGate {
    /// A gate whose faces partitions were applied up to `applied` before this run.
    fn new(applied: BTreeMap<i32, i64>) -> Self {
        Self {
            sent: applied,
            held: VecDeque::new(),
        }
    }

    /// Whether an edit is waiting.
    fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Notes a faces record sent to the stage.
    fn faces_sent(&mut self, partition: i32, next_offset: i64) {
        let sent = self.sent.entry(partition).or_default();
        *sent = (*sent).max(next_offset);
    }

    fn reached(&self, watermark: &Watermark) -> bool {
        watermark
            .iter()
            .all(|(partition, next)| self.sent.get(partition).is_some_and(|sent| sent >= next))
    }

    /// The edit back when it may go now (nothing is held before it and its watermark is
    /// reached); otherwise it is held.
    fn offer(&mut self, input: IndexInput, watermark: Watermark) -> Option<IndexInput> {
        if self.held.is_empty() && self.reached(&watermark) {
            return Some(input);
        }
        tracing::debug!(?watermark, "people edit waits for the faces before it");
        self.held.push_back((input, watermark));
        None
    }

    /// The held edits that may go now, in order.
    fn release(&mut self) -> Vec<IndexInput> {
        let mut ready = Vec::new();
        while self.held.front().is_some_and(|(_, watermark)| self.reached(watermark)) {
            ready.extend(self.held.pop_front().map(|(input, _)| input));
        }
        ready
    }
}

/// Whether a people edit whose writer had applied `watermark` of the faces topic names persons
/// of `shard`: its writer read some of the shard's partitions (or none at all yet).
fn edit_is_for(shard: Shard, watermark: &Watermark) -> bool {
    watermark.is_empty() || watermark.keys().any(|partition| shard.owns(*partition))
}

#[cfg(test)]
mod tests {
    use facedex_pipeline::indexer::{Refusal, RefusalKind};

    use super::*;

    fn edit(offset: i64) -> IndexInput {
        IndexInput {
            position: Some(SourcePosition {
                topic: Arc::from("edits"),
                partition: 0,
                next_offset: offset + 1,
            }),
            update: Err(Refusal {
                kind: RefusalKind::Invalid,
                reason: "a stand-in".into(),
            }),
        }
    }

    fn offset_of(input: &IndexInput) -> i64 {
        input.position.as_ref().map_or(-1, |position| position.next_offset - 1)
    }

    #[test]
    fn edits_wait_for_their_faces_and_keep_their_order() {
        let mut gate = EditGate::new(BTreeMap::from([(0, 5)]));
        // Within what was applied before this run: goes at once.
        assert!(gate.offer(edit(0), Watermark::from([(0, 5)])).is_some());
        // Ahead of partition 1: held, and so is the next edit, even though it needs nothing.
        assert!(gate.offer(edit(1), Watermark::from([(0, 5), (1, 3)])).is_none());
        assert!(gate.offer(edit(2), Watermark::new()).is_none());
        assert!(gate.is_holding());
        gate.faces_sent(1, 2);
        assert!(gate.release().is_empty());
        gate.faces_sent(0, 9);
        gate.faces_sent(1, 3);
        let released: Vec<i64> = gate.release().iter().map(offset_of).collect();
        assert_eq!(released, [1, 2]);
        assert!(!gate.is_holding());
    }

    #[test]
    fn a_people_edit_of_another_shard_is_not_this_shards() {
        let (first, second) = (Shard::new(0, 2).expect("a shard"), Shard::new(1, 2).expect("a shard"));
        let written_by_first: Watermark = [(0, 10), (2, 4)].into();
        assert!(edit_is_for(first, &written_by_first));
        assert!(!edit_is_for(second, &written_by_first));
        let written_by_whole: Watermark = [(0, 10), (1, 3), (2, 4), (3, 1)].into();
        assert!(edit_is_for(first, &written_by_whole) && edit_is_for(second, &written_by_whole));
        assert!(
            edit_is_for(second, &Watermark::new()),
            "a writer that applied nothing yet"
        );
    }
}
