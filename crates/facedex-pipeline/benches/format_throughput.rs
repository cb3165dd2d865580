//! Per-format cost of reading a photo: decode alone, and decode + detect through the photo
//! front end (as `facedex detect` runs it, without embeddings), for t1.jpg and the same photo
//! in every format of `scripts/formats/make-photos`. Prints a Markdown table for BENCHMARKS.md.
//!
//! Usage: `cargo bench -p facedex-pipeline --bench format_throughput -- ASSETS_DIR ROUNDS`

use std::path::PathBuf;
use std::time::Instant;

use facedex_pipeline::{StageTimings, Wanted};
use facedex_vision::decode_photo;
use futures::StreamExt;

mod support;

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let assets = PathBuf::from(args.next().expect("usage: format_throughput ASSETS_DIR ROUNDS"));
    let rounds: usize = args.next().map_or(10, |r| r.parse().expect("ROUNDS is a number"));
    let mut photos = vec![assets.join("photos/t1.jpg")];
    let mut formats: Vec<PathBuf> = std::fs::read_dir(assets.join("formats"))
        .expect("ASSETS_DIR/formats: run scripts/formats/make-photos")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| {
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
            !name.starts_with('.') && !name.ends_with(".json") && !name.contains("-frame")
        })
        .collect();
    formats.sort();
    photos.extend(formats);

    let (config, analyzer) = support::local_analyzer(&assets);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let in_flight = config.detection.batch_size * 2;
    println!("| photo | bytes | decode ms | decode + detect photos/s | vs JPEG |");
    println!("|---|---:|---:|---:|---:|");
    let mut jpeg_rate = None;
    for path in &photos {
        let bytes = std::fs::read(path).expect("photo reads");
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_owned();
        let started = Instant::now();
        for _ in 0..rounds {
            decode_photo(&name, &bytes, config.max_image_pixels).expect("decodes");
        }
        let decode_ms = started.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
        let run = |count: usize| {
            let started = Instant::now();
            runtime.block_on(async {
                let mut results = futures::stream::iter(0..count)
                    .map(|_| {
                        let (analyzer, bytes, name) = (analyzer.clone(), bytes.clone(), name.clone());
                        async move {
                            analyzer
                                .analyze(&name, bytes, Wanted::DETECTIONS, &mut StageTimings::default())
                                .await
                                .expect("analyses")
                        }
                    })
                    .buffer_unordered(in_flight);
                while results.next().await.is_some() {}
            });
            count as f64 / started.elapsed().as_secs_f64()
        };
        run(2); // warm-up
        let rate = run(rounds);
        let jpeg = *jpeg_rate.get_or_insert(rate);
        println!(
            "| {name} | {} | {decode_ms:.1} | {rate:.2} | {:.2}× |",
            bytes.len(),
            rate / jpeg
        );
    }
}
