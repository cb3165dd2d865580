//! Local mode, the embedded default: list an archive, ingest its photos with bounded
//! concurrency and feed their faces through the indexer stage's bounded queue, all in one
//! process with the same stage code the Kafka roles run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use facedex_index::{FaceStore, SnapshotInfo};
use futures::StreamExt;

use crate::archive::{Archive, ListSummary};
use crate::config::ArchiveConfig;
use crate::error::{PipelineError, Result};
use crate::indexer::{IndexInput, IndexerConfig, IndexerStage};
use crate::ingest::{Ingested, Ingestor};
use crate::messages::DeadLetter;

/// Face batches queued between the ingest stage and the index.
const INDEX_QUEUE_CAPACITY: usize = 64;
/// Progress of a local run, reported as it happens.
#[derive(Debug)]
pub enum LocalEvent<'a> {
    /// Listing ended with this many photos.
    Listed {
        /// Photos to process.
        photos: u64,
    },
    /// A photo's faces were handed to the index.
    Indexed {
        /// Its faces.
        faces: usize,
    },
    /// A photo was given up.
    DeadLettered(&'a DeadLetter),
}

/// What a local run did.
#[derive(Debug)]
pub struct LocalSummary {
    /// Photos listed.
    pub photos: u64,
    /// What listing found, including what it passed over.
    pub listing: ListSummary,
    /// Photos whose faces were indexed (including photos without faces).
    pub indexed_photos: u64,
    /// Faces indexed.
    pub faces: u64,
    /// Photos that could not be indexed, with the reasons.
    pub dead_letters: Vec<DeadLetter>,
    /// Faces not found by their own vector after the run, scored by brute force.
    pub unreachable_faces: usize,
    /// The snapshot written at the end (always written: the stage audits and snapshots at the
    /// end of a local run).
    pub snapshot: Option<SnapshotInfo>,
    /// Wall time from the start of listing to the snapshot.
    pub elapsed: Duration,
    /// Whether the run was stopped (SIGINT/SIGTERM) before every photo was done; what was
    /// done is in the snapshot, and a new run upserts the same face ids again.
    pub interrupted: bool,
}

/// Indexes every photo of `archive` into `store`, then audits reachability and snapshots. When
/// the ingestor's cancellation token fires, photos not yet done are left out and what was done
/// is still snapshotted ([`LocalSummary::interrupted`]).
pub async fn index_archive(
    archive: &Archive,
    archive_config: &ArchiveConfig,
    ingestor: Arc<Ingestor>,
    store: Arc<FaceStore>,
    max_in_flight: usize,
    mut on_event: impl FnMut(LocalEvent<'_>),
) -> Result<LocalSummary> {
    let started = Instant::now();
    let mut images = Vec::new();
    let listing = archive
        .list(archive_config, async |image| {
            images.push(image);
            Ok::<(), PipelineError>(())
        })
        .await?;
    let photos = images.len() as u64;
    on_event(LocalEvent::Listed { photos });

    let stage = IndexerStage::spawn(
        store,
        IndexerConfig {
            queue_capacity: INDEX_QUEUE_CAPACITY,
            audit_at_end: true,
            refusal_stops: true,
            ..IndexerConfig::default()
        },
        Arc::default(),
    );

    let mut results = futures::stream::iter(images)
        .map(|image| {
            let ingestor = ingestor.clone();
            async move { ingestor.ingest(&image).await }
        })
        .buffer_unordered(max_in_flight.max(1));
    let mut dead_letters = Vec::new();
    let mut indexed_photos = 0u64;
    let mut failure = None;
    let mut interrupted = false;
    while let Some(result) = results.next().await {
        match result {
            Ok(Ingested::Faces(batch)) => {
                let faces = batch.faces.len();
                crate::metrics::record_timings(&batch.timings);
                let input = IndexInput {
                    position: None,
                    batch: Ok(batch),
                };
                if stage.send(input).await.is_err() {
                    break; // the index stage failed; its error is reported below
                }
                crate::metrics::record_indexed(faces);
                indexed_photos += 1;
                on_event(LocalEvent::Indexed { faces });
            }
            Ok(Ingested::DeadLetter(letter)) => {
                crate::metrics::record_dead_letter(letter.error_kind);
                on_event(LocalEvent::DeadLettered(&letter));
                dead_letters.push(letter);
            }
            // Shutdown: stop here, index what is done and snapshot it.
            Err(PipelineError::Cancelled) => {
                interrupted = true;
                break;
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    drop(results);
    let counters = Arc::clone(stage.counters());
    let ended = stage.finish().await;
    if let Some(error) = failure {
        return Err(error);
    }
    let ended = ended?;
    let faces = counters.faces.load(Ordering::Relaxed);
    let (snapshot, unreachable_faces) = (ended.snapshot, ended.unreachable_faces);
    Ok(LocalSummary {
        photos,
        listing,
        indexed_photos,
        faces,
        dead_letters,
        unreachable_faces,
        snapshot,
        elapsed: started.elapsed(),
        interrupted,
    })
}
