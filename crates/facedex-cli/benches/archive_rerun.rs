//! Re-running `facedex index` over an archive: the first run, a re-run over the unchanged
//! archive, and a re-run after one photo was edited in place and one deleted (`--prune`), each
//! timed from the command's start to its exit (models loaded, listing, snapshot). Prints one
//! JSON object per line.
//!
//! `cargo bench -p facedex-cli --bench archive_rerun -- [PHOTOS]` (copies of the sample photos
//! under new names; default 400). Needs `scripts/setup`.

#[path = "../../../tests/support/mod.rs"]
#[allow(missing_docs, clippy::unwrap_used)]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use support::{assets_dir, facedex_command};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let photos: usize = args.first().map_or(Ok(400), |arg| arg.parse()).context("PHOTOS")?;
    let mut samples: Vec<PathBuf> = std::fs::read_dir(assets_dir().join("photos"))?
        .map(|entry| entry.map(|entry| entry.path()))
        .filter(|path| path.as_ref().map_or(true, |path| path.is_file()))
        .collect::<Result<_, _>>()?;
    samples.sort();
    let archive = tempfile::tempdir()?;
    let mut names = Vec::with_capacity(photos);
    for copy in 0..photos {
        let sample = &samples[copy % samples.len()];
        let name = format!(
            "{copy}-{}",
            sample.file_name().and_then(|n| n.to_str()).context("name")?
        );
        std::fs::copy(sample, archive.path().join(&name))?;
        names.push(name);
    }
    let data = tempfile::tempdir()?;

    let (first, first_plan) = index(archive.path(), data.path(), &[])?;
    report("first run", photos, first, first, &first_plan);
    let (unchanged, plan) = index(archive.path(), data.path(), &[])?;
    ensure!(plan.contains(&format!("{photos} unchanged")), "{plan}");
    report("unchanged re-run", photos, unchanged, first, &plan);

    // One photo overwritten in place with another sample's bytes, one deleted.
    let other = samples
        .iter()
        .find(|sample| !names[0].ends_with(&*sample.file_name().unwrap_or_default().to_string_lossy()));
    std::fs::copy(other.context("a second sample")?, archive.path().join(&names[0]))?;
    std::fs::remove_file(archive.path().join(&names[1]))?;
    let (changed, plan) = index(archive.path(), data.path(), &["--prune"])?;
    ensure!(plan.contains("1 changed") && plan.contains("1 removed"), "{plan}");
    report("1 edited + 1 deleted, --prune", photos - 1, changed, first, &plan);
    Ok(())
}

/// Runs `facedex index`; returns its wall time and its plan line.
fn index(archive: &Path, data: &Path, extra: &[&str]) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let output = facedex_command()
        .arg("index")
        .arg(archive)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .output()?;
    let elapsed = started.elapsed();
    ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok((elapsed, stdout.lines().next().unwrap_or_default().to_owned()))
}

fn report(run: &str, photos: usize, elapsed: Duration, first: Duration, plan: &str) {
    println!(
        "{}",
        serde_json::json!({
            "run": run, "photos": photos, "seconds": elapsed.as_secs_f64(),
            "share_of_first_run": elapsed.as_secs_f64() / first.as_secs_f64(), "plan": plan,
        })
    );
}
