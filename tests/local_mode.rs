//! Local mode (`facedex index`) stopped by a signal: the photos done so far are indexed and
//! snapshotted, the exit status says it was interrupted, and running the command again
//! finishes the archive without duplicating a face.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use facedex_index::{FaceStore, IndexConfig};
use support::cluster::free_port;
use support::{facedex_command, photo, scrape_metrics};

/// Enough photos (~20 s on 2 cores) that the run is still going when the signal arrives.
const COPIES: usize = 40;

#[test]
fn sigint_snapshots_what_is_done_and_a_rerun_finishes() -> anyhow::Result<()> {
    let folder = tempfile::tempdir()?;
    for copy in 0..COPIES {
        for name in ["players.jpg", "t1.jpg"] {
            std::fs::copy(photo(name), folder.path().join(format!("{copy}-{name}")))?;
        }
    }
    let archive = folder.path().to_str().context("utf-8")?;
    let data_dir = tempfile::tempdir()?;
    let data = data_dir.path().to_str().context("utf-8")?;
    let args = ["index", archive, "--data-dir", data, "--max-in-flight", "2"];

    let metrics = format!("127.0.0.1:{}", free_port());
    let child = facedex_command()
        .args(["--metrics-addr", &metrics])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Interrupt once the index holds faces, read from the run's own metrics.
    let started = Instant::now();
    loop {
        let faces =
            scrape_metrics(&metrics).map_or(0.0, |scrape| scrape.get("facedex_index_faces").copied().unwrap_or(0.0));
        if faces > 0.0 {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(180),
            "no face indexed in 3 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status()?;
    ensure!(status.success());
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.code() == Some(130),
        "exit {:?} after {:?}: {stdout}{}",
        output.status,
        started.elapsed(),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(stdout.contains("interrupted"), "{stdout}");

    let (partial_faces, partial_images) = {
        let store = FaceStore::open(data_dir.path(), IndexConfig::default())?;
        ensure!(store.last_snapshot().is_some(), "the interrupted run wrote a snapshot");
        let info = store.index().info();
        (info.faces, info.images)
    };
    let photos = 2 * COPIES;
    ensure!(
        partial_images > 0 && partial_images < photos,
        "{partial_images} of {photos} photos indexed when interrupted: the signal must land mid-run"
    );

    let rerun = facedex_command().args(args).output()?;
    ensure!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    let store = FaceStore::open(data_dir.path(), IndexConfig::default())?;
    let info = store.index().info();
    ensure!(
        info.images == photos,
        "{} of {photos} photos after the rerun",
        info.images
    );
    // Every copy holds the faces `facedex detect` finds in its original, once.
    let detected = facedex_command()
        .args(["detect", "--json"])
        .args([photo("players.jpg"), photo("t1.jpg")])
        .output()?;
    let faces_per_copy: usize = String::from_utf8_lossy(&detected.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).map(|photo| photo["faces"].as_array().map_or(0, Vec::len))
        })
        .sum::<Result<_, _>>()?;
    ensure!(faces_per_copy > 22, "players.jpg alone has 22 faces");
    ensure!(
        info.faces == COPIES * faces_per_copy,
        "{} faces, expected {}",
        info.faces,
        COPIES * faces_per_copy
    );
    ensure!(info.faces > partial_faces);
    Ok(())
}
