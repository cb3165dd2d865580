//! Search latency over gRPC with concurrent clients: an in-process server on a loopback TCP
//! port over a data directory of face-like vectors, and CLIENTS tasks, each with its own
//! connection, sending REQUESTS searches one after the other.
//!
//! `cargo bench -p facedex-server --bench grpc_search_latency -- VECTORS CLIENTS REQUESTS [DATA_DIR]`
//! With DATA_DIR (written by the `ann_recall_qps` bench for the same VECTORS) the index is
//! loaded from its snapshot; without, it is built here. Prints one JSON object.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use facedex_index::synthetic::FaceLikeGenerator;
use facedex_index::{FaceStore, IndexConfig};
use facedex_server::BoundServer;
use tokio_util::sync::CancellationToken;

#[path = "support/load.rs"]
mod load;

const DIMENSION: usize = 512;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let vectors: usize = args.first().map_or(Ok(100_000), |arg| arg.parse()).context("VECTORS")?;
    let clients: usize = args.get(1).map_or(Ok(8), |arg| arg.parse()).context("CLIENTS")?;
    let requests: usize = args.get(2).map_or(Ok(500), |arg| arg.parse()).context("REQUESTS")?;
    let given_data_dir = args.get(3).map(std::path::PathBuf::from);

    // The same seed and order as the ann_recall_qps bench: the same vectors and queries.
    let mut generator = FaceLikeGenerator::new(vectors / 10, DIMENSION, 42);
    let base = generator.dataset(10);
    let queries = Arc::new(generator.queries(1000));
    let temporary = tempfile::tempdir()?;
    let data_dir = given_data_dir.unwrap_or_else(|| temporary.path().to_path_buf());
    let store = FaceStore::open(
        &data_dir,
        IndexConfig {
            expected_faces: vectors,
            ..IndexConfig::default()
        },
    )?;
    let loaded = store.index().info().faces;
    anyhow::ensure!(
        loaded == 0 || loaded == vectors,
        "{} holds {loaded} faces, not {vectors}",
        data_dir.display()
    );
    let build_started = Instant::now();
    let to_build = if loaded == 0 { base.len() } else { 0 };
    for start in (0..to_build).step_by(10_000) {
        let records = (start..(start + 10_000).min(base.len()))
            .map(|position| base.record(position))
            .collect();
        store.upsert(records)?;
    }
    let build_seconds = build_started.elapsed().as_secs_f64();
    drop(base);

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let config = load::loopback_server();
        let bound = BoundServer::bind(&config).await?;
        let url = format!("http://{}", bound.local_addr());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(bound.serve(Arc::new(store), None, config, shutdown.clone()));

        let load = load::run(&url, &queries, clients, requests).await?;
        shutdown.cancel();
        server.await??;
        println!(
            "{}",
            serde_json::json!({
                "kind": "grpc_search", "vectors": vectors, "built_here": to_build > 0, "clients": clients,
                "requests": load.latencies_ms.len(), "build_seconds": build_seconds, "qps": load.qps,
                "p50_ms": load.percentile(0.50), "p99_ms": load.percentile(0.99), "max_ms": load.percentile(1.0),
            })
        );
        anyhow::Ok(())
    })
}
