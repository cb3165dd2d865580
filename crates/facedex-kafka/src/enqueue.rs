//! `facedex enqueue`: lists an archive, plans against the catalog topic (unchanged photos are
//! skipped) and publishes one `ImageRef` per new or changed photo to the images topic, keyed by
//! URI, with many deliveries in flight and every one acknowledged before the command reports
//! success. With `--prune`, each photo the catalog holds under the archive and the listing no
//! longer has gets an `ImageRemoval` on the faces topic (so every indexer drops its faces in
//! order with its batches), then a tombstone in the catalog. Last, the plan goes to the runs
//! topic for `facedex status`.

use facedex_pipeline::archive::{Archive, ListSummary};
use facedex_pipeline::indexer::IndexUpdate;
use facedex_pipeline::messages::now_unix_ms;
use facedex_pipeline::plan::{Decision, EnqueueRun, PlanOptions, Planner, RunPlan};
use facedex_pipeline::{ArchiveConfig, ImageRef, ImageRemoval, PipelineError};
use facedex_proto::pipeline as wire;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message;
use rdkafka::producer::FutureRecord;

use crate::catalog::read_catalog;
use crate::client::{producer, publish};
use crate::config::KafkaConfig;
use crate::error::{KafkaStageError, Result};
use crate::metrics;
use crate::records::publish_update;

/// Deliveries awaited at once; past this, listing waits for acknowledgements.
const MAX_PENDING_DELIVERIES: usize = 10_000;

/// What an enqueue did.
#[derive(Debug, Clone)]
pub struct EnqueueSummary {
    /// What listing found.
    pub listing: ListSummary,
    /// The listing against the catalog.
    pub plan: RunPlan,
}

/// Publishes the new and changed photos of `archive` (and the removals of gone ones with
/// `options.prune`); `on_published` is called once per acknowledged photo.
pub async fn enqueue_archive(
    config: &KafkaConfig,
    archive: &Archive,
    archive_config: &ArchiveConfig,
    options: PlanOptions,
    mut on_published: impl FnMut(&ImageRef),
) -> Result<EnqueueSummary> {
    let producer = producer(config)?;
    let prefix = Planner::prefix_of(archive.root());
    let reader_config = config.clone();
    let known = tokio::task::spawn_blocking(move || read_catalog(&reader_config, &prefix))
        .await
        .map_err(|source| PipelineError::TaskFailed {
            task: "read the catalog",
            source,
        })??;
    let mut planner = Planner::new(archive.root(), known, options);
    let topic = config.topics.images.as_str();
    let mut pending = FuturesUnordered::new();
    let mut failure: Option<KafkaStageError> = None;
    let listing = archive
        .list::<_, KafkaStageError>(archive_config, async |image| {
            if planner.classify(&image) == Decision::Unchanged {
                return Ok(());
            }
            let payload = wire::ImageRef::from(&image).encode_to_vec();
            let delivery = producer
                .send_result(FutureRecord::to(topic).key(&image.uri).payload(&payload))
                .map_err(|(source, _)| KafkaStageError::Kafka {
                    operation: "queueing a photo for the images topic",
                    source,
                })?;
            pending.push(async move { (delivery.await, image) });
            while pending.len() >= MAX_PENDING_DELIVERIES {
                if let Some(result) = pending.next().await {
                    settle(result, &mut failure, &mut on_published);
                }
            }
            Ok(())
        })
        .await?;
    while let Some(result) = pending.next().await {
        settle(result, &mut failure, &mut on_published);
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let (gone, plan) = planner.finish()?;
    for uri in gone {
        let update = IndexUpdate::Removed(ImageRemoval {
            uri,
            removed_at_unix_ms: now_unix_ms(),
        });
        publish_update(&producer, config, &update).await?;
    }
    let run = EnqueueRun {
        archive: archive.root().to_owned(),
        plan,
        finished_at_unix_ms: now_unix_ms(),
    };
    let payload = wire::EnqueueRun::from(&run).encode_to_vec();
    publish(&producer, &config.topics.runs, archive.root(), &payload).await?;
    Ok(EnqueueSummary { listing, plan })
}

type DeliveryOutcome = (
    Result<rdkafka::producer::future_producer::OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
    ImageRef,
);

fn settle(result: DeliveryOutcome, failure: &mut Option<KafkaStageError>, on_published: &mut impl FnMut(&ImageRef)) {
    match result {
        (Ok(Ok(_)), image) => {
            metrics::record_enqueued(image.size_bytes);
            on_published(&image);
        }
        (Ok(Err((error, _))), image) => {
            tracing::error!(uri = %image.uri, %error, "not enqueued");
            failure.get_or_insert(KafkaStageError::Kafka {
                operation: "enqueueing",
                source: error,
            });
        }
        (Err(_), image) => {
            tracing::error!(uri = %image.uri, "producer dropped the delivery");
            failure.get_or_insert(KafkaStageError::Kafka {
                operation: "enqueueing",
                source: rdkafka::error::KafkaError::Canceled,
            });
        }
    }
}
