//! Search by photo under load: `facedex index` the sample photos, `facedex serve` them, and
//! have CLIENTS concurrent gRPC clients send photo queries (the sample photos in turn) until
//! each has sent REQUESTS. Prints photos/s and the latency percentiles as one JSON object.
//! `FACEDEX_BIN` points it at another build of `facedex` (an older one, for before/after rows
//! in one run); by default it runs this build's.
//!
//! `cargo bench -p facedex-cli --bench photo_search -- [REQUESTS] [CLIENTS]` (defaults 20, 8).

#[path = "../../../tests/support/mod.rs"]
#[allow(missing_docs, clippy::unwrap_used)]
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use facedex_proto::face_search_client::FaceSearchClient;
use facedex_proto::{SearchRequest, search_request};
use support::{assets_dir, facedex_command};
use tonic::transport::Channel;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let requests: usize = args.first().map_or(Ok(20), |arg| arg.parse()).context("REQUESTS")?;
    let clients: usize = args.get(1).map_or(Ok(8), |arg| arg.parse()).context("CLIENTS")?;
    let photos_dir = assets_dir().join("photos");
    let mut photos = Vec::new();
    for entry in std::fs::read_dir(&photos_dir)? {
        // The photos only, not the labelled folders beside them.
        let path = entry?.path();
        if path.is_file() {
            photos.push(std::fs::read(path)?);
        }
    }
    ensure!(!photos.is_empty(), "no sample photos in {}", photos_dir.display());

    let data = tempfile::tempdir()?;
    let data_dir = data.path().to_str().context("utf-8 path")?;
    let indexed = facedex_command()
        .args([
            "index",
            photos_dir.to_str().context("utf-8 path")?,
            "--data-dir",
            data_dir,
        ])
        .stdout(Stdio::null())
        .status()?;
    ensure!(indexed.success(), "facedex index failed");
    let mut server = facedex_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdout = BufReader::new(server.stdout.take().context("stdout")?);
    let mut line = String::new();
    let address = loop {
        line.clear();
        ensure!(stdout.read_line(&mut line)? > 0, "facedex serve exited before serving");
        if let Some(rest) = line.strip_prefix("facedex: serving FaceSearch on ") {
            break rest.split_whitespace().next().context("address")?.to_owned();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));

    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(load(&format!("http://{address}"), &photos, requests, clients));
    let _ = server.kill();
    let _ = server.wait();
    let (mut latencies, took) = result?;
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{{\"kind\": \"photo_search\", \"binary\": {:?}, \"clients\": {clients}, \"requests\": {}, \"seconds\": {:.3}, \
         \"photos_per_s\": {:.2}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}}}",
        std::env::var("FACEDEX_BIN").unwrap_or_else(|_| "this build".into()),
        latencies.len(),
        took.as_secs_f64(),
        latencies.len() as f64 / took.as_secs_f64(),
        percentile(0.5),
        percentile(0.99)
    );
    Ok(())
}

/// `clients` clients, each sending `requests` photo queries one after another; returns every
/// latency and the wall time of the whole load.
async fn load(
    url: &str,
    photos: &[Vec<u8>],
    requests: usize,
    clients: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let channel = Channel::from_shared(url.to_owned())?.connect().await?;
    let query = |bytes: &Vec<u8>| SearchRequest {
        query: Some(search_request::Query::Image(bytes.clone())),
        ..SearchRequest::default()
    };
    // Warm-up: the first runs allocate ONNX Runtime's arenas.
    for photo in photos.iter().take(2) {
        FaceSearchClient::new(channel.clone()).search(query(photo)).await?;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mut search = FaceSearchClient::new(channel.clone());
        let queries: Vec<SearchRequest> = (0..requests)
            .map(|turn| query(&photos[(client + turn) % photos.len()]))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(queries.len());
            for request in queries {
                let sent = Instant::now();
                search.search(request).await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((latencies, started.elapsed()))
}
