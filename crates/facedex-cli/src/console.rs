//! The web console beside a process's FaceSearch (`--http-listen`, `[web]`): built here from
//! the configuration, so `serve`, `indexer`, `index` and `router` start it alike.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use facedex_index::FaceStore;
use facedex_proto::conversions::index_info;
use facedex_web::{
    BoundConsole, Console, ConsoleHandlers, ConsoleParts, RunProgress, StagesReport, ThumbnailQueue, WebError,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::commands::status::StatusSampler;
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
/// (`facedex: web console on URL`) on stdout; `run` is the indexing run it shows, if any, and
/// `stages` the distributed pipeline's.
pub async fn start(
    config: &FacedexConfig,
    handlers: ConsoleHandlers,
    run: Option<Arc<RunProgress>>,
    stages: Option<Arc<dyn StagesReport>>,
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
        stages,
    });
    let thumbnails = console.thumbnail_queue();
    let data_dir = config.data_dir.clone();
    let task = tokio::spawn(async move { bound.serve(console, &data_dir, shutdown).await });
    Ok(Some(ConsoleTask { task, thumbnails }))
}

/// The latest report of the distributed pipeline's stages, as `facedex status --json` has it.
#[derive(Default)]
struct SampledStages(Mutex<Option<serde_json::Value>>);

impl StagesReport for SampledStages {
    fn latest(&self) -> Option<serde_json::Value> {
        self.0.lock().ok()?.clone()
    }
}

/// How often an indexer samples the pipeline for its console (as `facedex status` does).
const STAGES_INTERVAL: Duration = Duration::from_secs(2);

/// Samples the pipeline's topics and groups every [`STAGES_INTERVAL`] on a thread of its own
/// (the broker calls block), with `store`'s applied offsets as the index's, until `shutdown`.
pub fn sample_stages(
    config: &FacedexConfig,
    store: Arc<FaceStore>,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<dyn StagesReport>> {
    let mut sampler = StatusSampler::connect(config)?;
    let stages = Arc::new(SampledStages::default());
    let (latest, config) = (Arc::clone(&stages), config.clone());
    std::thread::Builder::new()
        .name("facedex-stages".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                let info = Ok(index_info(store.index().info(), store.last_snapshot().as_ref()));
                match sampler.next(&config, info) {
                    Ok(Some(report)) => match (serde_json::to_value(report), latest.0.lock()) {
                        (Ok(report), Ok(mut slot)) => *slot = Some(report),
                        _ => tracing::warn!("cannot keep the pipeline's report"),
                    },
                    Ok(None) => {}
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot sample the pipeline"),
                }
                std::thread::sleep(STAGES_INTERVAL);
            }
        })
        .context("cannot start the pipeline sampler")?;
    Ok(stages)
}
