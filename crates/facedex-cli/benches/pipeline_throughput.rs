//! Pipeline throughput on the sample archive: the vision core alone (`facedex detect
//! --embeddings`), local mode (`facedex index`), and the Kafka pipeline on one real broker with
//! 1, 2 and 4 ingest processes sharing one embed worker. Prints one JSON object per line.
//!
//! `cargo bench -p facedex-cli --bench pipeline_throughput -- [COPIES]` (each copy is the 9
//! sample photos under new names; default 20). Needs `scripts/setup` and `scripts/kafka/fetch`.

#[path = "../../../tests/support/mod.rs"]
#[allow(missing_docs, clippy::unwrap_used)]
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use support::cluster::{KafkaBroker, Role, free_port, wait_for_stable_group};
use support::{assets_dir, facedex_command};

const PARTITIONS: i32 = 8;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let copies: usize = args.first().map_or(Ok(20), |arg| arg.parse()).context("COPIES")?;
    let archive = tempfile::tempdir()?;
    let mut photos = Vec::new();
    for entry in std::fs::read_dir(assets_dir().join("photos"))? {
        let path = entry?.path();
        if !path.is_file() {
            continue; // the labelled folders beside the photos
        }
        for copy in 0..copies {
            let name = format!("{copy}-{}", path.file_name().and_then(|n| n.to_str()).context("name")?);
            std::fs::copy(&path, archive.path().join(&name))?;
            photos.push(archive.path().join(name));
        }
    }
    let total = photos.len() as u64;

    // The vision core alone, the baseline for the pipeline's overhead.
    let started = Instant::now();
    let detect = facedex_command()
        .args(["detect", "--json", "--embeddings"])
        .args(&photos)
        .stdout(Stdio::null())
        .status()?;
    ensure!(detect.success(), "detect failed");
    report("vision core (facedex detect --embeddings)", 1, total, started.elapsed());

    // Local mode: list, ingest, index, snapshot.
    let data = tempfile::tempdir()?;
    let started = Instant::now();
    let local = facedex_command()
        .args(["index", path_str(archive.path())?, "--data-dir", path_str(data.path())?])
        .stdout(Stdio::null())
        .status()?;
    ensure!(local.success(), "facedex index failed");
    report("local mode (facedex index)", 1, total, started.elapsed());

    // Kafka: one broker, one embed worker, N ingest workers, until every face batch is in.
    let broker = KafkaBroker::start();
    let embed_listen = format!("127.0.0.1:{}", free_port());
    let (embed, _) = Role::start(
        &["embed", "--listen", &embed_listen],
        &[],
        "facedex: serving Embedder on ",
    );
    for workers in [1usize, 2, 4] {
        let env: Vec<(String, String)> = [
            ("FACEDEX__KAFKA__TOPICS__IMAGES", format!("bench{workers}.images")),
            ("FACEDEX__KAFKA__TOPICS__FACES", format!("bench{workers}.faces")),
            (
                "FACEDEX__KAFKA__TOPICS__DEAD_LETTER",
                format!("bench{workers}.dead-letter"),
            ),
            // A catalog of its own too, or the next run would find every photo unchanged.
            ("FACEDEX__KAFKA__TOPICS__CATALOG", format!("bench{workers}.catalog")),
            ("FACEDEX__KAFKA__INGEST_GROUP", format!("bench{workers}")),
            ("FACEDEX__KAFKA__PARTITIONS", PARTITIONS.to_string()),
        ]
        .map(|(key, value)| (key.to_owned(), value))
        .to_vec();
        // Topics first (enqueue of an empty folder creates them), then the workers, timed from
        // the moment their group is stable: the figure is throughput, not start-up.
        let empty = tempfile::tempdir()?;
        let created = facedex_command()
            .args(["enqueue", path_str(empty.path())?, "--brokers", &broker.bootstrap])
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::null())
            .status()?;
        ensure!(created.success(), "topic creation failed");
        let embed_url = format!("http://{embed_listen}");
        let ingest = ["ingest", "--brokers", &broker.bootstrap, "--embed", &embed_url];
        let roles: Vec<Role> = (0..workers)
            .map(|_| Role::start(&ingest, &env, "facedex: ingest worker in group").0)
            .collect();
        wait_for_stable_group(&broker.bootstrap, &format!("bench{workers}"), workers)?;
        let started = Instant::now();
        let enqueue = facedex_command()
            .args(["enqueue", path_str(archive.path())?, "--brokers", &broker.bootstrap])
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::null())
            .status()?;
        ensure!(enqueue.success(), "enqueue failed");
        let faces_topic = format!("bench{workers}.faces");
        while end_offsets(&broker.bootstrap, &faces_topic)? < total {
            ensure!(started.elapsed() < Duration::from_secs(1800), "the pipeline stalled");
            std::thread::sleep(Duration::from_millis(100));
        }
        report(
            "kafka pipeline (enqueue → ingest → faces topic)",
            workers,
            total,
            started.elapsed(),
        );
        for role in roles {
            role.terminate();
        }
    }
    embed.terminate();
    Ok(())
}

fn report(mode: &str, ingest_workers: usize, photos: u64, elapsed: Duration) {
    println!(
        "{}",
        serde_json::json!({
            "mode": mode, "ingest_workers": ingest_workers, "photos": photos,
            "seconds": elapsed.as_secs_f64(), "photos_per_s": photos as f64 / elapsed.as_secs_f64(),
        })
    );
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("non-UTF-8 temp path")
}

fn end_offsets(brokers: &str, topic: &str) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "facedex-bench-reader")
        .create()?;
    let mut total = 0;
    for partition in 0..PARTITIONS {
        if let Ok((_, high)) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            total += high as u64;
        }
    }
    Ok(total)
}
