//! The indexer stage, shared by local mode and the Kafka indexer: photos' outcomes in (a face
//! batch, a permanent failure, a removal) and users' people edits and deletions, the face store
//! kept up to date. Each replaces what
//! the index held of its photo (`FaceStore::apply_changes`). It takes whatever is queued (up
//! to `max_batch_faces`) and applies it in one blocking call, so the graph inserts on every core;
//! records the source position of each as applied; snapshots on its cadence and once more at
//! the end; and tells its owner which positions each snapshot made durable. It is the one
//! writer of faces and applied positions while it runs (a search server beside it may still
//! delete faces and snapshot).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use facedex_index::{AppliedOffsets, DeleteSelector, FaceStore, ImageChange, PeopleEdit, PersonAnchors, SnapshotInfo};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::{PipelineError, Result, describe};
use crate::events::{LogDecision, RateLimitedLog};
use crate::messages::{DeadLetter, FaceBatch, ImageRemoval};
use crate::metrics;

/// How often a refused record of one kind gets its own log line.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where a record came from, to be recorded as applied with it (a Kafka partition's next
/// offset); local mode has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset to resume from once this record is applied (its offset + 1).
    pub next_offset: i64,
}

/// Why a record was refused: a fixed set, so it can label a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// Its bytes are not a face batch.
    Undecodable,
    /// It decoded but does not describe valid faces (a bad vector, box or id).
    Invalid,
    /// The index refused it (another model's embeddings, a wrong dimension).
    IndexRefused,
}

impl RefusalKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::Invalid => "invalid",
            Self::IndexRefused => "index_refused",
        }
    }
}

/// A record that could not become a face batch, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why, as a kind.
    pub kind: RefusalKind,
    /// Why, in words.
    pub reason: String,
}

/// What became of a photo, for the index.
#[derive(Debug, Clone)]
pub enum IndexUpdate {
    /// Its faces (possibly none): they replace what the index held of the photo.
    Faces(FaceBatch),
    /// It cannot be indexed for good (a dead letter of a permanent kind): cataloged as failed
    /// at its version, faces of an earlier version removed.
    Failed(DeadLetter),
    /// It left the archive: its faces and catalog entry removed.
    Removed(ImageRemoval),
}

impl IndexUpdate {
    /// Faces it brings.
    pub fn faces(&self) -> usize {
        match self {
            Self::Faces(batch) => batch.faces.len(),
            Self::Failed(_) | Self::Removed(_) => 0,
        }
    }

    /// The index change it makes.
    pub fn image_change(&self) -> ImageChange {
        match self {
            Self::Faces(batch) => batch.image_change(),
            Self::Failed(letter) => ImageChange::Failed {
                image_uri: letter.image.uri.clone(),
                version: letter.image.listed_version(),
            },
            Self::Removed(removal) => ImageChange::Removed {
                image_uri: removal.uri.clone(),
            },
        }
    }
}

/// What a record asks of the index.
#[derive(Debug, Clone)]
pub enum IndexRecord {
    /// A photo's outcome.
    Photo(IndexUpdate),
    /// A user's edit of the people, applied in order with the photos around it, its persons
    /// found by their anchors.
    People(PeopleEdit, PersonAnchors),
    /// A user's deletion of faces, for good (journaled: a replay never brings them back).
    Deletion(DeleteSelector),
    /// A record meant for another index (another shard's people edit): its position is
    /// recorded as applied, nothing else changes.
    Skipped(&'static str),
}

impl From<IndexUpdate> for IndexRecord {
    fn from(update: IndexUpdate) -> Self {
        Self::Photo(update)
    }
}

/// One record for the stage.
#[derive(Debug, Clone)]
pub struct IndexInput {
    /// Its position in the source, if it has one.
    pub position: Option<SourcePosition>,
    /// The record, or why the source could not make one of it.
    pub update: std::result::Result<IndexRecord, Refusal>,
}

/// Settings of the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexerConfig {
    /// Faces applied per upsert at most (a single larger batch is applied alone).
    pub max_batch_faces: usize,
    /// Face batches queued before the source waits.
    pub queue_capacity: usize,
    /// Snapshot this often when something changed; `None` snapshots only at the end.
    pub snapshot_interval: Option<Duration>,
    /// At the end, when anything changed, re-check that every face is reachable before the
    /// last snapshot (the end of a bulk load, which reports both).
    pub audit_at_end: bool,
    /// A batch the index refuses stops the stage with the index's error instead of being
    /// logged and skipped: local mode, where every batch comes from this process and a refusal
    /// means the data directory holds another model's faces.
    pub refusal_stops: bool,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        Self {
            max_batch_faces: 4096,
            queue_capacity: 1024,
            snapshot_interval: None,
            audit_at_end: false,
            refusal_stops: false,
        }
    }
}

/// Running totals of the stage, readable while it runs.
#[derive(Debug, Default)]
pub struct IndexerCounters {
    /// Face batches (photos) applied.
    pub batches: AtomicU64,
    /// Faces in them.
    pub faces: AtomicU64,
    /// Records refused.
    pub refused: AtomicU64,
    /// Photos cataloged as failed.
    pub failed: AtomicU64,
    /// Photos removed (they left the archive).
    pub removed: AtomicU64,
}

/// What the stage did, when it ends.
#[derive(Debug)]
pub struct IndexerSummary {
    /// Faces not found by their own vector at the end (with `audit_at_end`).
    pub unreachable_faces: usize,
    /// The last snapshot written, if anything changed since the one before.
    pub snapshot: Option<SnapshotInfo>,
}

/// The sending side of a running stage.
pub struct IndexerStage {
    inputs: mpsc::Sender<IndexInput>,
    durable: watch::Receiver<AppliedOffsets>,
    counters: Arc<IndexerCounters>,
    task: JoinHandle<Result<IndexerSummary>>,
}

impl IndexerStage {
    /// Starts the stage over `store` on the current runtime, adding its totals to `counters`.
    pub fn spawn(store: Arc<FaceStore>, config: IndexerConfig, counters: Arc<IndexerCounters>) -> Self {
        metrics::start_indexer_counters();
        let (inputs, queue) = mpsc::channel(config.queue_capacity.max(1));
        let (durable_sender, durable) = watch::channel(store.index().applied_offsets());
        let worker = Worker {
            store,
            config,
            counters: Arc::clone(&counters),
            durable: durable_sender,
        };
        let task = tokio::spawn(worker.run(queue));
        Self {
            inputs,
            durable,
            counters,
            task,
        }
    }

    /// The applied positions the newest snapshot made durable; changes after each snapshot.
    pub fn durable_offsets(&self) -> watch::Receiver<AppliedOffsets> {
        self.durable.clone()
    }

    /// The running totals.
    pub fn counters(&self) -> &Arc<IndexerCounters> {
        &self.counters
    }

    /// Queues one record; fails when the stage has stopped (its error comes from `finish`).
    pub async fn send(&self, input: IndexInput) -> Result<()> {
        self.inputs.send(input).await.map_err(|_| PipelineError::Cancelled)
    }

    /// Stops taking records, applies those queued, snapshots and returns what it did.
    pub async fn finish(self) -> Result<IndexerSummary> {
        drop(self.inputs);
        self.task
            .await
            .map_err(|source| PipelineError::TaskFailed { task: "index", source })?
    }
}

struct Worker {
    store: Arc<FaceStore>,
    config: IndexerConfig,
    counters: Arc<IndexerCounters>,
    durable: watch::Sender<AppliedOffsets>,
}

impl Worker {
    async fn run(self, mut queue: mpsc::Receiver<IndexInput>) -> Result<IndexerSummary> {
        let worker = Arc::new(self);
        let mut refusals = RateLimitedLog::new(REFUSAL_LOG_INTERVAL);
        let mut next_snapshot = worker.config.snapshot_interval.map(|every| Instant::now() + every);
        loop {
            let due = async move {
                match next_snapshot {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = due => {
                    worker.snapshot_on_pool(false).await?;
                    next_snapshot = worker.config.snapshot_interval.map(|every| Instant::now() + every);
                }
                first = queue.recv() => {
                    let Some(first) = first else { break };
                    let group = gather(first, &mut queue, worker.config.max_batch_faces);
                    metrics::gauge_index_queue(queue.len());
                    let applier = Arc::clone(&worker);
                    let refused = tokio::task::spawn_blocking(move || applier.apply(group))
                        .await
                        .map_err(|source| PipelineError::TaskFailed { task: "index", source })??;
                    for (position, refusal) in refused {
                        log_refusal(&mut refusals, position.as_ref(), &refusal);
                    }
                }
            }
        }
        for (kind, count) in refusals.drain_suppressed() {
            tracing::error!(
                kind = kind.label(),
                count,
                "more face batches refused since the last line"
            );
        }
        // An unchanged index needs neither a new audit nor a new snapshot.
        let audit = worker.config.audit_at_end && worker.store.has_unsnapshotted_changes();
        worker.snapshot_on_pool(audit).await
    }

    /// Applies a group in order, then records every position as applied: each run of photo
    /// updates as one change, each people edit alone between them. Returns the refused
    /// records; fails instead, having applied nothing of the failing run, when refusals stop
    /// the stage.
    fn apply(&self, group: Vec<IndexInput>) -> Result<Vec<(Option<SourcePosition>, Refusal)>> {
        let mut refused = Vec::new();
        let mut run = Vec::with_capacity(group.len());
        let mut positions = Vec::with_capacity(group.len());
        for input in group {
            positions.extend(input.position.clone());
            match input.update {
                Ok(IndexRecord::Photo(update)) => run.push((input.position, update)),
                Ok(IndexRecord::People(edit, anchors)) => {
                    self.apply_photos(std::mem::take(&mut run), &mut refused)?;
                    match self.store.apply_logged_people_edit(&edit, &anchors) {
                        Ok(person) => tracing::info!(%person, ?edit, "people edit applied"),
                        Err(error) => refused.push((input.position, index_refusal(&error))),
                    }
                }
                Ok(IndexRecord::Skipped(what)) => tracing::debug!(what, "record passed over"),
                Ok(IndexRecord::Deletion(selector)) => {
                    self.apply_photos(std::mem::take(&mut run), &mut refused)?;
                    match self.store.delete(&selector) {
                        Ok(deleted) => tracing::info!(faces = deleted.len(), ?selector, "deletion applied"),
                        Err(error) => refused.push((input.position, index_refusal(&error))),
                    }
                }
                Err(refusal) => refused.push((input.position, refusal)),
            }
        }
        self.apply_photos(run, &mut refused)?;
        for (_, refusal) in &refused {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            metrics::record_refused(refusal.kind);
        }
        for position in positions {
            self.store
                .record_applied_offset(&position.topic, position.partition, position.next_offset);
        }
        Ok(refused)
    }

    /// Applies photo updates as one change. When the store refuses them (it changes nothing
    /// then), each is applied alone so only the bad ones are refused.
    fn apply_photos(
        &self,
        updates: Vec<(Option<SourcePosition>, IndexUpdate)>,
        refused: &mut Vec<(Option<SourcePosition>, Refusal)>,
    ) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let changes: Vec<ImageChange> = updates.iter().map(|(_, update)| update.image_change()).collect();
        match self.store.apply_changes(changes) {
            Err(error) if self.config.refusal_stops => return Err(error.into()),
            Ok(_) => {
                for (_, update) in &updates {
                    self.count_applied(update);
                }
            }
            Err(_) if updates.len() > 1 => {
                for (position, update) in updates {
                    match self.store.apply_changes(vec![update.image_change()]) {
                        Ok(_) => self.count_applied(&update),
                        Err(error) => refused.push((position, index_refusal(&error))),
                    }
                }
            }
            Err(error) => {
                if let Some((position, _)) = updates.into_iter().next() {
                    refused.push((position, index_refusal(&error)));
                }
            }
        }
        Ok(())
    }

    fn count_applied(&self, update: &IndexUpdate) {
        match update {
            IndexUpdate::Faces(batch) => {
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .faces
                    .fetch_add(batch.faces.len() as u64, Ordering::Relaxed);
                metrics::record_applied(batch.faces.len());
            }
            IndexUpdate::Failed(_) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                metrics::record_photo_change("failed");
            }
            IndexUpdate::Removed(_) => {
                self.counters.removed.fetch_add(1, Ordering::Relaxed);
                metrics::record_photo_change("removed");
            }
        }
    }

    /// Snapshots when something changed, or always after the reachability audit with
    /// `audit`, and publishes the positions it made durable.
    async fn snapshot_on_pool(self: &Arc<Self>, audit: bool) -> Result<IndexerSummary> {
        let worker = Arc::clone(self);
        tokio::task::spawn_blocking(move || -> Result<IndexerSummary> {
            let unreachable_faces = if audit { worker.store.audit_reachability() } else { 0 };
            if !audit && !worker.store.has_unsnapshotted_changes() {
                return Ok(IndexerSummary {
                    unreachable_faces,
                    snapshot: None,
                });
            }
            // Only the stage records positions, so these are the ones the snapshot holds.
            let applied = worker.store.index().applied_offsets();
            let snapshot = worker.store.snapshot()?;
            worker.durable.send_replace(applied);
            Ok(IndexerSummary {
                unreachable_faces,
                snapshot: Some(snapshot),
            })
        })
        .await
        .map_err(|source| PipelineError::TaskFailed {
            task: "snapshot",
            source,
        })?
    }
}

/// `first` and whatever else is queued now, up to `max_faces` faces.
fn gather(first: IndexInput, queue: &mut mpsc::Receiver<IndexInput>, max_faces: usize) -> Vec<IndexInput> {
    let mut faces = faces_of(&first);
    let mut group = vec![first];
    while faces < max_faces {
        let Ok(next) = queue.try_recv() else { break };
        faces += faces_of(&next);
        group.push(next);
    }
    group
}

fn faces_of(input: &IndexInput) -> usize {
    match &input.update {
        Ok(IndexRecord::Photo(update)) => update.faces(),
        Ok(IndexRecord::People(..) | IndexRecord::Deletion(_) | IndexRecord::Skipped(_)) | Err(_) => 0,
    }
}

fn index_refusal(error: &facedex_index::IndexError) -> Refusal {
    Refusal {
        kind: RefusalKind::IndexRefused,
        reason: describe(error),
    }
}

fn log_refusal(log: &mut RateLimitedLog<RefusalKind>, position: Option<&SourcePosition>, refusal: &Refusal) {
    let LogDecision::Log { suppressed_before } = log.decide(&refusal.kind, Instant::now()) else {
        return;
    };
    let (partition, offset) = position.map_or((None, None), |at| (Some(at.partition), Some(at.next_offset - 1)));
    tracing::error!(
        kind = refusal.kind.label(),
        partition,
        offset,
        suppressed_before,
        reason = %refusal.reason,
        "record refused"
    );
}

#[cfg(test)]
mod tests {
    use facedex_index::{BoundingBox, IndexConfig};

    use super::*;
    use crate::messages::{ImageRef, PipelineFace, StageTimings};

    /// A photo with one face whose embedding is the unit vector along `axis` (or a vector of
    /// the wrong length when `axis` is `None`), from `model`.
    fn batch(photo: usize, axis: Option<usize>, model: &str) -> FaceBatch {
        let embedding = match axis {
            Some(axis) => (0..512).map(|i| if i == axis { 1.0 } else { 0.0 }).collect(),
            None => vec![1.0; 3],
        };
        FaceBatch {
            image: ImageRef {
                uri: format!("file:///photos/{photo}.jpg"),
                ..ImageRef::default()
            },
            model_id: model.into(),
            width: 100,
            height: 100,
            faces: vec![PipelineFace {
                bounding_box: BoundingBox {
                    x1: 10.0,
                    y1: 10.0,
                    x2: 50.0,
                    y2: 50.0,
                },
                landmarks: [[30.0, 30.0]; 5],
                detection_score: 0.9,
                embedding,
                traits: Default::default(),
            }],
            timings: StageTimings::default(),
        }
    }

    fn input(offset: i64, batch: FaceBatch) -> IndexInput {
        IndexInput {
            position: Some(SourcePosition {
                topic: Arc::from("faces"),
                partition: 0,
                next_offset: offset + 1,
            }),
            update: Ok(IndexUpdate::Faces(batch).into()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_batch_is_skipped_and_the_rest_of_its_group_applied() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(FaceStore::open(dir.path(), IndexConfig::default())?);
        let counters = Arc::new(IndexerCounters::default());
        let stage = IndexerStage::spawn(Arc::clone(&store), IndexerConfig::default(), Arc::clone(&counters));
        // Queued before the stage wakes up, so they share one group and one upsert attempt.
        stage.send(input(0, batch(0, Some(0), "m"))).await?;
        stage.send(input(1, batch(1, None, "m"))).await?;
        stage.send(input(2, batch(2, Some(1), "m"))).await?;
        stage
            .send(IndexInput {
                position: Some(SourcePosition {
                    topic: Arc::from("faces"),
                    partition: 0,
                    next_offset: 4,
                }),
                update: Err(Refusal {
                    kind: RefusalKind::Undecodable,
                    reason: "not protobuf".into(),
                }),
            })
            .await?;
        let summary = stage.finish().await?;
        assert!(summary.snapshot.is_some(), "the end snapshots what changed");
        assert_eq!(counters.batches.load(Ordering::Relaxed), 2);
        assert_eq!(counters.refused.load(Ordering::Relaxed), 2);
        let info = store.index().info();
        assert_eq!(info.faces, 2);
        assert_eq!(info.applied_offsets["faces"][&0], 4, "refused records count as applied");
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_refusal_stops_the_index_error_ends_the_stage() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(FaceStore::open(dir.path(), IndexConfig::default())?);
        let config = IndexerConfig {
            refusal_stops: true,
            ..IndexerConfig::default()
        };
        let stage = IndexerStage::spawn(Arc::clone(&store), config, Arc::default());
        stage.send(input(0, batch(0, Some(0), "m"))).await?;
        // The stage may already be gone when the second batch is sent; `finish` says why.
        let _ = stage.send(input(1, batch(1, Some(1), "another-model"))).await;
        let error = stage.finish().await.expect_err("another model's faces stop the stage");
        assert!(
            matches!(
                error,
                PipelineError::Index(facedex_index::IndexError::ModelMismatch { .. })
            ),
            "{error:?}"
        );
        Ok(())
    }
}
