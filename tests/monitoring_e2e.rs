//! Monitoring a pipeline run on a real Apache Kafka 4 node: every role serves `/metrics`
//! (`--metrics-addr`), `facedex status --once --json` reports progress while photos flow and
//! a lag of 0 once they are done, and the counters of the roles agree with each other and with
//! what was enqueued; status also shows the enqueue's plan. A real Prometheus server scrapes the
//! roles during the run with the repository's alert rules: its queries see the throughput and
//! the totals, and every alert rule evaluates cleanly on the real series. Every metric a role
//! exports is documented in docs/metrics.md.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use support::cluster::{KafkaBroker, Role, free_port, wait_for_stable_group};
use support::prometheus::PrometheusServer;
use support::{facedex_command, photo, scrape_metrics};

/// Copies of the sample photos, so that the run lasts several status intervals.
const COPIES: usize = 4;
const PHOTOS: [&str; 5] = ["players.jpg", "yaoming.jpg", "gdp.jpg", "t1.jpg", "mask_blue.jpg"];

#[test]
fn metrics_and_status_follow_a_pipeline_run() -> anyhow::Result<()> {
    let broker = KafkaBroker::start();
    let brokers = broker.bootstrap.as_str();
    let env: Vec<(String, String)> = [
        ("FACEDEX__KAFKA__PARTITIONS", "4"),
        ("FACEDEX__KAFKA__STATISTICS_INTERVAL_MS", "500"),
        ("FACEDEX__SERVER__SNAPSHOT_INTERVAL_SECS", "1"),
    ]
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .into();

    let folder = tempfile::tempdir()?;
    for copy in 0..COPIES {
        for name in PHOTOS {
            std::fs::copy(photo(name), folder.path().join(format!("{copy}-{name}")))?;
        }
    }
    std::fs::write(folder.path().join("corrupt.jpg"), b"\xff\xd8\xff\xe0 truncated")?;
    std::fs::write(folder.path().join("empty.jpg"), b"")?;

    let data_dir = tempfile::tempdir()?;
    let data = data_dir.path().to_str().context("utf-8")?;
    let metrics_addr = |_: &str| format!("127.0.0.1:{}", free_port());
    let (indexer_metrics, embed_metrics, first_metrics, second_metrics) = (
        metrics_addr("indexer"),
        metrics_addr("embed"),
        metrics_addr("ingest"),
        metrics_addr("ingest"),
    );
    let (indexer, search_url) = Role::start_server(
        &[
            "--metrics-addr",
            &indexer_metrics,
            "indexer",
            "--brokers",
            brokers,
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--no-image-search",
        ],
        &env,
        "facedex: serving FaceSearch on ",
    );
    let (embed, embed_url) = Role::start_server(
        &["--metrics-addr", &embed_metrics, "embed", "--listen", "127.0.0.1:0"],
        &env,
        "facedex: serving Embedder on ",
    );
    let ingest = |metrics: &str| {
        Role::start(
            &[
                "--metrics-addr",
                metrics,
                "ingest",
                "--brokers",
                brokers,
                "--embed",
                &embed_url,
                "--max-in-flight",
                "2",
            ],
            &env,
            "facedex: ingest worker in group",
        )
        .0
    };
    let (first_worker, second_worker) = (ingest(&first_metrics), ingest(&second_metrics));
    // Both workers own partitions before any photo arrives: no rebalance moves work mid-run,
    // so each photo is processed exactly once and the counters can be compared exactly.
    wait_for_stable_group(brokers, "facedex-ingest", 2)?;
    let prometheus = PrometheusServer::start(
        &[
            ("indexer", &indexer_metrics),
            ("embed", &embed_metrics),
            ("ingest", &first_metrics),
            ("ingest", &second_metrics),
        ],
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/alerts.yml"),
    )?;
    // A sample of every role before the run, so that rates over the run have a start.
    prometheus.wait_until_all_up(4)?;

    let output = facedex_command()
        .args([
            "enqueue",
            folder.path().to_str().context("utf-8")?,
            "--brokers",
            brokers,
        ])
        .envs(env.iter().map(|(key, value)| (key, value)))
        .output()?;
    ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let enqueued = (COPIES * PHOTOS.len() + 2) as f64;

    // While photos flow, status sees progress; at the end, nothing left.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut saw_progress = false;
    let final_report = loop {
        let report = status(brokers, &search_url, &env)?;
        let ingest_rate = report["ingest"]["per_sec"].as_f64().context("ingest rate")?;
        let index_rate = report["indexer"]["per_sec"].as_f64().context("index rate")?;
        if ingest_rate > 0.0 && index_rate > 0.0 {
            saw_progress = true;
            ensure!(report["ingest"]["lag"].as_i64().is_some(), "{report}");
        }
        let drained = report["drained"].as_bool() == Some(true)
            && report["ingest"]["done"].as_f64() == Some(enqueued)
            && report["indexer"]["lag"].as_i64() == Some(0);
        if drained {
            break report;
        }
        ensure!(Instant::now() < deadline, "the run never drained: {report}");
    };
    ensure!(saw_progress, "status never saw a non-zero rate in both stages");
    ensure!(final_report["enqueued"].as_f64() == Some(enqueued), "{final_report}");
    ensure!(final_report["ingest"]["lag"].as_i64() == Some(0), "{final_report}");
    ensure!(final_report["eta_secs"].as_f64() == Some(0.0), "{final_report}");
    ensure!(final_report["dead_letters"].as_f64() == Some(2.0), "{final_report}");
    ensure!(
        final_report["dead_letters_by_kind"] == serde_json::json!({"corrupt": 1, "empty": 1}),
        "dead letters by kind: {final_report}"
    );
    ensure!(
        final_report["indexer_offsets_from"] == "index",
        "the indexer's own offsets were read: {final_report}"
    );
    // The enqueue's plan, from the runs topic.
    let last_enqueues = final_report["last_enqueues"].as_array().context("last_enqueues")?;
    let photos = enqueued as u64;
    ensure!(
        last_enqueues.len() == 1
            && last_enqueues[0]["plan"] == format!("{photos} photos: 0 unchanged, 0 changed, {photos} new, 0 removed")
            && last_enqueues[0]["archive"]
                .as_str()
                .is_some_and(|archive| archive.starts_with("file://")),
        "the last enqueue's plan: {final_report}"
    );

    // The roles' counters agree with each other and with what was enqueued.
    let (first, second) = (scrape_metrics(&first_metrics)?, scrape_metrics(&second_metrics)?);
    let (indexer_scrape, embed_scrape) = (scrape_metrics(&indexer_metrics)?, scrape_metrics(&embed_metrics)?);
    let both = |name: &str| sum(&first, name) + sum(&second, name);
    let indexed_by_ingest = both("facedex_ingest_photos_indexed_total");
    let dead_lettered = both("facedex_ingest_photos_dead_lettered_total");
    ensure!(
        indexed_by_ingest + dead_lettered == enqueued,
        "ingest: {indexed_by_ingest} indexed + {dead_lettered} dead-lettered != {enqueued} enqueued"
    );
    ensure!(dead_lettered == 2.0, "two bad photos, {dead_lettered} dead-lettered");
    ensure!(
        sum(&first, "facedex_ingest_photos_indexed_total") > 0.0
            && sum(&second, "facedex_ingest_photos_indexed_total") > 0.0,
        "both workers indexed photos"
    );
    let indexed_by_indexer = sum(&indexer_scrape, "facedex_indexer_photos_indexed_total");
    ensure!(
        indexed_by_indexer == indexed_by_ingest,
        "indexer applied {indexed_by_indexer}, ingest published {indexed_by_ingest}"
    );
    let faces = both("facedex_ingest_faces_total");
    ensure!(faces > 0.0 && sum(&indexer_scrape, "facedex_indexer_faces_indexed_total") == faces);
    ensure!(
        sum(&indexer_scrape, "facedex_index_faces") == final_report["index"]["faces"].as_f64().unwrap_or(-1.0),
        "the index-size gauge matches GetIndexInfo"
    );
    // Every photo was read (the bad ones too: they fail at decode); the good ones decoded.
    let (fetched, decoded) = (
        both("facedex_ingest_photos_fetched_total"),
        both("facedex_ingest_photos_decoded_total"),
    );
    ensure!(
        fetched == enqueued && decoded == indexed_by_ingest,
        "fetched {fetched}, decoded {decoded} of {enqueued}"
    );
    ensure!(
        sum_where(&embed_scrape, "facedex_grpc_requests_total", "method=\"Detect\"") >= indexed_by_ingest,
        "every indexed photo went through Detect"
    );
    ensure!(sum(&embed_scrape, "facedex_models_batch_size_count") > 0.0);
    ensure!(
        sum_where(
            &first,
            "facedex_ingest_stage_duration_seconds_count",
            "stage=\"publish\""
        ) > 0.0
    );
    ensure!(
        sum_where(
            &indexer_scrape,
            "facedex_grpc_request_duration_seconds_count",
            "GetIndexInfo"
        ) > 0.0
    );
    for (role, scrape) in [
        ("ingest", &first),
        ("indexer", &indexer_scrape),
        ("embed", &embed_scrape),
    ] {
        ensure!(
            sum_where(scrape, "facedex_build_info", &format!("role=\"{role}\"")) == 1.0,
            "{role} names itself"
        );
    }
    ensure!(
        first
            .keys()
            .chain(second.keys())
            .any(|series| series.starts_with("facedex_kafka_consumer_lag_messages{")),
        "ingest workers report their lag"
    );

    // Every exported metric is documented.
    let documented = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md"))?;
    for scrape in [&first, &second, &indexer_scrape, &embed_scrape] {
        for series in scrape.keys() {
            let name = metric_name(series);
            ensure!(
                documented.contains(&format!("`{name}`")),
                "{name} is not in docs/metrics.md"
            );
        }
    }

    prometheus_saw_the_run(&prometheus, enqueued, faces)?;

    for role in [first_worker, second_worker, embed, indexer] {
        role.terminate();
    }
    Ok(())
}

/// What Prometheus scraped from the roles: every role up, the totals the roles report, a
/// non-zero throughput while the run went, the backlog drained, and every alert rule evaluated
/// without error and not firing on a healthy run.
fn prometheus_saw_the_run(prometheus: &PrometheusServer, enqueued: f64, faces: f64) -> anyhow::Result<()> {
    let finished = "sum(facedex_ingest_photos_indexed_total) + sum(facedex_ingest_photos_dead_lettered_total)";
    let lag = "sum(facedex_kafka_consumer_lag_messages{topic=\"facedex.images\"})";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The last scrapes after the run: totals complete, the ingest backlog reported empty.
        // Every role scraped and up: a busy role's first scrape can come late on a loaded machine.
        let scraped = prometheus.value(finished).ok() == Some(enqueued)
            && prometheus.value("sum(facedex_indexer_faces_indexed_total)").ok() == Some(faces)
            && prometheus.value(lag).ok() == Some(0.0)
            && prometheus.value("count(up{job=\"facedex\"} == 1)").ok() == Some(4.0);
        if scraped {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "prometheus never saw the whole run: {:?} finished of {enqueued}, lag {:?}, up {:?}",
            prometheus.query(finished),
            prometheus.query(lag),
            prometheus.query("up")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for (what, counter) in [
        ("photos/s through ingest", "facedex_ingest_photos_indexed_total"),
        ("faces/s into the index", "facedex_indexer_faces_indexed_total"),
    ] {
        // A window of many scrape intervals: on a loaded machine scrapes come late, and a rate
        // needs two of them inside its window.
        let peak = prometheus.value(&format!("max_over_time(sum(rate({counter}[30s]))[10m:1s])"))?;
        ensure!(peak > 0.0, "prometheus saw no {what} during the run");
    }
    // The dashboard's per-shard panels join an indexer's series with its shard.
    let per_shard = prometheus
        .query("max by (shard) (facedex_index_faces * on (instance) group_left (shard) facedex_indexer_shard_info)")?;
    ensure!(
        per_shard.len() == 1
            && per_shard[0].labels.get("shard").and_then(|shard| shard.as_str()) == Some("0")
            && per_shard[0].value > 0.0,
        "the one indexer's faces, as shard 0: {per_shard:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let rules = loop {
        let rules = prometheus.alerting_rules()?;
        if rules.iter().all(|(_, health, _)| health != "unknown") {
            break rules;
        }
        ensure!(Instant::now() < deadline, "alert rules never evaluated: {rules:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    ensure!(rules.len() >= 7, "the repository's alert rules are loaded: {rules:?}");
    for (name, health, state) in &rules {
        ensure!(
            health == "ok",
            "{name} does not evaluate on the roles' series: {health}"
        );
        ensure!(state != "firing", "{name} fires on a healthy run");
    }
    Ok(())
}

fn status(brokers: &str, server: &str, env: &[(String, String)]) -> anyhow::Result<serde_json::Value> {
    let output = facedex_command()
        .args([
            "status",
            "--once",
            "--json",
            "--interval-secs",
            "1",
            "--brokers",
            brokers,
            "--server",
            server,
        ])
        .envs(env.iter().map(|(key, value)| (key, value)))
        .output()?;
    ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn metric_name(series: &str) -> &str {
    let name = series.split('{').next().unwrap_or(series);
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// The sum of every series of `name` (over its labels).
fn sum(scrape: &BTreeMap<String, f64>, name: &str) -> f64 {
    sum_where(scrape, name, "")
}

/// The sum of the series of `name` whose labels contain `label`.
fn sum_where(scrape: &BTreeMap<String, f64>, name: &str, label: &str) -> f64 {
    scrape
        .iter()
        .filter(|(series, _)| series.split('{').next() == Some(name) && series.contains(label))
        .map(|(_, value)| value)
        .sum()
}
