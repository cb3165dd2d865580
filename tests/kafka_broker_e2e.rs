//! The distributed pipeline end to end on a real Apache Kafka 4 node (KRaft) and real object
//! store APIs (S3: moto, GCS: fake-gcs-server, Azure: Azurite): `facedex indexer`, `facedex
//! embed`, two `facedex ingest` processes, then `facedex enqueue` of a local folder (good and
//! bad photos) and of an S3, a GCS and an Azure prefix. Every photo ends
//! indexed or dead-lettered with its reason, both ingest workers take part, and a search with
//! yaoming.jpg over gRPC finds player 13 of players.jpg. Then the folder changes: enqueueing it
//! unchanged publishes nothing, a photo edited in place has its faces replaced in the index and
//! a deleted one is removed by `enqueue --prune`, through the faces topic.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use facedex_proto::pipeline as wire;
use facedex_proto::pipeline_conversions::decode;
use rdkafka::ClientConfig;
use support::cluster::{AzuriteServer, GcsServer, KafkaBroker, Role, S3Server, wait_for_stable_group};
use support::topics::{PARTITIONS, applied_offsets, end_offsets, index_info, read_topic, wait_until};
use support::{facedex_command, http_request, photo};

const FILE_PHOTOS: [&str; 4] = ["players.jpg", "yaoming.jpg", "gdp.jpg", "t1.jpg"];
const S3_PHOTOS: [&str; 3] = ["Tom_Hanks_54745.png", "mask_blue.jpg", "mask_white.jpg"];

#[test]
fn broker_pipeline_indexes_a_folder_and_s3_gcs_and_azure_prefixes() -> anyhow::Result<()> {
    let broker = KafkaBroker::start();
    let s3 = S3Server::start();
    // The same photos in an S3 bucket (uploaded below), a GCS bucket and an Azure container.
    let cloud_files: Vec<_> = S3_PHOTOS.iter().map(|name| photo(name)).collect();
    let cloud_files: Vec<&std::path::Path> = cloud_files.iter().map(|path| path.as_path()).collect();
    let gcs = GcsServer::start("archive", "photos", &cloud_files);
    let azurite = AzuriteServer::start();
    azurite.upload("archive", "photos", &cloud_files);
    let mut env = s3.env();
    env.extend(gcs.env());
    env.extend(azurite.env());
    env.extend(
        [
            ("FACEDEX__KAFKA__PARTITIONS", PARTITIONS.to_string()),
            ("FACEDEX__ARCHIVE__MAX_IMAGE_BYTES", (2 * 1024 * 1024).to_string()),
            ("FACEDEX__SERVER__SNAPSHOT_INTERVAL_SECS", "1".to_owned()),
        ]
        .map(|(key, value)| (key.to_owned(), value)),
    );
    let brokers = broker.bootstrap.as_str();

    // The archives: a folder with good and bad files, and S3, GCS and Azure prefixes.
    let folder = tempfile::tempdir()?;
    for name in FILE_PHOTOS {
        std::fs::copy(photo(name), folder.path().join(name))?;
    }
    let players = std::fs::read(photo("players.jpg"))?;
    std::fs::write(folder.path().join("corrupt.jpg"), &players[..players.len() / 3])?;
    std::fs::write(folder.path().join("empty.jpg"), b"")?;
    std::fs::write(folder.path().join("not-a-photo.jpg"), b"just some text, no pixels")?;
    std::fs::write(folder.path().join("oversize.jpg"), vec![0u8; 3 * 1024 * 1024])?;
    // A photo enqueued before any ingest worker runs, then deleted: its fetch finds nothing.
    let vanishing = tempfile::tempdir()?;
    std::fs::write(vanishing.path().join("deleted.jpg"), &players)?;
    s3.upload("archive", "photos", &cloud_files);

    // The roles.
    let data_dir = tempfile::tempdir()?;
    let data = data_dir.path().to_str().context("utf-8")?;
    let (indexer, search_url) = Role::start_server(
        &[
            "indexer",
            "--brokers",
            brokers,
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
        &env,
        "facedex: serving FaceSearch on ",
    );
    let console = indexer.console_addr().context("the indexer serves the web console")?;
    let (embed, embed_url) = Role::start_server(
        &["embed", "--listen", "127.0.0.1:0"],
        &env,
        "facedex: serving Embedder on ",
    );
    let enqueued_vanishing = enqueue(vanishing.path().to_str().context("utf-8")?, brokers, &env)?;
    std::fs::remove_file(vanishing.path().join("deleted.jpg"))?;
    let ingest_args = [
        "ingest",
        "--brokers",
        brokers,
        "--embed",
        &embed_url,
        "--max-in-flight",
        "4",
    ];
    let (first_worker, _) = Role::start(&ingest_args, &env, "facedex: ingest worker in group");
    let (second_worker, _) = Role::start(&ingest_args, &env, "facedex: ingest worker in group");
    wait_for_stable_group(brokers, "facedex-ingest", 2)?;

    // Enqueue both archives once both workers are in the group.
    let enqueued_folder = enqueue(folder.path().to_str().context("utf-8")?, brokers, &env)?;
    let enqueued_s3 = enqueue("s3://archive/photos", brokers, &env)?;
    let enqueued_gcs = enqueue("gs://archive/photos", brokers, &env)?;
    let enqueued_azure = enqueue("az://archive/photos", brokers, &env)?;
    ensure!(
        (
            enqueued_vanishing,
            enqueued_folder,
            enqueued_s3,
            enqueued_gcs,
            enqueued_azure
        ) == (1, 8, 3, 3, 3),
        "enqueued {enqueued_vanishing} + {enqueued_folder} + {enqueued_s3} + {enqueued_gcs} + {enqueued_azure}"
    );
    let enqueued = enqueued_vanishing + enqueued_folder + enqueued_s3 + enqueued_gcs + enqueued_azure;

    // Wait until every photo is accounted for and the indexer applied every face batch.
    // Delivery is at least once, so photos are counted by distinct URI.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let photos = distinct_photos(brokers)?;
        let batches = end_offsets(brokers, "facedex.faces")?;
        let applied = applied_offsets(&search_url)?;
        if photos == enqueued && applied == batches {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "stuck: {photos} of {enqueued} photos out, {applied} of {batches} face batches applied"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The indexer's web console shows the stages as `facedex status` does: every photo
    // ingested, every face batch applied, drained.
    let mut stages = serde_json::Value::Null;
    wait_until("the console's stages are drained", || {
        let (status, body) = http_request(&console, "GET", "/api/pipeline", &[], &[])?;
        ensure!(status == 200, "{}", String::from_utf8_lossy(&body));
        let pipeline: serde_json::Value = serde_json::from_slice(&body)?;
        stages = pipeline["stages"].clone();
        Ok(stages["drained"] == true)
    })?;
    ensure!(
        stages["ingest"]["done"].as_i64() == stages["enqueued"].as_i64()
            && stages["enqueued"].as_i64() >= Some(enqueued as i64),
        "the console's stages: {stages}"
    );
    ensure!(
        stages["indexer"]["lag"] == 0 && stages["dead_letters"].as_i64() > Some(0),
        "{stages}"
    );

    let letters: BTreeMap<String, String> = read_topic(brokers, "facedex.dead-letter")?
        .iter()
        .map(|payload| {
            let letter: wire::DeadLetter = decode("DeadLetter", payload)?;
            anyhow::Ok((
                letter.image.map(|image| image.key).unwrap_or_default(),
                letter.error_kind,
            ))
        })
        .collect::<Result<_, _>>()?;
    let expected: BTreeMap<String, String> = [
        ("corrupt.jpg", "corrupt"),
        ("deleted.jpg", "not_found"),
        ("empty.jpg", "empty"),
        ("not-a-photo.jpg", "not_an_image"),
        ("oversize.jpg", "too_large"),
    ]
    .into_iter()
    .map(|(key, kind)| (key.to_owned(), kind.to_owned()))
    .collect();
    assert_eq!(letters, expected);
    let batches: Vec<wire::FaceBatch> = read_topic(brokers, "facedex.faces")?
        .iter()
        .filter_map(|payload| decode::<wire::FaceBatch>("FaceBatch", payload).ok())
        .collect();
    for store in ["s3", "gs", "az"] {
        let prefix = format!("{store}://archive/photos/");
        let photos: std::collections::BTreeSet<&str> = batches
            .iter()
            .filter_map(|batch| batch.image.as_ref())
            .map(|image| image.uri.as_str())
            .filter(|uri| uri.starts_with(&prefix))
            .collect();
        assert_eq!(
            photos.len(),
            S3_PHOTOS.len(),
            "every {store}:// photo was fetched and indexed"
        );
    }

    // yaoming.jpg finds itself, then player 13 of players.jpg.
    let output = facedex_command()
        .args(["search", "--server", &search_url, "--json", "--limit", "2", "--image"])
        .arg(photo("yaoming.jpg"))
        .output()?;
    ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let second = &result["hits"][1];
    ensure!(
        second["image_uri"]
            .as_str()
            .is_some_and(|uri| uri.ends_with("/players.jpg")),
        "{result}"
    );
    ensure!(second["similarity"].as_f64().is_some_and(|s| s > 0.55), "{result}");
    // Player 13's box, as InsightFace finds it (README, Parity).
    let bbox: [f32; 4] = serde_json::from_value(second["bbox"].clone())?;
    ensure!(support::iou(&bbox, &[721.0, 142.0, 765.0, 192.0]) > 0.9, "{result}");
    // Its age, gender and quality came through the faces topic with it.
    ensure!(
        second["attributes"]["gender"]["label"].is_string()
            && second["attributes"]["age"]["value"].is_number()
            && second["quality"].as_f64().is_some_and(|quality| quality > 0.0),
        "{result}"
    );

    // The archive changes. Once every outcome of the folder is in the catalog (its 8 photos
    // but the vanished one), enqueueing the unchanged folder publishes nothing.
    let folder_root = folder.path().to_str().context("utf-8")?;
    let kafka = facedex_kafka::KafkaConfig {
        brokers: brokers.to_owned(),
        ..facedex_kafka::KafkaConfig::default()
    };
    let folder_prefix = format!("file://{}/", std::fs::canonicalize(folder.path())?.display());
    wait_until("the catalog holds the folder's outcomes", || {
        Ok(facedex_kafka::catalog::read_catalog(&kafka, &folder_prefix)?.len() == 8)
    })?;
    let (unchanged, plan) = enqueue_with(folder_root, brokers, &env, &[])?;
    ensure!(
        unchanged == 0 && plan.starts_with("8 photos: 8 unchanged, 0 changed, 0 new, 0 removed"),
        "{plan}"
    );
    let faces_before = index_info(&search_url)?.faces;
    let photo_faces = |name: &str| -> anyhow::Result<u64> {
        let output = facedex_command().args(["detect", "--json"]).arg(photo(name)).output()?;
        let found: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        found["faces"]
            .as_array()
            .map(|faces| faces.len() as u64)
            .context("faces")
    };
    let (t1_faces, gdp_faces, yaoming_faces) = (
        photo_faces("t1.jpg")?,
        photo_faces("gdp.jpg")?,
        photo_faces("yaoming.jpg")?,
    );
    // t1.jpg overwritten in place with yaoming.jpg's bytes, gdp.jpg deleted, then --prune.
    std::fs::write(folder.path().join("t1.jpg"), std::fs::read(photo("yaoming.jpg"))?)?;
    std::fs::remove_file(folder.path().join("gdp.jpg"))?;
    let faces_records = end_offsets(brokers, "facedex.faces")?;
    let (changed, plan) = enqueue_with(folder_root, brokers, &env, &["--prune"])?;
    ensure!(
        changed == 1 && plan.starts_with("7 photos: 6 unchanged, 1 changed, 0 new, 1 removed"),
        "{plan}"
    );
    // The edited photo's batch and the removal, both applied.
    wait_until("the edit and the removal are applied", || {
        let records = end_offsets(brokers, "facedex.faces")?;
        Ok(records >= faces_records + 2 && applied_offsets(&search_url)? == records)
    })?;
    let faces_after = index_info(&search_url)?.faces;
    ensure!(
        faces_after == faces_before - t1_faces - gdp_faces + yaoming_faces,
        "{faces_after} faces after the edit and the prune, {faces_before} before (t1.jpg {t1_faces}, gdp.jpg {gdp_faces}, yaoming.jpg {yaoming_faces})"
    );
    let output = facedex_command()
        .args(["search", "--server", &search_url, "--json", "--limit", "3", "--image"])
        .arg(photo("yaoming.jpg"))
        .output()?;
    let result: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let twins: Vec<&str> = result["hits"]
        .as_array()
        .context("hits")?
        .iter()
        .filter(|hit| hit["similarity"].as_f64().is_some_and(|s| s > 0.99))
        .filter_map(|hit| hit["image_uri"].as_str())
        .collect();
    ensure!(
        twins.iter().any(|uri| uri.ends_with("/t1.jpg")) && twins.iter().any(|uri| uri.ends_with("/yaoming.jpg")),
        "the edited t1.jpg holds yaoming's face: {result}"
    );
    let (again, plan) = enqueue_with(folder_root, brokers, &env, &["--prune"])?;
    ensure!(
        again == 0 && plan.starts_with("7 photos: 7 unchanged, 0 changed, 0 new, 0 removed"),
        "{plan}"
    );

    // Both workers did part of the work; every role stops cleanly on SIGTERM.
    for worker in [first_worker, second_worker] {
        let lines = worker.terminate();
        let last = lines.last().context("ingest output")?;
        let numbers: Vec<u64> = last
            .split_whitespace()
            .filter_map(|word| word.trim_matches('(').parse().ok())
            .collect();
        ensure!(
            numbers.len() == 3 && numbers[0] + numbers[2] > 0,
            "a worker did nothing: {last}"
        );
    }
    embed.terminate();
    indexer.terminate();
    Ok(())
}

fn enqueue(archive: &str, brokers: &str, env: &[(String, String)]) -> anyhow::Result<u64> {
    Ok(enqueue_with(archive, brokers, env, &[])?.0)
}

/// `facedex enqueue` with `extra` flags: the photos it published and its plan line.
fn enqueue_with(
    archive: &str,
    brokers: &str,
    env: &[(String, String)],
    extra: &[&str],
) -> anyhow::Result<(u64, String)> {
    let output = facedex_command()
        .args(["enqueue", archive, "--brokers", brokers])
        .args(extra)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .output()?;
    ensure!(
        output.status.success(),
        "enqueue failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("enqueued "))
        .context("enqueue summary")?;
    let plan = stdout.lines().next().unwrap_or_default().to_owned();
    Ok((line.split_whitespace().nth(1).context("count")?.parse()?, plan))
}

/// Polls `done` for up to two minutes.
/// Copies of the sample photos under distinct names: enough work that kills land mid-run.
const COPIES: usize = 6;
const COPIED_PHOTOS: [&str; 6] = [
    "players.jpg",
    "yaoming.jpg",
    "gdp.jpg",
    "t1.jpg",
    "Tom_Hanks_54745.png",
    "mask_blue.jpg",
];

#[test]
fn kill_nine_of_each_role_mid_run_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let broker = KafkaBroker::start();
    let brokers = broker.bootstrap.as_str();
    let run = FaultRun::new(brokers)?;
    let (config, env) = (run.config.as_str(), Vec::<(String, String)>::new());
    let indexer_args = run.indexer_args();
    let indexer_args: Vec<&str> = indexer_args.iter().map(String::as_str).collect();
    let (indexer, _) = Role::start(&indexer_args, &env, "facedex: serving FaceSearch on ");
    let embed_listen = format!("127.0.0.1:{}", support::cluster::free_port());
    let embed_args = ["--config", config, "embed", "--listen", embed_listen.as_str()];
    let (embed, _) = Role::start(&embed_args, &env, "facedex: serving Embedder on ");
    let embed_url = format!("http://{embed_listen}");
    let ingest_args = run.ingest_args(&embed_url);
    let ingest_args: Vec<&str> = ingest_args.iter().map(String::as_str).collect();
    let (victim, _) = Role::start(&ingest_args, &env, "facedex: ingest worker in group");
    let (survivor, _) = Role::start(&ingest_args, &env, "facedex: ingest worker in group");
    wait_for_stable_group(brokers, "facedex-ingest", 2)?;
    let enqueued = run.enqueue()?;

    // Kill -9 one ingest worker, then the embed worker, then the indexer, each with work left.
    wait_for_batches(brokers, enqueued / 6, enqueued)?;
    victim.kill();
    let (restarted_worker, _) = Role::start(&ingest_args, &env, "facedex: ingest worker in group");
    wait_for_batches(brokers, enqueued / 3, enqueued)?;
    embed.kill();
    std::thread::sleep(Duration::from_secs(1)); // ingest workers see the outage and retry
    let (embed, _) = Role::start(&embed_args, &env, "facedex: serving Embedder on ");
    wait_for_batches(brokers, enqueued / 2, enqueued)?;
    indexer.kill();
    let (indexer, search_url) = Role::start_server(&indexer_args, &env, "facedex: serving FaceSearch on ");

    run.clean
        .matches_once_every_photo_is_applied(brokers, &search_url, enqueued)?;

    for role in [survivor, restarted_worker, embed, indexer] {
        role.terminate();
    }
    Ok(())
}

/// Distinct photo URIs in the faces and dead-letter topics.
fn distinct_photos(brokers: &str) -> anyhow::Result<u64> {
    let mut uris = std::collections::BTreeSet::new();
    for payload in read_topic(brokers, "facedex.faces")? {
        let batch: wire::FaceBatch = decode("FaceBatch", &payload)?;
        uris.insert(batch.image.map(|image| image.uri).unwrap_or_default());
    }
    for payload in read_topic(brokers, "facedex.dead-letter")? {
        let letter: wire::DeadLetter = decode("DeadLetter", &payload)?;
        uris.insert(letter.image.map(|image| image.uri).unwrap_or_default());
    }
    Ok(uris.len() as u64)
}

/// The number right after `marker` followed by a word (`... photos (34 faces)`).
fn word_after_number(text: &str, marker: &str) -> anyhow::Result<u64> {
    let rest = text
        .split(marker)
        .nth(1)
        .with_context(|| format!("no {marker:?} in {text:?}"))?;
    Ok(rest.split_whitespace().next().context("number")?.parse()?)
}

/// Waits for `at_least` face batches, then checks that photos are still left: the next kill
/// lands mid-run.
fn wait_for_batches(brokers: &str, at_least: u64, photos: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let batches = end_offsets(brokers, "facedex.faces")?;
        if batches >= at_least {
            ensure!(batches < photos, "the run ended before the kill ({batches} batches)");
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "fewer than {at_least} face batches");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The setting of a fault test: copies of the sample photos, a config where a dead worker's
/// partitions move to the others soon (short sessions), snapshots every second and retries are
/// quick, an indexer data directory, and the clean local-mode run to compare with.
struct FaultRun {
    brokers: String,
    archive: String,
    config: String,
    data: String,
    clean: CleanRun,
    _folders: [tempfile::TempDir; 3],
}

impl FaultRun {
    fn new(brokers: &str) -> anyhow::Result<Self> {
        let folder = tempfile::tempdir()?;
        for copy in 0..COPIES {
            for name in COPIED_PHOTOS {
                std::fs::copy(photo(name), folder.path().join(format!("{copy}-{name}")))?;
            }
        }
        let config_dir = tempfile::tempdir()?;
        let config = config_dir.path().join("facedex.toml");
        std::fs::write(
            &config,
            "[kafka]\npartitions = 4\n[kafka.client]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\
             [server]\nsnapshot_interval_secs = 1\n[ingest]\nretry_initial_backoff_ms = 100\nretry_max_backoff_ms = 1000\n",
        )?;
        let data_dir = tempfile::tempdir()?;
        let text = |path: &std::path::Path| path.to_str().map(str::to_owned).context("utf-8");
        let archive = text(folder.path())?;
        Ok(Self {
            brokers: brokers.to_owned(),
            clean: CleanRun::of(&archive)?,
            archive,
            config: text(&config)?,
            data: text(data_dir.path())?,
            _folders: [folder, config_dir, data_dir],
        })
    }

    fn indexer_args(&self) -> Vec<String> {
        let args = [
            "--config",
            &self.config,
            "indexer",
            "--brokers",
            &self.brokers,
            "--data-dir",
            &self.data,
        ];
        let args = args.into_iter().chain(["--listen", "127.0.0.1:0", "--no-image-search"]);
        args.map(str::to_owned).collect()
    }

    fn ingest_args(&self, embed_url: &str) -> Vec<String> {
        let args = [
            "--config",
            &self.config,
            "ingest",
            "--brokers",
            &self.brokers,
            "--embed",
            embed_url,
        ];
        args.into_iter()
            .chain(["--max-in-flight", "2"])
            .map(str::to_owned)
            .collect()
    }

    /// Enqueues the photos; returns how many.
    fn enqueue(&self) -> anyhow::Result<u64> {
        let output = facedex_command()
            .args([
                "--config",
                &self.config,
                "enqueue",
                &self.archive,
                "--brokers",
                &self.brokers,
            ])
            .output()?;
        ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        Ok((COPIES * COPIED_PHOTOS.len()) as u64)
    }
}

/// What local mode makes of the same folder: the faces and photos a faulty run must end with.
struct CleanRun {
    summary: String,
    faces: u64,
    images: u64,
}

impl CleanRun {
    fn of(archive: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let output = facedex_command()
            .args(["index", archive, "--data-dir", dir.path().to_str().context("utf-8")?])
            .output()?;
        ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let summary = String::from_utf8_lossy(&output.stdout).to_string();
        let faces = word_after_number(&summary, "photos (")?;
        let images = facedex_index::FaceStore::open(dir.path(), facedex_index::IndexConfig::default())?
            .index()
            .info()
            .images as u64;
        Ok(Self { summary, faces, images })
    }

    /// Waits until every photo is in the faces topic (perhaps twice: at-least-once) and the
    /// indexer applied every record, then checks the index holds what the clean run made, each
    /// face once, and that nothing was dead-lettered.
    fn matches_once_every_photo_is_applied(
        &self,
        brokers: &str,
        search_url: &str,
        enqueued: u64,
    ) -> anyhow::Result<()> {
        self.matches_once_every_photo_is_applied_with(brokers, search_url, enqueued, 0)
    }

    /// As above, with `dead_letters` records in the dead-letter topic (poison records).
    fn matches_once_every_photo_is_applied_with(
        &self,
        brokers: &str,
        search_url: &str,
        enqueued: u64,
        dead_letters: u64,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(400);
        loop {
            let uris: std::collections::BTreeSet<String> = read_topic(brokers, "facedex.faces")?
                .iter()
                .filter_map(|payload| decode::<wire::FaceBatch>("FaceBatch", payload).ok())
                .filter_map(|batch| batch.image.map(|image| image.uri))
                .collect();
            let batches = end_offsets(brokers, "facedex.faces")?;
            let applied = applied_offsets(search_url)?;
            if uris.len() as u64 == enqueued && applied == batches {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "stuck: {} of {enqueued} photos, {applied} of {batches} applied",
                uris.len()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let dead = end_offsets(brokers, "facedex.dead-letter")?;
        ensure!(
            dead == dead_letters,
            "{dead} records dead-lettered, expected {dead_letters}"
        );
        let info = index_info(search_url)?;
        ensure!(
            info.images == self.images,
            "every photo with faces is in the index: {info:?}"
        );
        ensure!(
            info.faces == self.faces,
            "the same faces as the clean run, none twice: {info:?} against {}",
            self.summary
        );
        Ok(())
    }
}

#[test]
fn the_broker_killed_mid_run_and_a_worker_killed_while_it_is_away_lose_and_duplicate_nothing() -> anyhow::Result<()> {
    let mut broker = KafkaBroker::start();
    let brokers = broker.bootstrap.clone();
    let brokers = brokers.as_str();
    let run = FaultRun::new(brokers)?;
    let (config, env) = (run.config.as_str(), Vec::<(String, String)>::new());
    let indexer_args = run.indexer_args();
    let indexer_args: Vec<&str> = indexer_args.iter().map(String::as_str).collect();
    let (indexer, search_url) = Role::start_server(&indexer_args, &env, "facedex: serving FaceSearch on ");
    let (embed, embed_url) = Role::start_server(
        &["--config", config, "embed", "--listen", "127.0.0.1:0"],
        &env,
        "facedex: serving Embedder on ",
    );
    let ingest_args = run.ingest_args(&embed_url);
    let ingest_args: Vec<&str> = ingest_args.iter().map(String::as_str).collect();
    let (victim, _) = Role::start(&ingest_args, &env, "facedex: ingest worker in group");
    let (survivor, _) = Role::start(&ingest_args, &env, "facedex: ingest worker in group");
    wait_for_stable_group(brokers, "facedex-ingest", 2)?;
    let enqueued = run.enqueue()?;

    // Kill -9 the broker with work left; while it is away, kill -9 one ingest worker too.
    wait_for_batches(brokers, enqueued / 4, enqueued)?;
    broker.kill();
    std::thread::sleep(Duration::from_secs(2));
    victim.kill();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();

    // The survivor takes the dead worker's partitions; every photo ends indexed once.
    run.clean
        .matches_once_every_photo_is_applied(brokers, &search_url, enqueued)?;
    for role in [survivor, embed, indexer] {
        role.terminate();
    }
    Ok(())
}

/// Produces `records` (payload, faces-topic kind header) to `topic` and waits for the acks.
fn produce(brokers: &str, topic: &str, records: &[(Vec<u8>, Option<&str>)]) -> anyhow::Result<()> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", "2000000")
        .create()?;
    for (number, (payload, kind)) in records.iter().enumerate() {
        let key = format!("poison-{number}");
        let mut record = BaseRecord::to(topic).key(&key).payload(payload);
        if let Some(kind) = kind {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: facedex_kafka::records::RECORD_KIND_HEADER,
                value: Some(kind.as_bytes()),
            }));
        }
        producer.send(record).map_err(|(error, _)| error)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

#[test]
fn poison_records_in_every_topic_are_refused_counted_and_the_run_goes_on() -> anyhow::Result<()> {
    use prost::Message as _;
    let broker = KafkaBroker::start();
    let brokers = broker.bootstrap.as_str();
    let run = FaultRun::new(brokers)?;
    let env = Vec::<(String, String)>::new();
    let (indexer_metrics, ingest_metrics) = (
        format!("127.0.0.1:{}", support::cluster::free_port()),
        format!("127.0.0.1:{}", support::cluster::free_port()),
    );
    let mut indexer_args = run.indexer_args();
    indexer_args.extend(["--metrics-addr".to_owned(), indexer_metrics.clone()]);
    let indexer_args: Vec<&str> = indexer_args.iter().map(String::as_str).collect();
    let (indexer, search_url) = Role::start_server(&indexer_args, &env, "facedex: serving FaceSearch on ");
    let embed_args = ["--config", &run.config, "embed", "--listen", "127.0.0.1:0"];
    let (embed, embed_url) = Role::start_server(&embed_args, &env, "facedex: serving Embedder on ");
    let mut ingest_args = run.ingest_args(&embed_url);
    ingest_args.extend(["--metrics-addr".to_owned(), ingest_metrics.clone()]);
    let ingest_args: Vec<&str> = ingest_args.iter().map(String::as_str).collect();
    let (worker, _) = Role::start(&ingest_args, &env, "facedex: ingest worker in group");
    wait_for_stable_group(brokers, "facedex-ingest", 1)?;

    // Random bytes, a valid message of another type, a huge message: in the images topic, the
    // faces topic (with and without a kind header) and the catalog the planner reads.
    let random: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let huge = vec![0xa5u8; 900 * 1024];
    let another_type = |image_ref: bool| {
        let image = wire::ImageRef {
            uri: "file:///poison.jpg".into(),
            ..wire::ImageRef::default()
        };
        if image_ref {
            wire::FaceBatch {
                image: Some(image),
                model_id: "w600k".into(),
                width: 640,
                ..wire::FaceBatch::default()
            }
            .encode_to_vec()
        } else {
            wire::DeadLetter {
                image: Some(image),
                error_kind: "corrupt".into(),
                message: "not a face batch".into(),
                attempts: 1,
                failed_at_unix_ms: 1,
            }
            .encode_to_vec()
        }
    };
    produce(
        brokers,
        "facedex.images",
        &[(random.clone(), None), (another_type(true), None), (huge.clone(), None)],
    )?;
    produce(
        brokers,
        "facedex.faces",
        &[
            (random.clone(), Some("face-batch")),
            (another_type(false), Some("face-batch")),
            (huge.clone(), None),
            (random.clone(), Some("a-kind-from-the-future")),
        ],
    )?;
    produce(brokers, "facedex.catalog", &[(random, None), (huge, None)])?;
    let enqueued = run.enqueue()?;

    run.clean
        .matches_once_every_photo_is_applied_with(brokers, &search_url, enqueued, 3)?;
    let refused: f64 = support::scrape_metrics(&indexer_metrics)?
        .iter()
        .filter(|(series, _)| series.starts_with("facedex_indexer_records_refused_total"))
        .map(|(_, value)| value)
        .sum();
    ensure!(
        refused == 4.0,
        "the indexer refused and counted the 4 poison records: {refused}"
    );
    let malformed: f64 = support::scrape_metrics(&ingest_metrics)?
        .iter()
        .filter(|(series, _)| {
            series.starts_with("facedex_ingest_photos_dead_lettered_total") && series.contains("malformed_record")
        })
        .map(|(_, value)| value)
        .sum();
    ensure!(
        malformed == 3.0,
        "ingest dead-lettered the 3 poison image records: {malformed}"
    );
    for role in [worker, embed, indexer] {
        role.terminate();
    }
    Ok(())
}

/// One person as a user sees it, whatever id an indexer gave it: its name, whether it is
/// hidden, and its faces.
type PersonView = (String, bool, Vec<String>);

/// Every person of the indexer at `url`, id-free and sorted: two indexers agree on the people
/// when these are equal.
async fn people_of(url: &str) -> anyhow::Result<Vec<PersonView>> {
    let mut people = facedex_proto::people_client::PeopleClient::connect(url.to_owned()).await?;
    let listed = people
        .list_people(facedex_proto::ListPeopleRequest {
            limit: 1000,
            include_hidden: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut views = Vec::new();
    for person in listed.persons {
        let shown = people
            .get_person(facedex_proto::GetPersonRequest {
                person_id: person.person_id,
                limit: 1000,
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut faces: Vec<String> = shown.faces.into_iter().map(|face| face.face_id).collect();
        faces.sort();
        views.push((person.name, person.hidden, faces));
    }
    views.sort();
    Ok(views)
}

/// Every face of the indexer at `url` with its quality and attributes, by face id (an exact
/// search that keeps every hit).
async fn traits_of(url: &str) -> anyhow::Result<BTreeMap<String, (Option<f32>, Vec<facedex_proto::FaceAttribute>)>> {
    let mut client = facedex_proto::face_search_client::FaceSearchClient::connect(url.to_owned()).await?;
    let everything = facedex_proto::SearchRequest {
        query: Some(facedex_proto::search_request::Query::Embedding(
            facedex_proto::Embedding {
                values: vec![(512f32).sqrt().recip(); 512],
            },
        )),
        limit: Some(1000),
        min_score: Some(-1.0),
        exact: true,
        ..Default::default()
    };
    let response = client.search(everything).await?.into_inner();
    Ok(response.results[0]
        .hits
        .iter()
        .filter_map(|hit| hit.face.clone())
        .map(|face| (face.face_id, (face.quality, face.attributes)))
        .collect())
}

/// Applied offsets of `topic` on the indexer at `url`, summed.
fn applied_on(url: &str, topic: &str) -> anyhow::Result<u64> {
    Ok(index_info(url)?
        .applied_offsets
        .iter()
        .filter(|offset| offset.topic == topic)
        .map(|offset| offset.next_offset as u64)
        .sum())
}

#[test]
fn people_edits_reach_every_indexer_through_kafka_and_survive_a_restart_and_a_replay() -> anyhow::Result<()> {
    let broker = KafkaBroker::start();
    let brokers = broker.bootstrap.as_str();
    let env: Vec<(String, String)> = [
        ("FACEDEX__KAFKA__PARTITIONS", PARTITIONS.to_string()),
        ("FACEDEX__SERVER__SNAPSHOT_INTERVAL_SECS", "1".to_owned()),
    ]
    .map(|(key, value)| (key.to_owned(), value))
    .into();
    // Four copies of players.jpg: each player is in four photos, enough to found a person.
    let folder = tempfile::tempdir()?;
    for copy in 0..4 {
        std::fs::copy(photo("players.jpg"), folder.path().join(format!("players-{copy}.jpg")))?;
    }
    let first_dir = tempfile::tempdir()?;
    let indexer_args = |data: &str| -> Vec<String> {
        [
            "indexer",
            "--brokers",
            brokers,
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
        ]
        .map(str::to_owned)
        .into()
    };
    let first_args = indexer_args(first_dir.path().to_str().context("utf-8")?);
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let ready = "facedex: serving FaceSearch on ";
    let (first, first_url) = Role::start_server(&first_args, &env, ready);
    let (embed, embed_url) = Role::start_server(
        &["embed", "--listen", "127.0.0.1:0"],
        &env,
        "facedex: serving Embedder on ",
    );
    let (worker, _) = Role::start(
        &["ingest", "--brokers", brokers, "--embed", &embed_url],
        &env,
        "facedex: ingest worker in group",
    );
    wait_for_stable_group(brokers, "facedex-ingest", 1)?;
    ensure!(enqueue(folder.path().to_str().context("utf-8")?, brokers, &env)? == 4);
    wait_until("the indexer applied every face batch", || {
        Ok(distinct_photos(brokers)? == 4 && applied_offsets(&first_url)? == end_offsets(brokers, "facedex.faces")?)
    })?;
    worker.terminate();
    embed.terminate();

    // Edits on the first indexer, each answered once it is back from the topic.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let edited = runtime.block_on(async {
        let mut people = facedex_proto::people_client::PeopleClient::connect(first_url.clone()).await?;
        let listed = people
            .list_people(facedex_proto::ListPeopleRequest {
                limit: 1000,
                ..Default::default()
            })
            .await?
            .into_inner();
        ensure!(listed.persons.len() >= 10, "persons: {}", listed.persons.len());
        let [alpha, beta, gamma] = [0, 1, 2].map(|rank| listed.persons[rank].person_id.clone());
        let faces_of = |person_id: &str| facedex_proto::GetPersonRequest {
            person_id: person_id.to_owned(),
            limit: 1000,
            ..Default::default()
        };
        let alpha_faces = people.get_person(faces_of(&alpha)).await?.into_inner().faces;
        let beta_faces = people.get_person(faces_of(&beta)).await?.into_inner().faces;
        // Split a face off alpha, and a face of another photo off beta, then merge the two.
        let split_face = alpha_faces.last().context("a face")?.clone();
        let other_photo_face = beta_faces
            .iter()
            .find(|face| face.image_uri != split_face.image_uri)
            .context("a face of another photo")?
            .clone();
        let split = |face: &facedex_proto::Face| facedex_proto::MoveFacesRequest {
            face_ids: vec![face.face_id.clone()],
            to_person_id: String::new(),
        };
        let split_off = people.move_faces(split(&split_face)).await?.into_inner();
        ensure!(split_off.face_count == 1 && split_off.person_id != alpha);
        let second = people.move_faces(split(&other_photo_face)).await?.into_inner();
        let merged = people
            .merge_people(facedex_proto::MergePeopleRequest {
                into_person_id: split_off.person_id.clone(),
                from_person_ids: vec![second.person_id.clone()],
            })
            .await?
            .into_inner();
        ensure!(merged.face_count == 2, "{merged:?}");
        let renamed = people
            .rename_person(facedex_proto::RenamePersonRequest {
                person_id: alpha.clone(),
                name: "Alpha".into(),
            })
            .await?
            .into_inner();
        ensure!(renamed.name == "Alpha" && renamed.face_count == alpha_faces.len() as u64 - 1);
        people
            .rename_person(facedex_proto::RenamePersonRequest {
                person_id: split_off.person_id.clone(),
                name: "Two strangers".into(),
            })
            .await?;
        people
            .hide_person(facedex_proto::HidePersonRequest {
                person_id: gamma.clone(),
                hidden: true,
            })
            .await?;
        // Two players of the same photos cannot be one person: refused, nothing written.
        let status = people
            .merge_people(facedex_proto::MergePeopleRequest {
                into_person_id: alpha.clone(),
                from_person_ids: vec![beta.clone()],
            })
            .await
            .expect_err("one person per photo");
        ensure!(status.code() == tonic::Code::FailedPrecondition, "{status:?}");
        people_of(&first_url).await
    })?;
    ensure!(
        applied_on(&first_url, "facedex.people-edits")? == 6,
        "six edits written and applied"
    );
    ensure!(
        edited
            .iter()
            .any(|(name, hidden, faces)| name == "Alpha" && !hidden && faces.len() == 3)
    );
    ensure!(
        edited
            .iter()
            .any(|(name, _, faces)| name == "Two strangers" && faces.len() == 2)
    );
    ensure!(edited.iter().filter(|(_, hidden, _)| *hidden).count() == 1);

    // A replica started now replays both topics from the start and ends with the same people.
    let replica_dir = tempfile::tempdir()?;
    let replica_args = indexer_args(replica_dir.path().to_str().context("utf-8")?);
    let replica_args: Vec<&str> = replica_args.iter().map(String::as_str).collect();
    let (replica, replica_url) = Role::start_server(&replica_args, &env, ready);
    wait_until("the replica applied both topics", || {
        Ok(applied_offsets(&replica_url)? == end_offsets(brokers, "facedex.faces")?
            && applied_on(&replica_url, "facedex.people-edits")? == 6)
    })?;
    ensure!(
        runtime.block_on(people_of(&replica_url))? == edited,
        "the replica's people differ"
    );
    // And its faces have the attributes and quality the first indexer's have.
    let first_traits = runtime.block_on(traits_of(&first_url))?;
    ensure!(
        !first_traits.is_empty()
            && first_traits
                .values()
                .all(|(quality, attributes)| quality.is_some() && attributes.len() == 2),
        "faces without traits: {first_traits:?}"
    );
    ensure!(
        runtime.block_on(traits_of(&replica_url))? == first_traits,
        "the replica's faces have other traits"
    );

    // The first indexer restarted (final snapshot, then load) still has them.
    first.terminate();
    let (first, first_url) = Role::start_server(&first_args, &env, ready);
    ensure!(
        runtime.block_on(people_of(&first_url))? == edited,
        "the people changed over a restart"
    );
    for role in [first, replica] {
        role.terminate();
    }
    Ok(())
}
