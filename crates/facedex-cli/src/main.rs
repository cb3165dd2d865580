//! `facedex`: one binary with a subcommand per role.

mod commands;
mod config;
mod console;
mod home;
mod shared;
mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use facedex_vision::ExecutionProvider;

use crate::config::FacedexConfig;

/// The environment variables facedex reads, for `--help` (deploy files are checked against it).
const ENVIRONMENT_HELP: &str = "Environment:
  FACEDEX_CONFIG          the configuration file (as --config)
  FACEDEX_HOME            the folder holding assets/ (runtime, models) and the default data/;
                          else $XDG_DATA_HOME/facedex (~/.local/share/facedex), else ./.facedex
  FACEDEX__SECTION__KEY   overrides a configuration key, e.g. FACEDEX__KAFKA__BROKERS
  FACEDEX_LOG             log filter: error, warn (default), info, debug, or per module
  FACEDEX_LOG_FORMAT      `json` for one JSON object per log event
  FACEDEX_TOKEN           bearer token of `facedex search` and `facedex status` (or --token-file)";

/// facedex: find, embed and search faces in photo archives.
#[derive(Debug, Parser)]
#[command(name = "facedex", version, about, after_help = ENVIRONMENT_HELP)]
struct Cli {
    /// TOML configuration file; `FACEDEX__SECTION__KEY` environment variables override it.
    #[arg(long, global = true, env = "FACEDEX_CONFIG")]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics [config: metrics.listen_addr].
    #[arg(long, global = true, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    vision: VisionFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Detect (and optionally embed) the faces in photos and print them.
    Detect(commands::detect::DetectArgs),
    /// Serve the FaceSearch gRPC API (with health and reflection) over a data directory.
    Serve(commands::serve::ServeArgs),
    /// Search a running server by photo, face id or embedding.
    Search(commands::search::SearchArgs),
    /// List, show and edit the persons of a running server.
    People(commands::people::PeopleArgs),
    /// Index a photo archive in this process (local mode, no broker) into a data directory.
    Index(commands::index::IndexArgs),
    /// Publish every photo of an archive to the images topic.
    Enqueue(commands::roles::EnqueueArgs),
    /// Serve the face models to ingest workers (dynamic batching across callers).
    Embed(commands::roles::EmbedArgs),
    /// Join the ingest consumer group: fetch, decode, detect, embed, publish face batches.
    Ingest(commands::roles::IngestArgs),
    /// Apply the faces topic to a data directory and serve FaceSearch over it.
    Indexer(commands::roles::IndexerArgs),
    /// Serve FaceSearch over index shards: each search goes to one replica of every shard.
    Router(commands::router::RouterArgs),
    /// Load `facedex detect --json --embeddings` output into a data directory.
    IndexImport(commands::index_import::IndexImportArgs),
    /// Watch a pipeline run: rates per stage, lag, ETA, dead letters, index size.
    Status(commands::status::StatusArgs),
    /// Print the effective configuration (file, environment and flags merged) as TOML.
    Config(commands::config::ConfigArgs),
}

impl Command {
    /// The `role` label of this process's metrics.
    fn role(&self) -> &'static str {
        match self {
            Self::Detect(_) => "detect",
            Self::Serve(_) => "serve",
            Self::Search(_) => "search",
            Self::People(_) => "people",
            Self::Index(_) => "index",
            Self::Enqueue(_) => "enqueue",
            Self::Embed(_) => "embed",
            Self::Ingest(_) => "ingest",
            Self::Indexer(_) => "indexer",
            Self::Router(_) => "router",
            Self::IndexImport(_) => "index-import",
            Self::Status(_) => "status",
            Self::Config(_) => "config",
        }
    }
}

/// Flags that override `[vision]` settings of the config file.
#[derive(Debug, Args)]
struct VisionFlags {
    /// ONNX Runtime shared library [config: vision.onnxruntime_library_path].
    #[arg(long, global = true, value_name = "PATH")]
    onnxruntime_library: Option<PathBuf>,
    /// SCRFD detector model [config: vision.detector_model_path].
    #[arg(long, global = true, value_name = "PATH")]
    detector_model: Option<PathBuf>,
    /// ArcFace embedder model [config: vision.embedder_model_path].
    #[arg(long, global = true, value_name = "PATH")]
    embedder_model: Option<PathBuf>,
    /// Where models run: `cpu`, `cpu:THREADS` or `cuda:DEVICE` [config: vision.execution_provider].
    #[arg(long, global = true, value_name = "PROVIDER", value_parser = parse_provider)]
    execution_provider: Option<ExecutionProvider>,
}

impl VisionFlags {
    fn apply(self, config: &mut FacedexConfig) {
        let vision = &mut config.vision;
        if let Some(path) = self.onnxruntime_library {
            vision.onnxruntime_library_path = path;
        }
        if let Some(path) = self.detector_model {
            vision.detector_model_path = path;
        }
        if let Some(path) = self.embedder_model {
            vision.embedder_model_path = path;
        }
        if let Some(provider) = self.execution_provider {
            vision.execution_provider = provider;
        }
    }
}

fn parse_provider(text: &str) -> Result<ExecutionProvider, String> {
    let (name, number) = match text.split_once(':') {
        Some((name, number)) => (name, Some(number)),
        None => (text, None),
    };
    let number = |what: &str| -> Result<u32, String> {
        number
            .map(|n| {
                n.parse::<u32>()
                    .map_err(|_| format!("{what} in `{text}` must be a whole number"))
            })
            .transpose()
            .map(|n| n.unwrap_or(0))
    };
    match name {
        "cpu" => Ok(ExecutionProvider::Cpu {
            threads: number("thread count")? as usize,
        }),
        "cuda" => Ok(ExecutionProvider::cuda(
            i32::try_from(number("device id")?).map_err(|_| "device id too large".to_owned())?,
        )),
        _ => Err(format!(
            "unknown execution provider `{name}`; use cpu, cpu:THREADS or cuda:DEVICE"
        )),
    }
}

fn main() -> ExitCode {
    // Logs go to stderr, filtered by FACEDEX_LOG (e.g. `info`, `facedex_kafka=debug`); with
    // FACEDEX_LOG_FORMAT=json each event is one JSON object, for log collectors.
    let filter = tracing_subscriber::EnvFilter::try_from_env("FACEDEX_LOG").unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if std::env::var("FACEDEX_LOG_FORMAT").is_ok_and(|format| format == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let cli = Cli::parse();
    let result = FacedexConfig::load(cli.config.as_deref(), &home::Home::locate()).and_then(|mut config| {
        cli.vision.apply(&mut config);
        if let Some(addr) = cli.metrics_addr {
            config.metrics.listen_addr = Some(addr);
        }
        telemetry::install(&config.metrics, cli.command.role())?;
        match cli.command {
            Command::Detect(args) => commands::detect::run(&config, args),
            Command::Serve(args) => commands::serve::run(config, args),
            Command::Search(args) => commands::search::run(config, args),
            Command::People(args) => commands::people::run(config, args),
            Command::Index(args) => commands::index::run(config, args),
            Command::Enqueue(args) => commands::roles::enqueue(config, args),
            Command::Embed(args) => commands::roles::embed(config, args),
            Command::Ingest(args) => commands::roles::ingest(config, args),
            Command::Indexer(args) => commands::roles::indexer(config, args),
            Command::Router(args) => commands::router::run(config, args),
            Command::IndexImport(args) => commands::index_import::run(config, args),
            Command::Status(args) => commands::status::run(config, args),
            Command::Config(args) => commands::config::run(&config, args),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("facedex: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_execution_providers() {
        assert_eq!(parse_provider("cpu"), Ok(ExecutionProvider::Cpu { threads: 0 }));
        assert_eq!(parse_provider("cpu:2"), Ok(ExecutionProvider::Cpu { threads: 2 }));
        assert_eq!(parse_provider("cuda:1"), Ok(ExecutionProvider::cuda(1)));
        assert!(parse_provider("tpu").is_err());
        assert!(parse_provider("cuda:x").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
