//! `facedex router`: serves FaceSearch over an index split into shards, fanning each read out
//! to one replica of every shard (`facedex indexer --shard i/N`) and merging the answers. The
//! shards are listed (`--shard`, once per shard) or discovered (`--discover` and `--shards`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use facedex_server::{AccessTokens, BoundServer, RouterService, ShardSet, serve_router};
use facedex_web::ConsoleHandlers;
use tokio_util::sync::CancellationToken;

use crate::commands::roles::runtime;
use crate::config::FacedexConfig;
use crate::console::{self, ConsoleFlags};
use crate::shared::cancel_on_signal;

/// Arguments of `facedex router`.
#[derive(Debug, Args)]
pub struct RouterArgs {
    /// Address FaceSearch listens on; port 0 picks a free one [config: server.listen_addr].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// One shard's replicas, comma-separated (`http://host:port` or `https://`); give the flag
    /// once per shard, in shard order: the first is shard 0 [config: router.shards].
    #[arg(long = "shard", value_name = "URL[,URL...]")]
    shards: Vec<String>,
    /// Instead of --shard: indexers to sort into --shards shards by the shard each one serves,
    /// comma-separated (`http://host:port`, or `dns:HOST:PORT` for every address HOST
    /// resolves to, e.g. a headless Service over every indexer pod) [config: router.discover].
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',', conflicts_with = "shards")]
    discover: Vec<String>,
    /// How many shards the --discover indexers form [config: router.shard_count].
    #[arg(long = "shards", value_name = "COUNT", requires = "discover")]
    shard_count: Option<usize>,
    #[command(flatten)]
    console: ConsoleFlags,
}

/// Serves FaceSearch over the shards until SIGINT/SIGTERM.
pub fn run(mut config: FacedexConfig, args: RouterArgs) -> anyhow::Result<ExitCode> {
    if let Some(listen) = args.listen {
        config.server.listen_addr = listen;
    }
    args.console.apply(&mut config);
    if !args.shards.is_empty() {
        config.router.shards = args
            .shards
            .iter()
            .map(|replicas| replicas.split(',').map(|url| url.trim().to_owned()).collect())
            .collect();
    }
    if !args.discover.is_empty() {
        config.router.discover = args.discover.iter().map(|source| source.trim().to_owned()).collect();
    }
    if let Some(count) = args.shard_count {
        config.router.shard_count = count;
    }
    runtime()?.block_on(async {
        // The channels' connections run on this runtime.
        let shards = Arc::new(ShardSet::connect(&config.router).context("cannot set up the shards")?);
        let bound = BoundServer::bind(&config.server).await?;
        let listed = match config.router.discover.is_empty() {
            true => config
                .router
                .shards
                .iter()
                .map(|replicas| replicas.join(","))
                .collect::<Vec<_>>()
                .join(" | "),
            false => format!("discovered from {}", config.router.discover.join(",")),
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        // The console searches through a router handler of its own over the same shards;
        // people live on the indexers.
        let tokens = AccessTokens::from_config(&config.server)?;
        let handlers = ConsoleHandlers {
            face_search: Arc::new(RouterService::new(Arc::clone(&shards), &config.server).with_tokens(tokens.clone())),
            people: None,
            tokens,
            searches_photos: true,
            default_min_score: config.server.default_min_score,
        };
        let console = console::start(&config, handlers, None, None, shutdown.clone()).await?;
        // The FaceSearch line comes last on stdout: scripts and tests read up to it.
        println!(
            "facedex: serving FaceSearch on {} (router over {} shards: {listed})",
            bound.local_addr(),
            shards.len(),
        );
        let served = serve_router(bound, shards, config.server.clone(), shutdown.clone()).await;
        shutdown.cancel();
        if let Some(console) = console {
            console.finish().await?;
        }
        served?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
