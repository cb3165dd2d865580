//! Writes the seed corpus of every fuzz target: `fuzz-seeds ASSETS_DIR OUT_DIR` makes
//! `OUT_DIR/<target>/seed-N` for each target (`scripts/fuzz` runs it before fuzzing).

use anyhow::Context;

/// Larger photos are left out of the decode target's seeds: libFuzzer runs a few per second on them.
const MAX_SEED_PHOTO_BYTES: u64 = 512 * 1024;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let assets = std::path::PathBuf::from(args.next().context("usage: fuzz-seeds ASSETS_DIR OUT_DIR")?);
    let out = std::path::PathBuf::from(args.next().context("usage: fuzz-seeds ASSETS_DIR OUT_DIR")?);
    for (name, _) in facedex_fuzz::TARGETS {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir)?;
        let seeds = facedex_fuzz::seeds(name, &assets, MAX_SEED_PHOTO_BYTES)?;
        for (number, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{number}")), seed)?;
        }
        eprintln!("fuzz-seeds: {name}: {} seeds", seeds.len());
    }
    Ok(())
}
