//! Recall@10 and single-thread QPS of the face index at several `ef`, on face-like vectors.
//!
//! `cargo bench -p facedex-index --bench ann_recall_qps -- VECTORS M EF_CONSTRUCTION EF,EF,.. OUT_DIR [SEAL_SEGMENT_FACES|default] [bare]`
//!
//! With `bare`, it also times `hnsw_rs` alone building the same graph (same parameters, same
//! batches, parallel inserts, nothing else): how much of facedex's build time is the graph
//! builder's and how much its own (people, freezes, reachability probes, seals).
//!
//! Memory per face is measured twice: the build process's growth (the growing segment's
//! `hnsw_rs` graph at its largest, and whatever the allocator keeps of it after a seal), and a
//! fresh process's growth from opening the snapshot (`loaded_rss_bytes_per_face`): what a
//! restarted indexer holds.
//!
//! Writes the base vectors, the queries and the exact top-10 (from the index's own brute-force
//! search) to OUT_DIR as `.fvecs`/`.ivecs`, so that `scripts/reference/bench_ann.py` runs
//! faiss and hnswlib on the same data, snapshots the index into OUT_DIR/data (the gRPC latency
//! bench serves it instead of building it again), and prints one JSON object per line.
//!
//! The build is kept: when OUT_DIR/build.json and a snapshot with VECTORS faces are there from an
//! earlier run, the index is loaded instead of built and the earlier build line is printed again
//! with `"reused_build": true`. At 1M vectors this lets the searches be measured on a quiet machine
//! after a build that took most of an hour.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use facedex_index::synthetic::{FaceLikeGenerator, FaceLikeVectors};
use facedex_index::{FaceStore, IndexConfig, SearchQuery, UnitCosineDistance};

const DIMENSION: usize = 512;
const SAMPLES_PER_IDENTITY: usize = 10;
const QUERIES: usize = 1000;
const K: usize = 10;
const INSERT_BATCH: usize = 10_000;
/// Runs the executable as the child that measures a load (see [`loaded_resident_bytes`]).
const RESIDENT_FLAG: &str = "--measure-loaded-resident-bytes";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    if let [flag, data_dir, config] = args.as_slice()
        && flag == RESIDENT_FLAG
    {
        return print_loaded_resident_bytes(Path::new(data_dir), serde_json::from_str(config)?);
    }
    let vectors: usize = args.first().map_or(Ok(100_000), |arg| arg.parse()).context("VECTORS")?;
    let max_connections: usize = args.get(1).map_or(Ok(16), |arg| arg.parse()).context("M")?;
    let ef_construction: usize = args
        .get(2)
        .map_or(Ok(200), |arg| arg.parse())
        .context("EF_CONSTRUCTION")?;
    let efs: Vec<usize> = args
        .get(3)
        .map_or("16,32,64,128,256", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("EF list")?;
    let out_dir = PathBuf::from(args.get(4).map_or(".facedex/bench/ann", String::as_str));
    let seal_segment_faces: usize = match args.get(5).map(String::as_str) {
        None | Some("default") => IndexConfig::default().seal_segment_faces,
        Some(arg) => arg.parse().context("SEAL_SEGMENT_FACES")?,
    };
    std::fs::create_dir_all(&out_dir)?;

    let mut generator = FaceLikeGenerator::new(vectors / SAMPLES_PER_IDENTITY, DIMENSION, 42);
    let base = generator.dataset(SAMPLES_PER_IDENTITY);
    let queries = generator.queries(QUERIES);
    base.write_fvecs(&out_dir.join("base.fvecs"))?;
    queries.write_fvecs(&out_dir.join("queries.fvecs"))?;

    let config = IndexConfig {
        max_connections,
        ef_construction,
        expected_faces: base.len(),
        seal_segment_faces,
        ..IndexConfig::default()
    };
    if args.get(6).is_some_and(|arg| arg == "bare") {
        let seconds = bare_hnsw_rs_build(&base, max_connections, ef_construction);
        println!(
            "{}",
            serde_json::json!({
                "library": "hnsw_rs-bare", "kind": "build", "vectors": base.len(), "m": max_connections,
                "ef_construction": ef_construction, "build_seconds": seconds,
                "build_threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
            })
        );
    }
    let data_dir = out_dir.join("data");
    let build_record_path = out_dir.join("build.json");
    let (store, build_record) = match reuse_build(&data_dir, &build_record_path, &config, base.len())? {
        Some(reused) => reused,
        None => {
            let (store, record) = build(&data_dir, config.clone(), &base)?;
            std::fs::write(&build_record_path, record.to_string())?;
            (store, record)
        }
    };
    // The store is closed while a fresh process opens it, then opened again here.
    drop(store);
    let mut build_record = build_record;
    build_record["loaded_rss_bytes_per_face"] =
        serde_json::json!(loaded_resident_bytes(&data_dir, &config)? as f64 / base.len() as f64);
    let store = FaceStore::open(&data_dir, config)?;
    let index = store.index();
    build_record["sealed_faces"] = serde_json::json!(index.info().sealed_faces);

    // The exact top 10 of every query. A reused build has the same vectors and queries, so the
    // ground truth of the run that built it still holds (at 1M a brute-force pass takes minutes).
    let truth_path = out_dir.join("groundtruth.ivecs");
    let reused_truth = match build_record.get("reused_build") {
        Some(_) => read_ivecs(&truth_path)
            .ok()
            .filter(|truth| truth.len() == queries.len()),
        None => None,
    };
    let truth = match reused_truth {
        Some(truth) => truth,
        None => {
            let exact_started = Instant::now();
            let truth: Vec<Vec<usize>> = (0..queries.len())
                .map(|q| {
                    let query = SearchQuery {
                        exact: true,
                        ..SearchQuery::nearest(queries.vector(q).to_vec(), K)
                    };
                    index
                        .search(&query)
                        .map(|hits| hits.iter().map(|hit| hit.face_id.0 as usize).collect())
                })
                .collect::<Result<_, _>>()?;
            build_record["exact_qps"] = serde_json::json!(queries.len() as f64 / exact_started.elapsed().as_secs_f64());
            write_ivecs(&truth_path, &truth)?;
            truth
        }
    };
    println!("{build_record}");
    for ef in efs {
        let started = Instant::now();
        let mut found = 0usize;
        for (q, expected) in truth.iter().enumerate() {
            let query = SearchQuery {
                ef: Some(ef),
                ..SearchQuery::nearest(queries.vector(q).to_vec(), K)
            };
            let hits = index.search(&query)?;
            found += hits
                .iter()
                .filter(|hit| expected.contains(&(hit.face_id.0 as usize)))
                .count();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "library": "facedex", "kind": "search", "vectors": base.len(), "ef": ef, "threads": 1,
                "recall_at_10": found as f64 / (K * truth.len()) as f64, "qps": truth.len() as f64 / seconds,
            })
        );
    }
    Ok(())
}

/// Seconds `hnsw_rs` takes to insert `base` on its own, in the index's batches and level scale.
fn bare_hnsw_rs_build(base: &FaceLikeVectors, max_connections: usize, ef_construction: usize) -> f64 {
    let mut graph = hnsw_rs::hnsw::Hnsw::<f32, UnitCosineDistance>::new(
        max_connections,
        base.len(),
        16,
        ef_construction,
        UnitCosineDistance,
    );
    // The index's level scale (graph.rs); hnsw_rs prints its settings, which the script drops.
    graph.modify_level_scale(0.5);
    let started = Instant::now();
    for start in (0..base.len()).step_by(INSERT_BATCH) {
        let batch: Vec<(&[f32], usize)> = (start..(start + INSERT_BATCH).min(base.len()))
            .map(|id| (base.vector(id), id))
            .collect();
        graph.parallel_insert_slice(&batch);
    }
    started.elapsed().as_secs_f64()
}

/// Builds the index from scratch into `data_dir` and snapshots it; returns the build's JSON line.
fn build(data_dir: &Path, config: IndexConfig, base: &FaceLikeVectors) -> Result<(FaceStore, serde_json::Value)> {
    if data_dir.exists() {
        std::fs::remove_dir_all(data_dir)?;
    }
    let (max_connections, ef_construction, seal_segment_faces) = (
        config.max_connections,
        config.ef_construction,
        config.seal_segment_faces,
    );
    let store = FaceStore::open(data_dir, config)?;
    let rss_before = resident_bytes();
    let build_started = Instant::now();
    for start in (0..base.len()).step_by(INSERT_BATCH) {
        let records = (start..(start + INSERT_BATCH).min(base.len()))
            .map(|i| base.record(i))
            .collect();
        store.upsert(records)?;
    }
    let build_seconds = build_started.elapsed().as_secs_f64();
    let rss_after = resident_bytes();
    store.snapshot()?;
    // After the snapshot: it freezes the last inserts, so their reachability probe is counted.
    let info = store.index().info();
    let record = serde_json::json!({
        "library": "facedex", "kind": "build", "vectors": base.len(), "dimension": DIMENSION,
        "m": max_connections, "ef_construction": ef_construction, "seal_segment_faces": seal_segment_faces,
        "build_seconds": build_seconds,
        "build_threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "rss_bytes_per_face": (rss_after.saturating_sub(rss_before)) as f64 / base.len() as f64,
        "estimated_bytes_per_face": info.memory_bytes_estimate as f64 / base.len() as f64,
        "unreachable_points": info.unreachable_points,
    });
    Ok((store, record))
}

/// Loads an earlier run's snapshot when its build line says it was built with the same
/// parameters and it holds every vector; `None` means build again.
fn reuse_build(
    data_dir: &Path,
    build_record_path: &Path,
    config: &IndexConfig,
    vectors: usize,
) -> Result<Option<(FaceStore, serde_json::Value)>> {
    let Ok(text) = std::fs::read_to_string(build_record_path) else {
        return Ok(None);
    };
    let mut record: serde_json::Value = serde_json::from_str(&text).context("build.json")?;
    let same_build = record["vectors"] == vectors
        && record["m"] == config.max_connections
        && record["ef_construction"] == config.ef_construction
        && record["seal_segment_faces"] == config.seal_segment_faces;
    if !same_build || !data_dir.exists() {
        return Ok(None);
    }
    let store = FaceStore::open(data_dir, config.clone())?;
    if store.index().info().faces != vectors {
        return Ok(None);
    }
    record["reused_build"] = serde_json::json!(true);
    // What the searches run with: a load probes the saved list of unreachable faces again.
    record["unreachable_points"] = serde_json::json!(store.index().info().unreachable_points);
    Ok(Some((store, record)))
}

/// `.ivecs`: per row, the count as a little-endian i32, then the ids.
fn write_ivecs(path: &std::path::Path, rows: &[Vec<usize>]) -> Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    for row in rows {
        out.write_all(&(row.len() as i32).to_le_bytes())?;
        for id in row {
            out.write_all(&(*id as i32).to_le_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Reads what [`write_ivecs`] wrote.
fn read_ivecs(path: &Path) -> Result<Vec<Vec<usize>>> {
    let bytes = std::fs::read(path)?;
    let mut words = bytes
        .chunks_exact(4)
        .map(|word| i32::from_le_bytes([word[0], word[1], word[2], word[3]]));
    let mut rows = Vec::new();
    while let Some(count) = words.next() {
        let row: Vec<usize> = words.by_ref().take(count as usize).map(|id| id as usize).collect();
        anyhow::ensure!(row.len() == count as usize, "{} is truncated", path.display());
        rows.push(row);
    }
    Ok(rows)
}

/// Asks this executable, in a fresh process, how much opening the store at `data_dir` grows
/// its resident set: a process that built the index keeps what its allocator does not return.
fn loaded_resident_bytes(data_dir: &Path, config: &IndexConfig) -> Result<usize> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .arg(RESIDENT_FLAG)
        .arg(data_dir)
        .arg(serde_json::to_string(config)?)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "the load measurement failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    let line = text
        .lines()
        .find(|line| line.starts_with('{'))
        .context("no JSON from the load measurement")?;
    let value: serde_json::Value = serde_json::from_str(line)?;
    value["loaded_rss_bytes"]
        .as_u64()
        .map(|bytes| bytes as usize)
        .context("loaded_rss_bytes")
}

/// The child side of [`loaded_resident_bytes`].
fn print_loaded_resident_bytes(data_dir: &Path, config: IndexConfig) -> Result<()> {
    let before = resident_bytes();
    let store = FaceStore::open(data_dir, config)?;
    let after = resident_bytes();
    println!(
        "{}",
        serde_json::json!({"loaded_rss_bytes": after.saturating_sub(before), "faces": store.index().info().faces})
    );
    Ok(())
}

/// Resident set size from /proc (0 where there is none).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
