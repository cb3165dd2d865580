//! `facedex serve`: the FaceSearch gRPC service over a data directory.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use facedex_index::FaceStore;
use facedex_server::BoundServer;
use tokio_util::sync::CancellationToken;

use crate::config::FacedexConfig;
use crate::shared::{SearchServiceFlags, cancel_on_signal, image_search_analyzer};

/// Arguments of `facedex serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    service: SearchServiceFlags,
}

/// Runs the server until SIGINT or SIGTERM, then drains calls and snapshots.
pub fn run(mut config: FacedexConfig, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let image_search = args.service.apply(&mut config);
    let store = FaceStore::open(&config.data_dir, config.index.clone())
        .with_context(|| format!("cannot open the index in {}", config.data_dir.display()))?;
    let faces = store.index().info().faces;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let analyzer = image_search_analyzer(&config, image_search)?;
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
            .serve(Arc::new(store), analyzer, config.server.clone(), shutdown)
            .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
