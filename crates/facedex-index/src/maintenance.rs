//! Writer-side upkeep of the index: freezing new points into the search copy of the graph,
//! the reachability audit (`hnsw_rs` #37) and vacuum (rebuilding without deleted faces).
//!
//! All of it runs under the writer lock and builds what it needs outside the state lock, so
//! searches go on and only the final swap waits for them.

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::Result;
use crate::flat::FlatGraph;
use crate::graph::{Graph, PointLocator, insert, new_graph};
use crate::index::{FaceIndex, IndexState, StoredFace};

/// Points inserted since the last freeze are scored exactly on every search; a freeze is due
/// once there are this many of them…
const MIN_UNFROZEN_TO_FREEZE: usize = 1024;
/// …and at least this share (1 / N) of the frozen ones. A freeze copies the whole graph, so a
/// threshold that grows with it keeps the total copying of a bulk load linear (each point is
/// copied ~N times), while the exact scan stays bounded (at 1M faces: ≤ 125k dot products,
/// ~6 ms, only while a bulk load runs).
const FROZEN_SHARE_TO_FREEZE: usize = 8;

impl FaceIndex {
    /// Freezes when enough points wait outside the search copy. The caller holds the writer lock.
    pub(crate) fn freeze_if_due_locked(&self) {
        let due = {
            let state = self.state.read();
            state.unfrozen.len() >= MIN_UNFROZEN_TO_FREEZE.max(state.flat.len() / FROZEN_SHARE_TO_FREEZE)
        };
        if due {
            self.freeze_locked();
        }
    }

    /// Copies the graph into a new search copy, checks that each newly frozen point finds
    /// itself (see [`searchable_copy`]) and swaps the copy in. The caller holds the writer lock.
    /// Costs a copy of the graph and one search per new point.
    pub(crate) fn freeze_locked(&self) {
        let (graph, newly_frozen, linked_in, orphans) = {
            let state = self.state.read();
            if state.unfrozen.is_empty() {
                return;
            }
            let ids: Vec<usize> = state.unfrozen.iter().map(|(id, _)| *id).collect();
            (
                Arc::clone(&state.graph),
                ids,
                state.linked_in.clone(),
                state.orphans.clone(),
            )
        };
        let started = std::time::Instant::now();
        let mut copy = searchable_copy(&graph, linked_in, &newly_frozen, self.config.default_ef_search);
        // The orphans found before stay orphans until the next audit rechecks them.
        copy.orphans.extend(orphans);
        tracing::debug!(
            points = copy.flat.len(),
            newly_frozen = newly_frozen.len(),
            linked_in = copy.linked_in.len(),
            unreachable = copy.orphans.len(),
            seconds = started.elapsed().as_secs_f64(),
            "froze the graph into a new search copy"
        );
        let mut state = self.state.write();
        state.unfrozen.clear();
        copy.install(&mut state);
    }

    /// Searches for every live face with its own vector: a full pass over `hnsw_rs` issue #37,
    /// which the check at freezing cannot cover because later inserts can cut an old point off.
    /// The ones not found first are linked in from their neighbours, and those still not found
    /// are scored by brute force from then on. Costs one search per face; run it after a bulk
    /// load. Returns how many faces it newly found unreachable by the graph alone.
    pub fn audit_reachability(&self) -> usize {
        let _writer = self.writer.lock();
        self.freeze_locked();
        let (graph, live, linked_in) = {
            let state = self.state.read();
            let known: HashSet<usize> = state.linked_in.iter().copied().collect();
            let live: Vec<usize> = (0..state.faces.len())
                .filter(|id| state.live_face(*id).is_some() && !known.contains(id))
                .collect();
            (Arc::clone(&state.graph), live, state.linked_in.clone())
        };
        let known = linked_in.len();
        let copy = searchable_copy(&graph, linked_in, &live, self.config.default_ef_search)
            .recheck(self.config.default_ef_search);
        let newly_found = copy.linked_in.len() - known;
        tracing::info!(
            newly_found,
            linked_in = copy.linked_in.len(),
            still_unreachable = copy.orphans.len(),
            "reachability audit done"
        );
        copy.install(&mut self.state.write());
        newly_found
    }

    /// Whether deleted faces exceed the configured share of the graph.
    pub fn needs_vacuum(&self) -> bool {
        let state = self.state.read();
        !state.faces.is_empty() && state.tombstones as f32 / state.faces.len() as f32 > self.config.vacuum_deleted_ratio
    }

    /// Rebuilds the graph from the live faces only, dropping deleted vectors from memory.
    /// Searches go on against the old graph meanwhile; writers wait.
    pub fn vacuum(&self) -> Result<usize> {
        self.vacuum_if(|_| true)
    }

    /// [`FaceIndex::vacuum`] when `condition` still holds once the writer lock is taken.
    pub(crate) fn vacuum_if(&self, condition: impl FnOnce(&Self) -> bool) -> Result<usize> {
        let _writer = self.writer.lock();
        if !condition(self) {
            return Ok(0);
        }
        // With every point frozen, the old search copy holds every vector (and keeps them
        // alive after the swap below, for as long as this function needs them).
        self.freeze_locked();
        let (old_flat, live_faces, removed) = {
            let state = self.state.read();
            let faces: Vec<(usize, StoredFace)> = state
                .faces
                .iter()
                .enumerate()
                .filter_map(|(id, face)| Some((id, face.clone()?)))
                .filter(|(id, _)| state.flat.vector(*id).is_some())
                .collect();
            (Arc::clone(&state.flat), faces, state.tombstones)
        };
        let graph = new_graph(&self.config, live_faces.len());
        let batch: Vec<(&[f32], usize)> = live_faces
            .iter()
            .enumerate()
            .filter_map(|(new_id, (old_id, _))| Some((old_flat.vector(*old_id)?, new_id)))
            .collect();
        insert(&graph, &batch);
        let new_ids: Vec<usize> = (0..live_faces.len()).collect();
        let copy = searchable_copy(&graph, Vec::new(), &new_ids, self.config.default_ef_search);
        let mut rebuilt = IndexState::new_with(graph, copy.flat);
        rebuilt.linked_in = copy.linked_in;
        rebuilt.orphans = copy.orphans;
        let mut state = self.state.write();
        rebuilt.deleted = std::mem::take(&mut state.deleted);
        rebuilt.model_id = state.model_id.take();
        rebuilt.applied_offsets = std::mem::take(&mut state.applied_offsets);
        for (_, face) in live_faces {
            rebuilt.push_face(Some(face));
        }
        *state = rebuilt;
        *self.locator.lock() = PointLocator::default();
        tracing::info!(removed, faces = state.faces.len(), "vacuumed the face index");
        Ok(removed)
    }
}

/// A search copy of the graph with what it needs beside it.
pub(crate) struct SearchCopy {
    pub(crate) flat: FlatGraph,
    /// Sorted ids of the points the copy links in from their neighbours.
    pub(crate) linked_in: Vec<usize>,
    /// Those of them the copy still does not find, with their vectors.
    pub(crate) orphans: Vec<(usize, Vec<f32>)>,
}

impl SearchCopy {
    /// Checks every linked-in point again on this copy: links and graph change from one copy
    /// to the next, so a point found through its links before may not be now, and the other
    /// way round. One search per linked-in point.
    pub(crate) fn recheck(mut self, ef: usize) -> Self {
        self.orphans = self.flat.unreachable(&self.linked_in, ef);
        self
    }

    fn install(self, state: &mut IndexState) {
        state.flat = Arc::new(self.flat);
        state.linked_in = self.linked_in;
        state.orphans = self.orphans;
    }
}

/// Copies `graph` for searching, with the points of `linked_in` linked in from their
/// neighbours, and checks that each point of `to_check` finds itself first at `ef`. Those that
/// do not are linked in too and checked again; the ones still not found are the copy's
/// orphans, for brute force. Points linked in before are not checked again here (a freeze
/// should cost what it adds): see [`SearchCopy::recheck`].
pub(crate) fn searchable_copy(graph: &Graph, mut linked_in: Vec<usize>, to_check: &[usize], ef: usize) -> SearchCopy {
    let mut flat = FlatGraph::copy_of(graph).with_links_to(&linked_in);
    let newly_unreachable: Vec<usize> = flat
        .unreachable(to_check, ef)
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| linked_in.binary_search(id).is_err())
        .collect();
    let mut orphans = Vec::new();
    if !newly_unreachable.is_empty() {
        flat = flat.with_links_to(&newly_unreachable);
        orphans = flat.unreachable(&newly_unreachable, ef);
        linked_in.extend(newly_unreachable);
        linked_in.sort_unstable();
    }
    SearchCopy {
        flat,
        linked_in,
        orphans,
    }
}

#[cfg(all(test, feature = "synthetic"))]
mod tests {
    use super::*;
    use crate::config::IndexConfig;
    use crate::index::DeleteSelector;
    use crate::record::FaceId;
    use crate::search::SearchQuery;
    use crate::synthetic::{FaceLikeGenerator, FaceLikeVectors};

    const DIMENSION: usize = 32;

    /// An index of `DIMENSION`-d vectors and `faces` face-like vectors for it (face id = position).
    fn small_index(faces: usize) -> (FaceIndex, FaceLikeVectors) {
        let index = FaceIndex::new(IndexConfig {
            dimension: DIMENSION,
            ..IndexConfig::default()
        })
        .expect("index");
        let vectors = FaceLikeGenerator::new(faces.div_ceil(10), DIMENSION, 7).dataset(10);
        (index, vectors)
    }

    fn upsert(index: &FaceIndex, vectors: &FaceLikeVectors, positions: std::ops::Range<usize>) {
        index
            .upsert(positions.map(|position| vectors.record(position)).collect())
            .expect("upsert");
    }

    fn first_hit(index: &FaceIndex, vectors: &FaceLikeVectors, position: usize) -> Option<u128> {
        let query = SearchQuery::nearest(vectors.vector(position).to_vec(), 1);
        index.search(&query).expect("search").first().map(|hit| hit.face_id.0)
    }

    fn finds_itself(index: &FaceIndex, vectors: &FaceLikeVectors, position: usize) -> bool {
        first_hit(index, vectors, position) == Some(position as u128)
    }

    #[test]
    fn faces_are_found_before_their_freeze_through_the_exact_scan_and_after_it_through_the_copy() {
        let late = MIN_UNFROZEN_TO_FREEZE..MIN_UNFROZEN_TO_FREEZE + 20;
        let (index, vectors) = small_index(late.end);
        upsert(&index, &vectors, 0..MIN_UNFROZEN_TO_FREEZE);
        {
            let state = index.state.read();
            assert_eq!(
                state.flat.len(),
                MIN_UNFROZEN_TO_FREEZE,
                "a batch this large is frozen at once"
            );
            assert!(state.unfrozen.is_empty());
        }
        upsert(&index, &vectors, late.clone());
        assert_eq!(
            index.state.read().unfrozen.len(),
            20,
            "too few to freeze: scored exactly"
        );
        for position in (0..MIN_UNFROZEN_TO_FREEZE).step_by(97).chain(late.clone()) {
            assert!(finds_itself(&index, &vectors, position), "face {position}");
        }

        // Deleted faces leave at once, on either side of the copy.
        let deleted = [3, late.start + 3];
        let ids = deleted.iter().map(|&position| FaceId(position as u128)).collect();
        index.delete(&DeleteSelector::FaceIds(ids)).expect("delete");
        for position in deleted {
            assert!(!finds_itself(&index, &vectors, position), "deleted face {position}");
        }

        // The audit freezes what waits; the late faces are then found through the copy.
        index.audit_reachability();
        {
            let state = index.state.read();
            assert_eq!(state.flat.len(), late.end);
            assert!(state.unfrozen.is_empty());
        }
        for position in late.filter(|position| !deleted.contains(position)) {
            assert!(finds_itself(&index, &vectors, position), "face {position}");
        }
        for position in deleted {
            assert!(!finds_itself(&index, &vectors, position), "deleted face {position}");
        }
        assert_eq!(index.info().faces, MIN_UNFROZEN_TO_FREEZE + 18);
    }

    #[test]
    fn vacuum_keeps_every_live_face_searchable_and_drops_the_deleted() {
        let (index, vectors) = small_index(1_500);
        upsert(&index, &vectors, 0..1_500);
        let deleted: Vec<FaceId> = (0..1_500u128).step_by(3).map(FaceId).collect();
        index.delete(&DeleteSelector::FaceIds(deleted)).expect("delete");
        assert!(index.needs_vacuum());
        assert_eq!(index.vacuum().expect("vacuum"), 500);
        assert_eq!(
            index.state.read().flat.len(),
            1_000,
            "the copy holds the live faces only"
        );
        for position in 0..1_500 {
            assert_eq!(
                finds_itself(&index, &vectors, position),
                !position.is_multiple_of(3),
                "face {position}"
            );
        }
    }
}
