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
