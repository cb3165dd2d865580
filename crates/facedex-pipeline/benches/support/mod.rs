//! What the vision benches share: the photo front end over the models in this process, set
//! up as `facedex detect` sets it up.
#![allow(dead_code)] // each bench uses a different subset

use std::path::Path;
use std::sync::Arc;

use facedex_pipeline::{BatchingConfig, LocalModels, PhotoAnalyzer};
use facedex_vision::VisionConfig;

/// The default vision settings over `assets`, and the photo front end they load.
pub fn local_analyzer(assets: &Path) -> (VisionConfig, Arc<PhotoAnalyzer>) {
    let config = VisionConfig::with_assets_dir(assets);
    let analyzer = analyzer_for(&config);
    (config, analyzer)
}

/// The photo front end `config` loads.
pub fn analyzer_for(config: &VisionConfig) -> Arc<PhotoAnalyzer> {
    let models = LocalModels::load(config, &BatchingConfig::default()).expect("models load");
    Arc::new(PhotoAnalyzer::new(
        models,
        PhotoAnalyzer::cpu_threads(config.decode_threads, true),
        config,
    ))
}

/// The sample photos under `assets/photos` (files only, not the labelled folders), by name,
/// with their bytes.
pub fn sample_photos(assets: &Path) -> Vec<(String, Vec<u8>)> {
    let mut photos: Vec<(String, Vec<u8>)> = std::fs::read_dir(assets.join("photos"))
        .expect("ASSETS_DIR/photos")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.is_file())
        .map(|path| (path.display().to_string(), std::fs::read(&path).expect("photo reads")))
        .collect();
    photos.sort();
    photos
}

/// Every photo `rounds` times through `analyzer` with what `wanted` asks, `in_flight` at once;
/// the analyses and the seconds they took.
pub fn analyse_rounds(
    runtime: &tokio::runtime::Runtime,
    analyzer: &Arc<PhotoAnalyzer>,
    photos: &[(String, Vec<u8>)],
    rounds: usize,
    wanted: facedex_pipeline::Wanted,
    in_flight: usize,
) -> (Vec<facedex_pipeline::AnalyzedPhoto>, f64) {
    use futures::StreamExt;
    let started = std::time::Instant::now();
    let analysed = runtime.block_on(async {
        futures::stream::iter((0..rounds).flat_map(|_| photos.iter().cloned()))
            .map(|(name, bytes)| {
                let analyzer = analyzer.clone();
                async move {
                    analyzer
                        .analyze(&name, bytes, wanted, &mut facedex_pipeline::StageTimings::default())
                        .await
                        .expect("sample photos analyse")
                }
            })
            .buffer_unordered(in_flight)
            .collect::<Vec<_>>()
            .await
    });
    (analysed, started.elapsed().as_secs_f64())
}
