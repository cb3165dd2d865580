//! What the close-up pass costs on ordinary photos: photos/s of decode + detect + align +
//! embed over the sample photos with `vision.detection.close_up_pass` off and on, in one run,
//! and how many photos the pass ran for. Prints a Markdown table for BENCHMARKS.md.
//!
//! Usage: `cargo bench -p facedex-pipeline --bench close_up_cost -- ASSETS_DIR ROUNDS`

use std::path::PathBuf;

use facedex_pipeline::Wanted;
use facedex_vision::VisionConfig;
use facedex_vision::close_up::needs_close_up_pass;

mod support;

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let assets = PathBuf::from(args.next().expect("usage: close_up_cost ASSETS_DIR ROUNDS"));
    let rounds: usize = args.next().map_or(10, |r| r.parse().expect("ROUNDS is a number"));
    let photos = support::sample_photos(&assets);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!("| close-up pass | photos | photos with a second pass | faces | photos/s | vs off |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut off_rate = None;
    let mut second_passes = 0;
    for close_up_pass in [false, true] {
        let mut config = VisionConfig::with_assets_dir(&assets);
        config.detection.close_up_pass = close_up_pass;
        let analyzer = support::analyzer_for(&config);
        let in_flight = config.detection.batch_size * 2;
        let run = |rounds| support::analyse_rounds(&runtime, &analyzer, &photos, rounds, Wanted::EMBEDDINGS, in_flight);
        run(1); // warm-up
        let (analysed, seconds) = run(rounds);
        let faces: usize = analysed.iter().map(|photo| photo.faces.len()).sum();
        let rate = analysed.len() as f64 / seconds;
        // The first pass is the same with the pass on or off: the photos whose faces without
        // the pass call for it are those it runs for.
        if !close_up_pass {
            second_passes = analysed
                .iter()
                .filter(|photo| {
                    let detections: Vec<_> = photo.faces.iter().map(|face| face.detection).collect();
                    needs_close_up_pass(&detections, photo.width, photo.height)
                })
                .count();
        }
        let off = *off_rate.get_or_insert(rate);
        println!(
            "| {} | {} | {} | {faces} | {rate:.2} | {:.2}× |",
            if close_up_pass { "on" } else { "off" },
            analysed.len(),
            if close_up_pass {
                second_passes.to_string()
            } else {
                "–".to_owned()
            },
            rate / off
        );
    }
}
