//! `facedex status`: a live view of a pipeline run, read from the brokers (topic end offsets,
//! the groups' committed offsets, the dead letters) and from the indexer's FaceSearch API
//! (index size and applied offsets), plus each archive's last enqueue plan. Rates are
//! differences between two samples; the ETA is the lag over the rate of the slower stage.
//! `--once --json` prints one report for scripts.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use facedex_kafka::progress::{Group, PartitionOffsets, ProgressReader, TopicOffsets};
use facedex_pipeline::plan::EnqueueRun;
use facedex_proto::{GetIndexInfoRequest, IndexInfo};
use serde::Serialize;

use crate::commands::client::ServerFlags;
use crate::commands::roles::KafkaFlags;
use crate::config::FacedexConfig;

/// Arguments of `facedex status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    kafka: KafkaFlags,
    /// The indexer's FaceSearch API, for the index size and its applied offsets.
    #[command(flatten)]
    server: ServerFlags,
    /// Seconds between samples (rates are measured over this).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    interval_secs: f64,
    /// Print one report (after two samples, for the rates) and exit.
    #[arg(long)]
    once: bool,
    /// Print reports as JSON, one object per line.
    #[arg(long)]
    json: bool,
}

/// One look at the pipeline.
struct Sample {
    taken: Instant,
    images: TopicOffsets,
    faces: TopicOffsets,
    dead_letters: TopicOffsets,
    runs: TopicOffsets,
    ingest_committed: PartitionOffsets,
    /// From the index itself when `index` is known, else from the indexer's group (which
    /// commits at snapshots).
    indexer_applied: PartitionOffsets,
    index: Result<IndexInfo, String>,
}

/// A stage's progress through a topic.
#[derive(Debug, Serialize)]
struct StageReport {
    topic: String,
    group: String,
    done: i64,
    per_sec: f64,
    lag: i64,
    lag_by_partition: BTreeMap<i32, i64>,
}

/// The index as the indexer serves it.
#[derive(Debug, Serialize)]
struct IndexReport {
    faces: u64,
    faces_per_sec: f64,
    images: u64,
    memory_bytes: u64,
    unreachable_faces: u64,
    last_snapshot_unix_ms: Option<i64>,
}

/// An archive's last enqueue.
#[derive(Debug, Serialize)]
struct EnqueueReport {
    archive: String,
    finished_at_unix_ms: i64,
    /// `400 photos: 396 unchanged, 1 changed, 1 new, 2 removed`.
    plan: String,
    listed: u64,
    new: u64,
    changed: u64,
    unchanged: u64,
    removed: u64,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    at_unix_ms: u64,
    interval_secs: f64,
    enqueued: i64,
    enqueued_per_sec: f64,
    ingest: StageReport,
    indexer: StageReport,
    /// `index` when the indexer's applied offsets were read from its API, `group` otherwise.
    indexer_offsets_from: &'static str,
    dead_letters: i64,
    dead_letters_per_sec: f64,
    dead_letters_by_kind: BTreeMap<String, u64>,
    index: Option<IndexReport>,
    index_error: Option<String>,
    /// The last enqueue of each archive, newest first.
    last_enqueues: Vec<EnqueueReport>,
    /// Seconds until both stages drain at the current rates; 0 when drained, none when stalled.
    eta_secs: Option<f64>,
    drained: bool,
}

/// Samples the pipeline and prints reports until interrupted (or once).
pub fn run(mut config: FacedexConfig, args: StatusArgs) -> anyhow::Result<ExitCode> {
    args.kafka.apply(&mut config);
    anyhow::ensure!(
        args.interval_secs.is_finite() && args.interval_secs > 0.0,
        "--interval-secs must be a positive number of seconds, got {}",
        args.interval_secs
    );
    let interval = Duration::from_secs_f64(args.interval_secs);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut sampler = StatusSampler::connect(&config)?;
    let index_info = || {
        runtime.block_on(async {
            let mut client = args.server.connect().await.map_err(|error| format!("{error:#}"))?;
            client
                .get_index_info(GetIndexInfoRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| format!("{}: {}", status.code(), status.message()))
        })
    };
    sampler.next(&config, index_info())?;
    loop {
        std::thread::sleep(interval);
        let Some(report) = sampler.next(&config, index_info())? else {
            continue;
        };
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            if std::io::stdout().is_terminal() && !args.once {
                print!("\x1b[2J\x1b[H");
            }
            print_report(&config, &report);
        }
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Samples a pipeline's progress and turns each sample and the one before into a [`Report`]:
/// `facedex status` prints them, an indexer's web console shows them.
pub struct StatusSampler {
    reader: ProgressReader,
    previous: Option<Sample>,
}

impl StatusSampler {
    /// A sampler reading `config`'s brokers.
    pub fn connect(config: &FacedexConfig) -> anyhow::Result<Self> {
        let reader = ProgressReader::connect(&config.kafka)
            .with_context(|| format!("cannot read the pipeline's topics on {}", config.kafka.brokers))?;
        Ok(Self { reader, previous: None })
    }

    /// Takes a sample, with `index` the index's info (or why it could not be read); from the
    /// second sample on, the report over the time since the one before. Blocking.
    pub fn next(&mut self, config: &FacedexConfig, index: Result<IndexInfo, String>) -> anyhow::Result<Option<Report>> {
        let current = sample(&self.reader, config, index)?;
        let Some(previous) = self.previous.replace(current) else {
            return Ok(None);
        };
        let current = self.previous.as_ref().context("the sample just taken")?;
        let by_kind = self.reader.dead_letters_by_kind(&current.dead_letters).clone();
        let mut report = report(config, &previous, current, by_kind);
        report.last_enqueues = enqueue_reports(self.reader.last_runs(&current.runs));
        Ok(Some(report))
    }
}

fn sample(reader: &ProgressReader, config: &FacedexConfig, index: Result<IndexInfo, String>) -> anyhow::Result<Sample> {
    let topics = &config.kafka.topics;
    let images = reader.topic_offsets(&topics.images)?;
    let faces = reader.topic_offsets(&topics.faces)?;
    let dead_letters = reader.topic_offsets(&topics.dead_letter)?;
    let runs = match reader.has_runs() {
        true => reader.topic_offsets(&topics.runs)?,
        false => TopicOffsets::default(),
    };
    let ingest_committed = reader.committed(Group::Ingest, &topics.images, &images)?;
    let indexer_applied = match &index {
        Ok(info) => info
            .applied_offsets
            .iter()
            .filter(|applied| applied.topic == topics.faces)
            .map(|applied| (applied.partition, applied.next_offset))
            .collect(),
        Err(_) => reader.committed(Group::Indexer, &topics.faces, &faces)?,
    };
    Ok(Sample {
        taken: Instant::now(),
        images,
        faces,
        dead_letters,
        runs,
        ingest_committed,
        indexer_applied,
        index,
    })
}

fn report(config: &FacedexConfig, previous: &Sample, current: &Sample, by_kind: BTreeMap<String, u64>) -> Report {
    let seconds = current.taken.duration_since(previous.taken).as_secs_f64().max(1e-3);
    let rate = |before: i64, after: i64| ((after - before) as f64 / seconds).max(0.0);
    let stage = |topic: &str,
                 group: &str,
                 offsets: &TopicOffsets,
                 committed: &PartitionOffsets,
                 before: (&TopicOffsets, &PartitionOffsets)| {
        let (lag_by_partition, lag) = offsets.lag(committed);
        let done = offsets.written() - lag;
        let done_before = before.0.written() - before.0.lag(before.1).1;
        StageReport {
            topic: topic.to_owned(),
            group: group.to_owned(),
            done,
            per_sec: rate(done_before, done),
            lag,
            lag_by_partition,
        }
    };
    let topics = &config.kafka.topics;
    let ingest = stage(
        &topics.images,
        &config.kafka.ingest_group,
        &current.images,
        &current.ingest_committed,
        (&previous.images, &previous.ingest_committed),
    );
    let indexer = stage(
        &topics.faces,
        &config.kafka.indexer_group,
        &current.faces,
        &current.indexer_applied,
        (&previous.faces, &previous.indexer_applied),
    );
    let index = current.index.as_ref().ok().map(|info| IndexReport {
        faces: info.faces,
        faces_per_sec: match &previous.index {
            Ok(before) => rate(before.faces as i64, info.faces as i64),
            Err(_) => 0.0,
        },
        images: info.images,
        memory_bytes: info.memory_bytes,
        unreachable_faces: info.unreachable_points,
        last_snapshot_unix_ms: info.last_snapshot.as_ref().map(|snapshot| snapshot.created_unix_ms),
    });
    let drained = ingest.lag == 0 && indexer.lag == 0;
    let eta = |stage: &StageReport| match (stage.lag, stage.per_sec) {
        (0, _) => Some(0.0),
        (_, per_sec) if per_sec > 0.0 => Some(stage.lag as f64 / per_sec),
        _ => None,
    };
    let eta_secs = eta(&ingest).zip(eta(&indexer)).map(|(a, b)| a.max(b));
    Report {
        at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
        interval_secs: seconds,
        enqueued: current.images.written(),
        enqueued_per_sec: rate(previous.images.written(), current.images.written()),
        ingest,
        indexer,
        indexer_offsets_from: if current.index.is_ok() { "index" } else { "group" },
        dead_letters: current.dead_letters.written(),
        dead_letters_per_sec: rate(previous.dead_letters.written(), current.dead_letters.written()),
        dead_letters_by_kind: by_kind,
        index,
        index_error: current.index.as_ref().err().cloned(),
        last_enqueues: Vec::new(),
        eta_secs,
        drained,
    }
}

/// The last enqueue of each archive, newest first.
fn enqueue_reports(runs: &BTreeMap<String, EnqueueRun>) -> Vec<EnqueueReport> {
    let mut reports: Vec<EnqueueReport> = runs
        .values()
        .map(|run| EnqueueReport {
            archive: run.archive.clone(),
            finished_at_unix_ms: run.finished_at_unix_ms,
            plan: run.plan.to_string(),
            listed: run.plan.listed,
            new: run.plan.new,
            changed: run.plan.changed,
            unchanged: run.plan.unchanged,
            removed: run.plan.removed,
        })
        .collect();
    reports.sort_by_key(|report| std::cmp::Reverse(report.finished_at_unix_ms));
    reports
}

fn print_report(config: &FacedexConfig, report: &Report) {
    println!(
        "facedex status · brokers {} · rates over {:.1} s",
        config.kafka.brokers, report.interval_secs
    );
    println!();
    println!("{:<10} {:>12} {:>10} {:>10}", "stage", "done", "per sec", "lag");
    println!(
        "{:<10} {:>12} {:>10.1} {:>10}",
        "enqueue", report.enqueued, report.enqueued_per_sec, "-"
    );
    for (name, stage) in [("ingest", &report.ingest), ("index", &report.indexer)] {
        println!(
            "{:<10} {:>12} {:>10.1} {:>10}   {} → group {}",
            name, stage.done, stage.per_sec, stage.lag, stage.topic, stage.group
        );
    }
    let kinds: Vec<String> = report
        .dead_letters_by_kind
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    println!(
        "{:<10} {:>12} {:>10.1} {:>10}   {}",
        "dead",
        report.dead_letters,
        report.dead_letters_per_sec,
        "-",
        kinds.join(", ")
    );
    println!();
    match (&report.index, &report.index_error) {
        (Some(index), _) => println!(
            "index      {} faces ({:.1}/s), {} images, {:.1} MiB, {} unreachable",
            index.faces,
            index.faces_per_sec,
            index.images,
            index.memory_bytes as f64 / (1024.0 * 1024.0),
            index.unreachable_faces
        ),
        (None, Some(error)) => println!("index      not reachable ({error}); indexer lag from its group's commits"),
        (None, None) => {}
    }
    match report.eta_secs {
        _ if report.drained => println!("ETA        drained"),
        Some(seconds) => println!("ETA        {}", humanize(seconds)),
        None => println!("ETA        stalled (no progress in this interval)"),
    }
    /// Archives shown; `--json` lists every one.
    const SHOWN: usize = 5;
    for enqueue in report.last_enqueues.iter().take(SHOWN) {
        let age_secs = report
            .at_unix_ms
            .saturating_sub(enqueue.finished_at_unix_ms.max(0) as u64) as f64
            / 1000.0;
        println!(
            "enqueued   {} ({} ago): {}",
            enqueue.archive,
            humanize(age_secs),
            enqueue.plan
        );
    }
    if report.last_enqueues.len() > SHOWN {
        println!(
            "           and {} more archives (--json lists them)",
            report.last_enqueues.len() - SHOWN
        );
    }
}

fn humanize(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
    }
}
