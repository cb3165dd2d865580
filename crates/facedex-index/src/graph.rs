//! The HNSW graph from `hnsw_rs`, and the one place (with `flat.rs`, which copies its links)
//! that knows its internals: how to build it and how to walk its points. Searches go through
//! the flat copy; only the people's placement of new faces uses `hnsw_rs`'s own search.
//!
//! The graph owns each vector (2 KiB per face at 512 dimensions); the flat copy holds handles
//! to the graph's points, so `IndexState::vector` reads a vector through the copy, without a
//! second copy of it, for every reader (exact search, vacuum, "get the vector of face X").

use hnsw_rs::hnsw::Hnsw;

use crate::config::IndexConfig;
use crate::distance::{UnitCosineDistance, similarity_from_distance};

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
    // `modify_level_scale` prints its settings with `println!`: standard output is facedex's.
    without_stdout(|| graph.modify_level_scale(LEVEL_SCALE));
    graph
}

/// Runs `f` with file descriptor 1 pointed at `/dev/null`, for third-party code that prints.
///
/// The standard output lock is held throughout: `println!` from other threads waits instead of
/// being lost, while `f`'s own `println!` on this thread passes (the lock is reentrant) into
/// the null device. When the descriptors cannot be swapped, `f` runs anyway and may print.
#[cfg(unix)]
fn without_stdout<R>(f: impl FnOnce() -> R) -> R {
    use std::io::Write;

    /// Puts the saved descriptor back on drop, so a panic in `f` does not leave stdout closed.
    struct Restore<'a> {
        stdout: std::io::StdoutLock<'a>,
        saved: std::os::fd::OwnedFd,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = self.stdout.flush();
            let _ = rustix::stdio::dup2_stdout(&self.saved);
        }
    }

    let mut stdout = std::io::stdout().lock();
    let _ = stdout.flush();
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
    let saved = rustix::io::dup(&stdout);
    let _restore = match (null, saved) {
        (Ok(null), Ok(saved)) if rustix::stdio::dup2_stdout(&null).is_ok() => Some(Restore { stdout, saved }),
        _ => None,
    };
    f()
}

#[cfg(not(unix))]
fn without_stdout<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Inserts `batch` (vector, internal id), on all cores when there is more than one.
pub(crate) fn insert(graph: &Graph, batch: &[(&[f32], usize)]) {
    match batch.len() {
        0 => {}
        1 => graph.insert_slice(batch[0]),
        _ => graph.parallel_insert_slice(&batch.to_vec()),
    }
}

/// The `k` nearest points of the graph to `vector` at `ef` with their cosine similarity,
/// through `hnsw_rs`'s own search: slower per search than the flat copy's walk, but it sees
/// every inserted point, where the copy scores the points inserted since it was made one by
/// one (what a bulk load placing each new face among the people cannot afford). Tombstoned
/// points are among them; the caller drops what is not live.
pub(crate) fn search(graph: &Graph, vector: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)> {
    graph
        .search(vector, k, ef.max(k))
        .into_iter()
        .map(|neighbour| (neighbour.d_id, similarity_from_distance(neighbour.distance)))
        .collect()
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

/// Bytes the graph's links take per point, from `hnsw_rs`'s layout: each link is an
/// `Arc<PointWithOrder>` (16 B payload + 16 B Arc header + 8 B pointer), layer 0 holds up to
/// `2 M` links and upper layers `M`, and a point carries 16 per-layer vectors (24 B each).
pub(crate) fn estimated_link_bytes_per_point(max_connections: usize) -> usize {
    const BYTES_PER_LINK: usize = 40;
    const PER_POINT_OVERHEAD: usize = MAX_LAYERS * 24 + 96;
    2 * max_connections * BYTES_PER_LINK + PER_POINT_OVERHEAD
}
