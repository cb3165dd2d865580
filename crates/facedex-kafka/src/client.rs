//! Kafka clients as every role needs them: the common properties, an idempotent producer
//! keyed by image URI, topic creation, partition discovery, and the wait for a write to come
//! back applied.

use std::time::{Duration, Instant};

use facedex_index::FaceStore;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;
use crate::error::{KafkaStageError, Result};

/// How long metadata and admin calls may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The properties every client shares: bootstrap servers and the configured extras.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in &config.client {
        client.set(key, value);
    }
    client
}

/// The properties of a consumer in `group`: offsets are committed by hand, after the work
/// is durable, and librdkafka reports statistics for the lag gauges.
pub fn consumer_config(config: &KafkaConfig, group: &str) -> ClientConfig {
    let mut client = client_config(config);
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", config.statistics_interval_ms.to_string());
    client
}

/// An idempotent producer (`acks=all`, no duplicates or reordering on retry).
pub fn producer(config: &KafkaConfig) -> Result<FutureProducer> {
    client_config(config)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", config.produce_timeout_ms.to_string())
        .create()
        .map_err(KafkaStageError::kafka("creating a producer"))
}

/// Publishes `payload` keyed by `key` and waits for the broker's acknowledgement.
pub async fn publish(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) -> Result<(i32, i64)> {
    publish_record(producer, topic, key, Some(payload), None).await
}

/// Times a publish is tried when the broker is away (each try waits up to
/// `kafka.produce_timeout_ms` for the acknowledgement).
const PUBLISH_ATTEMPTS: u32 = 10;
/// The first pause between tries; doubled each time up to [`MAX_PUBLISH_BACKOFF`].
const FIRST_PUBLISH_BACKOFF: Duration = Duration::from_millis(500);
const MAX_PUBLISH_BACKOFF: Duration = Duration::from_secs(10);

/// Publishes a record keyed by `key`, with `payload` (`None`: a tombstone, which compaction
/// turns into the key's removal) and an optional header, and waits for the acknowledgement.
/// A broker that is away (restarting, failing over) is waited for: the record is sent again
/// after a pause, up to [`PUBLISH_ATTEMPTS`] times. A record sent twice is harmless downstream:
/// every record names faces by their derived ids, so applying one again changes nothing.
pub async fn publish_record(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: Option<&[u8]>,
    header: Option<(&str, &str)>,
) -> Result<(i32, i64)> {
    publish_record_to(producer, topic, None, key, payload, header).await
}

/// [`publish_record`] to `partition` when given, instead of the key's partition.
pub async fn publish_record_to(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    payload: Option<&[u8]>,
    header: Option<(&str, &str)>,
) -> Result<(i32, i64)> {
    let mut backoff = FIRST_PUBLISH_BACKOFF;
    let mut attempt = 1;
    loop {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some((name, value)) = header {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: name,
                value: Some(value),
            }));
        }
        match producer.send(record, Duration::from_secs(0)).await {
            Ok(delivery) => return Ok((delivery.partition, delivery.offset)),
            Err((error, _)) if attempt < PUBLISH_ATTEMPTS && broker_away(&error) => {
                tracing::warn!(%error, topic, attempt, "publishing failed while the broker is away; trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_PUBLISH_BACKOFF);
                attempt += 1;
            }
            Err((error, _)) => {
                return Err(KafkaStageError::Kafka {
                    operation: "publishing",
                    source: error,
                });
            }
        }
    }
}

/// Whether a publish failed because no broker took it in time: the broker may come back.
fn broker_away(error: &rdkafka::error::KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::QueueFull
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
        )
    )
}

/// Creates the pipeline's topics where missing (`create_topics`; the catalog and runs topics
/// compacted), then checks they exist.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<()> {
    let topics = [
        &config.topics.images,
        &config.topics.faces,
        &config.topics.dead_letter,
        &config.topics.catalog,
        &config.topics.runs,
        &config.topics.people_edits,
    ];
    if config.create_topics {
        let admin: AdminClient<DefaultClientContext> = client_config(config)
            .create()
            .map_err(KafkaStageError::kafka("creating an admin client"))?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|topic| {
                // People edits keep one order for every indexer: one partition.
                let partitions = match *topic == &config.topics.people_edits {
                    true => 1,
                    false => config.partitions,
                };
                let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(config.replication_factor));
                // The catalog keeps the last record per photo, for as long as the photo is in;
                // the runs topic the last plan per archive.
                match [&config.topics.catalog, &config.topics.runs].contains(topic) {
                    true => new_topic.set("cleanup.policy", "compact"),
                    false => new_topic,
                }
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(KafkaStageError::kafka("creating topics"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => tracing::warn!(%topic, ?code, "cannot create topic"),
            }
        }
    }
    for topic in topics {
        partitions_of(config, topic)?;
    }
    Ok(())
}

/// The partition ids of `topic`.
pub fn partitions_of(config: &KafkaConfig, topic: &str) -> Result<Vec<i32>> {
    let consumer: BaseConsumer = client_config(config)
        .create()
        .map_err(KafkaStageError::kafka("creating a metadata client"))?;
    partitions_with(&consumer, config, topic)
}

/// The partition ids of `topic`, asked through an existing client.
pub(crate) fn partitions_with(consumer: &BaseConsumer, config: &KafkaConfig, topic: &str) -> Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(KafkaStageError::kafka("fetching metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic && found.error().is_none())
        .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
        .collect();
    if partitions.is_empty() {
        return Err(KafkaStageError::MissingTopic {
            topic: topic.to_owned(),
            brokers: config.brokers.clone(),
        });
    }
    Ok(partitions)
}

/// librdkafka reports broker and group hiccups (a coordinator moving, a rebalance, a broker
/// restarting) as consumer errors and recovers from them itself: log, pause briefly, go on.
pub(crate) async fn pause_after_consumer_error(topic: &str, error: &rdkafka::error::KafkaError) {
    tracing::warn!(topic, %error, "consumer error; librdkafka retries");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

/// How often the applied offsets are looked at while a write is waited for.
const APPLIED_POLL: Duration = Duration::from_millis(20);

/// Waits until `store` applied the records of `topic` at `written` (partition, offset), for up
/// to `limit`: a write through Kafka answers once its own indexer applied it.
pub async fn wait_until_applied(
    store: &FaceStore,
    write: &'static str,
    topic: &str,
    written: &[(i32, i64)],
    limit: Duration,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let index = store.index();
        let pending = written
            .iter()
            .find(|(partition, offset)| !index.has_applied(topic, *partition, offset + 1));
        let Some(&(partition, offset)) = pending else {
            return Ok(());
        };
        if started.elapsed() > limit {
            return Err(KafkaStageError::WriteNotApplied {
                write,
                topic: topic.to_owned(),
                partition,
                offset,
                waited_ms: limit.as_millis() as u64,
            });
        }
        tokio::time::sleep(APPLIED_POLL).await;
    }
}
