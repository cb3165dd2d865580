//! The ingest stage's Prometheus metrics (design.md §7: `facedex_<subsystem>_<name>_<unit>`,
//! `_total` for counters). Recorded through the `metrics` facade, so this crate knows nothing
//! of the exporter: the binary installs one (`--metrics-addr`) or none, and then recording
//! costs next to nothing. `docs/metrics.md` lists every name; a test keeps the two in step.

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::archive::SkipReason;
use crate::failure::PhotoFailureKind;
use crate::indexer::RefusalKind;
use crate::messages::StageTimings;

/// Objects listing passed over, by `reason`.
pub const OBJECTS_SKIPPED: &str = "facedex_archive_objects_skipped_total";
/// Photos whose bytes were read from the object store.
pub const PHOTOS_FETCHED: &str = "facedex_ingest_photos_fetched_total";
/// Bytes read from the object store.
pub const FETCHED_BYTES: &str = "facedex_ingest_fetched_bytes_total";
/// Photos decoded and letterboxed.
pub const PHOTOS_DECODED: &str = "facedex_ingest_photos_decoded_total";
/// Photos whose faces (possibly none) were handed on durably to the index stage.
pub const PHOTOS_INDEXED: &str = "facedex_ingest_photos_indexed_total";
/// Photos given up, by `error_kind`.
pub const PHOTOS_DEAD_LETTERED: &str = "facedex_ingest_photos_dead_lettered_total";
/// Faces found in the photos handed on.
pub const FACES: &str = "facedex_ingest_faces_total";
/// Attempts that failed transiently and were retried.
pub const RETRIES: &str = "facedex_ingest_retries_total";
/// Time per stage of one photo, by `stage`.
pub const STAGE_DURATION: &str = "facedex_ingest_stage_duration_seconds";
/// Photos being worked on now.
pub const PHOTOS_IN_FLIGHT: &str = "facedex_ingest_photos_in_flight";
/// Face batches queued for the indexer stage.
pub const INDEX_QUEUE_DEPTH: &str = "facedex_local_index_queue_depth";
/// Face batches (photos) applied to the index by the indexer stage.
pub const INDEXER_PHOTOS_INDEXED: &str = "facedex_indexer_photos_indexed_total";
/// Faces in the applied batches.
pub const INDEXER_FACES_INDEXED: &str = "facedex_indexer_faces_indexed_total";
/// Photos the indexer stage cataloged as failed for good, or removed from the index (they
/// left the archive), by `change`.
pub const INDEXER_PHOTOS_CHANGED: &str = "facedex_indexer_photo_changes_total";
/// Records the indexer stage could not apply, by `kind`.
pub const INDEXER_RECORDS_REFUSED: &str = "facedex_indexer_records_refused_total";
/// Items per model run, by `model`.
pub const MODEL_BATCH_SIZE: &str = "facedex_models_batch_size";
/// Requests waiting for a model run, by `model`.
pub const MODEL_QUEUE_DEPTH: &str = "facedex_models_queue_depth";
/// Time of one model run (the whole batch), by `model`.
pub const MODEL_RUN_DURATION: &str = "facedex_models_run_duration_seconds";

/// Registers the help text and unit of every metric above.
pub fn describe() {
    describe_counter!(
        OBJECTS_SKIPPED,
        Unit::Count,
        "Objects listing passed over, by reason: extension, size, link_outside_root, broken_link, not_a_file, unreadable, bad_name."
    );
    describe_counter!(
        PHOTOS_FETCHED,
        Unit::Count,
        "Photos whose bytes were read from the object store."
    );
    describe_counter!(FETCHED_BYTES, Unit::Bytes, "Bytes read from the object store.");
    describe_counter!(
        PHOTOS_DECODED,
        Unit::Count,
        "Photos decoded and letterboxed for the detector."
    );
    describe_counter!(
        PHOTOS_INDEXED,
        Unit::Count,
        "Photos whose faces (possibly none) were handed on durably: published to the faces topic, or queued to the index in local mode."
    );
    describe_counter!(
        PHOTOS_DEAD_LETTERED,
        Unit::Count,
        "Photos given up and sent to the dead-letter topic (or reported, in local mode), by error_kind."
    );
    describe_counter!(FACES, Unit::Count, "Faces found in the photos handed on.");
    describe_counter!(
        RETRIES,
        Unit::Count,
        "Attempts that failed transiently (object store, embed worker) and were retried."
    );
    describe_histogram!(
        STAGE_DURATION,
        Unit::Seconds,
        "Time one photo spent in a stage: fetch, decode, detect, align, embed (model waits included), publish."
    );
    describe_gauge!(
        PHOTOS_IN_FLIGHT,
        Unit::Count,
        "Photos being fetched, decoded, detected or embedded now."
    );
    describe_gauge!(
        INDEX_QUEUE_DEPTH,
        Unit::Count,
        "Face batches queued for the indexer stage (from ingest in local mode, from the faces topic in the indexer)."
    );
    describe_counter!(
        INDEXER_PHOTOS_INDEXED,
        Unit::Count,
        "Face batches (one per photo, faces or not) applied to the index."
    );
    describe_counter!(
        INDEXER_FACES_INDEXED,
        Unit::Count,
        "Faces in the face batches applied to the index."
    );
    describe_counter!(
        INDEXER_PHOTOS_CHANGED,
        Unit::Count,
        "Photos applied to the index other than as face batches, by change: failed (cataloged as failing for good, older faces removed), removed (left the archive)."
    );
    describe_counter!(
        INDEXER_RECORDS_REFUSED,
        Unit::Count,
        "Records the indexer could not apply, by kind: undecodable, invalid, index_refused (another model, a bad vector)."
    );
    describe_histogram!(
        MODEL_BATCH_SIZE,
        Unit::Count,
        "Items (photos or face crops) per model run, by model."
    );
    describe_gauge!(
        MODEL_QUEUE_DEPTH,
        Unit::Count,
        "Requests queued for a model run, by model."
    );
    describe_histogram!(
        MODEL_RUN_DURATION,
        Unit::Seconds,
        "Time of one model run over a whole batch, by model."
    );
}

/// Exports the ingest counters at zero before the first photo, so that a rate or an increase
/// over a run counts its first photos too (a series that first appears already counting has
/// no earlier sample to compare with).
pub fn start_ingest_counters() {
    counter!(PHOTOS_INDEXED).increment(0);
    counter!(FACES).increment(0);
}

/// Exports the indexer stage's counters at zero before its first batch, as
/// [`start_ingest_counters`] does for ingest.
pub(crate) fn start_indexer_counters() {
    counter!(INDEXER_PHOTOS_INDEXED).increment(0);
    counter!(INDEXER_FACES_INDEXED).increment(0);
}

/// Records the stage timings of one photo.
pub fn record_timings(timings: &StageTimings) {
    let stages = [
        ("fetch", timings.fetch_us),
        ("decode", timings.decode_us),
        ("detect", timings.detect_us),
        ("align", timings.align_us),
        ("embed", timings.embed_us),
    ];
    for (stage, micros) in stages {
        // Stages a photo never reached (no faces: no align or embed) are not observations.
        if micros > 0 {
            record_stage(stage, Duration::from_micros(micros));
        }
    }
}

/// Records the time of one stage of one photo.
pub fn record_stage(stage: &'static str, took: Duration) {
    histogram!(STAGE_DURATION, "stage" => stage).record(took.as_secs_f64());
}

/// Counts a photo whose faces were handed on durably (published, or queued to the index).
/// Callers record it only then, so the counter never runs ahead of what was kept.
pub fn record_indexed(faces: usize) {
    counter!(PHOTOS_INDEXED).increment(1);
    counter!(FACES).increment(faces as u64);
}

/// Counts an object listing passed over, labelled by the reason's class.
pub(crate) fn record_skipped(reason: &SkipReason) {
    counter!(OBJECTS_SKIPPED, "reason" => reason.label()).increment(1);
}

/// Counts a dead-lettered photo, labelled by its kind (a closed set).
pub fn record_dead_letter(error_kind: PhotoFailureKind) {
    counter!(PHOTOS_DEAD_LETTERED, "error_kind" => error_kind.label()).increment(1);
}

/// Sets the number of face batches queued for the indexer stage.
pub(crate) fn gauge_index_queue(batches: usize) {
    gauge!(INDEX_QUEUE_DEPTH).set(batches as f64);
}

/// Counts one face batch the indexer stage applied.
pub(crate) fn record_applied(faces: usize) {
    counter!(INDEXER_PHOTOS_INDEXED).increment(1);
    counter!(INDEXER_FACES_INDEXED).increment(faces as u64);
}

/// Counts a photo applied as failed (`"failed"`) or removed (`"removed"`).
pub(crate) fn record_photo_change(change: &'static str) {
    counter!(INDEXER_PHOTOS_CHANGED, "change" => change).increment(1);
}

/// Counts one record the indexer stage refused.
pub(crate) fn record_refused(kind: RefusalKind) {
    counter!(INDEXER_RECORDS_REFUSED, "kind" => kind.label()).increment(1);
}

/// Counts photos in flight while alive.
pub(crate) struct InFlight;

impl InFlight {
    pub(crate) fn enter() -> Self {
        gauge!(PHOTOS_IN_FLIGHT).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(PHOTOS_IN_FLIGHT).decrement(1.0);
    }
}
