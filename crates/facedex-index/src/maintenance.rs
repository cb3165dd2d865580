//! Writer-side upkeep of the index: freezing new points into the search copy of the growing
//! graph, sealing the growing segment (see `segments.rs`), the reachability audit (`hnsw_rs`
//! #37) and vacuum (rebuilding without deleted faces).
//!
//! All of it runs under the writer lock and builds what it needs outside the state lock, so
//! searches go on and only the final swap waits for them.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::flat::FlatGraph;
use crate::graph::{insert, new_graph};
use crate::index::{FaceIndex, IndexState, StoredFace};
use crate::segments::SealedSegment;
use crate::vector_file::SealedVectors;

/// Points inserted since the last freeze are scored exactly on every search; a freeze is due
/// once there are this many of them…
const MIN_UNFROZEN_TO_FREEZE: usize = 1024;
/// …and at least this share (1 / N) of the frozen ones. A freeze copies the whole graph, so a
/// threshold that grows with it keeps the total copying of a bulk load linear (each point is
/// copied ~N times), while the exact scan stays bounded (at 1M faces: ≤ 125k dot products,
/// ~6 ms, only while a bulk load runs).
const FROZEN_SHARE_TO_FREEZE: usize = 8;

impl FaceIndex {
    /// Freezes when enough points wait outside the search copy, and seals the growing segment
    /// once it holds `index.seal_segment_faces`. The caller holds the writer lock.
    pub(crate) fn freeze_if_due_locked(&self) {
        let (freeze_due, seal_due) = {
            let state = self.state.read();
            (
                state.unfrozen.len() >= MIN_UNFROZEN_TO_FREEZE.max(state.flat.len() / FROZEN_SHARE_TO_FREEZE),
                state.ids.slots() - state.growing_base >= self.config.seal_segment_faces,
            )
        };
        if seal_due {
            // The faces are in already: a seal that fails leaves them in the growing segment
            // (searchable, only costlier in memory) and is tried again after the next insert.
            if let Err(error) = self.seal_locked() {
                tracing::error!(%error, "cannot seal the growing segment; it keeps growing");
            }
        } else if freeze_due {
            self.freeze_locked();
        }
    }

    /// Freezes the growing graph, moves its vectors to a store of their own (a file in the
    /// segment directory, or memory without one) and swaps in a sealed segment in its place,
    /// with an empty growing graph after it. The caller holds the writer lock.
    pub(crate) fn seal_locked(&self) -> Result<()> {
        self.freeze_locked();
        let (flat, base) = {
            let state = self.state.read();
            (Arc::clone(&state.flat), state.growing_base)
        };
        if flat.len() == 0 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let path = self.segment_dir.get().map(|dir| dir.join(segment_file_name(base)));
        // Outside the state lock: searches go on while the vectors are written.
        let vectors = SealedVectors::write(path.as_deref(), self.config.dimension, flat.len(), |local| {
            flat.vector(local)
        })?;
        let sealed = SealedSegment {
            base,
            flat: Arc::new(flat.sealed(vectors)),
        };
        let capacity = self.config.seal_segment_faces.min(self.config.expected_faces);
        let mut state = self.state.write();
        state.growing_base = base + flat.len();
        state.sealed.push(sealed);
        state.graph = Arc::new(new_graph(&self.config, capacity));
        state.flat = Arc::new(FlatGraph::empty());
        state.debug_assert_invariants();
        tracing::info!(
            base,
            faces = flat.len(),
            segments = state.sealed.len(),
            seconds = started.elapsed().as_secs_f64(),
            "sealed the growing segment"
        );
        Ok(())
    }

    /// Copies the graph into a new search copy, probes that each newly frozen point is
    /// reachable (those cut off are scored by brute force from now on; see
    /// `FlatGraph::unreachable`) and swaps the copy in.
    /// The caller holds the writer lock.
    pub(crate) fn freeze_locked(&self) {
        let (graph, earlier, newly_frozen, base) = {
            let state = self.state.read();
            if state.unfrozen.is_empty() {
                return;
            }
            let local_ids: Vec<usize> = state.unfrozen.iter().map(|(id, _)| id - state.growing_base).collect();
            (
                Arc::clone(&state.graph),
                Arc::clone(&state.flat),
                local_ids,
                state.growing_base,
            )
        };
        let started = std::time::Instant::now();
        // The current copy was taken from this same graph (a vacuum, a seal or a load replaces both).
        let flat = earlier.recopy(&graph);
        let orphans: Vec<(usize, Vec<f32>)> = flat
            .unreachable(&newly_frozen, self.config.default_ef_search)
            .into_iter()
            .map(|(local, vector)| (base + local, vector))
            .collect();
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

    /// Probes every live face with a search for its own vector and adds the ones cut off from
    /// the graph to the brute-force list: a full pass over `hnsw_rs` issue #37, which the probe
    /// at freezing cannot cover because later inserts can cut an old point off. Costs one
    /// search per face (two for the few hard to find); run it after a bulk load. Returns how
    /// many faces it newly found unreachable.
    pub(crate) fn audit_reachability(&self) -> usize {
        let _writer = self.writer.lock();
        self.freeze_locked();
        // Writers wait on the writer lock; the read lock only keeps the segments in place.
        let found = {
            let state = self.state.read();
            let known: HashSet<usize> = state.orphans.iter().map(|(id, _)| *id).collect();
            let live: Vec<usize> = (0..state.ids.slots())
                .filter(|id| state.ids.is_live(*id) && !known.contains(id))
                .collect();
            state.unreachable(&live, self.config.default_ef_search)
        };
        let newly_found = found.len();
        self.state.write().orphans.extend(found);
        tracing::info!(newly_found, "reachability audit done");
        newly_found
    }

    /// Whether deleted faces exceed the configured share of the graph.
    pub fn needs_vacuum(&self) -> bool {
        let state = self.state.read();
        state.ids.slots() > 0
            && state.ids.tombstones() as f32 / state.ids.slots() as f32 > self.config.vacuum_deleted_ratio
    }

    /// Rebuilds the graph from the live faces only, dropping deleted vectors from memory.
    /// Searches go on against the old graph meanwhile; writers wait. The store vacuums through
    /// [`FaceIndex::vacuum_if`]; only the unit tests call this.
    #[cfg(test)]
    pub(crate) fn vacuum(&self) -> Result<usize> {
        self.vacuum_if(|_| true)
    }

    /// Rebuilds the graph from the live faces only (see `vacuum`) when `condition` still holds
    /// once the writer lock is taken.
    pub(crate) fn vacuum_if(&self, condition: impl FnOnce(&Self) -> bool) -> Result<usize> {
        let _writer = self.writer.lock();
        if !condition(self) {
            return Ok(0);
        }
        // The live faces with a copy of their vectors (sealed ones are read from disk).
        let (live_faces, vectors, removed) = {
            let state = self.state.read();
            let (faces, vectors): (Vec<(usize, StoredFace)>, Vec<Vec<f32>>) = state
                .ids
                .slots_iter()
                .filter_map(|(id, face)| Some(((id, face?.clone()), state.vector(id)?.into_owned())))
                .unzip();
            (faces, vectors, state.ids.tombstones())
        };
        let graph = new_graph(&self.config, live_faces.len());
        let batch: Vec<(&[f32], usize)> = vectors
            .iter()
            .enumerate()
            .map(|(new_id, vector)| (vector.as_slice(), new_id))
            .collect();
        insert(&graph, &batch);
        drop(batch);
        drop(vectors);
        let mut rebuilt = IndexState::new(graph);
        let new_ids: Vec<usize> = (0..live_faces.len()).collect();
        rebuilt.orphans = rebuilt.unreachable(&new_ids, self.config.default_ef_search);
        let mut state = self.state.write();
        rebuilt.ids.restore_deleted(state.ids.deleted().iter().copied());
        rebuilt.model_id = state.model_id.take();
        rebuilt.applied_offsets = std::mem::take(&mut state.applied_offsets);
        rebuilt.catalog = std::mem::take(&mut state.catalog);
        rebuilt.people = std::mem::take(&mut state.people);
        // A re-cluster in progress goes on at the same face: live faces keep their order.
        let old_ids: Vec<usize> = live_faces.iter().map(|(old_id, _)| *old_id).collect();
        rebuilt
            .people
            .renumber_cursor(|cursor| old_ids.partition_point(|old_id| *old_id < cursor));
        for (_, face) in live_faces {
            rebuilt.ids.push(Some(face));
        }
        *state = rebuilt;
        state.debug_assert_invariants();
        tracing::info!(removed, faces = state.ids.slots(), "vacuumed the face index");
        drop(state);
        // Rebuilt as one growing segment: sealed again at once when it is big enough.
        self.freeze_if_due_locked();
        Ok(removed)
    }
}

/// A new sealed segment's vector file: named by its base and the time, so that a segment
/// sealed again after a vacuum does not reuse a name an older snapshot still links.
pub(crate) fn segment_file_name(base: usize) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    PathBuf::from(format!("segment-{base:012}-{nanos}.vectors"))
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
