//! `facedex serve`: the FaceSearch gRPC service over a data directory, and the web console
//! beside it with `--http-listen`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use facedex_index::FaceStore;
use facedex_server::BoundServer;
use tokio_util::sync::CancellationToken;

use crate::config::FacedexConfig;
use crate::console;
use crate::shared::{SearchServiceFlags, cancel_on_signal, image_search_analyzer};
use facedex_web::ConsoleHandlers;

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
        let store = Arc::new(store);
        let services = bound.services(Arc::clone(&store), analyzer, &config.server)?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        let console = console::start(&config, ConsoleHandlers::from(&services), None, None, shutdown.clone()).await?;
        // The FaceSearch line comes last on stdout: scripts and tests read up to it.
        println!(
            "facedex: serving FaceSearch on {} ({faces} faces, data dir {})",
            bound.local_addr(),
            config.data_dir.display()
        );
        let served = bound
            .serve_services(services, store, config.server.clone(), shutdown.clone())
            .await;
        shutdown.cancel();
        if let Some(console) = console {
            console.finish().await?;
        }
        served?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
