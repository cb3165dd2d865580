//! Reading the pipeline's topics and an indexer's progress in the broker tests: watermarks
//! (retried while a restarted broker has no partition leader yet), every record of a topic,
//! and what GetIndexInfo says was applied.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use facedex_kafka::records::{FacesRecordKind, record_kind_header};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Partitions of every topic in the broker tests (`FACEDEX__KAFKA__PARTITIONS`).
pub const PARTITIONS: i32 = 4;

/// Polls `done` until it holds, for up to two minutes.
pub fn wait_until(what: &str, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done()? {
        ensure!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

pub fn client(brokers: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "facedex-test-reader")
        .set("enable.auto.commit", "false")
        .create()?)
}

/// The sum of `topic`'s high watermarks. Just after a broker restart a partition may have no
/// leader yet (`NotLeaderForPartition`, `LeaderNotAvailable`): the test's own reader retries those
/// for a while, as librdkafka does for the pipeline's clients, and fails on anything else.
pub fn end_offsets(brokers: &str, topic: &str) -> anyhow::Result<u64> {
    Ok(partition_end_offsets(brokers, topic)?
        .into_iter()
        .map(|(_, high)| high as u64)
        .sum())
}

/// Each partition of `topic` with its high watermark (the next offset to be written).
pub fn partition_end_offsets(brokers: &str, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let consumer = client(brokers)?;
    (0..PARTITIONS)
        .map(|partition| Ok((partition, fetch_watermarks_retrying(&consumer, topic, partition)?.1)))
        .collect()
}

pub fn fetch_watermarks_retrying(consumer: &BaseConsumer, topic: &str, partition: i32) -> anyhow::Result<(i64, i64)> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            Ok(watermarks) => return Ok(watermarks),
            Err(KafkaError::MetadataFetch(
                code @ (RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure),
            )) if Instant::now() < deadline => {
                eprintln!("watermarks of {topic}/{partition}: {code}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(error) => return Err(error).with_context(|| format!("watermarks of {topic}/{partition}")),
        }
    }
}

/// The payloads of `topic`; on the faces topic, of its face batches only (not its failures and
/// removals).
pub fn read_topic(brokers: &str, topic: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    Ok(read_records(brokers, topic)?
        .into_iter()
        .filter(|(kind, _)| {
            kind.as_deref()
                .is_none_or(|kind| kind == FacesRecordKind::FaceBatch.label())
        })
        .map(|(_, payload)| payload)
        .collect())
}

/// Every record of `topic`: its `facedex-record` header and payload.
pub fn read_records(brokers: &str, topic: &str) -> anyhow::Result<Vec<(Option<String>, Vec<u8>)>> {
    let consumer = client(brokers)?;
    let end = end_offsets(brokers, topic)?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut payloads = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (payloads.len() as u64) < end && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message?;
            let kind = record_kind_header(&message).map(|value| String::from_utf8_lossy(value).into_owned());
            payloads.push((kind, message.payload().unwrap_or_default().to_vec()));
        }
    }
    Ok(payloads)
}

/// The indexer's applied offsets on the faces topic, summed, from GetIndexInfo.
pub fn applied_offsets(search_url: &str) -> anyhow::Result<u64> {
    Ok(index_info(search_url)?
        .applied_offsets
        .iter()
        .filter(|offset| offset.topic == "facedex.faces")
        .map(|offset| offset.next_offset as u64)
        .sum())
}

pub fn index_info(search_url: &str) -> anyhow::Result<facedex_proto::IndexInfo> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut client = facedex_proto::face_search_client::FaceSearchClient::connect(search_url.to_owned()).await?;
        Ok(client
            .get_index_info(facedex_proto::GetIndexInfoRequest {})
            .await?
            .into_inner())
    })
}
