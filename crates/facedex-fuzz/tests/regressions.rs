//! Replays through every fuzz target, on the stable toolchain: its seed corpus (the sample
//! photos in every format, real records, real requests, a real snapshot's files) and every
//! input kept under `fuzz/regressions/<target>/` (inputs a fuzzer once crashed on, plus
//! hand-written hostile cases). Each must return without a panic.

use std::path::PathBuf;

use anyhow::{Context, ensure};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn assets_dir() -> PathBuf {
    std::env::var_os("FACEDEX_ASSETS_DIR").map_or_else(|| repository().join(".facedex/assets"), PathBuf::from)
}

#[test]
fn every_seed_and_every_kept_crash_input_is_handled_without_a_panic() -> anyhow::Result<()> {
    for (name, target) in facedex_fuzz::TARGETS {
        let seeds = facedex_fuzz::seeds(name, &assets_dir(), u64::MAX)?;
        ensure!(
            !seeds.is_empty(),
            "{name} has no seeds (run scripts/setup and scripts/formats/make-photos)"
        );
        let mut kept = Vec::new();
        let regressions = repository().join("fuzz/regressions").join(name);
        if regressions.is_dir() {
            for entry in std::fs::read_dir(&regressions)? {
                let path = entry?.path();
                kept.push((path.display().to_string(), std::fs::read(&path)?));
            }
        }
        for (number, seed) in seeds.iter().enumerate() {
            replay(name, target, &format!("seed {number}"), seed)?;
            // A truncated seed is the commonest hostile input: every cut of the first KiB.
            for cut in (0..seed.len().min(1024)).step_by(37) {
                replay(name, target, &format!("seed {number} cut at {cut}"), &seed[..cut])?;
            }
        }
        for (path, input) in &kept {
            replay(name, target, path, input)?;
        }
        eprintln!("{name}: {} seeds, {} kept inputs", seeds.len(), kept.len());
    }
    Ok(())
}

fn replay(name: &str, target: fn(&[u8]), what: &str, input: &[u8]) -> anyhow::Result<()> {
    std::panic::catch_unwind(|| target(input))
        .map_err(|_| anyhow::anyhow!("panicked"))
        .with_context(|| format!("fuzz target {name} on {what}"))
}
