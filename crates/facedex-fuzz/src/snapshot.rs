//! The snapshot loader: `FaceStore::open` over a data directory one of whose files holds the
//! fuzzer's bytes. The other files come from a real snapshot of a small index, and the manifest
//! is rewritten to the new file's size and CRC, so the bytes get past the checksum to the
//! parsers behind it (the graph and point files of `hnsw_rs`, the postcard face and image
//! catalogs, the manifest itself, the deletion journal). A corrupt snapshot must be refused
//! with an error, never panic or allocate without bound.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use facedex_index::synthetic::FaceLikeGenerator;
use facedex_index::{FaceStore, ImageChange, ImageVersion, IndexConfig};

/// The files a fuzz input can stand for, chosen by its first byte (modulo their count), relative
/// to the data directory. `{gen}` is the snapshot's generation folder (`snapshots/gen-…`).
pub const SNAPSHOT_FILES: [&str; 9] = [
    "{gen}/graph.hnsw.graph",
    "{gen}/graph.hnsw.data",
    "{gen}/faces.postcard",
    "{gen}/images.postcard",
    "{gen}/MANIFEST.json",
    "deletions.journal",
    // After the older six, so that kept inputs still select the file they were found on.
    "{gen}/segments.postcard",
    "{gen}/segment-0.links",
    "{gen}/segment-0.vectors",
];

/// A data directory holding one real snapshot of a small index, made once per process.
struct Template {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    generation: String,
}

static TEMPLATE: LazyLock<Template> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data_dir = dir.path().join("data");
    let generation = {
        // The first 16 faces are sealed into a segment, the other 8 stay in the growing one.
        let config = IndexConfig {
            seal_segment_faces: 10,
            ..IndexConfig::default()
        };
        let store = FaceStore::open(&data_dir, config).expect("an empty index");
        let faces = FaceLikeGenerator::new(6, IndexConfig::default().dimension, 11).dataset(4);
        let changes: Vec<ImageChange> = (0..faces.len())
            .map(|position| faces.record(position))
            .map(|face| ImageChange::Indexed {
                image_uri: face.metadata.image_uri.clone(),
                version: ImageVersion {
                    version: "etag-1".into(),
                    size_bytes: 1_000,
                },
                faces: vec![face],
            })
            .collect();
        let mut changes = changes;
        let later = changes.split_off(16);
        store.apply_changes(changes).expect("synthetic faces");
        store.apply_changes(later).expect("more synthetic faces");
        let snapshot = store.snapshot().expect("a snapshot");
        let folder = snapshot.path.file_name().expect("a generation folder");
        format!("snapshots/{}", folder.to_string_lossy())
    };
    std::fs::remove_file(data_dir.join("LOCK")).ok();
    Template {
        _dir: dir,
        data_dir,
        generation,
    }
});

/// The path of file `index` of [`SNAPSHOT_FILES`] under `data_dir`.
fn file_path(data_dir: &Path, generation: &str, index: usize) -> PathBuf {
    data_dir.join(SNAPSHOT_FILES[index].replace("{gen}", generation))
}

/// The real contents of every file of [`SNAPSHOT_FILES`], prefixed with its selector byte: the
/// seed corpus of the snapshot target.
pub fn seeds() -> Vec<Vec<u8>> {
    let template = &*TEMPLATE;
    (0..SNAPSHOT_FILES.len())
        .map(|index| {
            let mut seed = vec![index as u8];
            let path = file_path(&template.data_dir, &template.generation, index);
            seed.extend(std::fs::read(path).unwrap_or_default());
            seed
        })
        .collect()
}

/// Opens a copy of the template data directory whose file `data[0]` holds `data[1..]`.
pub fn snapshot_files(data: &[u8]) {
    let Some((&selector, contents)) = data.split_first() else {
        return;
    };
    let template = &*TEMPLATE;
    let scratch = tempfile::tempdir().expect("a temporary folder");
    let data_dir = scratch.path().join("data");
    copy_dir(&template.data_dir, &data_dir);
    let index = usize::from(selector) % SNAPSHOT_FILES.len();
    let target = file_path(&data_dir, &template.generation, index);
    std::fs::write(&target, contents).expect("write the fuzzed file");
    if SNAPSHOT_FILES[index].starts_with("{gen}/") && !SNAPSHOT_FILES[index].ends_with("MANIFEST.json") {
        restamp_manifest(&data_dir.join(&template.generation), &target, contents);
    }
    if let Ok(store) = FaceStore::open(&data_dir, IndexConfig::default()) {
        // Whatever loaded must answer reads.
        let _ = store.index().info();
    }
}

/// Sets the manifest's size and CRC of `file` to those of `contents`.
fn restamp_manifest(generation_dir: &Path, file: &Path, contents: &[u8]) {
    let manifest_path = generation_dir.join("MANIFEST.json");
    let text = std::fs::read(&manifest_path).expect("the template's manifest");
    let mut manifest: serde_json::Value = serde_json::from_slice(&text).expect("a JSON manifest");
    let name = file.file_name().map(|name| name.to_string_lossy().into_owned());
    if let Some(files) = manifest["files"].as_array_mut() {
        for entry in files {
            if entry["name"].as_str() == name.as_deref() {
                entry["bytes"] = (contents.len() as u64).into();
                entry["crc32"] = crc32fast::hash(contents).into();
            }
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("JSON")).expect("write the manifest");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a folder");
    for entry in std::fs::read_dir(from).expect("read the template").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a template file");
        }
    }
}
