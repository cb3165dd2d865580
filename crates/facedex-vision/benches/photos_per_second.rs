//! Throughput of the whole vision path (read + decode + detect + align + embed) over a set of
//! photos, as photos/s and faces/s, printed as one JSON object. Run through
//! `scripts/bench-vision`, which runs InsightFace on the same photos in the same session.
//!
//! Usage: `cargo bench -p facedex-vision --bench photos_per_second -- ASSETS_DIR ROUNDS`

use std::path::PathBuf;
use std::time::Instant;

use facedex_vision::{FaceAnalyzer, PhotoFile, PipelineOptions, VisionConfig, analyze_photos};

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let assets = PathBuf::from(args.next().expect("usage: photos_per_second ASSETS_DIR ROUNDS"));
    let rounds: usize = args.next().map_or(10, |r| r.parse().expect("ROUNDS is a number"));
    let mut photos: Vec<PathBuf> = std::fs::read_dir(assets.join("photos"))
        .expect("ASSETS_DIR/photos")
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    photos.sort();
    let config = VisionConfig::with_assets_dir(&assets);
    let mut analyzer = FaceAnalyzer::load(&config).expect("models load");
    let options = PipelineOptions::from_config(&config, true);
    let mut run = |rounds: usize| {
        let sources: Vec<PhotoFile> = (0..rounds)
            .flat_map(|_| photos.iter().cloned().map(PhotoFile))
            .collect();
        let (mut photo_count, mut face_count) = (0usize, 0usize);
        let started = Instant::now();
        analyze_photos(&mut analyzer, sources, options, |result| {
            let photo = result.outcome.expect("sample photos decode");
            photo_count += 1;
            face_count += photo.faces.len();
        })
        .expect("pipeline runs");
        (photo_count, face_count, started.elapsed().as_secs_f64())
    };
    run(1); // warm-up: first runs allocate ONNX Runtime's arenas
    let (photo_count, face_count, seconds) = run(rounds);
    println!(
        "{{\"implementation\": \"facedex\", \"photos\": {photo_count}, \"faces\": {face_count}, \"seconds\": {seconds:.3}, \
         \"photos_per_s\": {:.2}, \"faces_per_s\": {:.2}}}",
        photo_count as f64 / seconds,
        face_count as f64 / seconds
    );
}
