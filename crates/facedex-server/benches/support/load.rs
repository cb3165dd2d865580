//! What the search benches share: the server's settings, and the client side: CLIENTS tasks,
//! each with its own connection to `url`, sending REQUESTS embedding searches one after the
//! other, and the latencies seen.

use std::sync::Arc;
use std::time::Instant;

use facedex_index::synthetic::FaceLikeVectors;
use facedex_proto::face_search_client::FaceSearchClient;
use facedex_proto::{Embedding, SearchRequest, search_request};
use facedex_server::ServerConfig;

/// What one load run saw.
pub struct Load {
    /// Every search's latency in milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
    /// Searches per second over the run.
    pub qps: f64,
}

impl Load {
    /// The latency at quantile `q` (0 to 1).
    pub fn percentile(&self, q: f64) -> f64 {
        let at = ((self.latencies_ms.len() as f64 * q) as usize).min(self.latencies_ms.len() - 1);
        self.latencies_ms[at]
    }
}

/// A server on a free loopback port that never snapshots (the benches measure searches).
pub fn loopback_server() -> ServerConfig {
    ServerConfig {
        listen_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        snapshot_interval_secs: 0,
        ..ServerConfig::default()
    }
}

/// The top-10 search for query `index` of `queries`.
pub fn search_request(queries: &FaceLikeVectors, index: usize) -> SearchRequest {
    SearchRequest {
        query: Some(search_request::Query::Embedding(Embedding {
            values: queries.vector(index % queries.len()).to_vec(),
        })),
        limit: Some(10),
        ..SearchRequest::default()
    }
}

/// Runs the load against `url`.
pub async fn run(url: &str, queries: &Arc<FaceLikeVectors>, clients: usize, requests: usize) -> anyhow::Result<Load> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_index in 0..clients {
        let (url, queries) = (url.to_owned(), Arc::clone(queries));
        tasks.push(tokio::spawn(async move {
            let mut client = FaceSearchClient::connect(url).await?;
            let mut latencies = Vec::with_capacity(requests);
            for request_index in 0..requests {
                let request = search_request(&queries, client_index * requests + request_index);
                let sent = Instant::now();
                client.search(request).await?;
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies_ms = Vec::new();
    for task in tasks {
        latencies_ms.extend(task.await??);
    }
    let qps = latencies_ms.len() as f64 / started.elapsed().as_secs_f64();
    latencies_ms.sort_by(f64::total_cmp);
    Ok(Load { latencies_ms, qps })
}
