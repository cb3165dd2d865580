//! The Kafka roles' Prometheus metrics: photos enqueued, consumer lag per partition and an
//! indexer's shard (the indexer stage's own counters are `facedex-pipeline`'s). Lag comes from
//! librdkafka's own statistics (`statistics.interval.ms`), delivered to [`LagReporter`], the
//! consumer context both consumers use: no extra broker round trips.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;

use crate::shard::Shard;

/// Photos published to the images topic and acknowledged.
pub const PHOTOS_ENQUEUED: &str = "facedex_enqueue_photos_enqueued_total";
/// Bytes of the photos enqueued (object sizes from the listing).
pub const ENQUEUED_BYTES: &str = "facedex_enqueue_photo_bytes_total";
/// Messages of a partition this consumer has not read yet.
pub const CONSUMER_LAG: &str = "facedex_kafka_consumer_lag_messages";
/// Partitions this consumer owns now.
pub const ASSIGNED_PARTITIONS: &str = "facedex_kafka_assigned_partitions";
/// The shard an indexer serves (always 1), to group its other series by shard.
pub const INDEXER_SHARD: &str = "facedex_indexer_shard_info";

/// Registers the help text and unit of every metric above.
pub fn describe() {
    describe_counter!(
        PHOTOS_ENQUEUED,
        Unit::Count,
        "Photos published to the images topic and acknowledged by the broker."
    );
    describe_counter!(
        ENQUEUED_BYTES,
        Unit::Bytes,
        "Bytes of the photos enqueued, from the archive listing."
    );
    describe_gauge!(
        CONSUMER_LAG,
        Unit::Count,
        "Messages of a partition this consumer has not read yet (high watermark minus position), by group, topic and partition."
    );
    describe_gauge!(
        ASSIGNED_PARTITIONS,
        Unit::Count,
        "Partitions this consumer owns now, by group."
    );
    describe_gauge!(
        INDEXER_SHARD,
        Unit::Count,
        "Always 1 on an indexer: shard is the shard it serves, shards how many there are."
    );
}

/// Exports which shard this indexer serves.
pub(crate) fn record_shard(shard: Shard) {
    gauge!(INDEXER_SHARD, "shard" => shard.index().to_string(), "shards" => shard.count().to_string()).set(1.0);
}

/// A consumer context that turns librdkafka's statistics into lag gauges and keeps the
/// assigned-partition gauge current through rebalances.
pub struct LagReporter {
    group: String,
    on_assignment: Box<dyn Fn(usize) + Send + Sync>,
}

impl LagReporter {
    /// Reports for consumer group `group`; `on_assignment` also hears of every new assignment
    /// size (0 after a revocation).
    pub fn new(group: &str, on_assignment: impl Fn(usize) + Send + Sync + 'static) -> Self {
        Self {
            group: group.to_owned(),
            on_assignment: Box::new(on_assignment),
        }
    }

    fn lag_gauge(&self, topic: &str, partition: i32) -> metrics::Gauge {
        gauge!(
            CONSUMER_LAG,
            "group" => self.group.clone(),
            "topic" => topic.to_owned(),
            "partition" => partition.to_string()
        )
    }

    /// Records that this consumer owns `partitions` partitions now.
    pub(crate) fn assigned(&self, partitions: usize) {
        gauge!(ASSIGNED_PARTITIONS, "group" => self.group.clone()).set(partitions as f64);
        (self.on_assignment)(partitions);
    }
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        for (topic, topic_stats) in &statistics.topics {
            for (partition, stats) in &topic_stats.partitions {
                // librdkafka lists an internal partition -1, and partitions it only knows of
                // from metadata; only those this consumer reads have a position.
                if *partition < 0 || stats.app_offset < 0 || stats.hi_offset < 0 {
                    continue;
                }
                let lag = (stats.hi_offset - stats.app_offset).max(0);
                self.lag_gauge(topic, *partition).set(lag as f64);
            }
        }
    }
}

impl ConsumerContext for LagReporter {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let owned = match rebalance {
            Rebalance::Assign(partitions) => partitions.count(),
            Rebalance::Revoke(partitions) => {
                // The new owner reports these from now on; a stale value here would be
                // counted twice in a sum over workers.
                for element in partitions.elements() {
                    self.lag_gauge(element.topic(), element.partition()).set(0.0);
                }
                0
            }
            Rebalance::Error(_) => 0,
        };
        tracing::info!(group = %self.group, partitions = owned, "consumer assignment changed");
        self.assigned(owned);
    }
}

/// Counts photos acknowledged by the broker.
pub(crate) fn record_enqueued(bytes: u64) {
    counter!(PHOTOS_ENQUEUED).increment(1);
    counter!(ENQUEUED_BYTES).increment(bytes);
}
