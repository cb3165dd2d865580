//! The web console beside a process's FaceSearch (`--http-listen`, `[web]`): built here from
//! the configuration, so `serve`, `indexer`, `index` and `router` start it alike.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use facedex_web::{BoundConsole, Console, ConsoleHandlers, ConsoleParts, RunProgress, ThumbnailQueue, WebError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::FacedexConfig;

/// The console's flag.
#[derive(Debug, Args)]
pub struct ConsoleFlags {
    /// Serve the web console (and its JSON API) here, e.g. 127.0.0.1:8080; port 0 picks a free
    /// one. Off unless set [config: web.listen_addr].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
}

impl ConsoleFlags {
    /// Applies the flag over the configuration.
    pub fn apply(&self, config: &mut FacedexConfig) {
        if let Some(addr) = self.http_listen {
            config.web.listen_addr = Some(addr);
        }
    }
}

/// A running console.
pub struct ConsoleTask {
    task: JoinHandle<Result<(), WebError>>,
    /// Where a run hands over the photos it indexed, for their thumbnails.
    pub thumbnails: ThumbnailQueue,
}

impl ConsoleTask {
    /// Waits for the console to stop (after its shutdown token is cancelled and every
    /// thumbnail queue is dropped).
    pub async fn finish(self) -> anyhow::Result<()> {
        drop(self.thumbnails);
        Ok(self.task.await.context("the web console task failed")??)
    }
}

/// Starts the console over `handlers` when `web.listen_addr` is set, and prints its address
/// (`facedex: web console on URL`) on stdout; `run` is the indexing run it shows, if any.
pub async fn start(
    config: &FacedexConfig,
    handlers: ConsoleHandlers,
    run: Option<Arc<RunProgress>>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<ConsoleTask>> {
    let Some(addr) = config.web.listen_addr else {
        return Ok(None);
    };
    config.web.validate().map_err(anyhow::Error::msg)?;
    let bound = BoundConsole::bind(addr, config.server.tls.as_ref()).await?;
    println!("facedex: web console on {}", bound.url());
    let console = Console::new(ConsoleParts {
        handlers,
        archive: config.archive.clone(),
        web: config.web.clone(),
        max_upload_bytes: config.server.max_image_bytes,
        max_image_pixels: config.vision.max_image_pixels,
        run,
    });
    let thumbnails = console.thumbnail_queue();
    let data_dir = config.data_dir.clone();
    let task = tokio::spawn(async move { bound.serve(console, &data_dir, shutdown).await });
    Ok(Some(ConsoleTask { task, thumbnails }))
}
