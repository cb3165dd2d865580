//! The distributed roles, one subcommand each: `facedex enqueue URL` lists an archive into the
//! images topic; `facedex embed` serves the models to ingest workers; `facedex ingest` joins
//! the ingest consumer group; `facedex indexer` applies the faces topic to a data directory and
//! serves FaceSearch over it. All stop on SIGINT/SIGTERM after draining their work.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use facedex_index::{DeleteSelector, FaceStore, PeopleEdit, PersonId};
use facedex_kafka::client::ensure_topics;
use facedex_kafka::deletions::FaceDeletionLog;
use facedex_kafka::enqueue::enqueue_archive;
use facedex_kafka::indexer::{IndexerCounters, run_indexer};
use facedex_kafka::ingest_worker::{IngestCounters, run_ingest_worker};
use facedex_kafka::people_edits::PeopleEditLog;
use facedex_kafka::{KafkaStageError, Shard};
use facedex_pipeline::archive::Archive;
use facedex_pipeline::{ArchiveRegistry, FaceModels, IngestConfig, Ingestor, PhotoAnalyzer};
use facedex_proto::AppliedOffset;
use facedex_server::{
    BoundServer, Deleted, EmbedClientAuth, FaceDeleter, PeopleEditor, RemoteModels, ServiceError, serve_embedder,
};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::commands::index::PlanFlags;
use crate::config::FacedexConfig;
use crate::console;
use crate::shared::{SearchServiceFlags, cancel_on_signal, image_search_analyzer, load_models};
use facedex_web::ConsoleHandlers;

/// Flags every Kafka role shares.
#[derive(Debug, Args)]
pub struct KafkaFlags {
    /// Kafka bootstrap servers [config: kafka.brokers].
    #[arg(long, value_name = "HOST:PORT,...")]
    brokers: Option<String>,
}

impl KafkaFlags {
    /// Applies the flags over the configuration.
    pub fn apply(self, config: &mut FacedexConfig) {
        if let Some(brokers) = self.brokers {
            config.kafka.brokers = brokers;
        }
    }
}

/// Arguments of `facedex enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The archive: a folder, or a file://, s3://, gs:// or az:// URL.
    #[arg(value_name = "URL")]
    archive: String,
    /// Skip objects smaller than this many bytes [config: archive.list_min_bytes].
    #[arg(long, value_name = "BYTES")]
    min_bytes: Option<u64>,
    /// Skip objects larger than this many bytes [config: archive.list_max_bytes].
    #[arg(long, value_name = "BYTES")]
    max_bytes: Option<u64>,
    #[command(flatten)]
    plan: PlanFlags,
    #[command(flatten)]
    kafka: KafkaFlags,
}

/// Publishes the archive's new and changed photos (and removals with `--prune`) and prints the
/// plan.
pub fn enqueue(mut config: FacedexConfig, args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    args.kafka.apply(&mut config);
    if let Some(min_bytes) = args.min_bytes {
        config.archive.list_min_bytes = min_bytes;
    }
    if args.max_bytes.is_some() {
        config.archive.list_max_bytes = args.max_bytes;
    }
    let archive = Archive::open(&args.archive, &config.archive)?;
    runtime()?.block_on(async {
        ensure_topics(&config.kafka).await?;
        let progress = ProgressBar::new_spinner();
        progress.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos} photos enqueued · {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let summary = enqueue_archive(&config.kafka, &archive, &config.archive, args.plan.options(), |_| {
            progress.inc(1)
        })
        .await;
        progress.finish_and_clear();
        let summary = summary?;
        println!("{}", summary.plan);
        println!(
            "enqueued {} photos from {} to {}; {} removals to {}",
            summary.plan.to_process(),
            archive.root(),
            config.kafka.topics.images,
            summary.plan.removed,
            config.kafka.topics.faces,
        );
        if !summary.listing.skipped.is_empty() {
            println!("{}", summary.listing.describe_skipped());
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Arguments of `facedex embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Address to listen on; port 0 picks a free one [config: embed.listen_addr].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

/// Serves the Embedder service until SIGINT/SIGTERM.
pub fn embed(mut config: FacedexConfig, args: EmbedArgs) -> anyhow::Result<ExitCode> {
    if let Some(listen) = args.listen {
        config.embed.listen_addr = listen;
    }
    runtime()?.block_on(async {
        let models = load_models(&config)?;
        let listener = tokio::net::TcpListener::bind(config.embed.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.embed.listen_addr))?;
        println!(
            "facedex: serving Embedder on {} (model {}, {})",
            listener.local_addr()?,
            models.info().model_id,
            models.info().execution_provider
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        serve_embedder(listener, models, &config.embed, shutdown).await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Arguments of `facedex ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    kafka: KafkaFlags,
    /// Embed workers to call, round robin (repeat or comma-separate) [config: embed.endpoints].
    #[arg(long = "embed", value_name = "URL", value_delimiter = ',')]
    embed_endpoints: Vec<String>,
    /// Photos in flight at once [config: ingest.max_in_flight].
    #[arg(long, value_name = "N")]
    max_in_flight: Option<usize>,
}

/// Runs an ingest worker until SIGINT/SIGTERM, then drains and commits.
pub fn ingest(mut config: FacedexConfig, args: IngestArgs) -> anyhow::Result<ExitCode> {
    args.kafka.apply(&mut config);
    if !args.embed_endpoints.is_empty() {
        config.embed.endpoints = args.embed_endpoints;
    }
    if let Some(max_in_flight) = args.max_in_flight {
        config.ingest.max_in_flight = max_in_flight;
    }
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        let auth = EmbedClientAuth::from_config(&config.embed)?;
        let models = connect_models(&config.embed.endpoints, &auth, &config.ingest, &shutdown).await?;
        println!(
            "facedex: ingest worker in group {} on {} (model {})",
            config.kafka.ingest_group,
            config.kafka.brokers,
            models.info().model_id
        );
        if config.archive.allowed_roots.is_empty() {
            tracing::warn!(
                "archive.allowed_roots is empty: this worker opens any archive root a record names, with its own credentials"
            );
        }
        let analyzer = PhotoAnalyzer::new(
            models,
            PhotoAnalyzer::cpu_threads(config.vision.decode_threads, false),
            &config.vision,
        );
        let ingestor = Arc::new(Ingestor::new(
            ArchiveRegistry::new(config.archive.clone()),
            Arc::new(analyzer),
            config.ingest.clone(),
            shutdown.clone(),
        ));
        let counters = Arc::new(IngestCounters::default());
        run_ingest_worker(
            &config.kafka,
            ingestor,
            config.ingest.max_in_flight,
            counters.clone(),
            shutdown,
        )
        .await?;
        println!(
            "facedex: ingest worker stopped after {} photos indexed ({} faces) and {} dead-lettered",
            counters.indexed.load(Ordering::Relaxed),
            counters.faces.load(Ordering::Relaxed),
            counters.dead_lettered.load(Ordering::Relaxed)
        );
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Connects to the embed workers, waiting with backoff while none is up yet (workers and
/// embed services start in any order).
async fn connect_models(
    endpoints: &[String],
    auth: &EmbedClientAuth,
    ingest: &IngestConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<dyn FaceModels>> {
    let mut attempt = 1;
    loop {
        match RemoteModels::connect(endpoints, auth).await {
            Ok(models) => return Ok(models),
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, attempt, "waiting for an embed worker");
                tokio::select! {
                    () = shutdown.cancelled() => anyhow::bail!("stopped while waiting for an embed worker: {error}"),
                    () = tokio::time::sleep(ingest.backoff(attempt)) => {}
                }
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Arguments of `facedex indexer`.
#[derive(Debug, Args)]
pub struct IndexerArgs {
    #[command(flatten)]
    kafka: KafkaFlags,
    #[command(flatten)]
    service: SearchServiceFlags,
    /// Serve shard INDEX of COUNT: the faces partitions p with p mod COUNT = INDEX; indexers
    /// with the same shard are its replicas. `ordinal/COUNT` takes INDEX from the pod's
    /// Kubernetes StatefulSet ordinal (the number ending $HOSTNAME) modulo COUNT
    /// [config: kafka.indexer_shard].
    #[arg(long, value_name = "INDEX/COUNT")]
    shard: Option<String>,
}

/// The shard a `--shard` flag names, with `ordinal/COUNT` resolved from `hostname`.
fn parse_shard_flag(flag: &str, hostname: Option<&str>) -> anyhow::Result<Shard> {
    let Some(count) = flag.strip_prefix("ordinal/") else {
        return Ok(flag.parse()?);
    };
    let hostname = hostname.context("--shard ordinal/COUNT needs $HOSTNAME (a StatefulSet pod's name)")?;
    let ordinal: u32 = hostname
        .rsplit_once('-')
        .and_then(|(_, ordinal)| ordinal.parse().ok())
        .with_context(|| format!("--shard ordinal/COUNT: $HOSTNAME {hostname:?} does not end in -ORDINAL"))?;
    let count: u32 = count
        .parse()
        .with_context(|| format!("--shard {flag}: the count is not a number"))?;
    Ok(Shard::new(ordinal % count.max(1), count)?)
}

/// Applies the faces topic to the data directory and serves FaceSearch until SIGINT/SIGTERM;
/// then writes a final snapshot with the applied offsets.
pub fn indexer(mut config: FacedexConfig, args: IndexerArgs) -> anyhow::Result<ExitCode> {
    args.kafka.apply(&mut config);
    let image_search = args.service.apply(&mut config);
    if let Some(shard) = &args.shard {
        config.kafka.indexer_shard = parse_shard_flag(shard, std::env::var("HOSTNAME").ok().as_deref())?;
    }
    let store = Arc::new(
        FaceStore::open(&config.data_dir, config.index.clone())
            .with_context(|| format!("cannot open the index in {}", config.data_dir.display()))?,
    );
    runtime()?.block_on(async {
        let analyzer = image_search_analyzer(&config, image_search)?;
        ensure_topics(&config.kafka).await?;
        // People edits go through the topic every indexer applies; a write may take as long
        // to come back as a publish may take.
        let edits = PeopleEditLog::new(
            &config.kafka,
            store.clone(),
            Duration::from_millis(config.kafka.produce_timeout_ms),
        )?;
        let deletions = FaceDeletionLog::new(
            &config.kafka,
            store.clone(),
            Duration::from_millis(config.kafka.produce_timeout_ms),
        )?;
        let bound = BoundServer::bind(&config.server)
            .await?
            .with_people_editor(Arc::new(KafkaPeopleEditor(edits)))
            .with_face_deleter(Arc::new(KafkaFaceDeleter(deletions)))
            .with_served_shard(config.kafka.indexer_shard.index(), config.kafka.indexer_shard.count());
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        let services = bound.services(store.clone(), analyzer, &config.server)?;
        // The console's pipeline page shows what `facedex status` would; without it the console
        // still serves, showing the index only.
        let stages = match config.web.listen_addr {
            Some(_) => console::sample_stages(&config, store.clone(), shutdown.clone())
                .inspect_err(|error| {
                    tracing::warn!(error = format!("{error:#}"), "the console will not show the stages")
                })
                .ok(),
            None => None,
        };
        let console = console::start(
            &config,
            ConsoleHandlers::from(&services),
            None,
            stages,
            shutdown.clone(),
        )
        .await?;
        // The FaceSearch line comes last on stdout: scripts and tests read up to it.
        println!(
            "facedex: serving FaceSearch on {} (indexer of {} shard {} on {}, data dir {})",
            bound.local_addr(),
            config.kafka.topics.faces,
            config.kafka.indexer_shard,
            config.kafka.brokers,
            config.data_dir.display()
        );
        let server =
            tokio::spawn(bound.serve_services(services, store.clone(), config.server.clone(), shutdown.clone()));
        let counters = Arc::new(IndexerCounters::default());
        let snapshot_interval = Duration::from_secs(config.server.snapshot_interval_secs.max(1));
        let indexed = run_indexer(
            &config.kafka,
            store.clone(),
            snapshot_interval,
            counters.clone(),
            shutdown.clone(),
        )
        .await;
        // Whatever stopped the indexer stops the server too.
        shutdown.cancel();
        server.await.context("the search server task failed")??;
        if let Some(console) = console {
            console.finish().await?;
        }
        indexed?;
        println!(
            "facedex: indexer stopped after {} face batches ({} faces, {} refused); the index holds {} faces",
            counters.batches.load(Ordering::Relaxed),
            counters.faces.load(Ordering::Relaxed),
            counters.refused.load(Ordering::Relaxed),
            store.index().info().faces
        );
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// The People service's edits of an indexer, through the people-edits topic.
struct KafkaPeopleEditor(PeopleEditLog);

#[tonic::async_trait]
impl PeopleEditor for KafkaPeopleEditor {
    async fn apply(&self, edit: PeopleEdit) -> Result<PersonId, ServiceError> {
        self.0.submit(&edit).await.map_err(kafka_write_error)
    }
}

/// FaceSearch's deletions on an indexer, through the faces topic its replicas read too.
struct KafkaFaceDeleter(FaceDeletionLog);

#[tonic::async_trait]
impl FaceDeleter for KafkaFaceDeleter {
    async fn delete(&self, selector: DeleteSelector) -> Result<Deleted, ServiceError> {
        let deletion = self.0.submit(&selector).await.map_err(kafka_write_error)?;
        let topic = &self.0.topic;
        Ok(Deleted {
            face_ids: deletion.face_ids,
            written: deletion
                .written
                .into_iter()
                .map(|(partition, offset)| AppliedOffset {
                    topic: topic.clone(),
                    partition,
                    next_offset: offset + 1,
                })
                .collect(),
        })
    }
}

/// A write through Kafka that failed: the index's refusal as such, anything else as the log
/// being away.
fn kafka_write_error(error: KafkaStageError) -> ServiceError {
    match error {
        KafkaStageError::Index(error) => ServiceError::Index(error),
        error => ServiceError::EditLog {
            source: Box::new(error),
        },
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statefulset_ordinal_picks_the_shard() {
        let shard = |flag, hostname| parse_shard_flag(flag, hostname).map(|shard| shard.to_string());
        assert_eq!(shard("1/3", None).ok().as_deref(), Some("1/3"));
        assert_eq!(
            shard("ordinal/2", Some("facedex-indexer-3")).ok().as_deref(),
            Some("1/2")
        );
        assert_eq!(
            shard("ordinal/2", Some("facedex-indexer-0")).ok().as_deref(),
            Some("0/2")
        );
        for (flag, hostname) in [
            ("ordinal/2", None),
            ("ordinal/2", Some("indexer")),
            ("ordinal/0", Some("indexer-1")),
            ("3/2", None),
        ] {
            assert!(shard(flag, hostname).is_err(), "{flag} {hostname:?}");
        }
    }
}
