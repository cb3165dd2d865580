//! The index's points in segments, as Qdrant and Milvus keep them: **sealed** segments, each a
//! range of internal ids whose graph takes no more inserts and is kept as flat links, 8-bit
//! codes and a vector store off the heap (`flat/sealed.rs`, `vector_file.rs`), and one
//! **growing** segment on top, the `hnsw_rs` graph that new faces go into (its copy and the
//! points inserted since, as before).
//!
//! The growing graph holds each vector on the heap, an `Arc` per link and its copy for
//! searches; a sealed one only its links and codes (BENCHMARKS.md has the bytes per face of
//! both). The growing segment is sealed once it holds `index.seal_segment_faces` points (see
//! `maintenance.rs`), so only that many faces cost the growing graph's memory however many a
//! shard holds. Every search walks every segment: fewer, larger segments search faster. Ids
//! stay global: a segment holds `base..base + len`; the growing graph numbers its points from
//! its base.
//!
//! Every read of the points goes through here: a vector by id, the walks of a search over
//! every segment, the people's nearest faces, a pass over all vectors, the reachability probe.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{IndexError, Result};
use crate::flat::FlatGraph;
use crate::graph::{for_each_point, search as graph_search};
use crate::index::{FaceIndex, IndexState};
use crate::ranked::TopK;

/// The smallest share of a search's `ef` a segment walks at (unless the search asks for less):
/// a small segment's share would otherwise round to a walk too short to find its best points.
const MIN_SEGMENT_EF: usize = 16;

/// A sealed segment: the ids `base..base + flat.len()`.
#[derive(Clone)]
pub(crate) struct SealedSegment {
    pub(crate) base: usize,
    pub(crate) flat: Arc<FlatGraph>,
}

impl SealedSegment {
    fn end(&self) -> usize {
        self.base + self.flat.len()
    }
}

impl IndexState {
    /// The sealed segment holding `internal_id`, when one does.
    fn sealed_segment_of(&self, internal_id: usize) -> Option<&SealedSegment> {
        if internal_id >= self.growing_base {
            return None;
        }
        let position = self.sealed.partition_point(|segment| segment.end() <= internal_id);
        self.sealed.get(position).filter(|segment| segment.base <= internal_id)
    }

    /// The stored vector of `internal_id`: from its sealed segment's store, from the growing
    /// graph's copy, or, for a point inserted since the last freeze, from its pending copy
    /// (kept in id order). The one way to read a vector.
    pub(crate) fn vector(&self, internal_id: usize) -> Option<Cow<'_, [f32]>> {
        if let Some(segment) = self.sealed_segment_of(internal_id) {
            return segment.flat.vector(internal_id - segment.base);
        }
        let local = internal_id.checked_sub(self.growing_base)?;
        if let Some(vector) = self.flat.vector(local) {
            return Some(vector);
        }
        let position = self.unfrozen.binary_search_by_key(&internal_id, |(id, _)| *id).ok()?;
        Some(Cow::Borrowed(&self.unfrozen[position].1))
    }

    /// Every segment's copy with its base: the sealed ones, then the growing one.
    fn walked_segments(&self) -> impl Iterator<Item = (usize, &FlatGraph)> {
        self.sealed
            .iter()
            .map(|segment| (segment.base, &*segment.flat))
            .chain([(self.growing_base, &*self.flat)])
    }

    /// The (up to) `limit` points `accept` lets through most similar to `query`, from a walk
    /// of every segment's copy (see `FlatGraph::search`), most similar first. `ef` is the
    /// search's whole candidate budget, shared by the segments in proportion to their points:
    /// two equal segments walked at half of `ef` each find about what one graph of both finds
    /// at `ef`, at about its cost, where walking each at `ef` would double the work of every
    /// search when a shard seals its second segment (BENCHMARKS.md, "Index").
    pub(crate) fn walk(
        &self,
        query: &[f32],
        ef: usize,
        limit: usize,
        accept: &dyn Fn(usize) -> bool,
    ) -> Vec<(usize, f32)> {
        let mut top = TopK::new(limit);
        let points: usize = self.walked_segments().map(|(_, flat)| flat.len()).sum();
        for (base, flat) in self.walked_segments() {
            let segment_ef = (ef * flat.len()).div_ceil(points.max(1)).max(MIN_SEGMENT_EF.min(ef));
            for (local, similarity) in flat.search(query, segment_ef, limit, &|local| accept(base + local)) {
                top.offer(base + local, similarity);
            }
        }
        top.into_sorted()
    }

    /// The `k` points nearest to `vector` at `ef`, tombstones included: the growing graph
    /// through `hnsw_rs`'s own search, which sees every inserted point (the people's placement
    /// of a bulk load's new faces needs them), the sealed segments through their walk.
    pub(crate) fn nearest(&self, vector: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)> {
        let mut top = TopK::new(k);
        for (local, similarity) in graph_search(&self.graph, vector, k, ef) {
            top.offer(self.growing_base + local, similarity);
        }
        for segment in &self.sealed {
            for (local, similarity) in segment.flat.search(vector, ef, k, &|_| true) {
                top.offer(segment.base + local, similarity);
            }
        }
        top.into_sorted()
    }

    /// Calls `visit(internal_id, vector)` for every point of every segment: the sealed ones
    /// read front to back, then the growing graph's.
    pub(crate) fn for_each_vector(&self, mut visit: impl FnMut(usize, &[f32])) -> Result<()> {
        for segment in &self.sealed {
            match segment.flat.sealed_vectors() {
                Some(vectors) => vectors.for_each(|local, vector| visit(segment.base + local, vector))?,
                None => debug_assert!(false, "a sealed segment has a vector store"),
            }
        }
        for_each_point(&self.graph, |local, vector| visit(self.growing_base + local, vector));
        Ok(())
    }

    /// The ids of `internal_ids` that no search reaches (`hnsw_rs` #37) in their segment, with
    /// their vectors (see `FlatGraph::unreachable`); ids no copy holds yet are skipped.
    pub(crate) fn unreachable(&self, internal_ids: &[usize], ef: usize) -> Vec<(usize, Vec<f32>)> {
        let mut found = Vec::new();
        for (base, flat) in self.walked_segments() {
            let local: Vec<usize> = internal_ids
                .iter()
                .filter_map(|id| id.checked_sub(base))
                .filter(|local| *local < flat.len())
                .collect();
            found.extend(
                flat.unreachable(&local, ef)
                    .into_iter()
                    .map(|(local, vector)| (base + local, vector)),
            );
        }
        found
    }

    /// Points in sealed segments.
    pub(crate) fn sealed_points(&self) -> usize {
        self.growing_base
    }

    /// Bytes the sealed segments take in memory (links, codes; their vectors are on disk).
    pub(crate) fn sealed_bytes(&self) -> usize {
        self.sealed.iter().map(|segment| segment.flat.bytes()).sum()
    }

    /// Checks, in debug builds, that the segments tile `0..growing_base` in order.
    pub(crate) fn debug_assert_segments(&self) {
        let mut expected_base = 0;
        for segment in &self.sealed {
            debug_assert_eq!(segment.base, expected_base, "sealed segments are contiguous");
            debug_assert!(
                segment.flat.sealed_vectors().is_some(),
                "a sealed segment has a vector store"
            );
            expected_base = segment.end();
        }
        debug_assert_eq!(
            self.growing_base, expected_base,
            "the growing segment follows the sealed ones"
        );
        debug_assert!(
            self.growing_base + self.flat.len() <= self.ids.slots(),
            "the growing copy covers only slots"
        );
    }
}

impl FaceIndex {
    /// Makes `segment_dir` the home of sealed segments' vector files: the files of segments
    /// loaded from a snapshot are linked there (so the snapshot's generation may be pruned),
    /// new ones are written there, and files no segment uses are removed. Called once, when a
    /// store opens; `names` makes a fresh file name for a segment's base.
    pub(crate) fn adopt_segment_dir(&self, segment_dir: &Path, names: impl Fn(usize) -> PathBuf) -> Result<()> {
        std::fs::create_dir_all(segment_dir).map_err(|error| IndexError::io("create", segment_dir, error))?;
        {
            let mut state = self.state.write();
            for segment in &mut state.sealed {
                let base = segment.base;
                // Nothing else holds a segment yet at open.
                let Some(vectors) = Arc::get_mut(&mut segment.flat).and_then(FlatGraph::sealed_vectors_mut) else {
                    debug_assert!(false, "a freshly loaded sealed segment is not shared");
                    continue;
                };
                vectors.relink(&segment_dir.join(names(base)))?;
            }
        }
        // Set once per index: a store opens its index once.
        let _ = self.segment_dir.set(segment_dir.to_path_buf());
        self.remove_unused_segment_files()
    }

    /// Removes the files in the segment directory that no sealed segment reads: segments
    /// replaced by a vacuum, or sealed after the last snapshot before a crash. Snapshots hold
    /// their own links to the files they need.
    pub(crate) fn remove_unused_segment_files(&self) -> Result<()> {
        let Some(segment_dir) = self.segment_dir.get() else {
            return Ok(());
        };
        let in_use: HashSet<PathBuf> = {
            let state = self.state.read();
            state
                .sealed
                .iter()
                .filter_map(|segment| Some(segment.flat.sealed_vectors()?.path()?.to_path_buf()))
                .collect()
        };
        let entries = std::fs::read_dir(segment_dir).map_err(|error| IndexError::io("list", segment_dir, error))?;
        for entry in entries {
            let path = entry
                .map_err(|error| IndexError::io("list", segment_dir, error))?
                .path();
            if !in_use.contains(&path) {
                std::fs::remove_file(&path)
                    .map_err(|error| IndexError::io("remove unused segment file", &path, error))?;
            }
        }
        Ok(())
    }
}
