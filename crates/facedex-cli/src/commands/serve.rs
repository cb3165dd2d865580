//! `facedex serve`: the FaceSearch gRPC service over a data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use facedex_index::FaceStore;
use facedex_server::{BoundServer, SharedAnalyzer};
use facedex_vision::FaceAnalyzer;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::FacedexConfig;

/// Arguments of `facedex serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The index's data directory [config: data_dir].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free one [config: server.listen_addr].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Do not load the face models: search by embedding and face id only.
    #[arg(long)]
    no_image_search: bool,
}

/// Runs the server until SIGINT or SIGTERM, then drains calls and snapshots.
pub fn run(mut config: FacedexConfig, args: ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    if let Some(listen) = args.listen {
        config.server.listen_addr = listen;
    }
    let store = FaceStore::open(&config.data_dir, config.index.clone())
        .with_context(|| format!("cannot open the index in {}", config.data_dir.display()))?;
    let analyzer = load_analyzer(&config, args.no_image_search)?;
    let faces = store.index().info().faces;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let bound = BoundServer::bind(&config.server).await?;
        // The first line on stdout says where to connect (scripts and tests read it).
        println!(
            "facedex: serving FaceSearch on {} ({faces} faces, data dir {})",
            bound.local_addr(),
            config.data_dir.display()
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        bound
            .serve(
                Arc::new(store),
                analyzer,
                config.server.clone(),
                config.vision.max_image_pixels,
                shutdown,
            )
            .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The face models for search by image, unless `no_image_search`.
pub(crate) fn load_analyzer(config: &FacedexConfig, no_image_search: bool) -> anyhow::Result<Option<SharedAnalyzer>> {
    if no_image_search {
        return Ok(None);
    }
    let analyzer = FaceAnalyzer::load(&config.vision)
        .context("cannot load the face models for image search (use --no-image-search to serve without them)")?;
    Ok(Some(Arc::new(Mutex::new(analyzer))))
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
pub(crate) async fn cancel_on_signal(shutdown: CancellationToken) {
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
    tracing::info!("shutting down: draining calls, then a final snapshot");
    shutdown.cancel();
}
