//! Faces per second into the index from one recorded faces-topic input, applied two ways in
//! the same run: one upsert per record in its own blocking call (the Kafka indexer before the
//! shared indexer stage), and the shared indexer stage (whatever is queued, one upsert per
//! blocking call). Both decode every record as the indexer does. The input is `FaceBatch`
//! records as the ingest workers publish them, with face-like synthetic embeddings
//! (identities as clusters), written once to `.facedex/bench/` and read back by both.
//!
//! `cargo bench -p facedex-kafka --bench indexer_throughput -- [PHOTOS] [FACES_PER_PHOTO]`
//! (defaults 5000 and 4). Prints one JSON object per line; each path's line also gives the
//! process's CPU time over it and the cores that kept busy on average (2.0 on 2 cores means
//! none was left idle, so no batching can go faster there).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use facedex_index::synthetic::FaceLikeGenerator;
use facedex_index::{BoundingBox, FaceStore, IndexConfig};
use facedex_pipeline::indexer::{
    IndexInput, IndexUpdate, IndexerConfig, IndexerCounters, IndexerStage, SourcePosition,
};
use facedex_pipeline::{FaceBatch, ImageRef, PipelineFace, StageTimings};
use facedex_proto::pipeline as wire;
use facedex_proto::pipeline_conversions::decode;
use prost::Message;

const MODEL: &str = "w600k_mbf-bench";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let photos: usize = args.first().map_or(Ok(5000), |arg| arg.parse()).context("PHOTOS")?;
    let per_photo: usize = args
        .get(1)
        .map_or(Ok(4), |arg| arg.parse())
        .context("FACES_PER_PHOTO")?;
    let records = recorded_input(photos, per_photo)?;
    let faces = photos * per_photo;
    let runtime = tokio::runtime::Runtime::new()?;

    let per_record = runtime.block_on(one_upsert_per_record(&records))?;
    report("one upsert per record (before)", faces, &per_record);
    let staged = runtime.block_on(indexer_stage(&records))?;
    report("shared indexer stage (after)", faces, &staged);
    println!(
        "{{\"kind\": \"ratio\", \"faces\": {faces}, \"stage_over_per_record\": {:.2}}}",
        per_record.wall.as_secs_f64() / staged.wall.as_secs_f64()
    );
    Ok(())
}

/// Wall time and the process's CPU time (user + system, every thread) over one path.
struct Took {
    wall: Duration,
    cpu: Duration,
}

fn report(path: &str, faces: usize, took: &Took) {
    let wall = took.wall.as_secs_f64();
    println!(
        "{{\"kind\": \"indexer\", \"path\": \"{path}\", \"faces\": {faces}, \"seconds\": {wall:.3}, \"faces_per_s\": {:.1}, \"cpu_seconds\": {:.2}, \"cores_busy\": {:.2}}}",
        faces as f64 / wall,
        took.cpu.as_secs_f64(),
        took.cpu.as_secs_f64() / wall
    );
}

/// Wall and CPU time since it was started: how many cores a path kept busy tells whether it
/// left one idle.
struct Stopwatch {
    started: Instant,
    cpu_before: Duration,
}

impl Stopwatch {
    fn start() -> Self {
        Self {
            started: Instant::now(),
            cpu_before: process_cpu_time(),
        }
    }

    fn took(&self) -> Took {
        Took {
            wall: self.started.elapsed(),
            cpu: process_cpu_time() - self.cpu_before,
        }
    }
}

/// The CPU time every thread of this process has used so far.
fn process_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(time.tv_sec.unsigned_abs(), u32::try_from(time.tv_nsec).unwrap_or(0))
}

/// What `facedex indexer` did before the shared stage: decode a record, apply it with one
/// upsert in one blocking call, wait, take the next.
async fn one_upsert_per_record(records: &[Vec<u8>]) -> anyhow::Result<Took> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(FaceStore::open(dir.path(), IndexConfig::default())?);
    let stopwatch = Stopwatch::start();
    for (offset, payload) in records.iter().enumerate() {
        let store = Arc::clone(&store);
        let payload = payload.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let batch = FaceBatch::try_from(decode::<wire::FaceBatch>("FaceBatch", &payload)?)?;
            store.upsert(batch.face_records())?;
            store.record_applied_offset("facedex.faces", 0, offset as i64 + 1);
            Ok(())
        })
        .await??;
    }
    Ok(stopwatch.took())
}

/// The shared stage: records are decoded and queued as the Kafka indexer queues them; timed
/// until the stage has applied the last one (the final snapshot is not timed).
async fn indexer_stage(records: &[Vec<u8>]) -> anyhow::Result<Took> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(FaceStore::open(dir.path(), IndexConfig::default())?);
    let counters = Arc::new(IndexerCounters::default());
    let stage = IndexerStage::spawn(store, IndexerConfig::default(), Arc::clone(&counters));
    let topic: Arc<str> = Arc::from("facedex.faces");
    let stopwatch = Stopwatch::start();
    for (offset, payload) in records.iter().enumerate() {
        let batch = decode::<wire::FaceBatch>("FaceBatch", payload)?;
        let input = IndexInput {
            position: Some(SourcePosition {
                topic: Arc::clone(&topic),
                partition: 0,
                next_offset: offset as i64 + 1,
            }),
            update: Ok(IndexUpdate::Faces(FaceBatch::try_from(batch)?).into()),
        };
        stage.send(input).await?;
    }
    while counters.batches.load(Ordering::Relaxed) < records.len() as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = stopwatch.took();
    stage.finish().await?;
    anyhow::ensure!(counters.refused.load(Ordering::Relaxed) == 0, "records were refused");
    Ok(took)
}

/// The recorded input: `photos` face batches of `per_photo` faces each, as wire records,
/// written once (length-prefixed) and read back.
fn recorded_input(photos: usize, per_photo: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.facedex/bench")
        .join(format!("faces-topic-{photos}x{per_photo}.bin"));
    if !path.is_file() {
        std::fs::create_dir_all(path.parent().context("bench dir")?)?;
        // Eight faces per identity on average, as a family archive has.
        let identities = (photos * per_photo / 8).max(1);
        let mut generator = FaceLikeGenerator::new(identities, 512, 7);
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for photo in 0..photos {
            let uri = format!("file:///archive/photo-{photo}.jpg");
            let faces = (0..per_photo)
                .map(|face| PipelineFace {
                    bounding_box: BoundingBox {
                        x1: 10.0 + face as f32 * 60.0,
                        y1: 10.0,
                        x2: 60.0 + face as f32 * 60.0,
                        y2: 70.0,
                    },
                    landmarks: [[20.0 + face as f32 * 60.0, 30.0]; 5],
                    detection_score: 0.9,
                    embedding: generator.sample((photo * per_photo + face) % identities),
                    traits: Default::default(),
                })
                .collect();
            let batch = FaceBatch {
                image: ImageRef {
                    uri: uri.clone(),
                    archive: "file:///archive/".into(),
                    key: format!("photo-{photo}.jpg"),
                    ..ImageRef::default()
                },
                model_id: MODEL.into(),
                width: 640,
                height: 480,
                faces,
                timings: StageTimings::default(),
            };
            let payload = wire::FaceBatch::from(&batch).encode_to_vec();
            file.write_all(&(payload.len() as u32).to_le_bytes())?;
            file.write_all(&payload)?;
        }
        file.flush()?;
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&path)?.read_to_end(&mut bytes)?;
    let mut records = Vec::with_capacity(photos);
    let mut rest = bytes.as_slice();
    while rest.len() >= 4 {
        let (length, tail) = rest.split_at(4);
        let length = u32::from_le_bytes(length.try_into()?) as usize;
        anyhow::ensure!(tail.len() >= length, "truncated recording {}", path.display());
        records.push(tail[..length].to_vec());
        rest = &tail[length..];
    }
    Ok(records)
}
