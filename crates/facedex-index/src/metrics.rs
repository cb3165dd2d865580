//! The index's Prometheus metrics, recorded through the `metrics` facade (the binary decides
//! whether and where they are exported). Size gauges are refreshed after every change, so a
//! scrape sees the index as searches see it.

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::index::FaceIndex;
use crate::snapshot::SnapshotInfo;

/// Faces searchable now.
pub const FACES: &str = "facedex_index_faces";
/// Images with at least one searchable face.
pub const IMAGES: &str = "facedex_index_images";
/// Tombstoned graph points waiting for a vacuum.
pub const TOMBSTONES: &str = "facedex_index_tombstones";
/// Faces kept outside the graph walk and scored exactly.
pub const UNREACHABLE_FACES: &str = "facedex_index_unreachable_faces";
/// Estimated memory of graph, vectors and metadata.
pub const MEMORY_BYTES: &str = "facedex_index_memory_bytes";
/// Graph points in sealed segments (links and codes in memory, vectors on disk).
pub const SEALED_FACES: &str = "facedex_index_sealed_faces";
/// Faces deleted through the API.
pub const DELETED_FACES: &str = "facedex_index_deleted_faces_total";
/// Time of one upsert (a photo's faces).
pub const UPSERT_DURATION: &str = "facedex_index_upsert_duration_seconds";
/// Time to write one snapshot.
pub const SNAPSHOT_DURATION: &str = "facedex_index_snapshot_duration_seconds";
/// When the newest snapshot was written.
pub const LAST_SNAPSHOT_TIMESTAMP: &str = "facedex_index_last_snapshot_timestamp_seconds";

/// Registers the help text and unit of every metric above.
pub fn describe() {
    describe_gauge!(FACES, Unit::Count, "Faces searchable now.");
    describe_gauge!(IMAGES, Unit::Count, "Images with at least one searchable face.");
    describe_gauge!(
        TOMBSTONES,
        Unit::Count,
        "Deleted or replaced graph points waiting for a vacuum."
    );
    describe_gauge!(
        UNREACHABLE_FACES,
        Unit::Count,
        "Faces the graph walk does not find from their own vector; every search scores them exactly."
    );
    describe_gauge!(
        MEMORY_BYTES,
        Unit::Bytes,
        "Estimated memory of the graph, vectors and metadata."
    );
    describe_counter!(
        DELETED_FACES,
        Unit::Count,
        "Faces deleted through the API (permanently)."
    );
    describe_histogram!(
        UPSERT_DURATION,
        Unit::Seconds,
        "Time to upsert one photo's faces into the graph."
    );
    describe_histogram!(
        SNAPSHOT_DURATION,
        Unit::Seconds,
        "Time to write and fsync one snapshot generation."
    );
    describe_gauge!(
        SEALED_FACES,
        Unit::Count,
        "Graph points in sealed segments; the rest are in the growing in-memory graph."
    );
    describe_gauge!(
        LAST_SNAPSHOT_TIMESTAMP,
        Unit::Seconds,
        "Unix time at which the newest snapshot was written or loaded."
    );
}

/// Sets the size gauges from `index`.
pub(crate) fn record_size(index: &FaceIndex) {
    let info = index.info();
    gauge!(FACES).set(info.faces as f64);
    gauge!(IMAGES).set(info.images as f64);
    gauge!(TOMBSTONES).set(info.tombstones as f64);
    gauge!(UNREACHABLE_FACES).set(info.unreachable_points as f64);
    gauge!(MEMORY_BYTES).set(info.memory_bytes_estimate as f64);
    gauge!(SEALED_FACES).set(info.sealed_faces as f64);
}

pub(crate) fn record_upsert(took: Duration) {
    histogram!(UPSERT_DURATION).record(took.as_secs_f64());
}

pub(crate) fn record_deleted(faces: usize) {
    counter!(DELETED_FACES).increment(faces as u64);
}

pub(crate) fn record_snapshot(took: Option<Duration>, snapshot: &SnapshotInfo) {
    if let Some(took) = took {
        histogram!(SNAPSHOT_DURATION).record(took.as_secs_f64());
    }
    gauge!(LAST_SNAPSHOT_TIMESTAMP).set(snapshot.created_unix_ms as f64 / 1000.0);
}
