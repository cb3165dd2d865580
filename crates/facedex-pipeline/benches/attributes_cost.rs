//! What the per-face models cost: photos/s of decode + detect + align + embed over the sample
//! photos with the attribute models (age and gender by default) off and on, in one run. Off is
//! `vision.attributes = []`; the quality score is computed either way. Prints a Markdown table
//! for BENCHMARKS.md.
//!
//! Usage: `cargo bench -p facedex-pipeline --bench attributes_cost -- ASSETS_DIR ROUNDS`

use std::path::PathBuf;

use facedex_pipeline::Wanted;
use facedex_vision::VisionConfig;

mod support;

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let assets = PathBuf::from(args.next().expect("usage: attributes_cost ASSETS_DIR ROUNDS"));
    let rounds: usize = args.next().map_or(10, |r| r.parse().expect("ROUNDS is a number"));
    let photos = support::sample_photos(&assets);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let defaults = VisionConfig::with_assets_dir(&assets);
    let models: Vec<&str> = defaults.attributes.iter().map(|model| model.name.as_str()).collect();
    println!("| attribute models | photos | faces | photos/s | faces/s | vs off |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut off_rate = None;
    for on in [false, true] {
        let config = VisionConfig {
            attributes: if on { defaults.attributes.clone() } else { Vec::new() },
            ..defaults.clone()
        };
        let analyzer = support::analyzer_for(&config);
        let in_flight = config.detection.batch_size * 2;
        let run = |rounds| support::analyse_rounds(&runtime, &analyzer, &photos, rounds, Wanted::ALL, in_flight);
        run(1); // warm-up
        let (analysed, seconds) = run(rounds);
        let faces: usize = analysed.iter().map(|photo| photo.faces.len()).sum();
        let rate = analysed.len() as f64 / seconds;
        let off = *off_rate.get_or_insert(rate);
        println!(
            "| {} | {} | {faces} | {rate:.2} | {:.1} | {:.2}× |",
            if on { models.join(" + ") } else { "off".to_owned() },
            analysed.len(),
            faces as f64 / seconds,
            rate / off
        );
    }
}
