//! Throughput of the whole vision path (read + decode + detect + align + embed) over a set of
//! photos through the one photo front end (`PhotoAnalyzer` over `LocalModels`, as `facedex
//! detect` runs it), as photos/s and faces/s, printed as one JSON object. Run through
//! `scripts/bench-vision`, which runs InsightFace on the same photos in the same session. Like
//! InsightFace's detection + recognition, it runs no attribute model (`attributes_cost` does).
//!
//! Usage: `cargo bench -p facedex-pipeline --bench photos_per_second -- ASSETS_DIR ROUNDS [SETTING=VALUE...]`
//! where each setting overrides the vision default of that name: `cpu_prelu` (`depthwise_conv`,
//! `max` or `kernel`), `close_up_pass` (`true` or `false`) or `embed_batch_size`.

use std::path::PathBuf;
use std::time::Instant;

use facedex_pipeline::{StageTimings, Wanted};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::IntoDeserializer;

mod support;

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let assets = PathBuf::from(args.next().expect("usage: photos_per_second ASSETS_DIR ROUNDS"));
    let rounds: usize = args.next().map_or(10, |r| r.parse().expect("ROUNDS is a number"));
    let mut photos: Vec<PathBuf> = std::fs::read_dir(assets.join("photos"))
        .expect("ASSETS_DIR/photos")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.is_file())
        .collect();
    photos.sort();
    let mut config = facedex_vision::VisionConfig::with_assets_dir(&assets);
    let settings: Vec<String> = args.collect();
    let implementation = if settings.is_empty() {
        "facedex".to_owned()
    } else {
        format!("facedex ({})", settings.join(", "))
    };
    for setting in &settings {
        let (name, value) = setting.split_once('=').expect("a setting is NAME=VALUE");
        match name {
            // The names the config file takes, from the config type itself.
            "cpu_prelu" => {
                let parsed: Result<_, serde::de::value::Error> =
                    facedex_vision::CpuPrelu::deserialize(value.into_deserializer());
                config.cpu_prelu = parsed.unwrap_or_else(|error| panic!("cpu_prelu: {error}"));
            }
            "close_up_pass" => config.detection.close_up_pass = value.parse().expect("close_up_pass is true or false"),
            "embed_batch_size" => config.embed_batch_size = value.parse().expect("embed_batch_size is a number"),
            other => panic!("no setting {other:?}: cpu_prelu, close_up_pass or embed_batch_size"),
        }
    }
    let analyzer = support::analyzer_for(&config);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let in_flight = config.detection.batch_size * 2;
    let run = |rounds: usize| {
        let paths: Vec<PathBuf> = (0..rounds).flat_map(|_| photos.iter().cloned()).collect();
        let started = Instant::now();
        let (photo_count, face_count) = runtime.block_on(async {
            let mut results = futures::stream::iter(paths)
                .map(|path| {
                    let analyzer = analyzer.clone();
                    async move {
                        let bytes = tokio::fs::read(&path).await.expect("sample photo reads");
                        let name = path.display().to_string();
                        analyzer
                            .analyze(&name, bytes, Wanted::EMBEDDINGS, &mut StageTimings::default())
                            .await
                            .expect("sample photos decode")
                    }
                })
                .buffer_unordered(in_flight);
            let (mut photo_count, mut face_count) = (0usize, 0usize);
            while let Some(photo) = results.next().await {
                photo_count += 1;
                face_count += photo.faces.len();
            }
            (photo_count, face_count)
        });
        (photo_count, face_count, started.elapsed().as_secs_f64())
    };
    run(1); // warm-up: first runs allocate ONNX Runtime's arenas
    let (photo_count, face_count, seconds) = run(rounds);
    println!(
        "{{\"implementation\": \"{implementation}\", \"photos\": {photo_count}, \"faces\": {face_count}, \"seconds\": {seconds:.3}, \
         \"photos_per_s\": {:.2}, \"faces_per_s\": {:.2}}}",
        photo_count as f64 / seconds,
        face_count as f64 / seconds
    );
}
