//! What several subcommands share: shutdown on a signal, the photo front end with the models
//! in this process, and the flags of the roles that serve FaceSearch over a data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use facedex_pipeline::{LocalModels, PhotoAnalyzer};
use tokio_util::sync::CancellationToken;

use crate::config::FacedexConfig;
use crate::console::ConsoleFlags;
use crate::home::Home;

/// Cancels `shutdown` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                let _ = interrupt.await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: draining work, then a final snapshot");
    shutdown.cancel();
}

/// The photo front end over the models in this process, batched across every caller.
pub fn local_analyzer(config: &FacedexConfig) -> anyhow::Result<Arc<PhotoAnalyzer>> {
    let models = load_models(config)?;
    Ok(Arc::new(PhotoAnalyzer::new(
        models,
        PhotoAnalyzer::cpu_threads(config.vision.decode_threads, true),
        &config.vision,
    )))
}

/// The models in this process. When one of the runtime and model files is missing where the
/// home puts them, the error says every place the home was looked for.
pub fn load_models(config: &FacedexConfig) -> anyhow::Result<Arc<LocalModels>> {
    let home = Home::locate();
    let vision = &config.vision;
    let missing = [
        &vision.onnxruntime_library_path,
        &vision.detector_model_path,
        &vision.embedder_model_path,
    ]
    .into_iter()
    .chain(vision.attributes.iter().map(|model| &model.model_path))
    .find(|path| home.holds_asset(path) && !path.is_file());
    if let Some(path) = missing {
        anyhow::bail!(
            "cannot load the face models: {} does not exist; run scripts/setup to fetch the assets \
             (it also installs them in the XDG data directory); {}",
            path.display(),
            home.searched()
        );
    }
    LocalModels::load(vision, &config.models).context("cannot load the face models")
}

/// Flags of the roles that serve FaceSearch over a data directory (`serve`, `indexer`).
#[derive(Debug, Args)]
pub struct SearchServiceFlags {
    /// The index's data directory [config: data_dir].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address FaceSearch listens on; port 0 picks a free one [config: server.listen_addr].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Do not load the face models: search by embedding and face id only.
    #[arg(long)]
    no_image_search: bool,
    #[command(flatten)]
    console: ConsoleFlags,
}

impl SearchServiceFlags {
    /// Applies the flags over the configuration; returns whether image search is wanted.
    pub fn apply(self, config: &mut FacedexConfig) -> bool {
        if let Some(data_dir) = self.data_dir {
            config.data_dir = data_dir;
        }
        if let Some(listen) = self.listen {
            config.server.listen_addr = listen;
        }
        self.console.apply(config);
        !self.no_image_search
    }
}

/// The front end for photo queries, unless image search is off.
pub fn image_search_analyzer(config: &FacedexConfig, image_search: bool) -> anyhow::Result<Option<Arc<PhotoAnalyzer>>> {
    if !image_search {
        return Ok(None);
    }
    // A photo query is searched by its faces' embeddings: the attribute models would load
    // for nothing.
    let mut config = config.clone();
    config.vision.attributes.clear();
    local_analyzer(&config)
        .context("cannot load the face models for image search (use --no-image-search to serve without them)")
        .map(Some)
}
