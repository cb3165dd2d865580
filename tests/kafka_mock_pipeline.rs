//! The Kafka roles in one process against librdkafka's mock cluster (no broker needed): enqueue
//! a folder of sample photos and bad files, two ingest workers in one consumer group with the
//! real models, the indexer into a data directory. Every photo ends indexed or dead-lettered
//! with its reason, both workers get partitions, offsets are committed to the end, and the
//! index finds player 13 for yaoming.jpg, both faces with their age, gender and quality. The permanent failures also reach the faces topic,
//! the catalog topic ends with every photo that has an outcome, and a second enqueue of the
//! unchanged archive publishes nothing.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use facedex_index::{AGE, FaceStore, GENDER, IndexConfig, SearchQuery};
use facedex_kafka::catalog::read_catalog;
use facedex_kafka::enqueue::enqueue_archive;
use facedex_kafka::indexer::{IndexerCounters, run_indexer};
use facedex_kafka::ingest_worker::{IngestCounters, run_ingest_worker};
use facedex_kafka::records::FacesRecordKind;
use facedex_kafka::{KafkaConfig, TopicsConfig};
use facedex_pipeline::archive::Archive;
use facedex_pipeline::plan::{PlanOptions, Planner};
use facedex_pipeline::{
    ArchiveConfig, ArchiveRegistry, BatchingConfig, FaceModels, IngestConfig, Ingestor, LocalModels, PhotoAnalyzer,
};
use facedex_proto::pipeline as wire;
use facedex_proto::pipeline_conversions::decode;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::topics::{read_records, read_topic as payloads_of};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;
const GOOD_PHOTOS: [&str; 4] = ["players.jpg", "yaoming.jpg", "gdp.jpg", "t1.jpg"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_pipeline_accounts_for_every_photo() -> anyhow::Result<()> {
    let cluster = MockCluster::new(1)?;
    let topics = TopicsConfig::default();
    for topic in [&topics.images, &topics.faces, &topics.dead_letter, &topics.catalog] {
        cluster.create_topic(topic, PARTITIONS, 1)?;
    }
    cluster.create_topic(&topics.people_edits, 1, 1)?;
    let kafka = KafkaConfig {
        brokers: cluster.bootstrap_servers(),
        create_topics: false, // the mock broker has no admin API
        // The mock group coordinator waits a session timeout less one second for members
        // that join while it is syncing (44 s at librdkafka's default), so a worker joining
        // just as the first one was given the partitions kept the group unsettled past the
        // deadline. A short session makes every rebalance a few seconds, as with a broker.
        client: BTreeMap::from([
            ("session.timeout.ms".to_owned(), "6000".to_owned()),
            ("heartbeat.interval.ms".to_owned(), "500".to_owned()),
        ]),
        ..KafkaConfig::default()
    };

    // The archive: four sample photos and one of each kind of bad file.
    let archive_dir = tempfile::tempdir()?;
    for name in GOOD_PHOTOS {
        std::fs::copy(support::photo(name), archive_dir.path().join(name))?;
    }
    let players = std::fs::read(support::photo("players.jpg"))?;
    std::fs::write(archive_dir.path().join("corrupt.jpg"), &players[..players.len() / 3])?;
    std::fs::write(archive_dir.path().join("empty.jpg"), b"")?;
    std::fs::write(archive_dir.path().join("not-a-photo.jpg"), b"just some text, no pixels")?;
    std::fs::write(archive_dir.path().join("oversize.jpg"), vec![0u8; 3 * 1024 * 1024])?;
    // Enqueued before any ingest worker runs, then deleted: its fetch finds nothing.
    let vanishing_dir = tempfile::tempdir()?;
    std::fs::write(vanishing_dir.path().join("deleted.jpg"), &players)?;
    let archive_config = ArchiveConfig {
        max_image_bytes: 2 * 1024 * 1024,
        ..ArchiveConfig::default()
    };
    let vanishing = Archive::open(vanishing_dir.path().to_str().context("utf-8 path")?, &archive_config)?;
    let vanished = enqueue_archive(&kafka, &vanishing, &archive_config, PlanOptions::default(), |_| {})
        .await?
        .plan
        .to_process();
    std::fs::remove_file(vanishing_dir.path().join("deleted.jpg"))?;
    // A root the workers are not allowed to open: its record is dead-lettered unread.
    let forbidden_dir = tempfile::tempdir()?;
    std::fs::write(forbidden_dir.path().join("elsewhere.jpg"), &players)?;
    let forbidden = Archive::open(forbidden_dir.path().to_str().context("utf-8 path")?, &archive_config)?;
    let forbidden_photos = enqueue_archive(&kafka, &forbidden, &archive_config, PlanOptions::default(), |_| {})
        .await?
        .plan
        .to_process();
    let archive = Archive::open(archive_dir.path().to_str().context("utf-8 path")?, &archive_config)?;
    let worker_archive_config = ArchiveConfig {
        allowed_roots: vec![archive.root().to_owned(), vanishing.root().to_owned()],
        ..archive_config.clone()
    };

    // Two ingest workers in one group, sharing in-process models.
    let vision = support::vision_config();
    let models: Arc<dyn FaceModels> = LocalModels::load(&vision, &BatchingConfig::default())?;
    let analyzer = Arc::new(PhotoAnalyzer::new(models, 2, &vision));
    let shutdown = CancellationToken::new();
    let ingest_config = IngestConfig {
        max_attempts: 2,
        retry_initial_backoff_ms: 10,
        ..IngestConfig::default()
    };
    let mut workers = Vec::new();
    let mut worker_counters = Vec::new();
    for _ in 0..2 {
        let ingestor = Arc::new(Ingestor::new(
            ArchiveRegistry::new(worker_archive_config.clone()),
            analyzer.clone(),
            ingest_config.clone(),
            shutdown.clone(),
        ));
        let counters = Arc::new(IngestCounters::default());
        worker_counters.push(counters.clone());
        let kafka = kafka.clone();
        let shutdown = shutdown.clone();
        workers.push(tokio::spawn(async move {
            run_ingest_worker(&kafka, ingestor, 4, counters, shutdown).await
        }));
    }

    // Enqueue once the group has settled, so the test sees both workers share the partitions.
    let settle_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owned: Vec<u64> = worker_counters
            .iter()
            .map(|c| c.assigned_partitions.load(Ordering::Relaxed))
            .collect();
        if owned.iter().all(|&n| n > 0) && owned.iter().sum::<u64>() == PARTITIONS as u64 {
            break;
        }
        ensure!(
            Instant::now() < settle_deadline,
            "the ingest group did not settle: {owned:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let main_listing = enqueue_archive(&kafka, &archive, &archive_config, PlanOptions::default(), |_| {}).await?;
    ensure!(main_listing.plan.new == 8, "enqueued {main_listing:?}");
    let enqueued = main_listing.plan.to_process() + vanished + forbidden_photos;

    // The indexer, into a fresh data directory.
    let data_dir = tempfile::tempdir()?;
    let store = Arc::new(FaceStore::open(data_dir.path(), IndexConfig::default())?);
    let indexer_counters = Arc::new(IndexerCounters::default());
    let indexer = {
        let (kafka, store, counters, shutdown) =
            (kafka.clone(), store.clone(), indexer_counters.clone(), shutdown.clone());
        tokio::spawn(async move { run_indexer(&kafka, store, Duration::from_millis(500), counters, shutdown).await })
    };

    // Wait until every photo is accounted for. Delivery is at least once (a photo in flight
    // during the rebalance may be done twice), so count distinct photos in the output topics.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let faces = payloads_of(&kafka.brokers, &kafka.topics.faces)?;
        let letters = payloads_of(&kafka.brokers, &kafka.topics.dead_letter)?;
        let mut photos = std::collections::BTreeSet::new();
        for payload in &faces {
            let batch: wire::FaceBatch = decode("FaceBatch", payload)?;
            photos.insert(batch.image.map(|image| image.uri).unwrap_or_default());
        }
        for payload in &letters {
            let letter: wire::DeadLetter = decode("DeadLetter", payload)?;
            photos.insert(letter.image.map(|image| image.uri).unwrap_or_default());
        }
        let applied = indexer_counters.batches.load(Ordering::Relaxed);
        if photos.len() as u64 == enqueued && applied == faces.len() as u64 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "stuck: {} of {enqueued} photos out, {applied} of {} face batches applied",
            photos.len(),
            faces.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    for worker in workers {
        worker.await??;
    }
    indexer.await??;

    let per_worker: Vec<u64> = worker_counters
        .iter()
        .map(|c| c.indexed.load(Ordering::Relaxed) + c.dead_lettered.load(Ordering::Relaxed))
        .collect();
    ensure!(
        per_worker.iter().all(|&n| n > 0),
        "both ingest workers got photos: {per_worker:?}"
    );

    // The dead letters, each with its reason.
    let letters: BTreeMap<String, String> = payloads_of(&kafka.brokers, &kafka.topics.dead_letter)?
        .iter()
        .map(|payload| {
            let letter: wire::DeadLetter = decode("DeadLetter", payload)?;
            let key = letter.image.map(|image| image.key).unwrap_or_default();
            anyhow::Ok((key, letter.error_kind))
        })
        .collect::<Result<_, _>>()?;
    let expected: BTreeMap<String, String> = [
        ("corrupt.jpg", "corrupt"),
        ("deleted.jpg", "not_found"),
        ("elsewhere.jpg", "root_not_allowed"),
        ("empty.jpg", "empty"),
        ("not-a-photo.jpg", "not_an_image"),
        ("oversize.jpg", "too_large"),
    ]
    .into_iter()
    .map(|(key, kind)| (key.to_owned(), kind.to_owned()))
    .collect();
    assert_eq!(letters, expected);
    let batches = payloads_of(&kafka.brokers, &kafka.topics.faces)?;
    let indexed_photos: std::collections::BTreeSet<String> = batches
        .iter()
        .filter_map(|payload| decode::<wire::FaceBatch>("FaceBatch", payload).ok())
        .filter_map(|batch| batch.image.map(|image| image.key))
        .collect();
    assert_eq!(
        indexed_photos.len(),
        GOOD_PHOTOS.len(),
        "a face batch for every good photo"
    );

    // Offsets: the ingest group committed every image; the snapshot holds the faces offsets.
    let committed = committed_total(&kafka, &kafka.ingest_group, &kafka.topics.images)?;
    assert_eq!(committed, enqueued as i64, "the ingest group committed to the end");
    let info = store.index().info();
    let applied: i64 = info
        .applied_offsets
        .get(&kafka.topics.faces)
        .into_iter()
        .flatten()
        .map(|(_, next)| next)
        .sum();
    let faces_records = read_records(&kafka.brokers, &kafka.topics.faces)?;
    assert_eq!(applied, faces_records.len() as i64);
    // The permanent failures reach the indexer too; the missing photo and the forbidden root
    // may succeed next time, so they do not.
    let failed_on_faces_topic: std::collections::BTreeSet<String> = faces_records
        .iter()
        .filter(|(kind, _)| kind.as_deref() == Some(FacesRecordKind::PhotoFailed.label()))
        .map(|(_, payload)| {
            decode::<wire::DeadLetter>("DeadLetter", payload).map(|letter| letter.image.unwrap_or_default().key)
        })
        .collect::<Result<_, _>>()?;
    let permanent: std::collections::BTreeSet<String> = ["corrupt.jpg", "empty.jpg", "not-a-photo.jpg", "oversize.jpg"]
        .map(String::from)
        .into();
    assert_eq!(failed_on_faces_topic, permanent);
    assert_eq!(
        indexer_counters.failed.load(Ordering::Relaxed),
        faces_records.len() as u64 - indexer_counters.batches.load(Ordering::Relaxed)
    );

    // The catalog names every photo with a lasting outcome, so enqueueing the unchanged
    // archive again publishes nothing.
    let catalog = read_catalog(&kafka, &Planner::prefix_of(archive.root()))?;
    assert_eq!(catalog.len(), 8, "{catalog:?}");
    let images_before = read_records(&kafka.brokers, &kafka.topics.images)?.len();
    let again = enqueue_archive(&kafka, &archive, &archive_config, PlanOptions::default(), |_| {}).await?;
    assert_eq!(
        (again.plan.unchanged, again.plan.to_process()),
        (8, 0),
        "{}",
        again.plan
    );
    assert_eq!(read_records(&kafka.brokers, &kafka.topics.images)?.len(), images_before);
    assert_eq!(store.last_snapshot().map(|s| s.faces), Some(info.faces));

    // yaoming.jpg's face finds player 13 of players.jpg.
    let mut query = None;
    for payload in &batches {
        let batch: wire::FaceBatch = decode("FaceBatch", payload)?;
        if batch.image.as_ref().is_some_and(|image| image.key == "yaoming.jpg") {
            query = batch.faces.first().map(|face| face.embedding.clone());
        }
    }
    let query = query.context("yaoming.jpg's face batch has a face")?;
    let hits = store.index().search(&SearchQuery::nearest(query, 2))?;
    ensure!(
        hits[1].metadata.image_uri.ends_with("/players.jpg"),
        "{:?}",
        hits[1].metadata
    );
    ensure!(hits[1].similarity > 0.55, "player 13 at {}", hits[1].similarity);
    // The faces crossed the faces topic with their attributes and quality.
    for hit in &hits {
        let traits = &hit.metadata.traits;
        ensure!(
            traits.number(AGE).is_some() && traits.label(GENDER).is_some() && traits.quality.is_some(),
            "{} arrived without its traits: {traits:?}",
            hit.metadata.image_uri
        );
    }
    Ok(())
}

/// The sum over partitions of `group`'s committed offsets on `topic`.
fn committed_total(kafka: &KafkaConfig, group: &str, topic: &str) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", group)
        .create()?;
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(partitions, Duration::from_secs(5))?;
    Ok(committed
        .elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => offset,
            _ => 0,
        })
        .sum())
}
