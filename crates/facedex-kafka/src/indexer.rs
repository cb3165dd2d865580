//! `facedex indexer`'s Kafka side: reads every partition of the faces topic itself (no group
//! rebalancing) from the offsets stored in its newest snapshot, so a restart resumes exactly
//! where the durable index ends, and hands each record (a photo's faces, permanent failure or
//! removal: see [`crate::records`]) to the shared indexer stage
//! (`facedex_pipeline::indexer`), which applies them in batches and snapshots. After each
//! snapshot the offsets it made durable are committed to the indexer's consumer group, so
//! tools see its lag; replays are idempotent upserts.

use std::sync::Arc;
use std::time::Duration;

use facedex_index::{AppliedOffsets, FaceStore};
use facedex_pipeline::indexer::{IndexInput, IndexerConfig, IndexerStage, SourcePosition};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

pub use facedex_pipeline::indexer::IndexerCounters;

use crate::client::{consumer_config, partitions_of, pause_after_consumer_error};
use crate::config::KafkaConfig;
use crate::error::{KafkaStageError, Result};
use crate::metrics::LagReporter;
use crate::records::index_update;

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
    let partitions = partitions_of(config, &topic)?;
    let applied = store
        .index()
        .info()
        .applied_offsets
        .get(&*topic)
        .cloned()
        .unwrap_or_default();
    let consumer: StreamConsumer<LagReporter> = consumer_config(config, &config.indexer_group)
        .create_with_context(LagReporter::new(&config.indexer_group, |_| {}))
        .map_err(KafkaStageError::kafka("creating the indexer consumer"))?;
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let start = applied
            .get(&partition)
            .map_or(Offset::Beginning, |next| Offset::Offset(*next));
        tracing::info!(%topic, partition, ?start, "indexer resumes");
        assignment
            .add_partition_offset(&topic, partition, start)
            .map_err(KafkaStageError::kafka("building the assignment"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(KafkaStageError::kafka("assigning the faces topic"))?;
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
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            changed = durable.changed() => {
                if changed.is_err() {
                    break; // the stage stopped; its error comes from `finish`
                }
                let offsets = durable.borrow_and_update().clone();
                commit_durable(&consumer, &topic, &offsets)?;
            }
            received = consumer.recv() => {
                let message = match received {
                    Ok(message) => message,
                    Err(error) => {
                        pause_after_consumer_error("faces", &error).await;
                        continue;
                    }
                };
                let input = IndexInput {
                    position: Some(SourcePosition {
                        topic: Arc::clone(&topic),
                        partition: message.partition(),
                        next_offset: message.offset() + 1,
                    }),
                    update: index_update(&message),
                };
                if stage.send(input).await.is_err() {
                    break;
                }
            }
        }
    }
    let durable = stage.durable_offsets();
    stage.finish().await?;
    let offsets = durable.borrow().clone();
    commit_durable(&consumer, &topic, &offsets)
}

/// Commits the offsets a snapshot made durable to the indexer's group (for monitoring only:
/// the indexer itself resumes from its snapshot).
fn commit_durable(consumer: &StreamConsumer<LagReporter>, topic: &str, applied: &AppliedOffsets) -> Result<()> {
    let mut offsets = TopicPartitionList::new();
    for (partition, next) in applied.get(topic).into_iter().flatten() {
        offsets
            .add_partition_offset(topic, *partition, Offset::Offset(*next))
            .map_err(KafkaStageError::kafka("building a commit"))?;
    }
    if offsets.count() > 0
        && let Err(error) = consumer.commit(&offsets, CommitMode::Async)
    {
        tracing::warn!(%error, "cannot commit the indexer's offsets (monitoring only)");
    }
    Ok(())
}
