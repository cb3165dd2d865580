//! What the per-face models cost: photos/s of decode + detect + align + embed over the sample
//! photos with the attribute models (age and gender by default) off, on as their files are
//! (f32) and on in int8, in one run, taking turns. Off is `vision.attributes = []`; the quality
//! score is computed either way. Prints a Markdown table for BENCHMARKS.md.
//!
//! Usage: `cargo bench -p facedex-pipeline --bench attributes_cost -- ASSETS_DIR ROUNDS`

use std::path::PathBuf;

use facedex_pipeline::Wanted;
use facedex_vision::VisionConfig;
use facedex_vision::attributes::{AttributeModelConfig, ModelPrecision};

mod support;

/// Runs of each configuration; the best counts.
const REPEATS: usize = 3;

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let assets = PathBuf::from(args.next().expect("usage: attributes_cost ASSETS_DIR ROUNDS"));
    let rounds: usize = args.next().map_or(10, |r| r.parse().expect("ROUNDS is a number"));
    let photos = support::sample_photos(&assets);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let defaults = VisionConfig::with_assets_dir(&assets);
    let models: Vec<&str> = defaults.attributes.iter().map(|model| model.name.as_str()).collect();
    let with_models = |precision: Option<ModelPrecision>| {
        let attributes = defaults
            .attributes
            .iter()
            .filter(|_| precision.is_some())
            .map(|model| AttributeModelConfig {
                precision: precision.unwrap_or_default(),
                ..model.clone()
            })
            .collect();
        VisionConfig {
            attributes,
            ..defaults.clone()
        }
    };
    let configs: Vec<(String, VisionConfig)> = vec![
        ("off".to_owned(), with_models(None)),
        (
            format!("{} (f32)", models.join(" + ")),
            with_models(Some(ModelPrecision::F32)),
        ),
        (
            format!("{} (int8)", models.join(" + ")),
            with_models(Some(ModelPrecision::Int8)),
        ),
    ];
    let analyzers: Vec<_> = configs
        .iter()
        .map(|(_, config)| support::analyzer_for(config))
        .collect();
    let in_flight = defaults.detection.batch_size * 2;
    let run = |analyzer, rounds| support::analyse_rounds(&runtime, analyzer, &photos, rounds, Wanted::ALL, in_flight);
    for analyzer in &analyzers {
        run(analyzer, 1); // warm-up
    }
    // The configurations take turns, REPEATS times each, and each keeps its best run: the machine's
    // speed drifts between minutes, and alternating exposes both to the same drift.
    let mut best: Vec<Option<(usize, usize, f64)>> = vec![None; analyzers.len()];
    for _ in 0..REPEATS {
        for (analyzer, best) in analyzers.iter().zip(&mut best) {
            let (analysed, seconds) = run(analyzer, rounds);
            let faces = analysed.iter().map(|photo| photo.faces.len()).sum();
            if best.is_none_or(|(_, _, fastest)| seconds < fastest) {
                *best = Some((analysed.len(), faces, seconds));
            }
        }
    }
    println!("| attribute models | photos | faces | photos/s | faces/s | vs off |");
    println!("|---|---:|---:|---:|---:|---:|");
    let off_rate = best[0].map_or(f64::NAN, |(photos, _, seconds)| photos as f64 / seconds);
    for ((name, _), best) in configs.iter().zip(best) {
        let (photos, faces, seconds) = best.expect("measured");
        let rate = photos as f64 / seconds;
        println!(
            "| {name} | {photos} | {faces} | {rate:.2} | {:.1} | {:.2}× |",
            faces as f64 / seconds,
            rate / off_rate
        );
    }
}
