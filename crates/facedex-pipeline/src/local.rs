//! Local mode, the embedded default: list an archive, plan against what the data directory
//! already holds of it (skip unchanged photos, redo changed ones, prune the gone ones on
//! request), ingest the photos to process with bounded concurrency and feed their outcomes
//! through the indexer stage's bounded queue, all in one process with the same stage code the
//! Kafka roles run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use facedex_index::{FaceId, FaceStore, SnapshotInfo};
use futures::StreamExt;

use crate::archive::{Archive, ListSummary};
use crate::config::ArchiveConfig;
use crate::error::{PipelineError, Result};
use crate::indexer::{IndexInput, IndexUpdate, IndexerConfig, IndexerStage};
use crate::ingest::{Ingested, Ingestor};
use crate::messages::{DeadLetter, ImageRef, ImageRemoval, now_unix_ms};
use crate::plan::{Decision, PlanOptions, Planner, RunPlan};

/// Face batches queued between the ingest stage and the index.
const INDEX_QUEUE_CAPACITY: usize = 64;
/// Progress of a local run, reported as it happens.
#[derive(Debug)]
pub enum LocalEvent<'a> {
    /// Listing ended with this plan.
    Listed(&'a RunPlan),
    /// A photo's faces were handed to the index.
    Indexed {
        /// The photo.
        image_uri: &'a str,
        /// Its faces' ids and boxes (`[x1, y1, x2, y2]`).
        faces: &'a [(FaceId, [f32; 4])],
    },
    /// A photo was given up.
    DeadLettered(&'a DeadLetter),
}

/// What a local run did.
#[derive(Debug)]
pub struct LocalSummary {
    /// Photos to process (new and changed).
    pub photos: u64,
    /// What listing found, including what it passed over.
    pub listing: ListSummary,
    /// The listing against what the index held: new, changed, unchanged, removed.
    pub plan: RunPlan,
    /// Photos whose faces were indexed (including photos without faces).
    pub indexed_photos: u64,
    /// Faces indexed.
    pub faces: u64,
    /// Photos that could not be indexed, with the reasons.
    pub dead_letters: Vec<DeadLetter>,
    /// Faces not found by their own vector after the run, scored by brute force.
    pub unreachable_faces: usize,
    /// The snapshot written at the end; `None` when the run changed nothing.
    pub snapshot: Option<SnapshotInfo>,
    /// Wall time from the start of listing to the snapshot.
    pub elapsed: Duration,
    /// Whether the run was stopped (SIGINT/SIGTERM) before every photo was done; what was
    /// done is in the snapshot, and a new run upserts the same face ids again.
    pub interrupted: bool,
}

/// A local run's listing, planned against the data directory: what to process and remove.
#[derive(Debug)]
pub struct LocalPlan {
    /// The archive root.
    pub root: String,
    /// The new and changed photos, to process.
    pub images: Vec<ImageRef>,
    /// The photos gone from the archive, to remove (empty without `--prune`).
    pub gone: Vec<String>,
    /// What listing found.
    pub listing: ListSummary,
    /// The counts.
    pub plan: RunPlan,
    started: Instant,
}

/// Lists `archive` and compares it with what `store` holds of it.
pub async fn plan_archive(
    archive: &Archive,
    archive_config: &ArchiveConfig,
    store: &FaceStore,
    plan_options: PlanOptions,
) -> Result<LocalPlan> {
    let started = Instant::now();
    let known = store.index().images_under(&Planner::prefix_of(archive.root()));
    let mut planner = Planner::new(archive.root(), known, plan_options);
    let mut images = Vec::new();
    let listing = archive
        .list(archive_config, async |image| {
            if planner.classify(&image) != Decision::Unchanged {
                images.push(image);
            }
            Ok::<(), PipelineError>(())
        })
        .await?;
    let (gone, plan) = planner.finish()?;
    Ok(LocalPlan {
        root: archive.root().to_owned(),
        images,
        gone,
        listing,
        plan,
        started,
    })
}

/// Runs `planned`: removes the gone photos and ingests the others into `store`, then audits
/// reachability and snapshots when anything changed. When the ingestor's cancellation token
/// fires, photos not yet done are left out and what was done is still snapshotted
/// ([`LocalSummary::interrupted`]). `ingestor` is `None` only for a plan with no photo to
/// process (the models need not load).
pub async fn index_planned(
    planned: LocalPlan,
    ingestor: Option<Arc<Ingestor>>,
    store: Arc<FaceStore>,
    max_in_flight: usize,
    mut on_event: impl FnMut(LocalEvent<'_>),
) -> Result<LocalSummary> {
    let LocalPlan {
        root,
        images,
        gone,
        listing,
        plan,
        started,
    } = planned;
    let photos = images.len() as u64;
    on_event(LocalEvent::Listed(&plan));
    if ingestor.is_none() && !images.is_empty() {
        return Err(PipelineError::InvalidArchive {
            url: root,
            reason: format!("{photos} photos to process but no models were loaded"),
        });
    }

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
    for uri in gone {
        let removal = ImageRemoval {
            uri,
            removed_at_unix_ms: now_unix_ms(),
        };
        let input = IndexInput {
            position: None,
            update: Ok(IndexUpdate::Removed(removal).into()),
        };
        if stage.send(input).await.is_err() {
            break; // the index stage failed; its error is reported below
        }
    }

    let work: Vec<(Arc<Ingestor>, ImageRef)> = match &ingestor {
        Some(ingestor) => images.into_iter().map(|image| (ingestor.clone(), image)).collect(),
        None => Vec::new(),
    };
    crate::metrics::start_ingest_counters();
    let mut results = futures::stream::iter(work)
        .map(|(ingestor, image)| async move { ingestor.ingest(&image).await })
        .buffer_unordered(max_in_flight.max(1));
    let mut dead_letters = Vec::new();
    let mut indexed_photos = 0u64;
    let mut failure = None;
    let mut interrupted = false;
    while let Some(result) = results.next().await {
        match result {
            Ok(Ingested::Faces(batch)) => {
                let (image_uri, placed) = (batch.image.uri.clone(), batch.placed_faces());
                let faces = placed.len();
                crate::metrics::record_timings(&batch.timings);
                let input = IndexInput {
                    position: None,
                    update: Ok(IndexUpdate::Faces(batch).into()),
                };
                if stage.send(input).await.is_err() {
                    break; // the index stage failed; its error is reported below
                }
                crate::metrics::record_indexed(faces);
                indexed_photos += 1;
                on_event(LocalEvent::Indexed {
                    image_uri: &image_uri,
                    faces: &placed,
                });
            }
            Ok(Ingested::DeadLetter(letter)) => {
                crate::metrics::record_dead_letter(letter.error_kind);
                if letter.error_kind.is_permanent() {
                    let input = IndexInput {
                        position: None,
                        update: Ok(IndexUpdate::Failed(letter.clone()).into()),
                    };
                    if stage.send(input).await.is_err() {
                        break;
                    }
                }
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
        plan,
        indexed_photos,
        faces,
        dead_letters,
        unreachable_faces,
        snapshot,
        elapsed: started.elapsed(),
        interrupted,
    })
}
