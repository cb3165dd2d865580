//! `facedex enqueue`: lists an archive and publishes one `ImageRef` per photo to the images
//! topic, keyed by URI, with many deliveries in flight and every one acknowledged before the
//! command reports success.

use facedex_pipeline::archive::{Archive, ListSummary};
use facedex_pipeline::{ArchiveConfig, ImageRef};
use facedex_proto::pipeline as wire;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message;
use rdkafka::producer::FutureRecord;

use crate::client::producer;
use crate::config::KafkaConfig;
use crate::error::{KafkaStageError, Result};
use crate::metrics;

/// Deliveries awaited at once; past this, listing waits for acknowledgements.
const MAX_PENDING_DELIVERIES: usize = 10_000;

/// Publishes every photo of `archive`; `on_published` is called once per acknowledged photo.
pub async fn enqueue_archive(
    config: &KafkaConfig,
    archive: &Archive,
    archive_config: &ArchiveConfig,
    mut on_published: impl FnMut(&ImageRef),
) -> Result<ListSummary> {
    let producer = producer(config)?;
    let topic = config.topics.images.as_str();
    let mut pending = FuturesUnordered::new();
    let mut failure: Option<KafkaStageError> = None;
    let summary = archive
        .list::<_, KafkaStageError>(archive_config, async |image| {
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
    match failure {
        Some(error) => Err(error),
        None => Ok(summary),
    }
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
