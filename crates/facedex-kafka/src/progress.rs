//! What `facedex status` reads from the brokers: the end offset of every partition of the
//! pipeline's topics, the offsets each consumer group has committed, the dead letters by
//! error kind, and each archive's last enqueue plan (the runs topic). The ingest group commits only photos whose output is durable, so its lag is
//! the work left; the indexer group's commits follow its snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use facedex_pipeline::DeadLetter;
use facedex_pipeline::plan::EnqueueRun;
use facedex_proto::pipeline as wire;
use facedex_proto::pipeline_conversions::decode;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{client_config, partitions_with};
use crate::config::KafkaConfig;
use crate::error::{KafkaStageError, Result};

/// How long one broker query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Offsets per partition.
pub type PartitionOffsets = BTreeMap<i32, i64>;

/// One topic's extent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicOffsets {
    /// The first offset still stored, per partition.
    pub start: PartitionOffsets,
    /// The next offset to be written, per partition.
    pub end: PartitionOffsets,
}

impl TopicOffsets {
    /// Records ever written (the sum of end offsets).
    pub fn written(&self) -> i64 {
        self.end.values().sum()
    }

    /// Records not yet covered by `committed` per partition (a partition without a commit
    /// counts from its start), and the total.
    pub fn lag(&self, committed: &PartitionOffsets) -> (PartitionOffsets, i64) {
        let per_partition: PartitionOffsets = self
            .end
            .iter()
            .map(|(partition, end)| {
                let start = self.start.get(partition).copied().unwrap_or(0);
                let done = committed.get(partition).copied().unwrap_or(start).max(start);
                (*partition, (end - done).max(0))
            })
            .collect();
        let total = per_partition.values().sum();
        (per_partition, total)
    }
}

/// The pipeline's consumer groups (names from `[kafka]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `kafka.ingest_group`, on the images topic.
    Ingest,
    /// `kafka.indexer_group`, on the faces topic.
    Indexer,
}

/// Reads topic extents and group offsets; one per `facedex status` session.
pub struct ProgressReader {
    config: KafkaConfig,
    metadata: BaseConsumer,
    /// Clients with the ingest and the indexer group's ids, made once: such a client reads
    /// its group's committed offsets without joining the group.
    ingest_group: BaseConsumer,
    indexer_group: BaseConsumer,
    dead_letters: TopicTail,
    /// Dead letters counted so far, by error kind.
    dead_letters_by_kind: BTreeMap<String, u64>,
    runs: Option<TopicTail>,
    /// The last enqueue of each archive root read so far.
    last_runs: BTreeMap<String, EnqueueRun>,
}

/// A topic read from its beginning, by hand-assigned partitions, a little more at each call.
struct TopicTail {
    topic: String,
    consumer: BaseConsumer,
}

impl TopicTail {
    /// Assigns every partition of `topic` from the beginning.
    fn new(consumer: BaseConsumer, metadata: &BaseConsumer, config: &KafkaConfig, topic: &str) -> Result<Self> {
        let mut assignment = TopicPartitionList::new();
        for partition in &partitions_with(metadata, config, topic)? {
            assignment
                .add_partition_offset(topic, *partition, Offset::Beginning)
                .map_err(KafkaStageError::kafka("building an assignment"))?;
        }
        consumer
            .assign(&assignment)
            .map_err(KafkaStageError::kafka("assigning a topic"))?;
        Ok(Self {
            topic: topic.to_owned(),
            consumer,
        })
    }

    /// Hands each record written since the last call to `on_record`, up to `until`'s end
    /// offsets (or for at most [`QUERY_TIMEOUT`]).
    fn read_new(&self, until: &TopicOffsets, mut on_record: impl FnMut(&BorrowedMessage<'_>)) {
        let positions = self.consumer.position().unwrap_or_default();
        // Partitions holding records this reader has not seen yet.
        let mut pending: BTreeSet<i32> = until
            .end
            .iter()
            .filter(|(partition, end)| {
                let next = match positions
                    .find_partition(&self.topic, **partition)
                    .map(|element| element.offset())
                {
                    Some(Offset::Offset(next)) => next,
                    _ => until.start.get(partition).copied().unwrap_or(0),
                };
                next < **end
            })
            .map(|(partition, _)| *partition)
            .collect();
        let deadline = Instant::now() + QUERY_TIMEOUT;
        while !pending.is_empty() && Instant::now() < deadline {
            let Some(Ok(message)) = self.consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            on_record(&message);
            let partition = message.partition();
            if until
                .end
                .get(&partition)
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                pending.remove(&partition);
            }
        }
    }
}

impl ProgressReader {
    /// Connects to the brokers of `config`. Fails when the topics do not exist yet.
    pub fn connect(config: &KafkaConfig) -> Result<Self> {
        let metadata: BaseConsumer = client_config(config)
            .create()
            .map_err(KafkaStageError::kafka("creating a metadata client"))?;
        // A client with a group id that never joins the group nor commits: it reads the
        // group's committed offsets, or (assigned by hand) a topic, disturbing no one.
        let reader = |group: &str, operation: &'static str| -> Result<BaseConsumer> {
            client_config(config)
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .create()
                .map_err(KafkaStageError::kafka(operation))
        };
        // Dead letters are read from the start under a group of status's own.
        let dead_letters = reader("facedex-status", "creating the dead-letter reader")?;
        let (ingest_group, indexer_group) = (
            reader(&config.ingest_group, "creating a group reader")?,
            reader(&config.indexer_group, "creating a group reader")?,
        );
        let dead_letters = TopicTail::new(dead_letters, &metadata, config, &config.topics.dead_letter)?;
        // Topics made by an older version have no runs topic yet; status goes on without.
        let runs = match TopicTail::new(
            reader("facedex-status", "creating the runs reader")?,
            &metadata,
            config,
            &config.topics.runs,
        ) {
            Ok(tail) => Some(tail),
            Err(KafkaStageError::MissingTopic { .. }) => None,
            Err(error) => return Err(error),
        };
        Ok(Self {
            config: config.clone(),
            metadata,
            ingest_group,
            indexer_group,
            dead_letters,
            dead_letters_by_kind: BTreeMap::new(),
            runs,
            last_runs: BTreeMap::new(),
        })
    }

    /// Whether the runs topic exists (it did not before enqueue plans were published).
    pub fn has_runs(&self) -> bool {
        self.runs.is_some()
    }

    /// The start and end offsets of every partition of `topic`.
    pub fn topic_offsets(&self, topic: &str) -> Result<TopicOffsets> {
        let mut offsets = TopicOffsets::default();
        for partition in partitions_with(&self.metadata, &self.config, topic)? {
            let (low, high) = self
                .metadata
                .fetch_watermarks(topic, partition, QUERY_TIMEOUT)
                .map_err(KafkaStageError::kafka("fetching watermarks"))?;
            offsets.start.insert(partition, low);
            offsets.end.insert(partition, high);
        }
        Ok(offsets)
    }

    /// The offsets `group` has committed on `topic` (partitions without a commit are absent).
    pub fn committed(&self, group: Group, topic: &str, partitions: &TopicOffsets) -> Result<PartitionOffsets> {
        let consumer = match group {
            Group::Ingest => &self.ingest_group,
            Group::Indexer => &self.indexer_group,
        };
        let mut wanted = TopicPartitionList::new();
        for partition in partitions.end.keys() {
            wanted.add_partition(topic, *partition);
        }
        let committed = consumer
            .committed_offsets(wanted, QUERY_TIMEOUT)
            .map_err(KafkaStageError::kafka("reading committed offsets"))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => Some((element.partition(), offset)),
                _ => None,
            })
            .collect())
    }

    /// Reads the dead letters written since the last call and returns the running count by
    /// error kind. Stops at `until`'s end offsets (or after [`QUERY_TIMEOUT`]).
    pub fn dead_letters_by_kind(&mut self, until: &TopicOffsets) -> &BTreeMap<String, u64> {
        let counts = &mut self.dead_letters_by_kind;
        self.dead_letters.read_new(until, |message| {
            let kind = decode::<wire::DeadLetter>("DeadLetter", message.payload().unwrap_or_default())
                .and_then(DeadLetter::try_from)
                .map_or("undecodable", |letter| letter.error_kind.label())
                .to_owned();
            *counts.entry(kind).or_default() += 1;
        });
        &self.dead_letters_by_kind
    }

    /// Reads the enqueue plans written since the last call and returns the last one of each
    /// archive root (none when the runs topic does not exist). Stops at `until`'s end offsets
    /// (or after [`QUERY_TIMEOUT`]).
    pub fn last_runs(&mut self, until: &TopicOffsets) -> &BTreeMap<String, EnqueueRun> {
        let Some(tail) = &self.runs else {
            return &self.last_runs;
        };
        let runs = &mut self.last_runs;
        tail.read_new(until, |message| {
            if let Ok(run) = decode::<wire::EnqueueRun>("EnqueueRun", message.payload().unwrap_or_default()) {
                let run = EnqueueRun::from(run);
                runs.insert(run.archive.clone(), run);
            }
        });
        &self.last_runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_the_start() {
        let offsets = TopicOffsets {
            start: [(0, 0), (1, 5), (2, 0)].into(),
            end: [(0, 10), (1, 8), (2, 4)].into(),
        };
        assert_eq!(offsets.written(), 22);
        let (per_partition, total) = offsets.lag(&[(0, 7), (2, 4)].into());
        assert_eq!(per_partition, [(0, 3), (1, 3), (2, 0)].into());
        assert_eq!(total, 6);
        // A commit older than the retained start counts from the start.
        let (_, total) = offsets.lag(&[(0, 0), (1, 2), (2, 0)].into());
        assert_eq!(total, 17);
    }
}
