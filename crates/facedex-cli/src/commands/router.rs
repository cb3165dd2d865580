//! `facedex router`: serves FaceSearch over an index split into shards, fanning each read out
//! to one replica of every shard (`facedex indexer --shard i/N`) and merging the answers.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use facedex_server::{BoundServer, ShardSet, serve_router};
use tokio_util::sync::CancellationToken;

use crate::commands::roles::runtime;
use crate::config::FacedexConfig;
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
}

/// Serves FaceSearch over the shards until SIGINT/SIGTERM.
pub fn run(mut config: FacedexConfig, args: RouterArgs) -> anyhow::Result<ExitCode> {
    if let Some(listen) = args.listen {
        config.server.listen_addr = listen;
    }
    if !args.shards.is_empty() {
        config.router.shards = args
            .shards
            .iter()
            .map(|replicas| replicas.split(',').map(|url| url.trim().to_owned()).collect())
            .collect();
    }
    runtime()?.block_on(async {
        // The channels' connections run on this runtime.
        let shards = ShardSet::connect(&config.router).context("cannot set up the shards")?;
        let bound = BoundServer::bind(&config.server).await?;
        println!(
            "facedex: serving FaceSearch on {} (router over {} shards: {})",
            bound.local_addr(),
            shards.len(),
            config
                .router
                .shards
                .iter()
                .map(|replicas| replicas.join(","))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        serve_router(bound, shards, config.server.clone(), shutdown).await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
