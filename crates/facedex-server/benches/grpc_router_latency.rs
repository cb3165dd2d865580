//! Search latency through `facedex router` over SHARDS shards against one index of the same
//! faces: face-like vectors split across SHARDS face stores by face id (as partitions split
//! them), each served in-process on a loopback port, a router over them, and one server over
//! all of them; then CLIENTS concurrent clients send REQUESTS searches each, to the single
//! index and to the router in turn (ROUNDS rounds, interleaved). Also reports how many of the
//! router's top-10 answers are the single index's exactly. Everything shares this machine's
//! cores.
//!
//! `cargo bench -p facedex-server --bench grpc_router_latency -- VECTORS SHARDS CLIENTS REQUESTS ROUNDS`
//! Prints one JSON object per round and target, then a summary.

use std::sync::Arc;

use anyhow::{Context, Result};
use facedex_index::synthetic::FaceLikeGenerator;
use facedex_index::{FaceStore, IndexConfig};
use facedex_proto::face_search_client::FaceSearchClient;
use facedex_server::{BoundServer, RouterConfig, ShardSet, serve_router};
use tokio_util::sync::CancellationToken;

#[path = "support/load.rs"]
mod load;

const DIMENSION: usize = 512;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let number = |at: usize, default: usize, name: &str| -> Result<usize> {
        args.get(at)
            .map_or(Ok(default), |arg| arg.parse())
            .context(name.to_owned())
    };
    let vectors = number(0, 20_000, "VECTORS")?;
    let shards = number(1, 2, "SHARDS")?.max(1);
    let clients = number(2, 8, "CLIENTS")?;
    let requests = number(3, 300, "REQUESTS")?;
    let rounds = number(4, 2, "ROUNDS")?;

    let mut generator = FaceLikeGenerator::new(vectors / 10, DIMENSION, 42);
    let base = generator.dataset(10);
    let queries = Arc::new(generator.queries(1000));
    let folders: Vec<tempfile::TempDir> = (0..=shards).map(|_| tempfile::tempdir()).collect::<Result<_, _>>()?;
    let open = |folder: &tempfile::TempDir, faces: usize| {
        FaceStore::open(
            folder.path(),
            IndexConfig {
                expected_faces: faces,
                ..IndexConfig::default()
            },
        )
    };
    let whole = open(&folders[0], vectors)?;
    let parts: Vec<FaceStore> = folders[1..]
        .iter()
        .map(|folder| open(folder, vectors / shards + 1))
        .collect::<Result<_, _>>()?;
    for start in (0..base.len()).step_by(10_000) {
        let records: Vec<_> = (start..(start + 10_000).min(base.len()))
            .map(|position| base.record(position))
            .collect();
        let mut split: Vec<Vec<_>> = vec![Vec::new(); shards];
        for record in &records {
            let shard = u64::from_str_radix(&record.face_id.to_string()[..8], 16)? as usize % shards;
            split[shard].push(record.clone());
        }
        whole.upsert(records)?;
        for (part, records) in parts.iter().zip(split) {
            part.upsert(records)?;
        }
    }
    drop(base);

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let config = load::loopback_server();
        let shutdown = CancellationToken::new();
        let mut servers = Vec::new();
        let mut serve = async |store: FaceStore| -> Result<String> {
            let bound = BoundServer::bind(&config).await?;
            let url = format!("http://{}", bound.local_addr());
            servers.push(tokio::spawn(bound.serve(
                Arc::new(store),
                None,
                config.clone(),
                shutdown.clone(),
            )));
            Ok(url)
        };
        let whole_url = serve(whole).await?;
        let mut shard_urls = Vec::new();
        for part in parts {
            shard_urls.push(serve(part).await?);
        }
        let router_config = RouterConfig {
            shards: shard_urls.iter().map(|url| vec![url.clone()]).collect(),
            ..RouterConfig::default()
        };
        let bound = BoundServer::bind(&config).await?;
        let router_url = format!("http://{}", bound.local_addr());
        let router = tokio::spawn(serve_router(
            bound,
            std::sync::Arc::new(ShardSet::connect(&router_config)?),
            config.clone(),
            shutdown.clone(),
        ));

        // How often the router's top 10 is the single index's, face for face.
        let (mut direct, mut routed) = (
            FaceSearchClient::connect(whole_url.clone()).await?,
            FaceSearchClient::connect(router_url.clone()).await?,
        );
        let mut same = 0;
        for index in 0..queries.len() {
            let ids = |response: facedex_proto::SearchResponse| -> Vec<String> {
                response.results[0]
                    .hits
                    .iter()
                    .filter_map(|hit| hit.face.as_ref().map(|face| face.face_id.clone()))
                    .collect()
            };
            let one = ids(direct.search(load::search_request(&queries, index)).await?.into_inner());
            let merged = ids(routed.search(load::search_request(&queries, index)).await?.into_inner());
            same += usize::from(one == merged);
        }

        let mut best = [(f64::MAX, f64::MAX, 0.0f64); 2];
        for round in 0..rounds {
            for (target, url) in [("one_index", &whole_url), ("router", &router_url)]
                .into_iter()
                .enumerate()
            {
                let load = load::run(url.1, &queries, clients, requests).await?;
                let (p50, p99) = (load.percentile(0.50), load.percentile(0.99));
                println!(
                    "{}",
                    serde_json::json!({
                        "kind": "grpc_router", "round": round, "target": url.0, "vectors": vectors, "shards": shards,
                        "clients": clients, "requests": load.latencies_ms.len(), "qps": load.qps,
                        "p50_ms": p50, "p99_ms": p99,
                    })
                );
                let kept = &mut best[target];
                *kept = (kept.0.min(p50), kept.1.min(p99), kept.2.max(load.qps));
            }
        }
        println!(
            "{}",
            serde_json::json!({
                "kind": "grpc_router_summary", "vectors": vectors, "shards": shards, "clients": clients,
                "same_top10_share": same as f64 / queries.len() as f64,
                "one_index": {"p50_ms": best[0].0, "p99_ms": best[0].1, "qps": best[0].2},
                "router": {"p50_ms": best[1].0, "p99_ms": best[1].1, "qps": best[1].2},
                "router_p50_ratio": best[1].0 / best[0].0, "router_p99_ratio": best[1].1 / best[0].1,
            })
        );
        shutdown.cancel();
        router.await??;
        for server in servers {
            server.await??;
        }
        anyhow::Ok(())
    })
}
