//! The people rule on synthetic archives with known identities: writes the faces (embeddings,
//! identities, photos) for the reference script of Immich's rule (`scripts/reference/immich_rule.py`),
//! indexes them with people off and on (the overhead of placing faces as they arrive), scores
//! the incremental assignment (also written, as `facedex.clusters`) and a full re-cluster.
//!
//! - `--look-alikes faces|centres`: how close look-alike identities are (see `LookAlikes`);
//! - `--facedex-only`: people on only, no files for the reference (for sizes it cannot run at);
//! - `--score FILE`: scores another clustering of the same faces (one little-endian i64 per face,
//!   -1 for none), against the synthetic set or, with `--data DIR`, the `identities.u32` and
//!   `photos.u32` in that folder (real faces).
//!
//! `cargo run --release -p facedex-index --features synthetic --example people_quality -- --faces 10000 --out DIR`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use facedex_index::quality::{ClusterQuality, cluster_quality};
use facedex_index::synthetic::{LookAlikes, PeopleArchive};
use facedex_index::{FaceId, FaceStore, IndexConfig, PeopleConfig, PersonStatus};

/// Faces per upsert, as the indexer stage batches a stream of photos.
const BATCH_FACES: usize = 256;

struct Args {
    faces: usize,
    seed: u64,
    out: PathBuf,
    score: Option<PathBuf>,
    look_alikes: LookAlikes,
    /// Score `score` against the identities and photos in this folder instead of a synthetic set.
    data: Option<PathBuf>,
    /// Only facedex with people on: no files for the reference, no indexing without people.
    facedex_only: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        faces: 10_000,
        seed: 7,
        out: PathBuf::from("target/people-quality"),
        score: None,
        look_alikes: LookAlikes::Faces,
        facedex_only: false,
        data: None,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        if flag == "--facedex-only" {
            args.facedex_only = true;
            continue;
        }
        let value = given.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--faces" => args.faces = value.parse()?,
            "--seed" => args.seed = value.parse()?,
            "--out" => args.out = value.into(),
            "--score" => args.score = Some(value.into()),
            "--data" => args.data = Some(value.into()),
            "--look-alikes" => {
                args.look_alikes = match value.as_str() {
                    "faces" => LookAlikes::Faces,
                    "centres" => LookAlikes::Centres,
                    other => bail!("--look-alikes takes faces or centres, got {other}"),
                }
            }
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

fn write_le<T: Copy>(path: &Path, values: &[T], bytes: impl Fn(T) -> Vec<u8>) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for value in values {
        file.write_all(&bytes(*value))?;
    }
    Ok(file.flush()?)
}

fn row(rule: &str, quality: &ClusterQuality, seconds: Option<f64>) {
    println!(
        "| {rule} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} % | {} | {} | {} |",
        quality.pairwise_precision,
        quality.pairwise_recall,
        quality.bcubed_precision,
        quality.bcubed_recall,
        quality.bcubed_f1,
        quality.assigned_share * 100.0,
        quality.clusters,
        quality.same_photo_violations,
        seconds.map_or_else(|| "-".to_owned(), |seconds| format!("{seconds:.1}")),
    );
}

/// Indexes every face in batches; returns the store and the seconds it took.
fn index(archive: &PeopleArchive, people: bool, dir: &Path) -> anyhow::Result<(FaceStore, f64)> {
    let config = IndexConfig {
        expected_faces: archive.vectors.len(),
        people: PeopleConfig {
            enabled: people,
            ..PeopleConfig::default()
        },
        ..IndexConfig::default()
    };
    let store = FaceStore::open(dir, config)?;
    let records: Vec<_> = (0..archive.vectors.len()).map(|face| archive.record(face)).collect();
    let started = Instant::now();
    for batch in records.chunks(BATCH_FACES) {
        store.upsert(batch.to_vec())?;
    }
    Ok((store, started.elapsed().as_secs_f64()))
}

fn clusters(store: &FaceStore, faces: usize) -> anyhow::Result<Vec<Option<u64>>> {
    (0..faces as u128)
        .map(|face| {
            Ok(match store.index().get(&FaceId(face), false)?.person {
                PersonStatus::Assigned(person) => Some(person.person_id.0),
                _ => None,
            })
        })
        .collect()
}

/// Writes the faces for the reference script: embeddings, identities and photos, one
/// little-endian value after another.
fn write_faces(archive: &PeopleArchive, out: &Path) -> anyhow::Result<()> {
    let faces = archive.vectors.len();
    let identities: &[u32] = &archive.vectors.identity_of;
    let mut embeddings = Vec::with_capacity(faces * 512);
    for face in 0..faces {
        embeddings.extend_from_slice(archive.vectors.vector(face));
    }
    write_le(&out.join("embeddings.f32"), &embeddings, |value: f32| {
        value.to_le_bytes().to_vec()
    })?;
    write_le(&out.join("identities.u32"), identities, |value: u32| {
        value.to_le_bytes().to_vec()
    })?;
    write_le(&out.join("photos.u32"), &archive.photo_of, |value: u32| {
        value.to_le_bytes().to_vec()
    })?;
    eprintln!(
        "{faces} faces of {} identities in {} photos written to {}",
        identities.iter().max().map_or(0, |max| max + 1),
        archive.photo_of.last().map_or(0, |last| last + 1),
        out.display()
    );
    Ok(())
}

/// Every little-endian value of `width` bytes in `path`.
fn read_le<T>(path: &Path, width: usize, value: impl Fn(&[u8]) -> T) -> anyhow::Result<Vec<T>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() % width != 0 {
        bail!(
            "{} holds {} bytes, not a whole number of {width}-byte values",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes.chunks_exact(width).map(value).collect())
}

/// Scores the clustering in `path` (one i64 per face, -1 for none) against the identities and
/// photos given.
fn score_file(path: &Path, identities: &[u32], photos: &[u32]) -> anyhow::Result<()> {
    let clusters = read_le(path, 8, |chunk| {
        let value = i64::from_le_bytes(chunk.try_into().unwrap_or([0xff; 8]));
        (value >= 0).then_some(value as u64)
    })?;
    if clusters.len() != identities.len() || photos.len() != identities.len() {
        bail!(
            "{} faces in {}, {} identities, {} photos: expected one of each per face",
            clusters.len(),
            path.display(),
            identities.len(),
            photos.len()
        );
    }
    row(
        &path.display().to_string(),
        &cluster_quality(identities, &clusters, photos),
        None,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if let (Some(path), Some(data)) = (&args.score, &args.data) {
        let u32_le = |chunk: &[u8]| u32::from_le_bytes(chunk.try_into().unwrap_or([0; 4]));
        let identities = read_le(&data.join("identities.u32"), 4, u32_le)?;
        let photos = read_le(&data.join("photos.u32"), 4, u32_le)?;
        return score_file(path, &identities, &photos);
    }
    let archive = PeopleArchive::generate(args.faces, 512, args.seed, args.look_alikes);
    let faces = archive.vectors.len();
    let identities: &[u32] = &archive.vectors.identity_of;
    let score = |clusters: &[Option<u64>]| cluster_quality(identities, clusters, &archive.photo_of);
    if let Some(path) = &args.score {
        return score_file(path, identities, &archive.photo_of);
    }

    std::fs::create_dir_all(&args.out)?;
    let plain_seconds = match args.facedex_only {
        true => None,
        false => {
            write_faces(&archive, &args.out)?;
            let without = tempfile::tempdir()?;
            Some(index(&archive, false, without.path())?.1)
        }
    };
    let with = tempfile::tempdir()?;
    let (store, people_seconds) = index(&archive, true, with.path())?;
    match plain_seconds {
        Some(plain_seconds) => eprintln!(
            "indexing: {plain_seconds:.1} s without people, {people_seconds:.1} s with ({:+.0} %)",
            (people_seconds / plain_seconds - 1.0) * 100.0
        ),
        None => eprintln!("indexing: {people_seconds:.1} s with people"),
    }
    let arrived = clusters(&store, faces)?;
    let as_i64 = |cluster: Option<u64>| cluster.map_or(-1, |id| (id >> 1) as i64).to_le_bytes().to_vec();
    write_le(&args.out.join("facedex.clusters"), &arrived, as_i64)?;
    row(
        "facedex, as faces arrive",
        &score(&arrived),
        plain_seconds.map(|plain_seconds| people_seconds - plain_seconds),
    );

    let started = Instant::now();
    let mut restart = true;
    loop {
        let progress = store.recluster(Duration::from_secs(3600), restart);
        restart = false;
        if progress.finished {
            break;
        }
    }
    let recluster_seconds = started.elapsed().as_secs_f64();
    row(
        "facedex, full re-cluster",
        &score(&clusters(&store, faces)?),
        Some(recluster_seconds),
    );
    Ok(())
}
