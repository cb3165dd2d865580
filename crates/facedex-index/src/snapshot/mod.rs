//! Crash-safe snapshots: each one a new generation directory, made durable before it counts.
//!
//! A generation holds the graph (`hnsw_rs`'s dump: native-endian, so snapshots move only
//! between machines of the same endianness), the face metadata, the deleted ids and the applied
//! Kafka offsets, (from format 2) the image catalog in a file of its own, and (from format 3)
//! the people, and (from format 5) the sealed segments (see `segments.rs`; the `hnsw_rs` dump
//! is then the growing segment's graph alone). Older snapshots still load: format 1 with an empty catalog (its photos count as
//! new on the next run), formats 1 and 2 without people (a re-cluster groups their faces). Files are written and fsynced first; then `MANIFEST.json`, listing every file
//! with its size and CRC-32, is written to a temporary name, fsynced and renamed into place, and
//! the directory is fsynced. A generation without a manifest is a torn write; one whose files do
//! not match their manifest is corrupt. Loading takes the newest generation that passes, so a
//! crash at any point leaves the previous snapshot in charge (Kafka Streams' offset checkpoint
//! and Flink's checkpoints work the same way).

mod segments;

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use serde::{Deserialize, Serialize};

use crate::catalog::ImageCatalog;
use crate::config::IndexConfig;
use crate::distance::UnitCosineDistance;
use crate::error::{IndexError, Result};
use crate::graph::{Graph, new_graph};
use crate::graph_file;
use crate::index::{AppliedOffsets, IndexState, StoredFace};
use crate::people::{People, PeopleFile};
use crate::record::FaceId;
use crate::traits::FaceTraits;

/// The traits of an empty slot.
static NO_TRAITS: FaceTraits = FaceTraits {
    quality: None,
    attributes: Vec::new(),
};

const FORMAT_VERSION: u32 = 5;
/// The oldest format this build loads.
const OLDEST_FORMAT_VERSION: u32 = 1;
const MANIFEST: &str = "MANIFEST.json";
const GRAPH_BASENAME: &str = "graph";
const METADATA_FILE: &str = "faces.postcard";
const CATALOG_FILE: &str = "images.postcard";
const PEOPLE_FILE: &str = "people.postcard";
/// Each slot's attributes and quality (format 4 on), beside the face file whose layout
/// formats 1 to 3 share.
const TRAITS_FILE: &str = "traits.postcard";
const GENERATION_PREFIX: &str = "gen-";

/// A snapshot on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Its generation number (increasing).
    pub generation: u64,
    /// Its directory.
    pub path: PathBuf,
    /// Live faces in it.
    pub faces: usize,
    /// When it was completed, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Total size of its files.
    pub bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    generation: u64,
    created_unix_ms: u64,
    faces: usize,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestFile {
    name: String,
    bytes: u64,
    crc32: u32,
}

/// Everything but the graph, in one file.
#[derive(Serialize, Deserialize)]
struct SnapshotMetadata {
    format_version: u32,
    dimension: usize,
    max_connections: usize,
    ef_construction: usize,
    model_id: Option<String>,
    faces: Vec<Option<StoredFace>>,
    deleted: Vec<FaceId>,
    applied_offsets: AppliedOffsets,
    /// Internal ids of points the graph cannot reach (see `FlatGraph::unreachable`).
    orphans: Vec<usize>,
}

/// The directory of generation `generation` under `snapshots_dir`.
pub(crate) fn generation_dir(snapshots_dir: &Path, generation: u64) -> PathBuf {
    snapshots_dir.join(format!("{GENERATION_PREFIX}{generation:020}"))
}

/// Writes `state` as generation `generation` and makes it durable. The caller holds the index's
/// writer lock, so `state` cannot change underneath.
pub(crate) fn write(
    snapshots_dir: &Path,
    generation: u64,
    config: &IndexConfig,
    state: &IndexState,
) -> Result<SnapshotInfo> {
    let dir = generation_dir(snapshots_dir, generation);
    if dir.exists() {
        // Left by a crash mid-write: it never had a valid manifest, or it would have been loaded.
        fs::remove_dir_all(&dir).map_err(|error| IndexError::io("remove torn snapshot", &dir, error))?;
    }
    fs::create_dir_all(&dir).map_err(|error| IndexError::io("create", &dir, error))?;
    let mut file_names = Vec::new();
    if state.ids.slots() > state.growing_base {
        dump_graph(&state.graph, &dir)?;
        file_names.push(format!("{GRAPH_BASENAME}.hnsw.graph"));
        file_names.push(format!("{GRAPH_BASENAME}.hnsw.data"));
    }
    let metadata = SnapshotMetadata {
        format_version: FORMAT_VERSION,
        dimension: config.dimension,
        max_connections: config.max_connections,
        ef_construction: config.ef_construction,
        model_id: state.model_id.clone(),
        faces: state.ids.slots_iter().map(|(_, face)| face.cloned()).collect(),
        deleted: state.ids.deleted().iter().copied().collect(),
        applied_offsets: state.applied_offsets.clone(),
        orphans: state.orphans.iter().map(|(internal_id, _)| *internal_id).collect(),
    };
    write_postcard(&dir.join(METADATA_FILE), &metadata)?;
    file_names.push(METADATA_FILE.to_owned());
    write_postcard(&dir.join(CATALOG_FILE), &state.catalog)?;
    file_names.push(CATALOG_FILE.to_owned());
    write_postcard(&dir.join(PEOPLE_FILE), &state.people.to_file())?;
    file_names.push(PEOPLE_FILE.to_owned());
    let traits: Vec<&FaceTraits> = metadata
        .faces
        .iter()
        .map(|face| face.as_ref().map_or(&NO_TRAITS, |face| &face.metadata.traits))
        .collect();
    write_postcard(&dir.join(TRAITS_FILE), &traits)?;
    file_names.push(TRAITS_FILE.to_owned());
    let (segment_files, mut files) = segments::write(&dir, state)?;
    file_names.extend(segment_files);

    for name in file_names {
        let path = dir.join(&name);
        let (bytes, crc32) = sync_and_checksum(&path)?;
        files.push(ManifestFile { name, bytes, crc32 });
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        generation,
        created_unix_ms: now_unix_ms(),
        faces: state.ids.live_faces(),
        files,
    };
    let manifest_json =
        serde_json::to_vec_pretty(&manifest).map_err(|error| IndexError::corrupt(&dir, error.to_string()))?;
    let temporary = dir.join(format!("{MANIFEST}.tmp"));
    write_durably(&temporary, &manifest_json)?;
    let manifest_path = dir.join(MANIFEST);
    fs::rename(&temporary, &manifest_path).map_err(|error| IndexError::io("rename", &manifest_path, error))?;
    sync_dir(&dir)?;
    sync_dir(snapshots_dir)?;
    Ok(info_of(&dir, &manifest))
}

fn write_postcard(path: &Path, value: &impl Serialize) -> Result<()> {
    let file = File::create(path).map_err(|error| IndexError::io("create", path, error))?;
    let mut writer = BufWriter::new(file);
    if let Err(error) = postcard::to_io(value, &mut writer) {
        // postcard drops the OS error's kind (a full disk); flushing again surfaces it.
        let io_error = writer.flush().err().unwrap_or_else(|| std::io::Error::other(error));
        return Err(IndexError::io("write", path, io_error));
    }
    writer.flush().map_err(|error| IndexError::io("write", path, error))
}

fn read_postcard<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<T> {
    let path = dir.join(name);
    let bytes = fs::read(&path).map_err(|error| IndexError::io("read", &path, error))?;
    postcard::from_bytes(&bytes).map_err(|error| IndexError::corrupt(dir, format!("{name} does not decode: {error}")))
}

/// `hnsw_rs` panics when it cannot create its files; turn that into an error.
fn dump_graph(graph: &Graph, dir: &Path) -> Result<()> {
    let outcome = catch_unwind(AssertUnwindSafe(|| graph.file_dump(dir, GRAPH_BASENAME)));
    let failed = |reason: String| IndexError::io("dump graph to", dir, std::io::Error::other(reason));
    match outcome {
        Ok(Ok(basename)) if basename == GRAPH_BASENAME => Ok(()),
        Ok(Ok(basename)) => Err(failed(format!(
            "hnsw_rs wrote basename {basename:?}, expected {GRAPH_BASENAME:?}"
        ))),
        // Keep the OS error (and its kind: a full disk) when hnsw_rs's error is one.
        Ok(Err(error)) => Err(match error.downcast::<std::io::Error>() {
            Ok(io_error) => IndexError::io("dump graph to", dir, io_error),
            Err(error) => failed(error.to_string()),
        }),
        Err(_) => Err(failed("hnsw_rs panicked while dumping the graph".into())),
    }
}

/// Generations under `snapshots_dir`, newest first.
pub(crate) fn list_generations(snapshots_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match fs::read_dir(snapshots_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(IndexError::io("list", snapshots_dir, error)),
    };
    let mut generations = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| IndexError::io("list", snapshots_dir, error))?;
        let name = entry.file_name();
        let Some(number) = name.to_str().and_then(|name| name.strip_prefix(GENERATION_PREFIX)) else {
            continue;
        };
        if let Ok(generation) = number.parse::<u64>() {
            generations.push((generation, entry.path()));
        }
    }
    generations.sort_by_key(|(generation, _)| std::cmp::Reverse(*generation));
    Ok(generations)
}

/// Whether the generation has its manifest, i.e. its writer got past the last step.
pub(crate) fn is_complete(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file()
}

/// Loads one generation, verifying every file against the manifest first.
pub(crate) fn load(dir: &Path, config: &IndexConfig) -> Result<(IndexConfig, IndexState, SnapshotInfo)> {
    let manifest_path = dir.join(MANIFEST);
    let manifest_bytes = fs::read(&manifest_path)
        .map_err(|error| IndexError::corrupt(dir, format!("no readable {MANIFEST}: {error}")))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|error| IndexError::corrupt(dir, format!("{MANIFEST} does not parse: {error}")))?;
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&manifest.format_version) {
        return Err(IndexError::corrupt(
            dir,
            format!(
                "format version {} (this build reads {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})",
                manifest.format_version
            ),
        ));
    }
    for file in &manifest.files {
        let (bytes, crc32) = checksum(&dir.join(&file.name))
            .map_err(|error| IndexError::corrupt(dir, format!("{} is unreadable: {error}", file.name)))?;
        if (bytes, crc32) != (file.bytes, file.crc32) {
            return Err(IndexError::corrupt(
                dir,
                format!(
                    "{} has {bytes} bytes and CRC {crc32:08x}, the manifest says {} and {:08x}",
                    file.name, file.bytes, file.crc32
                ),
            ));
        }
    }
    let mut metadata: SnapshotMetadata = read_postcard(dir, METADATA_FILE)?;
    if manifest.format_version >= 4 {
        let traits: Vec<FaceTraits> = read_postcard(dir, TRAITS_FILE)?;
        if traits.len() != metadata.faces.len() {
            return Err(IndexError::corrupt(
                dir,
                format!(
                    "{TRAITS_FILE} has {} slots, {METADATA_FILE} {}",
                    traits.len(),
                    metadata.faces.len()
                ),
            ));
        }
        for (face, traits) in metadata.faces.iter_mut().zip(traits) {
            if let Some(face) = face {
                face.metadata.traits = traits;
            }
        }
    }
    let catalog: ImageCatalog = if manifest.format_version >= 2 {
        read_postcard(dir, CATALOG_FILE)?
    } else {
        ImageCatalog::default()
    };
    let people_file: PeopleFile = if manifest.format_version >= 3 {
        read_postcard(dir, PEOPLE_FILE)?
    } else {
        PeopleFile::default()
    };
    if metadata.dimension != config.dimension {
        return Err(IndexError::InvalidConfig(format!(
            "index.dimension is {} but the snapshot in {} holds {}-dimensional embeddings",
            config.dimension,
            dir.display(),
            metadata.dimension
        )));
    }
    // The graph keeps the shape it was built with; new inserts follow it.
    let loaded_config = IndexConfig {
        max_connections: metadata.max_connections,
        ef_construction: metadata.ef_construction,
        ..config.clone()
    };
    let (sealed, growing_base) = match manifest.format_version >= 5 {
        true => segments::load(dir, &manifest.files, loaded_config.dimension, metadata.faces.len())?,
        false => (Vec::new(), 0),
    };
    let growing_faces = metadata.faces.len() - growing_base;
    let graph = if growing_faces == 0 {
        new_graph(&loaded_config, loaded_config.expected_faces)
    } else {
        load_graph(dir, loaded_config.dimension)?
    };
    if graph.get_nb_point() != growing_faces {
        return Err(IndexError::corrupt(
            dir,
            format!(
                "the growing graph has {} points but the metadata {growing_faces} faces after id {growing_base}",
                graph.get_nb_point(),
            ),
        ));
    }
    check_faces(dir, &metadata)?;
    let mut state = IndexState::new(graph);
    state.sealed = sealed;
    state.growing_base = growing_base;
    state.model_id = metadata.model_id;
    state.applied_offsets = metadata.applied_offsets;
    state.catalog = catalog;
    state.ids.restore_deleted(metadata.deleted);
    for face in metadata.faces {
        state.ids.push(face);
    }
    // The listed points are probed again rather than trusted: a snapshot written before the
    // probe at `REACHABILITY_EF` listed every point missed at the default ef (4,096 of a 300k
    // set where 1 is cut off), and later inserts may have linked a point back in. Only the
    // listed points are probed, so a load costs a few searches, not one per face. (An id the
    // copy has no vector for is skipped there.)
    state.orphans = state.unreachable(&metadata.orphans, loaded_config.default_ef_search);
    let people = People::from_file(people_file, loaded_config.dimension, |face_id| {
        let (internal_id, face) = state.ids.live_face_by_id(face_id)?;
        Some((face.metadata.image_uri.as_str(), state.vector(internal_id)?))
    })
    .map_err(|reason| IndexError::corrupt(dir, format!("{PEOPLE_FILE}: {reason}")))?;
    state.people = people;
    state.debug_assert_invariants();
    Ok((loaded_config, state, info_of(dir, &manifest)))
}

/// Refuses face lists that no index writes: a face id in two slots, or a face both live and
/// deleted (the index's lookups assume neither).
fn check_faces(dir: &Path, metadata: &SnapshotMetadata) -> Result<()> {
    let deleted: std::collections::HashSet<&FaceId> = metadata.deleted.iter().collect();
    let mut live = std::collections::HashSet::with_capacity(metadata.faces.len());
    for (slot, face) in metadata.faces.iter().enumerate() {
        let Some(face) = face else { continue };
        if !live.insert(face.face_id) {
            return Err(IndexError::corrupt(
                dir,
                format!("face {} is stored twice (again in slot {slot})", face.face_id),
            ));
        }
        if deleted.contains(&face.face_id) {
            return Err(IndexError::corrupt(
                dir,
                format!("face {} is both live (slot {slot}) and deleted", face.face_id),
            ));
        }
    }
    Ok(())
}

fn load_graph(dir: &Path, dimension: usize) -> Result<Graph> {
    // hnsw_rs trusts its files (it sizes, indexes and exits by what they say): checked first.
    graph_file::check(
        dir,
        GRAPH_BASENAME,
        dimension,
        std::any::type_name::<UnitCosineDistance>(),
    )
    .map_err(|reason| IndexError::corrupt(dir, format!("the graph does not load: {reason}")))?;
    // The loaded graph borrows its loader for its whole life (`Hnsw<'b, ..>`). A loader is a
    // few paths and counters and there is one per process start, so it is leaked to give the
    // graph a 'static lifetime rather than tying the index to a self-referential struct.
    let load = || {
        let loader: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, GRAPH_BASENAME)));
        loader.load_hnsw()
    };
    match catch_unwind(load) {
        Ok(Ok(graph)) => Ok(graph),
        Ok(Err(error)) => Err(IndexError::corrupt(dir, format!("the graph does not load: {error}"))),
        Err(_) => Err(IndexError::corrupt(dir, "hnsw_rs panicked while loading the graph")),
    }
}

/// Deletes all but the `keep` newest complete generations, and torn ones older than the newest
/// complete one (a torn one newer than it may be a write in progress).
pub(crate) fn prune(snapshots_dir: &Path, keep: usize) -> Result<()> {
    let mut complete_seen = 0;
    for (_, dir) in list_generations(snapshots_dir)? {
        let complete = is_complete(&dir);
        let remove = if complete {
            complete_seen >= keep
        } else {
            complete_seen > 0
        };
        if complete {
            complete_seen += 1;
        }
        if remove {
            fs::remove_dir_all(&dir).map_err(|error| IndexError::io("remove old snapshot", &dir, error))?;
        }
    }
    Ok(())
}

fn info_of(dir: &Path, manifest: &Manifest) -> SnapshotInfo {
    SnapshotInfo {
        generation: manifest.generation,
        path: dir.to_path_buf(),
        faces: manifest.faces,
        created_unix_ms: manifest.created_unix_ms,
        bytes: manifest.files.iter().map(|file| file.bytes).sum(),
    }
}

fn checksum(path: &Path) -> std::io::Result<(u64, u32)> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok((bytes, hasher.finalize()));
        }
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
}

fn sync_and_checksum(path: &Path) -> Result<(u64, u32)> {
    let file = File::open(path).map_err(|error| IndexError::io("open", path, error))?;
    file.sync_all().map_err(|error| IndexError::io("fsync", path, error))?;
    checksum(path).map_err(|error| IndexError::io("read back", path, error))
}

/// Writes `bytes` to `path` and fsyncs it.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|error| IndexError::io("create", path, error))?;
    file.write_all(bytes)
        .map_err(|error| IndexError::io("write", path, error))?;
    file.sync_all().map_err(|error| IndexError::io("fsync", path, error))
}

/// Fsyncs a directory so that entries created or renamed in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| IndexError::io("fsync", dir, error))
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FaceIndex;
    use crate::synthetic::FaceLikeGenerator;

    #[test]
    fn a_listed_unreachable_point_that_a_search_finds_is_dropped_from_the_list_at_load() {
        let config = IndexConfig {
            dimension: 32,
            ..IndexConfig::default()
        };
        let index = FaceIndex::new(config.clone()).expect("index");
        let vectors = FaceLikeGenerator::new(50, 32, 11).dataset(10);
        index
            .upsert((0..vectors.len()).map(|position| vectors.record(position)).collect())
            .expect("upsert");
        let snapshots = tempfile::tempdir().expect("temp dir");
        {
            let mut state = index.state.write();
            // As an older version's rule would have listed them: points a search does find.
            state.orphans = [3, 17]
                .into_iter()
                .map(|internal_id| (internal_id, vectors.vector(internal_id).to_vec()))
                .collect();
            write(snapshots.path(), 1, &config, &state).expect("write");
        }
        let (_, loaded, _) = load(&generation_dir(snapshots.path(), 1), &config).expect("load");
        assert!(
            loaded.orphans.is_empty(),
            "points found by their own vector stay on the brute-force list: {:?}",
            loaded.orphans.iter().map(|(id, _)| id).collect::<Vec<_>>()
        );
        assert_eq!(loaded.ids.slots(), vectors.len());
    }

    #[test]
    fn a_format_1_snapshot_loads_with_an_empty_catalog_and_the_next_one_keeps_the_catalog() {
        use crate::catalog::{CatalogEntry, ImageOutcome, ImageVersion};

        let config = IndexConfig {
            dimension: 32,
            ..IndexConfig::default()
        };
        let index = FaceIndex::new(config.clone()).expect("index");
        let vectors = FaceLikeGenerator::new(5, 32, 3).dataset(2);
        index
            .upsert((0..vectors.len()).map(|position| vectors.record(position)).collect())
            .expect("upsert");
        let entry = CatalogEntry {
            version: ImageVersion {
                version: "etag".into(),
                size_bytes: 7,
            },
            outcome: ImageOutcome::Indexed { faces: 0 },
        };
        index.state.write().catalog.set("s3://b/empty.jpg", Some(entry.clone()));
        let snapshots = tempfile::tempdir().expect("temp dir");
        write(snapshots.path(), 1, &config, &index.state.read()).expect("write");
        let dir = generation_dir(snapshots.path(), 1);
        let (_, loaded, _) = load(&dir, &config).expect("load format 2");
        assert_eq!(loaded.catalog.get("s3://b/empty.jpg"), Some(&entry));

        // The same snapshot as format 1 wrote it: no catalog file, format_version 1.
        let manifest_path = dir.join(MANIFEST);
        let mut manifest: Manifest = serde_json::from_slice(&fs::read(&manifest_path).expect("read")).expect("parse");
        manifest.format_version = 1;
        manifest.files.retain(|file| file.name != CATALOG_FILE);
        fs::remove_file(dir.join(CATALOG_FILE)).expect("remove");
        fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("json")).expect("write");
        let (_, loaded, info) = load(&dir, &config).expect("load format 1");
        assert_eq!(loaded.catalog.len(), 0);
        assert_eq!((info.faces, loaded.ids.live_faces()), (vectors.len(), vectors.len()));

        manifest.format_version = FORMAT_VERSION + 1;
        fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("json")).expect("write");
        let error = load(&dir, &config).err().expect("a newer format is refused");
        let newer = format!("format version {}", FORMAT_VERSION + 1);
        assert!(error.to_string().contains(&newer), "{error}");
    }
}
