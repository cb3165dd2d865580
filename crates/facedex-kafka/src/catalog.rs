//! The catalog topic: a compacted topic keyed by photo URI whose last record says what became
//! of the photo (`CatalogRecord`: version, size, faces, failed) or, as a tombstone, that it was
//! removed. Ingest workers write an entry once the photo's record on the faces topic is
//! acknowledged, so the catalog never claims more than the faces topic holds; `facedex
//! enqueue` reads it from the beginning to each partition's end to plan a re-run without
//! asking any indexer (there may be many shards) and without re-reading the archive's photos.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use facedex_index::CatalogEntry;
use facedex_proto::pipeline as wire;
use facedex_proto::pipeline_conversions::decode;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{client_config, partitions_with, publish_record};
use crate::config::KafkaConfig;
use crate::error::{KafkaStageError, Result};

/// How long reading the catalog may go without a record before it gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long watermark queries may take.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `entry` for `uri` (`None`: a tombstone, the photo was removed) and waits for the
/// acknowledgement.
pub async fn publish_entry(
    producer: &FutureProducer,
    config: &KafkaConfig,
    uri: &str,
    entry: Option<&CatalogEntry>,
) -> Result<()> {
    let payload = entry.map(|entry| wire::CatalogRecord::from(entry).encode_to_vec());
    publish_record(producer, &config.topics.catalog, uri, payload.as_deref(), None).await?;
    Ok(())
}

/// Every photo under `prefix` with its last catalog entry, read from the beginning of the
/// catalog topic up to the end each partition had when the read began. Blocking: call it off
/// the async runtime. A record that does not decode is skipped with a warning (the photo is
/// then treated as new and processed again, which is safe).
pub fn read_catalog(config: &KafkaConfig, prefix: &str) -> Result<BTreeMap<String, Option<CatalogEntry>>> {
    let topic = config.topics.catalog.as_str();
    let consumer: BaseConsumer = client_config(config)
        .set("group.id", "facedex-catalog-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(KafkaStageError::kafka("creating the catalog reader"))?;
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions_with(&consumer, config, topic)? {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, WATERMARK_TIMEOUT)
            .map_err(KafkaStageError::kafka("reading the catalog's end offsets"))?;
        if high > low {
            ends.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(KafkaStageError::kafka("building the catalog assignment"))?;
        }
    }
    let mut catalog = BTreeMap::new();
    if ends.is_empty() {
        return Ok(catalog);
    }
    consumer
        .assign(&assignment)
        .map_err(KafkaStageError::kafka("assigning the catalog topic"))?;
    let mut last_record = Instant::now();
    let mut undecodable = 0u64;
    while !ends.is_empty() {
        let Some(received) = consumer.poll(Duration::from_millis(200)) else {
            // Compaction leaves gaps, so the last offset before the end may hold no record:
            // a partition whose read position reached its end is done too.
            if let Ok(positions) = consumer.position() {
                for element in positions.elements() {
                    if let Offset::Offset(position) = element.offset()
                        && ends.get(&element.partition()).is_some_and(|end| position >= *end)
                    {
                        ends.remove(&element.partition());
                    }
                }
            }
            if !ends.is_empty() && last_record.elapsed() > STALL_TIMEOUT {
                return Err(KafkaStageError::Stalled {
                    what: format!("reading the catalog topic {topic}"),
                    waited_secs: STALL_TIMEOUT.as_secs(),
                });
            }
            continue;
        };
        let message = received.map_err(KafkaStageError::kafka("reading the catalog topic"))?;
        last_record = Instant::now();
        let partition = message.partition();
        if ends.get(&partition).is_some_and(|end| message.offset() + 1 >= *end) {
            ends.remove(&partition);
        }
        let Some(uri) = message.key().and_then(|key| std::str::from_utf8(key).ok()) else {
            undecodable += 1;
            continue;
        };
        if !uri.starts_with(prefix) {
            continue;
        }
        match message.payload() {
            None => {
                catalog.remove(uri);
            }
            Some(payload) => match decode::<wire::CatalogRecord>("CatalogRecord", payload) {
                Ok(record) => {
                    catalog.insert(uri.to_owned(), Some(CatalogEntry::from(record)));
                }
                Err(_) => {
                    undecodable += 1;
                    catalog.remove(uri);
                }
            },
        }
    }
    if undecodable > 0 {
        tracing::warn!(
            topic,
            records = undecodable,
            "catalog records that do not decode were skipped"
        );
    }
    Ok(catalog)
}
