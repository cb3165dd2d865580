//! Checks a graph dump (`hnsw_rs`'s `<base>.hnsw.graph` and `<base>.hnsw.data`) before
//! `hnsw_rs` loads it.
//!
//! `hnsw_rs`'s loader trusts its files: it allocates whatever a count in them says, reads a
//! vector of `dimension` floats out of a buffer of the length the file gives (past its end when
//! that is shorter), indexes points by the ids it reads, and calls `std::process::exit` on a
//! bad point record. A manifest CRC only catches accidental damage, so a snapshot whose files
//! went wrong with a matching checksum (a bug, a hostile data directory, the fuzzer) would abort
//! the process or read out of bounds. This walk reads both files the way the loader does, in
//! bounded memory, and refuses anything the loader would not survive: every count is checked
//! against the bytes left and the graph's own limits, every id against the points there are.
//!
//! The layout is that of `hnsw_rs` 0.3.5's `DumpMode::Full` (the version is pinned in
//! Cargo.toml for this reason); all integers are native-endian.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// Format magics of `hnsw_rs` 0.3.5 (`hnswio.rs`).
const MAGIC_DESCRIPTION: [u32; 2] = [0x002a_6771, 0x002a_6779];
const MAGIC_DESCRIPTION_WITH_SCALE: u32 = 0x002a_6779;
const MAGIC_LAYER: u32 = 0x000a_676f;
const MAGIC_POINT: u32 = 0x000a_678f;
const MAGIC_DATA: u32 = 0xa67f_0000;
/// `hnsw_rs`'s `NB_LAYER_MAX`.
const MAX_LAYERS: usize = 16;
/// `DumpMode::Full`: neighbours carry their layer and rank.
const DUMP_MODE_FULL: u8 = 1;
/// The longest distance or type name the loader accepts.
const MAX_NAME_BYTES: usize = 256;

/// Why a dump was refused.
pub(crate) type Refusal = String;

/// A reader that knows how many bytes are left, so no count can promise more than the file holds.
struct Bounded {
    reader: BufReader<File>,
    left: u64,
    what: &'static str,
}

impl Bounded {
    fn open(path: &Path, what: &'static str) -> Result<Self, Refusal> {
        let file = File::open(path).map_err(|error| format!("{what} cannot be opened: {error}"))?;
        let left = file
            .metadata()
            .map_err(|error| format!("{what} cannot be read: {error}"))?
            .len();
        Ok(Self {
            reader: BufReader::new(file),
            left,
            what,
        })
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], Refusal> {
        let mut buffer = [0u8; N];
        self.fill(&mut buffer)?;
        Ok(buffer)
    }

    fn fill(&mut self, buffer: &mut [u8]) -> Result<(), Refusal> {
        if (buffer.len() as u64) > self.left {
            return Err(format!("{} ends early", self.what));
        }
        self.reader
            .read_exact(buffer)
            .map_err(|error| format!("{} cannot be read: {error}", self.what))?;
        self.left -= buffer.len() as u64;
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, Refusal> {
        Ok(self.bytes::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Refusal> {
        Ok(u32::from_ne_bytes(self.bytes()?))
    }

    fn i32(&mut self) -> Result<i32, Refusal> {
        Ok(i32::from_ne_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, Refusal> {
        Ok(u64::from_ne_bytes(self.bytes()?))
    }

    fn usize(&mut self) -> Result<usize, Refusal> {
        Ok(usize::from_ne_bytes(self.bytes()?))
    }

    fn f32(&mut self) -> Result<f32, Refusal> {
        Ok(f32::from_ne_bytes(self.bytes()?))
    }

    /// A length-prefixed name of at most [`MAX_NAME_BYTES`] UTF-8 bytes.
    fn name(&mut self, field: &str) -> Result<String, Refusal> {
        let length = self.usize()?;
        if length > MAX_NAME_BYTES {
            return Err(format!(
                "the graph's {field} is {length} bytes long (at most {MAX_NAME_BYTES})"
            ));
        }
        let mut bytes = vec![0u8; length];
        self.fill(&mut bytes)?;
        String::from_utf8(bytes).map_err(|_| format!("the graph's {field} is not UTF-8"))
    }
}

/// What the description at the start of the graph file says.
struct Description {
    max_connections: usize,
    layers_per_point: usize,
    points: usize,
}

/// Checks the dump `<dir>/<basename>.hnsw.{graph,data}` of `dimension`-dimensional f32 vectors
/// under `distance_name` before `hnsw_rs` loads it.
pub(crate) fn check(dir: &Path, basename: &str, dimension: usize, distance_name: &str) -> Result<(), Refusal> {
    let mut graph = Bounded::open(&dir.join(format!("{basename}.hnsw.graph")), "the graph file")?;
    let mut data = Bounded::open(&dir.join(format!("{basename}.hnsw.data")), "the vector file")?;
    let description = description(&mut graph, dimension, distance_name)?;

    if data.u32()? != MAGIC_DATA {
        return Err("the vector file does not start with its magic".into());
    }
    let data_dimension = data.usize()?;
    if data_dimension != dimension {
        return Err(format!(
            "the vector file holds {data_dimension}-dimensional vectors, not {dimension}"
        ));
    }

    let layer_count = usize::from(graph.u8()?);
    if layer_count > MAX_LAYERS {
        return Err(format!("the graph has {layer_count} layers (at most {MAX_LAYERS})"));
    }
    // Points per layer, and the highest rank each layer is referred to at: a neighbour may
    // name a point of a layer further on in the file.
    let mut layer_sizes = [0usize; MAX_LAYERS];
    let mut highest_rank_named = [None::<usize>; MAX_LAYERS];
    let mut seen = vec![false; description.points];
    let mut loaded = 0usize;
    for (layer, layer_size) in layer_sizes.iter_mut().enumerate().take(layer_count) {
        if graph.u32()? != MAGIC_LAYER {
            return Err(format!("layer {layer} does not start with its magic"));
        }
        let size = graph.usize()?;
        if size > description.points - loaded {
            return Err(format!(
                "layer {layer} claims {size} points, more than the {} the graph has left",
                description.points - loaded
            ));
        }
        *layer_size = size;
        for rank in 0..size {
            let origin = point(&mut graph, &description, layer, rank, &mut highest_rank_named)?;
            if std::mem::replace(&mut seen[origin], true) {
                return Err(format!("point {origin} appears twice in the graph"));
            }
            vector(&mut data, origin, dimension)?;
        }
        loaded += size;
    }
    if loaded != description.points {
        return Err(format!(
            "the graph's layers hold {loaded} points, its description says {}",
            description.points
        ));
    }
    if description.points > 0 {
        let _entry_origin = graph.usize()?;
        let (layer, rank) = (usize::from(graph.u8()?), graph.i32()?);
        note_reference(&mut highest_rank_named, layer, rank, "the entry point")?;
    }
    for (layer, highest) in highest_rank_named.iter().enumerate() {
        if let Some(rank) = highest
            && *rank >= layer_sizes[layer]
        {
            return Err(format!(
                "a neighbour names point {rank} of layer {layer}, which holds {}",
                layer_sizes[layer]
            ));
        }
    }
    Ok(())
}

fn description(graph: &mut Bounded, dimension: usize, distance_name: &str) -> Result<Description, Refusal> {
    let magic = graph.u32()?;
    if !MAGIC_DESCRIPTION.contains(&magic) {
        return Err(format!(
            "the graph file starts with {magic:#x}, not a description this build reads"
        ));
    }
    if graph.u8()? != DUMP_MODE_FULL {
        return Err("the graph was not dumped in full mode".into());
    }
    let max_connections = usize::from(graph.u8()?);
    if max_connections == 0 {
        return Err("the graph's max_nb_connection is 0".into());
    }
    if magic == MAGIC_DESCRIPTION_WITH_SCALE {
        let scale = f64::from_ne_bytes(graph.bytes()?);
        if !(scale.is_finite() && scale > 0.0) {
            return Err(format!("the graph's level scale is {scale}"));
        }
    }
    let layers_per_point = usize::from(graph.u8()?);
    if layers_per_point > MAX_LAYERS {
        return Err(format!(
            "the graph keeps {layers_per_point} layers per point (at most {MAX_LAYERS})"
        ));
    }
    let _ef = graph.usize()?;
    let points = graph.usize()?;
    let described_dimension = graph.usize()?;
    if described_dimension != dimension {
        return Err(format!(
            "the graph describes {described_dimension}-dimensional vectors, not {dimension}"
        ));
    }
    // Each point takes at least its magic, id and position in the graph file: a count the file
    // cannot hold is refused before anything is sized by it.
    if (points as u128) * 17 > u128::from(graph.left) {
        return Err(format!("the graph claims {points} points, more than its file can hold"));
    }
    let stored_distance = graph.name("distance name")?;
    let short = |name: &str| name.rsplit("::").next().unwrap_or_default().to_owned();
    if short(&stored_distance) != short(distance_name) {
        return Err(format!(
            "the graph was built with distance {stored_distance}, not {distance_name}"
        ));
    }
    let stored_type = graph.name("vector type")?;
    if stored_type != std::any::type_name::<f32>() {
        return Err(format!("the graph holds vectors of {stored_type}, not f32"));
    }
    Ok(Description {
        max_connections,
        layers_per_point,
        points,
    })
}

/// Checks one point record of the graph file (at `layer`, `rank`) and returns its id.
fn point(
    graph: &mut Bounded,
    description: &Description,
    layer: usize,
    rank: usize,
    highest_rank_named: &mut [Option<usize>; MAX_LAYERS],
) -> Result<usize, Refusal> {
    if graph.u32()? != MAGIC_POINT {
        return Err(format!("point {rank} of layer {layer} does not start with its magic"));
    }
    let origin = graph.usize()?;
    if origin >= description.points {
        return Err(format!(
            "point id {origin} is outside the graph's {} points",
            description.points
        ));
    }
    let (stored_layer, stored_rank) = (usize::from(graph.u8()?), graph.i32()?);
    if stored_layer != layer || usize::try_from(stored_rank).ok() != Some(rank) {
        return Err(format!(
            "point {origin} is stored at layer {layer} rank {rank} but says layer {stored_layer} rank {stored_rank}"
        ));
    }
    // Layer 0 keeps up to twice max_nb_connection neighbours, the others up to max_nb_connection.
    let most_neighbours = 2 * description.max_connections;
    for neighbour_layer in 0..description.layers_per_point {
        let count = graph.usize()?;
        if count > most_neighbours {
            return Err(format!(
                "point {origin} has {count} neighbours at layer {neighbour_layer} (at most {most_neighbours})"
            ));
        }
        for _ in 0..count {
            let neighbour = graph.usize()?;
            if neighbour >= description.points {
                return Err(format!("point {origin} names neighbour {neighbour}, outside the graph"));
            }
            let (layer, rank) = (usize::from(graph.u8()?), graph.i32()?);
            note_reference(highest_rank_named, layer, rank, "a neighbour")?;
            let distance = graph.f32()?;
            if !(0.0..=2.0).contains(&distance) {
                return Err(format!("point {origin} is {distance} from neighbour {neighbour}"));
            }
        }
    }
    Ok(origin)
}

fn note_reference(
    highest_rank_named: &mut [Option<usize>; MAX_LAYERS],
    layer: usize,
    rank: i32,
    what: &str,
) -> Result<(), Refusal> {
    let rank = usize::try_from(rank).map_err(|_| format!("{what} is at rank {rank}"))?;
    let slot = highest_rank_named
        .get_mut(layer)
        .ok_or_else(|| format!("{what} is in layer {layer} (at most {MAX_LAYERS})"))?;
    *slot = Some(slot.map_or(rank, |highest| highest.max(rank)));
    Ok(())
}

/// Checks one vector record of the data file: point `origin`, exactly `dimension` f32s.
fn vector(data: &mut Bounded, origin: usize, dimension: usize) -> Result<(), Refusal> {
    if data.u32()? != MAGIC_DATA {
        return Err(format!("the vector of point {origin} does not start with its magic"));
    }
    let stored_origin = data.u64()?;
    if stored_origin != origin as u64 {
        return Err(format!(
            "the vector file holds point {stored_origin} where the graph has {origin}"
        ));
    }
    let length = data.u64()?;
    let expected = (dimension * std::mem::size_of::<f32>()) as u64;
    if length != expected {
        return Err(format!(
            "the vector of point {origin} is {length} bytes, not {expected}"
        ));
    }
    for _ in 0..dimension {
        let value = data.f32()?;
        if !value.is_finite() {
            return Err(format!("the vector of point {origin} holds {value}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use hnsw_rs::api::AnnT;
    use hnsw_rs::hnswio::HnswIo;

    use super::*;
    use crate::config::IndexConfig;
    use crate::distance::UnitCosineDistance;
    use crate::graph::Graph;
    use crate::index::FaceIndex;
    use crate::synthetic::FaceLikeGenerator;

    const DIMENSION: usize = 16;
    fn distance() -> &'static str {
        std::any::type_name::<UnitCosineDistance>()
    }

    /// A real dump of 60 faces: its graph and vector files.
    fn real_dump() -> (tempfile::TempDir, Vec<u8>, Vec<u8>) {
        let config = IndexConfig {
            dimension: DIMENSION,
            ..IndexConfig::default()
        };
        let index = FaceIndex::new(config).expect("index");
        let vectors = FaceLikeGenerator::new(20, DIMENSION, 5).dataset(3);
        index
            .upsert((0..vectors.len()).map(|position| vectors.record(position)).collect())
            .expect("upsert");
        let dir = tempfile::tempdir().expect("temp dir");
        index.state.read().graph.file_dump(dir.path(), "graph").expect("dump");
        let read = |name: &str| std::fs::read(dir.path().join(name)).expect("dump file");
        let (graph, data) = (read("graph.hnsw.graph"), read("graph.hnsw.data"));
        (dir, graph, data)
    }

    /// Whether hnsw_rs loads the dump in `dir` without panicking.
    fn hnsw_rs_loads(dir: &Path) -> bool {
        catch_unwind(AssertUnwindSafe(|| {
            // As in `snapshot::load_graph`, the graph borrows its loader for good.
            let loader: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, "graph")));
            loader
                .load_hnsw::<f32, UnitCosineDistance>()
                .map(|graph: Graph| graph.get_nb_point())
        }))
        .is_ok_and(|loaded| loaded.is_ok())
    }

    fn write(dir: &Path, graph: &[u8], data: &[u8]) {
        std::fs::write(dir.join("graph.hnsw.graph"), graph).expect("write graph");
        std::fs::write(dir.join("graph.hnsw.data"), data).expect("write data");
    }

    #[test]
    fn a_real_dump_passes_and_loads() {
        let (dir, _, _) = real_dump();
        check(dir.path(), "graph", DIMENSION, distance()).expect("a real dump passes");
        assert!(hnsw_rs_loads(dir.path()));
        let wrong_dimension = check(dir.path(), "graph", DIMENSION + 1, distance()).expect_err("dimension");
        assert!(wrong_dimension.contains("16-dimensional"), "{wrong_dimension}");
    }

    #[test]
    fn every_truncation_of_either_file_is_refused() {
        let (dir, graph, data) = real_dump();
        for cut in (0..graph.len()).step_by(7) {
            write(dir.path(), &graph[..cut], &data);
            assert!(
                check(dir.path(), "graph", DIMENSION, distance()).is_err(),
                "graph cut at {cut}"
            );
        }
        for cut in (0..data.len()).step_by(61) {
            write(dir.path(), &graph, &data[..cut]);
            assert!(
                check(dir.path(), "graph", DIMENSION, distance()).is_err(),
                "data cut at {cut}"
            );
        }
    }

    /// Whatever the check lets through, hnsw_rs loads: 8 bytes at every 5th offset of the graph
    /// file and every 97th of the vector file overwritten with each of a few hostile values
    /// (huge counts, negative ranks, NaN); the fuzz target `snapshot_files` goes further.
    #[test]
    fn whatever_passes_the_check_loads_without_a_panic() {
        let (dir, graph, data) = real_dump();
        let hostile: [[u8; 8]; 4] = [[0xff; 8], [0x7f; 8], 1_000_000u64.to_ne_bytes(), [0; 8]];
        let mut accepted = 0;
        for (file, step) in [(0, 5), (1, 97)] {
            let original = if file == 0 { &graph } else { &data };
            for offset in (0..original.len().saturating_sub(8)).step_by(step) {
                for value in &hostile {
                    let mut mutated = original.clone();
                    mutated[offset..offset + 8].copy_from_slice(value);
                    let (graph, data) = if file == 0 {
                        (&mutated, &data)
                    } else {
                        (&graph, &mutated)
                    };
                    write(dir.path(), graph, data);
                    if check(dir.path(), "graph", DIMENSION, distance()).is_ok() {
                        accepted += 1;
                        assert!(
                            hnsw_rs_loads(dir.path()),
                            "file {file} with {value:?} at {offset} passed the check but does not load"
                        );
                    }
                }
            }
        }
        assert!(accepted > 0, "harmless changes (a distance, an ef) still pass");
    }
}
