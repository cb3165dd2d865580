//! kill -9 during a snapshot: the data directory must still open, with at least everything
//! the previous complete snapshot had.
//!
//! The test re-runs its own binary as the child (environment variable set), which indexes
//! faces, snapshots, indexes more and snapshots again; the parent SIGKILLs it as soon as the
//! second snapshot's directory appears, at a different delay each round.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use facedex_index::synthetic::FaceLikeGenerator;
use facedex_index::{FaceId, FaceRecord, FaceStore, IndexConfig};

const CHILD_ENV: &str = "FACEDEX_CRASH_TEST_DATA_DIR";
const FIRST_BATCH: usize = 10_000;
const SECOND_BATCH: usize = 10_000;
const DIMENSION: usize = 128;

fn config() -> IndexConfig {
    IndexConfig {
        dimension: DIMENSION,
        expected_faces: FIRST_BATCH + SECOND_BATCH,
        ..IndexConfig::default()
    }
}

fn records(range: std::ops::Range<usize>) -> Vec<FaceRecord> {
    let mut generator = FaceLikeGenerator::new((FIRST_BATCH + SECOND_BATCH) / 10, DIMENSION, 9);
    let all = generator.dataset(10);
    range.map(|position| all.record(position)).collect()
}

/// The child: two snapshots, the second one killed by the parent.
fn child(data_dir: &Path) {
    let store = FaceStore::open(data_dir, config()).expect("child open");
    if store.index().info().faces == 0 {
        store.upsert(records(0..FIRST_BATCH)).expect("child first batch");
        store.snapshot().expect("child first snapshot");
    }
    store
        .upsert(records(FIRST_BATCH..FIRST_BATCH + SECOND_BATCH))
        .expect("child second batch");
    println!("child: second snapshot starting");
    store.snapshot().expect("child second snapshot");
    // Give the parent time to kill us even when the snapshot finished first.
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn kill_9_during_a_snapshot_leaves_the_previous_snapshot_loadable() {
    if let Ok(data_dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&data_dir));
        return;
    }
    let mut torn_kills = 0;
    for (round, delay_ms) in [0u64, 50].into_iter().enumerate() {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "kill_9_during_a_snapshot_leaves_the_previous_snapshot_loadable",
                "--nocapture",
            ])
            .env(CHILD_ENV, data_dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        let second = data_dir.path().join("snapshots").join("gen-00000000000000000002");
        let started = Instant::now();
        while !second.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "the child never started its second snapshot"
            );
            assert!(
                child.try_wait().expect("poll child").is_none(),
                "the child exited early"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let torn = !second.join("MANIFEST.json").exists();
        torn_kills += usize::from(torn);

        let store = FaceStore::open(data_dir.path(), config()).expect("the data dir opens after kill -9");
        let info = store.index().info();
        assert!(
            info.faces == FIRST_BATCH || info.faces == FIRST_BATCH + SECOND_BATCH,
            "round {round}: {} faces",
            info.faces
        );
        assert_eq!(
            torn,
            info.faces == FIRST_BATCH,
            "round {round}: a torn second snapshot must fall back to the first"
        );
        for position in (0..FIRST_BATCH).step_by(997) {
            store
                .index()
                .get(&FaceId(position as u128), true)
                .expect("every face of the first snapshot is there");
        }
        println!(
            "round {round}: killed {delay_ms} ms into the second snapshot; torn: {torn}; loaded {} faces",
            info.faces
        );
    }
    assert!(
        torn_kills > 0,
        "no kill landed inside a snapshot write, so nothing was tested"
    );
}
