//! The in-memory face index: the HNSW graph plus what it cannot do itself — external face ids,
//! metadata, deletion (tombstones, then vacuum), filters, exact search and the model check.
//!
//! Concurrency: searches take a read lock on the state and run in parallel with each other and
//! with graph inserts (`hnsw_rs` inserts through `&self`). Writers (upsert, delete, vacuum,
//! snapshot) are serialised by one mutex and take the state's write lock only to publish.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, MutexGuard, RwLock};
use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogEntry, ImageCatalog};
use crate::config::IndexConfig;
use crate::distance::check_embedding;
use crate::error::{IndexError, Result};
use crate::flat::FlatGraph;
use crate::graph::{Graph, estimated_link_bytes_per_point, insert, new_graph};
use crate::id_tracker::IdTracker;
use crate::people::{People, PersonStatus};
use crate::record::{FaceId, FaceMetadata, FaceRecord};
use crate::segments::SealedSegment;

/// Kafka offsets applied to the index: topic → partition → next offset to consume.
pub type AppliedOffsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// A face as stored: id and metadata. The vector lives in the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredFace {
    pub(crate) face_id: FaceId,
    pub(crate) metadata: FaceMetadata,
}

/// Which faces to delete.
#[derive(Debug, Clone)]
pub enum DeleteSelector {
    /// These faces (ids not in the index are ignored).
    FaceIds(Vec<FaceId>),
    /// Every face of this image.
    ImageUri(String),
    /// Every face of every image whose URI starts with this (non-empty) prefix.
    ImageUriPrefix(String),
}

/// What an upsert did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// New faces.
    pub inserted: usize,
    /// Faces already present with the same vector (a replay): metadata refreshed.
    pub unchanged: usize,
    /// Faces present with a different vector: the old one was tombstoned.
    pub replaced: usize,
    /// Faces deleted earlier: a deletion is permanent, so these were not re-added.
    pub skipped_deleted: usize,
    /// Faces removed because their photo changed (and the new version lacks them) or left
    /// the archive. Unlike a deletion this is not permanent: the photo may bring them back.
    pub removed: usize,
    /// What the people clustering did with the new faces.
    pub people: crate::people::Placements,
}

/// A face looked up by id.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceView {
    /// Its id.
    pub face_id: FaceId,
    /// Its metadata.
    pub metadata: FaceMetadata,
    /// Its embedding, when asked for.
    pub embedding: Option<Vec<f32>>,
    /// Its person, or why it has none.
    pub person: PersonStatus,
}

/// Counts and settings of the index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    /// Live faces.
    pub faces: usize,
    /// Distinct images with at least one live face.
    pub images: usize,
    /// Photos in the image catalog: processed at a known version, with or without faces.
    pub cataloged_images: usize,
    /// Deleted faces still in the graph (until the next vacuum).
    pub tombstones: usize,
    /// Faces deleted for good (their ids are refused on upsert).
    pub deleted_total: usize,
    /// Points cut off from the graph (`hnsw_rs` #37: their own vector does not find them even
    /// at [`crate::REACHABILITY_EF`]), served by brute force on every search.
    pub unreachable_points: usize,
    /// The model of the embeddings, once the first face is in.
    pub model_id: Option<String>,
    /// Persons the faces are grouped into.
    pub people: usize,
    /// Estimated resident bytes: vectors, graph links and metadata.
    pub memory_bytes_estimate: usize,
    /// Points (live or tombstoned) in sealed segments (see `index.seal_segment_faces`).
    pub sealed_faces: usize,
    /// Sealed segments.
    pub sealed_segments: usize,
    /// Kafka offsets the index has applied.
    pub applied_offsets: AppliedOffsets,
    /// The settings.
    pub config: IndexConfig,
}

/// The segments (see `segments.rs`) and what the index keeps beside them.
pub(crate) struct IndexState {
    /// Segments that take no more inserts, in id order: `0..growing_base`.
    pub(crate) sealed: Vec<SealedSegment>,
    /// The first internal id of the growing segment, whose graph numbers its points from 0.
    pub(crate) growing_base: usize,
    /// The growing segment's graph.
    pub(crate) graph: Arc<Graph>,
    /// Which internal id (the graph's data id) holds which face.
    pub(crate) ids: IdTracker,
    pub(crate) model_id: Option<String>,
    pub(crate) applied_offsets: AppliedOffsets,
    /// Which photos were processed at which version (see `catalog.rs`).
    pub(crate) catalog: ImageCatalog,
    /// The copy of the growing graph that searches walk (see `flat/`), taken at the last freeze.
    pub(crate) flat: Arc<FlatGraph>,
    /// Points inserted since that copy (by internal id), with their vectors: scored exactly on
    /// every search until the next freeze.
    pub(crate) unfrozen: Vec<(usize, Vec<f32>)>,
    /// Points the graph cannot reach (`hnsw_rs` #37), scored by brute force on every search.
    pub(crate) orphans: Vec<(usize, Vec<f32>)>,
    /// The faces grouped into persons (see `people/`).
    pub(crate) people: People,
}

impl IndexState {
    /// The state of `graph` as the growing segment from id 0, every point of it frozen into
    /// the search copy.
    pub(crate) fn new(graph: Graph) -> Self {
        Self {
            sealed: Vec::new(),
            growing_base: 0,
            flat: Arc::new(FlatGraph::copy_of(&graph)),
            unfrozen: Vec::new(),
            graph: Arc::new(graph),
            ids: IdTracker::default(),
            model_id: None,
            applied_offsets: AppliedOffsets::new(),
            catalog: ImageCatalog::default(),
            orphans: Vec::new(),
            people: People::default(),
        }
    }

    /// Tombstones the face at `internal_id`, taking it out of its person first. The one way a
    /// live face leaves the state.
    pub(crate) fn remove_face(&mut self, internal_id: usize) {
        if let Some(face_id) = self.ids.live_face(internal_id).map(|face| face.face_id) {
            let vector = self.vector(internal_id).map(Cow::into_owned).unwrap_or_default();
            self.people.face_gone(&face_id, &vector);
        }
        self.ids.tombstone(internal_id);
    }

    /// Checks, in debug builds, what every mutation must keep: the id tracker's own invariants,
    /// a vector for every live face, pending points in id order, a slot for every point the
    /// searches score. A no-op in release builds.
    pub(crate) fn debug_assert_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        self.ids.debug_assert_invariants();
        self.people.debug_assert_invariants();
        self.debug_assert_segments();
        for (internal_id, face) in self.ids.slots_iter() {
            debug_assert!(
                face.is_none() || self.vector(internal_id).is_some(),
                "live slot {internal_id} has a vector"
            );
        }
        debug_assert!(
            self.unfrozen.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "pending points in id order"
        );
        for (internal_id, _) in self.unfrozen.iter().chain(&self.orphans) {
            debug_assert!(*internal_id < self.ids.slots(), "scored point {internal_id} has a slot");
        }
    }

    pub(crate) fn check_model(&self, what: &str, model_id: &str) -> Result<()> {
        match &self.model_id {
            Some(expected) if expected != model_id => Err(IndexError::ModelMismatch {
                what: what.to_owned(),
                expected: expected.clone(),
                actual: model_id.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// Keeps the last record of each face id, in order: within one batch, as in a replay, the
/// later copy wins.
fn last_copy_of_each_face(records: Vec<FaceRecord>) -> Vec<FaceRecord> {
    let mut seen = HashSet::new();
    let mut kept: Vec<FaceRecord> = records
        .into_iter()
        .rev()
        .filter(|record| seen.insert(record.face_id))
        .collect();
    kept.reverse();
    kept
}

/// The live faces of the photos in `replacing` whose ids `kept` does not hold (a face id
/// derives from its photo's URI, so an id names one photo's face).
fn stale_faces(state: &IndexState, kept: &HashSet<FaceId>, replacing: &[(String, Option<CatalogEntry>)]) -> Vec<usize> {
    let mut stale = Vec::new();
    for (image_uri, _) in replacing {
        for internal_id in state.ids.of_image(image_uri) {
            let Some(face) = state.ids.live_face(*internal_id) else {
                continue;
            };
            if !kept.contains(&face.face_id) {
                stale.push(*internal_id);
            }
        }
    }
    stale
}

/// The face index. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct FaceIndex {
    pub(crate) config: IndexConfig,
    pub(crate) writer: Mutex<()>,
    pub(crate) state: RwLock<IndexState>,
    /// Where sealed segments' vectors go (set by [`crate::FaceStore`]); in memory without one.
    pub(crate) segment_dir: OnceLock<PathBuf>,
}

impl FaceIndex {
    /// An empty index.
    pub fn new(config: IndexConfig) -> Result<Self> {
        config.validate()?;
        let graph = new_graph(&config, config.expected_faces);
        Ok(Self::from_state(config, IndexState::new(graph)))
    }

    pub(crate) fn from_state(config: IndexConfig, state: IndexState) -> Self {
        Self {
            config,
            writer: Mutex::new(()),
            state: RwLock::new(state),
            segment_dir: OnceLock::new(),
        }
    }

    /// The settings the index was built with.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// Serialises writers; held by [`crate::FaceStore`] across an operation and its journal entry.
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock()
    }

    /// Inserts or refreshes faces, idempotently by face id. Every record is checked before any
    /// is applied, so a bad record rejects the whole batch and changes nothing. Callers go
    /// through [`crate::FaceStore::upsert`], which marks the change for the next snapshot.
    pub(crate) fn upsert(&self, records: Vec<FaceRecord>) -> Result<UpsertOutcome> {
        let _writer = self.writer.lock();
        self.upsert_locked(records, &[])
    }

    /// Upserts `records`; for every photo in `replacing` also removes its live faces that
    /// `records` does not hold and sets its catalog entry (`None` removes it), all published
    /// in one step. The caller holds the writer lock.
    pub(crate) fn upsert_locked(
        &self,
        records: Vec<FaceRecord>,
        replacing: &[(String, Option<CatalogEntry>)],
    ) -> Result<UpsertOutcome> {
        let mut outcome = UpsertOutcome::default();
        let mut to_insert: Vec<FaceRecord> = Vec::with_capacity(records.len());
        let mut metadata_refreshes = Vec::new();
        let mut replaced_ids = Vec::new();
        let stale_ids;
        let kept_ids: HashSet<FaceId> = match replacing.is_empty() {
            true => HashSet::new(),
            false => records.iter().map(|record| record.face_id).collect(),
        };
        {
            let state = self.state.read();
            let mut batch_model = state.model_id.clone();
            for record in &records {
                let what = format!(
                    "the embedding of face {} in {}",
                    record.face_id, record.metadata.image_uri
                );
                check_embedding(&what, &record.embedding, self.config.dimension)?;
                record.metadata.check()?;
                match &batch_model {
                    Some(expected) if *expected != record.metadata.model_id => {
                        return Err(IndexError::ModelMismatch {
                            what: format!("face {} in {}", record.face_id, record.metadata.image_uri),
                            expected: expected.clone(),
                            actual: record.metadata.model_id.clone(),
                        });
                    }
                    Some(_) => {}
                    None => batch_model = Some(record.metadata.model_id.clone()),
                }
            }
            for record in last_copy_of_each_face(records) {
                if state.ids.deleted().contains(&record.face_id) {
                    outcome.skipped_deleted += 1;
                    continue;
                }
                match state.ids.internal_id(&record.face_id) {
                    Some(internal_id) => {
                        let same_image = state
                            .ids
                            .live_face(internal_id)
                            .is_some_and(|face| face.metadata.image_uri == record.metadata.image_uri);
                        if same_image && state.vector(internal_id).as_deref() == Some(record.embedding.as_slice()) {
                            outcome.unchanged += 1;
                            metadata_refreshes.push((internal_id, record.metadata));
                            continue;
                        }
                        outcome.replaced += 1;
                        replaced_ids.push(internal_id);
                    }
                    None => outcome.inserted += 1,
                }
                to_insert.push(record);
            }
            stale_ids = stale_faces(&state, &kept_ids, replacing);
            outcome.removed = stale_ids.len();
        }
        let (first_new_id, graph, growing_base) = {
            let state = self.state.read();
            (state.ids.slots(), Arc::clone(&state.graph), state.growing_base)
        };
        // The growing graph numbers its points from the segment's base.
        let vectors: Vec<(&[f32], usize)> = to_insert
            .iter()
            .enumerate()
            .map(|(offset, record)| (record.embedding.as_slice(), first_new_id + offset - growing_base))
            .collect();
        // Outside the state lock: searches go on while the graph grows. New points are not
        // visible to searches until they are pushed below.
        insert(&graph, &vectors);
        let mut state = self.state.write();
        state.unfrozen.extend(
            to_insert
                .iter()
                .enumerate()
                .map(|(offset, record)| (first_new_id + offset, record.embedding.clone())),
        );
        for (internal_id, metadata) in metadata_refreshes {
            // Same image URI (checked above), so the image lookup is unchanged.
            state.ids.refresh_metadata(internal_id, metadata);
        }
        for internal_id in replaced_ids.into_iter().chain(stale_ids) {
            state.remove_face(internal_id);
        }
        for (image_uri, entry) in replacing {
            state.catalog.set(image_uri, entry.clone());
        }
        let inserted = to_insert.len();
        for record in to_insert {
            if state.model_id.is_none() {
                state.model_id = Some(record.metadata.model_id.clone());
            }
            state.ids.push(Some(StoredFace {
                face_id: record.face_id,
                metadata: record.metadata,
            }));
        }
        state.debug_assert_invariants();
        drop(state);
        let new_ids: Vec<usize> = (first_new_id..first_new_id + inserted).collect();
        outcome.people = self.place_faces_locked(&new_ids);
        self.freeze_if_due_locked();
        Ok(outcome)
    }

    /// The face ids `selector` matches now: what a deletion applied now would remove.
    pub fn resolve(&self, selector: &DeleteSelector) -> Result<Vec<FaceId>> {
        let state = self.state.read();
        let face_id_of = |internal_id: usize| state.ids.live_face(internal_id).map(|face| face.face_id);
        Ok(match selector {
            DeleteSelector::FaceIds(ids) => ids
                .iter()
                .filter(|id| state.ids.internal_id(id).is_some())
                .copied()
                .collect(),
            DeleteSelector::ImageUri(uri) => state
                .ids
                .of_image(uri)
                .iter()
                .filter_map(|id| face_id_of(*id))
                .collect(),
            DeleteSelector::ImageUriPrefix(prefix) => {
                if prefix.is_empty() {
                    return Err(IndexError::InvalidRecord {
                        image_uri: String::new(),
                        reason: "deleting by an empty URI prefix would delete every face; delete by a non-empty prefix"
                            .into(),
                    });
                }
                state.ids.with_image_prefix(prefix).filter_map(face_id_of).collect()
            }
        })
    }

    /// Deletes faces for good: they leave search results at once, their metadata is dropped,
    /// their vectors leave the graph at the next vacuum, and their ids are refused from now on.
    /// Without the journal: [`crate::FaceStore::delete`] journals between resolving and
    /// forgetting, so only the unit tests call this.
    #[cfg(test)]
    pub(crate) fn delete(&self, selector: &DeleteSelector) -> Result<Vec<FaceId>> {
        let _writer = self.writer.lock();
        let face_ids = self.resolve(selector)?;
        self.forget_locked(&face_ids);
        Ok(face_ids)
    }

    /// Tombstones `face_ids` and remembers them as deleted. The caller holds the writer lock.
    pub(crate) fn forget_locked(&self, face_ids: &[FaceId]) {
        let mut state = self.state.write();
        for face_id in face_ids {
            if let Some(internal_id) = state.ids.internal_id(face_id) {
                state.remove_face(internal_id);
            }
            state.ids.forget(*face_id);
        }
        state.debug_assert_invariants();
    }

    /// Records that Kafka records up to (excluding) `next_offset` of `topic`/`partition` are in
    /// the index; stored with the next snapshot.
    pub(crate) fn record_applied_offset(&self, topic: &str, partition: i32, next_offset: i64) {
        let mut state = self.state.write();
        state
            .applied_offsets
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, next_offset);
    }

    /// A face by id, with its vector when `with_embedding`.
    pub fn get(&self, face_id: &FaceId, with_embedding: bool) -> Result<FaceView> {
        let state = self.state.read();
        let unknown = || IndexError::UnknownFace {
            face_id: face_id.to_string(),
        };
        let (internal_id, face) = state.ids.live_face_by_id(face_id).ok_or_else(unknown)?;
        let embedding = match with_embedding {
            true => Some(state.vector(internal_id).ok_or_else(unknown)?.into_owned()),
            false => None,
        };
        Ok(FaceView {
            face_id: face.face_id,
            metadata: face.metadata.clone(),
            embedding,
            person: crate::people::status(&state, &self.config.people, face),
        })
    }

    /// The model of the indexed embeddings, once the first face is in.
    pub fn model_id(&self) -> Option<String> {
        self.state.read().model_id.clone()
    }

    /// The source positions applied so far (also in [`Self::info`], which sums the catalog's
    /// size as well: this is the one to poll).
    pub fn applied_offsets(&self) -> AppliedOffsets {
        self.state.read().applied_offsets.clone()
    }

    /// Whether every record of `topic`/`partition` before `next_offset` is applied (a write's
    /// position, waited for before a read), without copying the applied offsets.
    pub fn has_applied(&self, topic: &str, partition: i32, next_offset: i64) -> bool {
        self.state
            .read()
            .applied_offsets
            .get(topic)
            .and_then(|partitions| partitions.get(&partition))
            .is_some_and(|applied| *applied >= next_offset)
    }

    /// Counts, model, offsets and a memory estimate.
    pub fn info(&self) -> IndexInfo {
        let state = self.state.read();
        let growing_points = state.ids.slots() - state.sealed_points();
        let per_point = self.config.dimension * 4 + estimated_link_bytes_per_point(self.config.max_connections);
        let exactly_scored = state.unfrozen.len() + state.orphans.len();
        let search_copy_bytes = state.flat.bytes() + state.sealed_bytes() + exactly_scored * self.config.dimension * 4;
        IndexInfo {
            faces: state.ids.live_faces(),
            images: state.ids.images(),
            cataloged_images: state.catalog.len(),
            tombstones: state.ids.tombstones(),
            deleted_total: state.ids.deleted().len(),
            unreachable_points: state.orphans.len(),
            model_id: state.model_id.clone(),
            people: state.people.len(),
            memory_bytes_estimate: growing_points * per_point
                + search_copy_bytes
                + state.ids.metadata_bytes()
                + state.catalog.bytes()
                + state.ids.deleted().len() * 32,
            sealed_faces: state.sealed_points(),
            sealed_segments: state.sealed.len(),
            applied_offsets: state.applied_offsets.clone(),
            config: self.config.clone(),
        }
    }
}
