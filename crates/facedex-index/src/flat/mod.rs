//! The search side of the HNSW graph: a read-only copy of `hnsw_rs`'s links in flat arrays,
//! searched the way faiss and hnswlib search.
//!
//! `hnsw_rs` builds the graph, owns the vectors and writes the snapshots; its own search is ~3×
//! slower than faiss's on the same graph because of its layout, not its algorithm: it allocates
//! an `Arc` per candidate, hashes every visited point into a `HashMap` and takes a lock per
//! neighbour list. Here layer 0's neighbour lists are one `u32` array with a fixed stride per
//! internal id, the visited set is a generation-stamped byte per point (reused across searches
//! on a thread), and the walk scores 8-bit codes of the vectors laid side by side
//! (`codes.rs`), four at a time while the next four are prefetched, so that cache-missing codes
//! stream in together; the best of the points it keeps are then scored exactly from the
//! graph's own f32 vectors. The copy costs ~8 B per point, 4 B per link slot and a code per
//! point (dimension + 4 B).
//!
//! The copy is taken from the graph when the writer "freezes" it (see `maintenance.rs`); points
//! inserted since are scored exactly until the next freeze.

mod sealed;

use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use hnsw_rs::hnsw::Point;

use anndists::dist::Distance;

use crate::codes::{QueryCode, VectorCodes};
use crate::distance::{UnitCosineDistance, dot4, prefetch, similarity_from_distance};
use crate::graph::Graph;
use crate::ranked::Ranked;
use crate::vector_file::SealedVectors;

pub(crate) use sealed::SegmentLinks;

/// A point of `hnsw_rs`'s graph: holds its vector for as long as the copy needs it.
type GraphPoint = Arc<Point<'static, f32>>;

/// Two vectors this close are duplicates. The distance of a vector to an exact copy is not
/// always 0: `dot(v, v)` of a unit vector rounds to 1 ± a few ulps (1 − 0.99999994 ≈ 6e-8), so
/// comparing with 0 counted almost every copy of a duplicated photo as unreachable.
const DUPLICATE_DISTANCE: f32 = 1e-5;

/// The `ef` of the reachability probe: a point its own vector does not find at this `ef` is
/// cut off from the graph, not merely hard to find. The value the `hnsw_rs` #37 thread settled
/// on after a probe at `ef` 64 counted hard-to-find points on dense data as orphans (at 300k
/// face-like vectors here: 4,096 such points at `ef` 64, 1 at `ef` 1024).
pub const REACHABILITY_EF: usize = 1024;

/// How many candidates per result the walk hands to exact rescoring (Qdrant's
/// `oversampling`): the best `limit × RESCORE_OVERSAMPLING` by code distance, not all `ef`.
/// Codes rank within ~1e-3 of the exact similarity, so a point of the exact top `limit` is
/// among them; rescoring all `ef` read a 2 KiB f32 vector per candidate (2 MiB per query at
/// `ef` 1024), more memory than the walk's codes.
const RESCORE_OVERSAMPLING: usize = 4;

/// Fills the unused slots of a layer-0 neighbour list.
const NO_LINK: u32 = u32::MAX;

/// Where a copy's exact vectors are.
enum PointVectors {
    /// By id: the growing graph's point (for its vector); `None` for ids the graph lacks.
    Graph(Vec<Option<GraphPoint>>),
    /// A sealed segment's own store, the graph it was copied from gone (see `sealed.rs`).
    Sealed(SealedVectors),
}

/// The graph's links in flat arrays, frozen at one moment. Ids are the graph's own: a
/// segment's local ids (see `segment.rs`).
pub(crate) struct FlatGraph {
    vectors: PointVectors,
    /// Layer 0: the neighbours of point `i` are `layer0[i × layer0_stride..][..layer0_stride]`,
    /// up to the first [`NO_LINK`]. A fixed stride (the longest list; `hnsw_rs` caps lists at
    /// 2 M) finds a list without reading an offset first: one cache miss less per expansion.
    layer0_stride: usize,
    layer0: Vec<u32>,
    /// Layers 1 and up (index 0 is layer 1): the neighbours of the few points that reach them.
    upper_layers: Vec<HashMap<u32, Box<[u32]>>>,
    /// Where every search starts: a point of the top layer.
    entry_point: Option<u32>,
    /// Links in the upper layers, counted once for [`FlatGraph::bytes`].
    upper_links: usize,
    /// 8-bit copies of the vectors, which the walk scores (see `codes.rs`).
    codes: VectorCodes,
}

impl FlatGraph {
    /// A copy of no points, for an empty index.
    pub(crate) fn empty() -> Self {
        Self {
            vectors: PointVectors::Graph(Vec::new()),
            layer0_stride: 0,
            layer0: Vec::new(),
            upper_layers: Vec::new(),
            entry_point: None,
            upper_links: 0,
            codes: VectorCodes::new(0, std::iter::empty(), None),
        }
    }

    /// Copies every point and link of `graph`. The caller keeps inserts out meanwhile (the
    /// index's writer lock); searches on the graph may go on.
    pub(crate) fn copy_of(graph: &Graph) -> Self {
        Self::copy_reusing(graph, None)
    }

    /// A new copy of `graph`, the graph this copy was taken from, now with more points: links
    /// are copied again (inserts change old points' lists), codes only for the new points (a
    /// point's vector never changes under its id).
    pub(crate) fn recopy(&self, graph: &Graph) -> Self {
        Self::copy_reusing(graph, Some(&self.codes))
    }

    fn copy_reusing(graph: &Graph, earlier_codes: Option<&VectorCodes>) -> Self {
        let indexation = graph.get_point_indexation();
        if indexation.get_nb_point() == 0 {
            return Self::empty();
        }
        let top_layer = usize::from(indexation.get_max_level_observed());
        let mut points: Vec<Option<GraphPoint>> = Vec::with_capacity(indexation.get_nb_point());
        let mut layer0_lists: Vec<Box<[u32]>> = Vec::with_capacity(indexation.get_nb_point());
        let mut upper_layers: Vec<HashMap<u32, Box<[u32]>>> = vec![HashMap::new(); top_layer];
        let mut entry_point = None;
        // hnsw_rs keeps each point in the list of its top layer, so walking every layer visits
        // every point once; the first point of the top layer is the graph's own entry point.
        for layer in 0..=top_layer {
            for point in indexation.get_layer_iterator(layer) {
                let internal_id = point.get_origin_id();
                let neighbourhood = point.get_neighborhood_id();
                let ids = |level: usize| -> Box<[u32]> {
                    neighbourhood
                        .get(level)
                        .map(|neighbours| neighbours.iter().map(|n| n.d_id as u32).collect())
                        .unwrap_or_default()
                };
                if points.len() <= internal_id {
                    points.resize(internal_id + 1, None);
                    layer0_lists.resize(internal_id + 1, Box::default());
                }
                layer0_lists[internal_id] = ids(0);
                for (upper, level) in upper_layers.iter_mut().zip(1..=layer) {
                    upper.insert(internal_id as u32, ids(level));
                }
                if layer == top_layer && entry_point.is_none() {
                    entry_point = Some(internal_id as u32);
                }
                points[internal_id] = Some(point);
            }
        }
        let layer0_stride = layer0_lists.iter().map(|list| list.len()).max().unwrap_or(0);
        let mut layer0 = vec![NO_LINK; layer0_lists.len() * layer0_stride];
        for (slots, list) in layer0.chunks_exact_mut(layer0_stride.max(1)).zip(&layer0_lists) {
            slots[..list.len()].copy_from_slice(list);
        }
        let upper_links = upper_layers
            .iter()
            .flat_map(|layer| layer.values())
            .map(|links| links.len())
            .sum();
        let dimension = points.iter().flatten().next().map_or(0, |point| point.get_v().len());
        let codes = VectorCodes::new(
            dimension,
            points.iter().map(|point| point.as_deref().map(Point::get_v)),
            earlier_codes,
        );
        Self {
            vectors: PointVectors::Graph(points),
            layer0_stride,
            layer0,
            upper_layers,
            entry_point,
            upper_links,
            codes,
        }
    }

    /// How many internal ids the copy covers: ids from here on were inserted after it.
    pub(crate) fn len(&self) -> usize {
        match &self.vectors {
            PointVectors::Graph(points) => points.len(),
            PointVectors::Sealed(vectors) => vectors.len(),
        }
    }

    /// The vector of `id`, when the copy holds it: borrowed from the growing graph, read from
    /// a sealed segment's store.
    pub(crate) fn vector(&self, id: usize) -> Option<Cow<'_, [f32]>> {
        match &self.vectors {
            PointVectors::Graph(points) => points.get(id)?.as_deref().map(|point| Cow::Borrowed(point.get_v())),
            PointVectors::Sealed(vectors) => vectors.vector(id),
        }
    }

    /// Bytes the copy takes in memory beyond the growing graph's: point handles (or a sealed
    /// segment's resident vectors), links and codes.
    pub(crate) fn bytes(&self) -> usize {
        let vectors = match &self.vectors {
            PointVectors::Graph(points) => points.len() * 8,
            PointVectors::Sealed(vectors) => vectors.resident_bytes(),
        };
        // Per upper-layer entry, ~32 B of map overhead.
        let upper_entries: usize = self.upper_layers.iter().map(HashMap::len).sum();
        vectors + (self.layer0.len() + self.upper_links) * 4 + upper_entries * 32 + self.codes.bytes()
    }

    /// The (up to) `limit` points most similar to `query` among those `accept` lets through,
    /// as `(internal id, cosine similarity)`, most similar first, from a walk that keeps `ef`
    /// (at least `limit`). The walk scores 8-bit codes; the best of the points it keeps are
    /// scored again exactly (see [`RESCORE_OVERSAMPLING`]), and ranked by that. Rejected points
    /// are still walked through, so a filter narrows the results without cutting paths.
    pub(crate) fn search(
        &self,
        query: &[f32],
        ef: usize,
        limit: usize,
        accept: &dyn Fn(usize) -> bool,
    ) -> Vec<(usize, f32)> {
        let Some(mut entry) = self.entry_point else {
            return Vec::new();
        };
        let query_code = QueryCode::new(query);
        let mut entry_distance = self.codes.distance(&query_code, entry);
        // Greedy descent through the upper layers.
        for layer in self.upper_layers.iter().rev() {
            let mut improved = true;
            while improved {
                improved = false;
                for &neighbour in layer.get(&entry).map_or(&[][..], |links| links) {
                    let d = self.codes.distance(&query_code, neighbour);
                    if d < entry_distance {
                        (entry, entry_distance) = (neighbour, d);
                        improved = true;
                    }
                }
            }
        }
        let limit = limit.max(1);
        let mut candidates = VISITED.with_borrow_mut(|visited| {
            visited.start(self.len());
            self.search_layer0(&query_code, (entry, entry_distance), ef.max(limit), accept, visited)
        });
        let rescore = candidates.len().min(limit.saturating_mul(RESCORE_OVERSAMPLING));
        if rescore < candidates.len() {
            candidates.select_nth_unstable(rescore);
            candidates.truncate(rescore);
        }
        let candidates: Vec<u32> = candidates.into_iter().map(|point| point.id).collect();
        let mut rescored = Vec::with_capacity(candidates.len());
        for chunk in candidates.chunks(4) {
            let distances = self.exact_distances(query, chunk);
            rescored.extend(
                chunk
                    .iter()
                    .zip(distances)
                    .filter(|(_, distance)| distance.is_finite())
                    .map(|(&id, distance)| scored(distance, id)),
            );
        }
        rescored.sort_unstable();
        rescored.truncate(limit);
        rescored
            .into_iter()
            .map(|point| (point.id as usize, similarity_from_distance(point.key)))
            .collect()
    }

    /// Best-first search of layer 0 from `entry` on the codes, with `ef` results kept; returns
    /// them with their code distances.
    fn search_layer0(
        &self,
        query: &QueryCode,
        (entry, entry_distance): (u32, f32),
        ef: usize,
        accept: &dyn Fn(usize) -> bool,
        visited: &mut VisitedTable,
    ) -> Vec<Scored> {
        let mut candidates = BinaryHeap::new();
        let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
        visited.insert(entry);
        candidates.push(Reverse(scored(entry_distance, entry)));
        if accept(entry as usize) {
            results.push(scored(entry_distance, entry));
        }
        while let Some(Reverse(current)) = candidates.pop() {
            let worst = results.peek().map_or(f32::INFINITY, |worst| worst.key);
            if current.key > worst && results.len() >= ef {
                break;
            }
            let links = self.layer0_links(current.id);
            // The next candidate's links, likely the next list read, load while this one is scored.
            if let Some(Reverse(next)) = candidates.peek() {
                prefetch(self.layer0_links(next.id));
            }
            let mut fresh = std::mem::take(&mut visited.fresh);
            fresh.clear();
            fresh.extend(
                links
                    .iter()
                    .take_while(|&&n| n != NO_LINK)
                    .filter(|&&n| visited.insert(n)),
            );
            let mut chunks = fresh.chunks(4).peekable();
            if let Some(first) = chunks.peek() {
                self.codes.prefetch(first);
            }
            while let Some(chunk) = chunks.next() {
                if let Some(next) = chunks.peek() {
                    self.codes.prefetch(next);
                }
                for (&neighbour, d) in chunk.iter().zip(self.codes.distances(query, chunk)) {
                    let worst = results.peek().map_or(f32::INFINITY, |worst| worst.key);
                    if results.len() < ef || d < worst {
                        candidates.push(Reverse(scored(d, neighbour)));
                        if accept(neighbour as usize) {
                            results.push(scored(d, neighbour));
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            visited.fresh = fresh;
        }
        results.into_vec()
    }

    /// The layer-0 neighbour slots of `internal_id` (padded with [`NO_LINK`]).
    fn layer0_links(&self, internal_id: u32) -> &[u32] {
        let start = internal_id as usize * self.layer0_stride;
        &self.layer0[start..start + self.layer0_stride]
    }

    /// The exact distances from `query` to the (up to four) points of `ids`, four vectors at
    /// a time; a point without a vector is infinitely far.
    fn exact_distances(&self, query: &[f32], ids: &[u32]) -> [f32; 4] {
        let vectors: [Option<Cow<'_, [f32]>>; 4] = std::array::from_fn(|k| self.vector(*ids.get(k)? as usize));
        if let [Some(a), Some(b), Some(c), Some(d)] = &vectors {
            return dot4(query, [&**a, &**b, &**c, &**d]).map(|dot| 1.0 - dot.min(1.0));
        }
        vectors.map(|vector| vector.map_or(f32::INFINITY, |v| UnitCosineDistance.eval(query, &v)))
    }

    /// The ids of `internal_ids` that no search reaches (`hnsw_rs` issue #37), with their
    /// vectors, so the index can score them by brute force. A point is probed with a search for
    /// its own vector at `ef`, and only when that does not return it first, again at
    /// [`REACHABILITY_EF`]: on clustered data a point missed at a small `ef` is usually in the
    /// graph but hard to find, which is recall, the same for every HNSW library, and not worth
    /// a brute-force pass on every query. A different point at (almost) distance 0 is a
    /// duplicate: found, as far as any query can tell. Searches on all cores.
    pub(crate) fn unreachable(&self, internal_ids: &[usize], ef: usize) -> Vec<(usize, Vec<f32>)> {
        if internal_ids.is_empty() {
            return Vec::new();
        }
        let threads = std::thread::available_parallelism().map_or(1, |threads| threads.get());
        let chunk_size = internal_ids.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = internal_ids
                .chunks(chunk_size)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .filter_map(|&id| Some((id, self.vector(id)?)))
                            .filter(|(id, vector)| {
                                !self.finds_itself(*id, vector, ef) && !self.finds_itself(*id, vector, REACHABILITY_EF)
                            })
                            .map(|(id, vector)| (id, vector.into_owned()))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().unwrap_or_default())
                .collect()
        })
    }

    /// Whether a search for `vector` at `ef` returns `internal_id` (or an exact duplicate) first.
    fn finds_itself(&self, internal_id: usize, vector: &[f32], ef: usize) -> bool {
        self.search(vector, ef, 1, &|_| true)
            .first()
            .is_some_and(|&(hit, similarity)| hit == internal_id || 1.0 - similarity <= DUPLICATE_DISTANCE)
    }
}

/// A point with its distance to the query.
type Scored = Ranked<u32>;

fn scored(distance: f32, id: u32) -> Scored {
    Ranked { key: distance, id }
}

thread_local! {
    /// One visited table per thread, reused by every search on it.
    static VISITED: RefCell<VisitedTable> = RefCell::new(VisitedTable::default());
}

/// Which points a search has seen: a byte per point holding the number of the search that last
/// saw it, so starting a search is O(1) instead of clearing a set (faiss's `VisitedTable`).
#[derive(Default)]
struct VisitedTable {
    marks: Vec<u8>,
    search_number: u8,
    /// Scratch list of the not-yet-visited neighbours of the point being expanded.
    fresh: Vec<u32>,
}

impl VisitedTable {
    fn start(&mut self, points: usize) {
        if self.marks.len() < points {
            self.marks.resize(points, 0);
        }
        self.search_number = self.search_number.wrapping_add(1);
        if self.search_number == 0 {
            self.marks.fill(0);
            self.search_number = 1;
        }
    }

    /// Marks `id` seen; false when it already was (or is out of range: never walked).
    fn insert(&mut self, id: u32) -> bool {
        match self.marks.get_mut(id as usize) {
            Some(mark) if *mark != self.search_number => {
                *mark = self.search_number;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IndexConfig;
    use crate::distance::dot;
    use crate::graph::new_graph;

    fn unit(seed: u64, dimension: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut vector: Vec<f32> = (0..dimension)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / u32::MAX as f32) - 0.25
            })
            .collect();
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        vector.iter_mut().for_each(|x| *x /= norm);
        vector
    }

    fn graph_of(vectors: &[Vec<f32>]) -> Graph {
        let config = IndexConfig {
            dimension: vectors[0].len(),
            ..IndexConfig::default()
        };
        let graph = new_graph(&config, vectors.len());
        for (id, vector) in vectors.iter().enumerate() {
            graph.insert_slice((vector, id));
        }
        graph
    }

    #[test]
    fn finds_what_brute_force_finds_on_a_small_graph() {
        let vectors: Vec<Vec<f32>> = (0..2_000).map(|seed| unit(seed, 32)).collect();
        let flat = FlatGraph::copy_of(&graph_of(&vectors));
        assert_eq!(flat.len(), vectors.len());
        let accept_all = |_: usize| true;
        let mut found = 0;
        for query_seed in 10_000..10_050 {
            let query = unit(query_seed, 32);
            let mut exact: Vec<(usize, f32)> = vectors.iter().map(|v| dot(&query, v)).enumerate().collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            let hits = flat.search(&query, 64, 10, &accept_all);
            assert_eq!(hits.len(), 10, "limit hits from a walk that kept 64");
            assert!(hits.windows(2).all(|pair| pair[0].1 >= pair[1].1), "sorted, best first");
            found += exact[..10]
                .iter()
                .filter(|(id, _)| hits[..10].iter().any(|(hit, _)| hit == id))
                .count();
        }
        assert!(found >= 490, "recall@10 {found}/500");
        assert!(flat.unreachable(&(0..vectors.len()).collect::<Vec<_>>(), 64).is_empty());
    }

    #[test]
    fn a_filter_narrows_results_without_cutting_paths() {
        let vectors: Vec<Vec<f32>> = (0..1_000).map(|seed| unit(seed, 16)).collect();
        let flat = FlatGraph::copy_of(&graph_of(&vectors));
        let even_only = |id: usize| id.is_multiple_of(2);
        let hits = flat.search(&vectors[3], 20, 20, &even_only);
        assert_eq!(hits.len(), 20);
        assert!(hits.iter().all(|(id, _)| id.is_multiple_of(2)));
        let best_even = (0..vectors.len())
            .filter(|id| id.is_multiple_of(2))
            .max_by(|&a, &b| dot(&vectors[3], &vectors[a]).total_cmp(&dot(&vectors[3], &vectors[b])));
        assert_eq!(Some(hits[0].0), best_even);
    }

    #[test]
    fn an_empty_graph_finds_nothing_and_a_new_thread_gets_its_own_visited_table() {
        let accept_all = |_: usize| true;
        assert!(FlatGraph::empty().search(&[1.0, 0.0], 10, 10, &accept_all).is_empty());
        let mut table = VisitedTable::default();
        for _ in 0..600 {
            table.start(4);
            assert!(
                table.insert(2) && !table.insert(2),
                "each search starts with nothing seen"
            );
        }
        assert!(!table.insert(9), "an id beyond the table is never walked");
    }
}
