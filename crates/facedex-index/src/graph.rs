//! The HNSW graph from `hnsw_rs`, and the one place (with `flat.rs`, which copies its links)
//! that knows its internals: how to build it, how to walk its points, and how to find a
//! point's vector from our internal id. Searches do not go through `hnsw_rs`'s own search but
//! through the flat copy.
//!
//! The graph keeps the only copy of each vector (2 KiB per face at 512 dimensions), so exact
//! search, vacuum and "get the vector of face X" read vectors back out of it instead of
//! keeping a second copy.

use std::sync::Arc;

use hnsw_rs::hnsw::{Hnsw, PointId};

use crate::config::IndexConfig;
use crate::distance::UnitCosineDistance;

/// The graph type: `'static` because graphs we build own their points, and graphs loaded
/// from a snapshot borrow a leaked, never-freed loader (see `snapshot.rs`).
pub(crate) type Graph = Hnsw<'static, f32, UnitCosineDistance>;

/// `hnsw_rs`'s maximum number of layers.
const MAX_LAYERS: usize = 16;

/// A shallower level distribution than the paper's: fewer upper-layer points means less
/// contention in parallel inserts, and in `hnsw_rs` issue #37 it made every point reachable
/// again ("every vector finds itself" is a test here).
const LEVEL_SCALE: f64 = 0.5;

/// An empty graph shaped by `config`, sized for `capacity` points.
pub(crate) fn new_graph(config: &IndexConfig, capacity: usize) -> Graph {
    let mut graph = Hnsw::new(
        config.max_connections,
        capacity.max(1),
        MAX_LAYERS,
        config.ef_construction,
        UnitCosineDistance,
    );
    graph.modify_level_scale(LEVEL_SCALE);
    graph
}

/// Inserts `batch` (vector, internal id), on all cores when there is more than one.
pub(crate) fn insert(graph: &Graph, batch: &[(&[f32], usize)]) {
    match batch.len() {
        0 => {}
        1 => graph.insert_slice(batch[0]),
        _ => graph.parallel_insert_slice(&batch.to_vec()),
    }
}

/// Calls `visit(internal_id, vector)` for every point in the graph.
///
/// Walks one layer at a time: `hnsw_rs`'s all-layers iterator re-takes a read lock it already
/// holds, which can deadlock against a waiting insert.
pub(crate) fn for_each_point(graph: &Graph, mut visit: impl FnMut(usize, &[f32])) {
    let points = graph.get_point_indexation();
    if points.get_nb_point() == 0 {
        return;
    }
    for layer in 0..=usize::from(points.get_max_level_observed()) {
        for point in points.get_layer_iterator(layer) {
            visit(point.get_origin_id(), point.get_v());
        }
    }
}

/// Finds the graph's `PointId` for an internal id, to read its vector back.
///
/// `hnsw_rs` addresses points by (layer, position) and does not index them by our id, so the
/// locator learns the mapping by walking the layers, lazily: only when asked for an id it has
/// not seen, and then only the points added since its last walk.
#[derive(Default)]
pub(crate) struct PointLocator {
    point_ids: Vec<Option<PointId>>,
    walked_per_layer: Vec<usize>,
}

impl PointLocator {
    /// The vector of `internal_id`, or `None` when the graph does not hold it (yet).
    pub(crate) fn vector(&mut self, graph: &Arc<Graph>, internal_id: usize) -> Option<Vec<f32>> {
        if self.point_ids.get(internal_id).copied().flatten().is_none() {
            self.walk_new_points(graph);
        }
        let point_id = self.point_ids.get(internal_id).copied().flatten()?;
        graph.get_point_indexation().get_point_data(&point_id)
    }

    fn walk_new_points(&mut self, graph: &Graph) {
        let points = graph.get_point_indexation();
        if points.get_nb_point() == 0 {
            return;
        }
        let layers = usize::from(points.get_max_level_observed()) + 1;
        if self.walked_per_layer.len() < layers {
            self.walked_per_layer.resize(layers, 0);
        }
        for (layer, walked) in self.walked_per_layer.iter_mut().enumerate() {
            for point in points.get_layer_iterator(layer).skip(*walked) {
                let internal_id = point.get_origin_id();
                if self.point_ids.len() <= internal_id {
                    self.point_ids.resize(internal_id + 1, None);
                }
                self.point_ids[internal_id] = Some(point.get_point_id());
                *walked += 1;
            }
        }
    }
}

/// Bytes the graph's links take per point, from `hnsw_rs`'s layout: each link is an
/// `Arc<PointWithOrder>` (16 B payload + 16 B Arc header + 8 B pointer), layer 0 holds up to
/// `2 M` links and upper layers `M`, and a point carries 16 per-layer vectors (24 B each).
pub(crate) fn estimated_link_bytes_per_point(max_connections: usize) -> usize {
    const BYTES_PER_LINK: usize = 40;
    const PER_POINT_OVERHEAD: usize = MAX_LAYERS * 24 + 96;
    2 * max_connections * BYTES_PER_LINK + PER_POINT_OVERHEAD
}
