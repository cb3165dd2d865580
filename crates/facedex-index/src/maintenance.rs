//! Writer-side upkeep of the index: freezing new points into the search copy of the graph,
//! the reachability audit (`hnsw_rs` #37) and vacuum (rebuilding without deleted faces).
//!
//! All of it runs under the writer lock and builds what it needs outside the state lock, so
//! searches go on and only the final swap waits for them.

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::Result;
use crate::flat::FlatGraph;
use crate::graph::{PointLocator, insert, new_graph};
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
    /// itself (those that do not are scored by brute force from now on) and swaps the copy in.
    /// The caller holds the writer lock.
    pub(crate) fn freeze_locked(&self) {
        let (graph, newly_frozen) = {
            let state = self.state.read();
            if state.unfrozen.is_empty() {
                return;
            }
            let ids: Vec<usize> = state.unfrozen.iter().map(|(id, _)| *id).collect();
            (Arc::clone(&state.graph), ids)
        };
        let started = std::time::Instant::now();
        let flat = FlatGraph::copy_of(&graph);
        let orphans = flat.unreachable(&newly_frozen, self.config.default_ef_search);
        let mut state = self.state.write();
        tracing::debug!(
            points = flat.len(),
            newly_frozen = newly_frozen.len(),
            unreachable = orphans.len(),
            seconds = started.elapsed().as_secs_f64(),
            "froze the graph into a new search copy"
        );
        state.flat = Arc::new(flat);
        state.unfrozen.clear();
        state.orphans.extend(orphans);
    }

    /// Searches for every live face with its own vector and adds the ones not found first to
    /// the brute-force list: a full pass over `hnsw_rs` issue #37, which the check at freezing
    /// cannot cover because later inserts can cut an old point off. Costs one search per face;
    /// run it after a bulk load. Returns how many faces it newly found unreachable.
    pub fn audit_reachability(&self) -> usize {
        let _writer = self.writer.lock();
        self.freeze_locked();
        let (flat, live) = {
            let state = self.state.read();
            let known: HashSet<usize> = state.orphans.iter().map(|(id, _)| *id).collect();
            let live: Vec<usize> = (0..state.faces.len())
                .filter(|id| state.live_face(*id).is_some() && !known.contains(id))
                .collect();
            (Arc::clone(&state.flat), live)
        };
        let found = flat.unreachable(&live, self.config.default_ef_search);
        let newly_found = found.len();
        self.state.write().orphans.extend(found);
        tracing::info!(newly_found, "reachability audit done");
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
        let mut rebuilt = IndexState::new(graph);
        let new_ids: Vec<usize> = (0..live_faces.len()).collect();
        rebuilt.orphans = rebuilt.flat.unreachable(&new_ids, self.config.default_ef_search);
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
