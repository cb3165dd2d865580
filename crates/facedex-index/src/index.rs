//! The in-memory face index: the HNSW graph plus what it cannot do itself — external face ids,
//! metadata, deletion (tombstones, then vacuum), filters, exact search and the model check.
//!
//! Concurrency: searches take a read lock on the state and run in parallel with each other and
//! with graph inserts (`hnsw_rs` inserts through `&self`). Writers (upsert, delete, vacuum,
//! snapshot) are serialised by one mutex and take the state's write lock only to publish.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};
use serde::{Deserialize, Serialize};

use crate::config::IndexConfig;
use crate::distance::check_embedding;
use crate::error::{IndexError, Result};
use crate::flat::FlatGraph;
use crate::graph::{Graph, PointLocator, estimated_link_bytes_per_point, insert, new_graph};
use crate::record::{FaceId, FaceMetadata, FaceRecord};

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
}

/// Counts and settings of the index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    /// Live faces.
    pub faces: usize,
    /// Distinct images with at least one live face.
    pub images: usize,
    /// Deleted faces still in the graph (until the next vacuum).
    pub tombstones: usize,
    /// Faces deleted for good (their ids are refused on upsert).
    pub deleted_total: usize,
    /// Points cut off from the graph (`hnsw_rs` #37: their own vector does not find them even
    /// at [`crate::REACHABILITY_EF`]), served by brute force on every search.
    pub unreachable_points: usize,
    /// The model of the embeddings, once the first face is in.
    pub model_id: Option<String>,
    /// Estimated resident bytes: vectors, graph links and metadata.
    pub memory_bytes_estimate: usize,
    /// Kafka offsets the index has applied.
    pub applied_offsets: AppliedOffsets,
    /// The settings.
    pub config: IndexConfig,
}

/// Everything but the graph: rebuilt on load from the snapshot's metadata file.
pub(crate) struct IndexState {
    pub(crate) graph: Arc<Graph>,
    /// By internal id (the graph's data id); `None` is a tombstone.
    pub(crate) faces: Vec<Option<StoredFace>>,
    /// By internal id: whether `faces` holds it. A byte per face that stays in cache, for the
    /// liveness test a graph search makes on every candidate.
    pub(crate) live: Vec<bool>,
    pub(crate) by_face_id: HashMap<FaceId, usize>,
    pub(crate) by_image: BTreeMap<String, Vec<usize>>,
    pub(crate) tombstones: usize,
    pub(crate) deleted: HashSet<FaceId>,
    pub(crate) model_id: Option<String>,
    pub(crate) applied_offsets: AppliedOffsets,
    pub(crate) metadata_bytes: usize,
    /// The copy of the graph that searches walk (see `flat.rs`), taken at the last freeze.
    pub(crate) flat: Arc<FlatGraph>,
    /// Points inserted since that copy, with their vectors: scored exactly on every search
    /// until the next freeze.
    pub(crate) unfrozen: Vec<(usize, Vec<f32>)>,
    /// Points the graph cannot reach (`hnsw_rs` #37), scored by brute force on every search.
    pub(crate) orphans: Vec<(usize, Vec<f32>)>,
}

impl IndexState {
    /// The state of `graph`, every point of it frozen into the search copy.
    pub(crate) fn new(graph: Graph) -> Self {
        Self {
            flat: Arc::new(FlatGraph::copy_of(&graph)),
            unfrozen: Vec::new(),
            graph: Arc::new(graph),
            faces: Vec::new(),
            live: Vec::new(),
            by_face_id: HashMap::new(),
            by_image: BTreeMap::new(),
            tombstones: 0,
            deleted: HashSet::new(),
            model_id: None,
            applied_offsets: AppliedOffsets::new(),
            metadata_bytes: 0,
            orphans: Vec::new(),
        }
    }

    /// Appends `face` at internal id `faces.len()` and indexes it by id and image.
    pub(crate) fn push_face(&mut self, face: Option<StoredFace>) {
        let internal_id = self.faces.len();
        match &face {
            Some(face) => {
                self.by_face_id.insert(face.face_id, internal_id);
                self.by_image
                    .entry(face.metadata.image_uri.clone())
                    .or_default()
                    .push(internal_id);
                self.metadata_bytes += metadata_bytes(&face.metadata);
            }
            None => self.tombstones += 1,
        }
        self.live.push(face.is_some());
        self.faces.push(face);
    }

    fn tombstone(&mut self, internal_id: usize) {
        let Some(face) = self.faces.get_mut(internal_id).and_then(Option::take) else {
            return;
        };
        self.live[internal_id] = false;
        self.by_face_id.remove(&face.face_id);
        if let Some(ids) = self.by_image.get_mut(&face.metadata.image_uri) {
            ids.retain(|id| *id != internal_id);
            if ids.is_empty() {
                self.by_image.remove(&face.metadata.image_uri);
            }
        }
        self.metadata_bytes -= metadata_bytes(&face.metadata);
        self.tombstones += 1;
    }

    pub(crate) fn is_live(&self, internal_id: usize) -> bool {
        self.live.get(internal_id).copied().unwrap_or(false)
    }

    pub(crate) fn live_face(&self, internal_id: usize) -> Option<&StoredFace> {
        self.faces.get(internal_id).and_then(Option::as_ref)
    }

    /// Checks, in debug builds, what every mutation must keep: `faces`, `live`, the two lookups
    /// and the counters describe the same faces; a deleted id is never live; every point the
    /// searches can score has a slot. A no-op in release builds.
    pub(crate) fn debug_assert_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        debug_assert_eq!(self.live.len(), self.faces.len(), "one liveness byte per slot");
        let mut live_faces = 0;
        let mut metadata_bytes = 0;
        for (internal_id, face) in self.faces.iter().enumerate() {
            debug_assert_eq!(self.live[internal_id], face.is_some(), "liveness of slot {internal_id}");
            if let Some(face) = face {
                live_faces += 1;
                metadata_bytes += self::metadata_bytes(&face.metadata);
                debug_assert_eq!(
                    self.by_face_id.get(&face.face_id),
                    Some(&internal_id),
                    "id lookup of slot {internal_id}"
                );
                debug_assert!(
                    !self.deleted.contains(&face.face_id),
                    "slot {internal_id} holds a deleted face"
                );
            }
        }
        debug_assert_eq!(self.by_face_id.len(), live_faces, "one id lookup per live face");
        debug_assert_eq!(self.tombstones, self.faces.len() - live_faces, "tombstone count");
        debug_assert_eq!(self.metadata_bytes, metadata_bytes, "metadata size");
        let by_image: usize = self.by_image.values().map(Vec::len).sum();
        debug_assert_eq!(by_image, live_faces, "one image lookup per live face");
        for (uri, ids) in &self.by_image {
            debug_assert!(!ids.is_empty(), "no empty image entry ({uri})");
            for id in ids {
                debug_assert!(
                    self.live_face(*id).is_some_and(|face| face.metadata.image_uri == *uri),
                    "image lookup {uri} -> {id}"
                );
            }
        }
        for (internal_id, _) in self.unfrozen.iter().chain(&self.orphans) {
            debug_assert!(*internal_id < self.faces.len(), "scored point {internal_id} has a slot");
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

fn metadata_bytes(metadata: &FaceMetadata) -> usize {
    std::mem::size_of::<Option<StoredFace>>() + metadata.image_uri.len() + metadata.model_id.len() + 64
}

/// The face index. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct FaceIndex {
    pub(crate) config: IndexConfig,
    pub(crate) writer: Mutex<()>,
    pub(crate) state: RwLock<IndexState>,
    pub(crate) locator: Mutex<PointLocator>,
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
            locator: Mutex::new(PointLocator::default()),
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
        self.upsert_locked(records)
    }

    pub(crate) fn upsert_locked(&self, records: Vec<FaceRecord>) -> Result<UpsertOutcome> {
        let mut outcome = UpsertOutcome::default();
        let mut to_insert: Vec<FaceRecord> = Vec::with_capacity(records.len());
        let mut metadata_refreshes = Vec::new();
        let mut replaced_ids = Vec::new();
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
            let mut locator = self.locator.lock();
            for record in last_copy_of_each_face(records) {
                if state.deleted.contains(&record.face_id) {
                    outcome.skipped_deleted += 1;
                    continue;
                }
                match state.by_face_id.get(&record.face_id) {
                    Some(&internal_id) => {
                        let stored = locator.vector(&state.graph, internal_id);
                        let same_image = state
                            .live_face(internal_id)
                            .is_some_and(|face| face.metadata.image_uri == record.metadata.image_uri);
                        if same_image && stored.as_deref() == Some(record.embedding.as_slice()) {
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
        }
        let first_new_id = self.state.read().faces.len();
        let graph = Arc::clone(&self.state.read().graph);
        let vectors: Vec<(&[f32], usize)> = to_insert
            .iter()
            .enumerate()
            .map(|(offset, record)| (record.embedding.as_slice(), first_new_id + offset))
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
            // Same image URI (checked above), so the by_image key is unchanged.
            if let Some(Some(face)) = state.faces.get_mut(internal_id) {
                face.metadata = metadata;
            }
        }
        for internal_id in replaced_ids {
            state.tombstone(internal_id);
        }
        for record in to_insert {
            if state.model_id.is_none() {
                state.model_id = Some(record.metadata.model_id.clone());
            }
            state.push_face(Some(StoredFace {
                face_id: record.face_id,
                metadata: record.metadata,
            }));
        }
        state.debug_assert_invariants();
        drop(state);
        self.freeze_if_due_locked();
        Ok(outcome)
    }

    /// The face ids `selector` matches now.
    pub(crate) fn resolve(&self, selector: &DeleteSelector) -> Result<Vec<FaceId>> {
        let state = self.state.read();
        let ids_of = |internal_ids: &[usize]| -> Vec<FaceId> {
            internal_ids
                .iter()
                .filter_map(|id| state.live_face(*id))
                .map(|face| face.face_id)
                .collect()
        };
        Ok(match selector {
            DeleteSelector::FaceIds(ids) => ids
                .iter()
                .filter(|id| state.by_face_id.contains_key(id))
                .copied()
                .collect(),
            DeleteSelector::ImageUri(uri) => state.by_image.get(uri).map(|ids| ids_of(ids)).unwrap_or_default(),
            DeleteSelector::ImageUriPrefix(prefix) => {
                if prefix.is_empty() {
                    return Err(IndexError::InvalidRecord {
                        image_uri: String::new(),
                        reason: "deleting by an empty URI prefix would delete every face; delete by a non-empty prefix"
                            .into(),
                    });
                }
                state
                    .by_image
                    .range(prefix.clone()..)
                    .take_while(|(uri, _)| uri.starts_with(prefix.as_str()))
                    .flat_map(|(_, ids)| ids_of(ids))
                    .collect()
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
            if let Some(internal_id) = state.by_face_id.get(face_id).copied() {
                state.tombstone(internal_id);
            }
            state.deleted.insert(*face_id);
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
        let internal_id = *state.by_face_id.get(face_id).ok_or_else(unknown)?;
        let face = state.live_face(internal_id).ok_or_else(unknown)?;
        let embedding = match with_embedding {
            true => Some(
                self.locator
                    .lock()
                    .vector(&state.graph, internal_id)
                    .ok_or_else(unknown)?,
            ),
            false => None,
        };
        Ok(FaceView {
            face_id: face.face_id,
            metadata: face.metadata.clone(),
            embedding,
        })
    }

    /// The model of the indexed embeddings, once the first face is in.
    pub fn model_id(&self) -> Option<String> {
        self.state.read().model_id.clone()
    }

    /// Counts, model, offsets and a memory estimate.
    pub fn info(&self) -> IndexInfo {
        let state = self.state.read();
        let points = state.faces.len();
        let per_point = self.config.dimension * 4 + estimated_link_bytes_per_point(self.config.max_connections);
        let exactly_scored = state.unfrozen.len() + state.orphans.len();
        let search_copy_bytes = state.flat.bytes() + exactly_scored * self.config.dimension * 4;
        IndexInfo {
            faces: state.by_face_id.len(),
            images: state.by_image.len(),
            tombstones: state.tombstones,
            deleted_total: state.deleted.len(),
            unreachable_points: state.orphans.len(),
            model_id: state.model_id.clone(),
            memory_bytes_estimate: points * per_point
                + search_copy_bytes
                + state.metadata_bytes
                + state.deleted.len() * 32,
            applied_offsets: state.applied_offsets.clone(),
            config: self.config.clone(),
        }
    }
}
