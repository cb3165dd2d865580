//! `facedex indexer`: applies the faces topic to a `FaceStore`. It reads every partition
//! itself (no group rebalancing) starting at the offsets stored in its newest snapshot, so a
//! restart resumes exactly where the durable index ends; replays are idempotent upserts. After
//! each snapshot it commits the snapshot's offsets to its consumer group, so tools see its lag.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use facedex_index::FaceStore;
use facedex_pipeline::FaceBatch;
use facedex_pipeline::local::apply_face_batch;
use facedex_proto::pipeline as wire;
use facedex_proto::pipeline_conversions::decode;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::client::{consumer_config, partitions_of};
use crate::config::KafkaConfig;
use crate::error::{KafkaStageError, Result};
use crate::ingest_worker::pause_after_consumer_error;
use crate::metrics::{self, LagReporter};

/// Running totals of the indexer.
#[derive(Debug, Default)]
pub struct IndexerCounters {
    /// Face batches applied.
    pub batches: AtomicU64,
    /// Faces upserted.
    pub faces: AtomicU64,
    /// Records refused (undecodable, invalid, another model).
    pub refused: AtomicU64,
}

/// Consumes the faces topic into `store` until `cancel`; snapshots every `snapshot_interval`
/// when something changed, and once more at the end.
pub async fn run_indexer(
    config: &KafkaConfig,
    store: Arc<FaceStore>,
    snapshot_interval: Duration,
    counters: Arc<IndexerCounters>,
    cancel: CancellationToken,
) -> Result<()> {
    let topic = config.topics.faces.clone();
    let partitions = partitions_of(config, &topic)?;
    let applied = store
        .index()
        .info()
        .applied_offsets
        .get(&topic)
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

    let mut snapshots = tokio::time::interval(snapshot_interval.max(Duration::from_millis(100)));
    snapshots.tick().await;
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            _ = snapshots.tick() => snapshot_and_commit(&consumer, config, &store).await?,
            received = consumer.recv() => {
                let message = match received {
                    Ok(message) => message,
                    Err(error) => {
                        pause_after_consumer_error("faces", &error).await;
                        continue;
                    }
                };
                let (partition, offset) = (message.partition(), message.offset());
                let payload = message.payload().unwrap_or_default().to_vec();
                let store = store.clone();
                let counters = counters.clone();
                let topic = topic.clone();
                tokio::task::spawn_blocking(move || apply_record(&store, &counters, &topic, partition, offset, &payload))
                    .await
                    .map_err(|error| facedex_pipeline::PipelineError::TaskFailed { task: "index", reason: error.to_string() })?;
            }
        }
    }
    snapshot_and_commit(&consumer, config, &store).await
}

/// Applies one record and records its offset as applied. A record that cannot be applied is
/// logged and counted, never retried forever: it would stop the whole index.
fn apply_record(
    store: &FaceStore,
    counters: &IndexerCounters,
    topic: &str,
    partition: i32,
    offset: i64,
    payload: &[u8],
) {
    let batch = decode::<wire::FaceBatch>("FaceBatch", payload).and_then(FaceBatch::try_from);
    let applied = match batch {
        Ok(batch) => apply_face_batch(store, &batch)
            .map(|_| batch.faces.len())
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match applied {
        Ok(faces) => {
            metrics::record_applied(Some(faces));
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters.faces.fetch_add(faces as u64, Ordering::Relaxed);
        }
        Err(error) => {
            metrics::record_applied(None);
            counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::error!(partition, offset, %error, "face batch refused");
        }
    }
    store.record_applied_offset(topic, partition, offset + 1);
}

/// Snapshots when something changed, then commits the snapshot's applied offsets to the group.
async fn snapshot_and_commit(
    consumer: &StreamConsumer<LagReporter>,
    config: &KafkaConfig,
    store: &Arc<FaceStore>,
) -> Result<()> {
    if !store.has_unsnapshotted_changes() {
        return Ok(());
    }
    let snapshot_store = store.clone();
    let applied = tokio::task::spawn_blocking(move || -> Result<_> {
        let applied = snapshot_store.index().info().applied_offsets;
        snapshot_store.snapshot()?;
        Ok(applied)
    })
    .await
    .map_err(|error| facedex_pipeline::PipelineError::TaskFailed {
        task: "snapshot",
        reason: error.to_string(),
    })??;
    let mut offsets = TopicPartitionList::new();
    for (partition, next) in applied.get(&config.topics.faces).into_iter().flatten() {
        offsets
            .add_partition_offset(&config.topics.faces, *partition, Offset::Offset(*next))
            .map_err(KafkaStageError::kafka("building a commit"))?;
    }
    if offsets.count() > 0
        && let Err(error) = consumer.commit(&offsets, CommitMode::Async)
    {
        tracing::warn!(%error, "cannot commit the indexer's offsets (monitoring only)");
    }
    Ok(())
}
