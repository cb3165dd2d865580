//! What the models and an embed node do on this machine's execution provider (CUDA on a GPU
//! node, or the CPU): detector photos/s per batch size and embedder faces/s per batch size,
//! each with float planes and with 8-bit pixels normalised in the graph (`vision.model_input`),
//! then photos/s end to end: decode, detect, align, embed and the attribute models of the
//! sample photos through an embed service (`facedex embed`'s gRPC service, in this process)
//! fed by an ingest worker's photo front end with one decode thread per core. Writes one JSON
//! report (progress on standard error). `scripts/gpu-bench` builds and runs it.
//!
//! `model_throughput ASSETS_DIR PROVIDER SECONDS OUT_JSON` (PROVIDER: cpu or cuda:N; SECONDS
//! per measurement).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use facedex_pipeline::{BatchingConfig, LocalModels, PhotoAnalyzer, StageTimings, Wanted};
use facedex_server::{EmbedClientAuth, EmbedConfig, RemoteModels, serve_embedder};
use facedex_vision::align::aligned_crops;
use facedex_vision::letterbox::{Letterboxer, letterbox_geometry};
use facedex_vision::{ExecutionProvider, LetterboxedPhoto, ModelInput, VisionConfig, decode_photo, load_models};
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const DETECT_BATCHES: [usize; 4] = [1, 8, 32, 64];
const EMBED_BATCHES: [usize; 4] = [1, 16, 64, 256];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let [assets, provider, seconds, out] = args.as_slice() else {
        anyhow::bail!("usage: model_throughput ASSETS_DIR PROVIDER SECONDS OUT_JSON");
    };
    let seconds: f64 = seconds.parse().context("SECONDS")?;
    let mut vision = VisionConfig::with_assets_dir(std::path::Path::new(assets));
    vision.execution_provider = match provider.split_once(':') {
        Some(("cuda", device)) => ExecutionProvider::cuda(device.parse().context("cuda:N")?),
        _ if provider == "cpu" => ExecutionProvider::default(),
        _ => anyhow::bail!("PROVIDER is cpu or cuda:N, not {provider}"),
    };
    if let Ok(library) = std::env::var("ORT_DYLIB_PATH") {
        vision.onnxruntime_library_path = library.into();
    }
    let photos = sample_photos(&vision)?;
    ensure!(!photos.is_empty(), "no sample photos under {assets}/photos");

    let mut detect = Vec::new();
    let mut embed = Vec::new();
    for (input, model_input) in [("planes", ModelInput::Planes), ("pixels", ModelInput::Pixels)] {
        let config = VisionConfig {
            model_input,
            ..vision.clone()
        };
        let (mut detector, mut embedder) = load_models(&config)?;
        // Every photo at the full square input, the worst case and InsightFace's.
        let letterboxed: Vec<LetterboxedPhoto> = photos
            .iter()
            .map(|(_, photo)| {
                let geometry = letterbox_geometry(photo.width(), photo.height(), 640, false);
                Letterboxer::default().letterbox(photo, geometry)
            })
            .collect();
        let mut crops = Vec::new();
        for ((_, photo), boxed) in photos.iter().zip(&letterboxed) {
            let faces = detector.detect_letterboxed(&[boxed])?.remove(0);
            aligned_crops(photo, faces, &mut crops);
        }
        ensure!(!crops.is_empty(), "no faces in the sample photos");
        for batch in DETECT_BATCHES {
            let inputs: Vec<&LetterboxedPhoto> = letterboxed.iter().cycle().take(batch).collect();
            let rate = per_second(seconds, batch, || detector.detect_letterboxed(&inputs).map(drop))?;
            eprintln!("detect {input} batch {batch}: {rate:.1} photos/s");
            detect.push(json!({"input": input, "batch": batch, "photos_per_s": round(rate)}));
        }
        let faces = crops.len() / facedex_vision::align::CROP_BYTES;
        for batch in EMBED_BATCHES {
            let block: Vec<u8> = crops
                .chunks_exact(facedex_vision::align::CROP_BYTES)
                .cycle()
                .take(batch)
                .flatten()
                .copied()
                .collect();
            let rate = per_second(seconds, batch, || embedder.embed_blocks(&[&block]).map(drop))?;
            eprintln!("embed {input} batch {batch}: {rate:.1} faces/s ({faces} distinct faces)");
            embed.push(json!({"input": input, "batch": batch, "faces_per_s": round(rate)}));
        }
    }

    let end_to_end = end_to_end(&vision, &photos, seconds)?;
    let report = json!({
        "provider": vision.execution_provider.to_string(),
        "end_to_end_input": if vision.pixel_input() { "pixels" } else { "planes" },
        "onnxruntime_library": vision.onnxruntime_library_path.display().to_string(),
        "cores": std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        "seconds_per_measurement": seconds,
        "detect": detect,
        "embed": embed,
        "end_to_end": end_to_end,
    });
    std::fs::write(out, serde_json::to_string_pretty(&report)? + "\n").with_context(|| format!("writing {out}"))?;
    Ok(())
}

/// The sample photos, decoded, with their bytes.
fn sample_photos(vision: &VisionConfig) -> anyhow::Result<Vec<(Vec<u8>, image::RgbImage)>> {
    let dir = vision.calibration_photos_dir.clone();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path)?;
            let photo = decode_photo(&path.display().to_string(), &bytes, vision.max_image_pixels)?;
            Ok((bytes, photo))
        })
        .collect()
}

/// Items per second of `run`, which handles `items` per call, over at least `seconds` after
/// one warm-up call.
fn per_second(seconds: f64, items: usize, mut run: impl FnMut() -> facedex_vision::Result<()>) -> anyhow::Result<f64> {
    run()?;
    let started = Instant::now();
    let mut calls = 0usize;
    while calls == 0 || started.elapsed().as_secs_f64() < seconds {
        run()?;
        calls += 1;
    }
    Ok((calls * items) as f64 / started.elapsed().as_secs_f64())
}

fn round(rate: f64) -> f64 {
    (rate * 10.0).round() / 10.0
}

/// Photos/s through the photo front end, over the models in this process and over an embed
/// service on loopback, with as many photos in flight as four per core.
fn end_to_end(
    vision: &VisionConfig,
    photos: &[(Vec<u8>, image::RgbImage)],
    seconds: f64,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let models = LocalModels::load(vision, &BatchingConfig::default())?;
    let shutdown = CancellationToken::new();
    let remote = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (service_models, stop) = (models.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = serve_embedder(listener, service_models, &EmbedConfig::default(), stop).await {
                eprintln!("embed service: {error}");
            }
        });
        let auth = EmbedClientAuth::from_config(&EmbedConfig::default())?;
        anyhow::Ok(RemoteModels::connect(&[format!("http://{address}")], &auth).await?)
    })?;
    let mut rows = Vec::new();
    let front_ends: [(&str, Arc<dyn facedex_pipeline::FaceModels>); 2] =
        [("in_process", models), ("embed_service_grpc", remote)];
    for (path, models) in front_ends {
        let analyzer = Arc::new(PhotoAnalyzer::new(models, cores, vision));
        let in_flight = 4 * cores;
        let run = |count: usize| {
            runtime.block_on(async {
                let started = Instant::now();
                let faces: Vec<usize> = futures::stream::iter(photos.iter().cycle().take(count))
                    .map(|(bytes, _)| {
                        let analyzer = analyzer.clone();
                        let bytes = bytes.clone();
                        async move {
                            let analysed = analyzer
                                .analyze("photo", bytes, Wanted::ALL, &mut StageTimings::default())
                                .await?;
                            anyhow::Ok(analysed.faces.len())
                        }
                    })
                    .buffer_unordered(in_flight)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<anyhow::Result<_>>()?;
                anyhow::Ok((faces.iter().sum::<usize>(), started.elapsed().as_secs_f64()))
            })
        };
        run(photos.len())?; // warm-up
        // Grow the run until it lasts `seconds`.
        let mut count = photos.len();
        let (faces, elapsed) = loop {
            let (faces, elapsed) = run(count)?;
            if elapsed >= seconds || count > 1_000_000 {
                break (faces, elapsed);
            }
            count = ((count as f64 * seconds / elapsed.max(1e-3)).ceil() as usize).max(count * 2);
        };
        let (photos_per_s, faces_per_s) = (count as f64 / elapsed, faces as f64 / elapsed);
        eprintln!("end to end, {path}: {photos_per_s:.1} photos/s, {faces_per_s:.1} faces/s");
        rows.push(json!({
            "path": path,
            "decode_threads": cores,
            "photos": count,
            "photos_per_s": round(photos_per_s),
            "faces_per_s": round(faces_per_s),
        }));
    }
    shutdown.cancel();
    Ok(rows)
}
