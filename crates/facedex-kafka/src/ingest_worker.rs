//! `facedex ingest`: a member of the ingest consumer group. Each `ImageRef` runs through the
//! pipeline's ingest step (many photos in flight, bounded); its `FaceBatch` or `DeadLetter` is
//! published and acknowledged before the offset may be committed (a permanent failure also on
//! the faces topic, so indexers drop the photo's older faces), then its catalog entry; the
//! committed offset is
//! the lowest contiguous finished one per partition ([`OffsetTracker`]). SIGTERM stops taking
//! new photos, drains those in flight and commits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use facedex_pipeline::indexer::IndexUpdate;
use facedex_pipeline::ingest::{Ingested, Ingestor};
use facedex_pipeline::messages::now_unix_ms;
use facedex_pipeline::metrics as pipeline_metrics;
use facedex_pipeline::{DeadLetter, ImageRef, PhotoFailureKind, PipelineError, describe};
use facedex_proto::pipeline as wire;
use facedex_proto::pipeline_conversions::decode;
use prost::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::{consumer_config, pause_after_consumer_error, producer, publish};
use crate::config::KafkaConfig;
use crate::error::{KafkaStageError, Result};
use crate::metrics::LagReporter;
use crate::offsets::OffsetTracker;
use crate::records::publish_update;

/// Running totals of one worker.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Photos whose face batch was published.
    pub indexed: AtomicU64,
    /// Faces in those batches.
    pub faces: AtomicU64,
    /// Photos dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Partitions of the images topic this worker owns now.
    pub assigned_partitions: AtomicU64,
}

/// A photo's work, finished: the offset and whether its output is durable.
struct Finished {
    partition: i32,
    offset: i64,
    result: Result<()>,
}

/// Consumes the images topic until `cancel`, then drains and commits. Fails when the models
/// or Kafka fail in a way retrying cannot fix; uncommitted photos are redone by whoever
/// owns their partition next.
pub async fn run_ingest_worker(
    config: &KafkaConfig,
    ingestor: Arc<Ingestor>,
    max_in_flight: usize,
    counters: Arc<IngestCounters>,
    cancel: CancellationToken,
) -> Result<()> {
    pipeline_metrics::start_ingest_counters();
    let assignment_counters = counters.clone();
    let context = LagReporter::new(&config.ingest_group, move |partitions| {
        assignment_counters
            .assigned_partitions
            .store(partitions as u64, Ordering::Relaxed);
    });
    let consumer: StreamConsumer<LagReporter> = consumer_config(config, &config.ingest_group)
        .create_with_context(context)
        .map_err(KafkaStageError::kafka("creating the ingest consumer"))?;
    consumer
        .subscribe(&[&config.topics.images])
        .map_err(KafkaStageError::kafka("subscribing to the images topic"))?;
    let producer = Arc::new(producer(config)?);
    let mut tracker = OffsetTracker::default();
    let (finished_sender, mut finished) = mpsc::channel::<Finished>(max_in_flight.max(1) * 2);
    let mut failure: Option<KafkaStageError> = None;
    // Tasks spawned and not yet reported; a cancelled photo stays "in flight" in the tracker
    // forever (so no commit passes it), but no longer counts here.
    let mut outstanding = 0usize;
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(done) = finished.recv() => {
                outstanding -= 1;
                if let Err(error) = settle(&consumer, config, &mut tracker, done) {
                    failure = Some(error);
                    break;
                }
            }
            received = consumer.recv(), if outstanding < max_in_flight.max(1) => {
                let message = match received {
                    Ok(message) => message,
                    Err(error) => {
                        pause_after_consumer_error("images", &error).await;
                        continue;
                    }
                };
                let (partition, offset) = (message.partition(), message.offset());
                let key = message.key().map(|key| String::from_utf8_lossy(key).into_owned());
                let payload = message.payload().unwrap_or_default().to_vec();
                tracker.started(partition, offset);
                let task = PhotoTask {
                    config: config.clone(),
                    ingestor: ingestor.clone(),
                    producer: producer.clone(),
                    counters: counters.clone(),
                };
                let finished_sender = finished_sender.clone();
                outstanding += 1;
                tokio::spawn(async move {
                    let result = task.run(partition, offset, key, &payload).await;
                    let _ = finished_sender.send(Finished { partition, offset, result }).await;
                });
            }
        }
    }
    // Drain: every photo in flight finishes (or is cancelled) before the last commit.
    drop(finished_sender);
    while outstanding > 0 {
        let Some(done) = finished.recv().await else {
            break;
        };
        outstanding -= 1;
        if let Err(error) = settle(&consumer, config, &mut tracker, done) {
            failure.get_or_insert(error);
        }
    }
    // The commits so far were asynchronous; make the last one certain before the consumer
    // leaves the group.
    commit(&consumer, config, tracker.committed(), CommitMode::Sync)?;
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Marks a photo finished and commits what became committable. A photo that failed or was
/// cancelled stays uncommitted, so no later commit of its partition passes it (it is redone
/// after a restart); a failure other than cancellation stops the worker.
fn settle(
    consumer: &StreamConsumer<LagReporter>,
    config: &KafkaConfig,
    tracker: &mut OffsetTracker,
    done: Finished,
) -> Result<()> {
    match done.result {
        Ok(()) => tracker.finished(done.partition, done.offset),
        Err(KafkaStageError::Pipeline(PipelineError::Cancelled)) => return Ok(()),
        Err(error) => return Err(error),
    }
    commit(consumer, config, tracker.committable(), CommitMode::Async)
}

/// Commits `positions` (partition, next offset) of the images topic.
fn commit(
    consumer: &StreamConsumer<LagReporter>,
    config: &KafkaConfig,
    positions: Vec<(i32, i64)>,
    mode: CommitMode,
) -> Result<()> {
    if positions.is_empty() {
        return Ok(());
    }
    let mut offsets = TopicPartitionList::new();
    for (partition, next) in positions {
        offsets
            .add_partition_offset(&config.topics.images, partition, Offset::Offset(next))
            .map_err(KafkaStageError::kafka("building a commit"))?;
    }
    // A commit for a partition taken away by a rebalance is refused; its new owner redoes
    // the photos after its last commit, which the stable face ids make harmless.
    if let Err(error) = consumer.commit(&offsets, mode) {
        tracing::warn!(%error, "offset commit refused");
    }
    Ok(())
}

/// What one photo's task needs.
struct PhotoTask {
    config: KafkaConfig,
    ingestor: Arc<Ingestor>,
    producer: Arc<FutureProducer>,
    counters: Arc<IngestCounters>,
}

impl PhotoTask {
    async fn run(&self, partition: i32, offset: i64, key: Option<String>, payload: &[u8]) -> Result<()> {
        let topics = &self.config.topics;
        let image: ImageRef = match decode::<wire::ImageRef>("ImageRef", payload) {
            Ok(image) => image.into(),
            Err(error) => {
                let image = ImageRef {
                    uri: key.unwrap_or_else(|| format!("{}/{partition}@{offset}", topics.images)),
                    ..ImageRef::default()
                };
                let letter = DeadLetter {
                    image,
                    error_kind: PhotoFailureKind::MalformedRecord,
                    message: describe(&error),
                    attempts: 1,
                    failed_at_unix_ms: now_unix_ms(),
                };
                return self.dead_letter(&letter).await;
            }
        };
        match self.ingestor.ingest(&image).await? {
            Ingested::Faces(batch) => {
                pipeline_metrics::record_timings(&batch.timings);
                let faces = batch.faces.len();
                let started = Instant::now();
                publish_update(&self.producer, &self.config, &IndexUpdate::Faces(batch)).await?;
                pipeline_metrics::record_stage("publish", started.elapsed());
                pipeline_metrics::record_indexed(faces);
                self.counters.indexed.fetch_add(1, Ordering::Relaxed);
                self.counters.faces.fetch_add(faces as u64, Ordering::Relaxed);
                Ok(())
            }
            Ingested::DeadLetter(letter) => self.dead_letter(&letter).await,
        }
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<()> {
        let payload = wire::DeadLetter::from(letter).encode_to_vec();
        publish(
            &self.producer,
            &self.config.topics.dead_letter,
            &letter.image.uri,
            &payload,
        )
        .await?;
        if letter.error_kind.is_permanent() {
            publish_update(&self.producer, &self.config, &IndexUpdate::Failed(letter.clone())).await?;
        }
        pipeline_metrics::record_dead_letter(letter.error_kind);
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
