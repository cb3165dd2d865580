//! Helpers shared by the end-to-end tests: where the assets are, the reference fixture, and
//! box/vector comparisons.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use anyhow::{Context, ensure};

use facedex_vision::VisionConfig;
use serde::Deserialize;

/// `.facedex/assets` of the repository (or `FACEDEX_ASSETS_DIR`); fails loudly when the assets
/// are missing, so a machine without them fails the tests instead of skipping them.
pub fn assets_dir() -> PathBuf {
    let dir = std::env::var_os("FACEDEX_ASSETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.facedex/assets"));
    assert!(
        dir.join("models/scrfd_500m_bnkps.onnx").is_file(),
        "models missing under {}: run scripts/setup first",
        dir.display()
    );
    dir
}

/// A sample photo fetched by `scripts/setup`.
pub fn photo(name: &str) -> PathBuf {
    assets_dir().join("photos").join(name)
}

/// The default vision settings, pointed at the repository's assets.
pub fn vision_config() -> VisionConfig {
    VisionConfig::with_assets_dir(&assets_dir())
}

/// The sample photos `names` through one photo front end with `config`'s models, all in flight
/// at once so detection and the models run in shared batches, as they do in `facedex detect`
/// and `facedex index`; one list of faces per photo, in the order given.
pub fn analyze_photos(
    names: &[&str],
    config: &VisionConfig,
    wanted: facedex_pipeline::Wanted,
) -> Vec<Vec<facedex_vision::Face>> {
    use facedex_pipeline::{BatchingConfig, LocalModels, PhotoAnalyzer, StageTimings};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let models = LocalModels::load(config, &BatchingConfig::default()).expect("models load");
        let analyzer = PhotoAnalyzer::new(models, 2, config);
        let analyses = names.iter().map(|name| {
            let analyzer = &analyzer;
            async move {
                let bytes = std::fs::read(photo(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
                let photo = analyzer
                    .analyze(name, bytes, wanted, &mut StageTimings::default())
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                photo.faces
            }
        });
        futures::future::join_all(analyses).await
    })
}

/// The `facedex` binary with the repository's assets configured through the environment:
/// this build's, or the one `FACEDEX_BIN` names (benchmarks compare builds with it).
pub fn facedex_command() -> std::process::Command {
    let config = vision_config();
    let mut command = std::process::Command::new(facedex_binary());
    command
        .env(
            "FACEDEX__VISION__ONNXRUNTIME_LIBRARY_PATH",
            &config.onnxruntime_library_path,
        )
        .env("FACEDEX__VISION__DETECTOR_MODEL_PATH", &config.detector_model_path)
        .env("FACEDEX__VISION__EMBEDDER_MODEL_PATH", &config.embedder_model_path);
    command
}

/// This build's `facedex` binary, or the one `FACEDEX_BIN` names.
pub fn facedex_binary() -> PathBuf {
    std::env::var_os("FACEDEX_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_facedex")), PathBuf::from)
}

/// InsightFace's output for the sample photos (`tests/fixtures/insightface_faces.json`).
#[derive(Debug, Deserialize)]
pub struct ReferenceDocument {
    pub generator: String,
    pub photos: Vec<ReferencePhoto>,
}

#[derive(Debug, Deserialize)]
pub struct ReferencePhoto {
    pub path: String,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<ReferenceFace>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceFace {
    pub bbox: [f32; 4],
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
    pub embedding: Vec<f32>,
}

pub fn reference() -> ReferenceDocument {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/insightface_faces.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture parses")
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (continuous areas).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let width = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let height = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let intersection = width * height;
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    intersection / (area(a) + area(b) - intersection)
}

/// Dot product, the cosine similarity of unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "embedding dimensions differ");
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub mod cluster;
pub mod people;
pub mod prometheus;
pub mod serve;
pub mod topics;

/// `GET /metrics`, parsed to series (`name{labels}`) and values.
pub fn scrape_metrics(addr: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let body = http_get(addr, "/metrics")?;
    Ok(body
        .lines()
        .filter(|line| line.starts_with("facedex_"))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect())
}

/// The body of `GET http://ADDR/PATH_AND_QUERY`, which must answer 200.
pub fn http_get(addr: &str, path_and_query: &str) -> anyhow::Result<String> {
    let (status, body) = http_request(addr, "GET", path_and_query, &[], &[])?;
    let body = String::from_utf8(body)?;
    ensure!(status == 200, "{path_and_query}: {status}\n{body}");
    Ok(body)
}

/// `METHOD http://ADDR/PATH_AND_QUERY` with `headers` and `body`: the status and the body.
/// HTTP/1.0, so that no server answers in chunks.
pub fn http_request(
    addr: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("http://{addr}{path_and_query}"))?;
    let mut request = format!(
        "{method} {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .context("an HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("an HTTP status line: {head}"))?;
    Ok((status, response[split + 4..].to_vec()))
}
