//! `facedex config`: prints the effective configuration (defaults, the `--config` file,
//! `FACEDEX__…` variables and the global flags, merged) as TOML. A mistyped key or a bad value
//! fails here with the reason, so operators can check a deployment's settings before starting
//! a role with them.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::FacedexConfig;

/// Arguments of `facedex config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {}

/// Prints `config` as TOML.
pub fn run(config: &FacedexConfig, _args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let text = toml::to_string_pretty(config).context("cannot print the configuration as TOML")?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
