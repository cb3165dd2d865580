//! The facedex configuration file and its environment overrides.
//!
//! Precedence, lowest first: built-in defaults (paths under facedex's [`Home`]), the TOML file
//! given with `--config`, environment variables `FACEDEX__<SECTION>__<KEY>` (double underscores
//! separate levels, e.g. `FACEDEX__VISION__DETECTOR_MODEL_PATH`), then command-line flags.
//! Unknown keys are errors.

use std::path::{Path, PathBuf};

use anyhow::Context;

use facedex_index::IndexConfig;
use facedex_kafka::KafkaConfig;
use facedex_pipeline::{ArchiveConfig, BatchingConfig, IngestConfig};
use facedex_server::{EmbedConfig, RouterConfig, ServerConfig};
use facedex_vision::VisionConfig;
use facedex_web::WebConfig;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::home::Home;
use crate::telemetry::MetricsConfig;

/// The prefix of every environment override.
pub const ENV_PREFIX: &str = "FACEDEX__";

/// Where the index lives unless configured, relative to the working directory: the data
/// directory of the last [`Home`] candidate, used when no home holds assets.
pub const DEFAULT_DATA_DIR: &str = ".facedex/data";

/// Everything configurable in facedex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FacedexConfig {
    /// The index's data directory (snapshots, deletion journal).
    pub data_dir: PathBuf,
    /// Models, runtime, detection and decoding settings.
    pub vision: VisionConfig,
    /// HNSW shape, search defaults, vacuum and snapshot retention.
    pub index: IndexConfig,
    /// The search server: address, limits, auth, TLS, snapshot interval.
    pub server: ServerConfig,
    /// Which objects of an archive are photos, size limit, object-store options.
    pub archive: ArchiveConfig,
    /// Photos in flight and retries of the ingest stage.
    pub ingest: IngestConfig,
    /// Dynamic batching in front of the models.
    pub models: BatchingConfig,
    /// Brokers, topics, groups and client properties of the Kafka roles.
    pub kafka: KafkaConfig,
    /// The embed service's address and the embed workers ingest calls.
    pub embed: EmbedConfig,
    /// The index shards `facedex router` fans searches out to.
    pub router: RouterConfig,
    /// Where Prometheus metrics are served.
    pub metrics: MetricsConfig,
    /// The web console: address, thumbnails, photo views.
    pub web: WebConfig,
}

impl Default for FacedexConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            vision: VisionConfig::default(),
            index: IndexConfig::default(),
            server: ServerConfig::default(),
            archive: ArchiveConfig::default(),
            ingest: IngestConfig::default(),
            models: BatchingConfig::default(),
            kafka: KafkaConfig::default(),
            embed: EmbedConfig::default(),
            router: RouterConfig::default(),
            metrics: MetricsConfig::default(),
            web: WebConfig::default(),
        }
    }
}

impl FacedexConfig {
    /// Loads defaults (the data directory and the assets under `home`), then `file` (if any),
    /// then `FACEDEX__…` environment variables.
    pub fn load(file: Option<&Path>, home: &Home) -> anyhow::Result<Self> {
        // Defaults come from serde (`#[serde(default)]`), not from a serialized copy merged
        // underneath: merging would leave keys of the default variant (`threads` of `cpu`)
        // beside an override that switches variant (`kind = "cuda"`). Only the paths that
        // depend on the home are merged underneath, key by key.
        let assets = VisionConfig::with_assets_dir(&home.assets_dir());
        let mut figment = Figment::new()
            .merge(Serialized::default("data_dir", home.data_dir()))
            .merge(Serialized::default(
                "vision.onnxruntime_library_path",
                assets.onnxruntime_library_path,
            ))
            .merge(Serialized::default(
                "vision.detector_model_path",
                assets.detector_model_path,
            ))
            .merge(Serialized::default(
                "vision.embedder_model_path",
                assets.embedder_model_path,
            ))
            .merge(Serialized::default(
                "vision.calibration_photos_dir",
                assets.calibration_photos_dir,
            ))
            // The default attribute models as one list: a list in the file replaces it whole.
            .merge(Serialized::default("vision.attributes", assets.attributes));
        if let Some(file) = file {
            anyhow::ensure!(file.is_file(), "config file {} does not exist", file.display());
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
            .extract()
            .with_context(|| match file {
                Some(file) => format!(
                    "invalid configuration (file {} and {ENV_PREFIX}* variables)",
                    file.display()
                ),
                None => format!("invalid configuration ({ENV_PREFIX}* variables)"),
            })
    }
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment::Jail's closures must return figment::Error"
)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn file_values_override_defaults_and_unknown_keys_fail() {
        // The jail's lock keeps the other test's environment variables out of this one.
        figment::Jail::expect_with(|_| {
            file_values_override_defaults();
            Ok(())
        });
    }

    fn file_values_override_defaults() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(
            file,
            "[vision]\nembed_batch_size = 7\n[vision.detection]\nscore_threshold = 0.6"
        )
        .expect("write");
        let config = FacedexConfig::load(Some(file.path()), &Home::locate()).expect("valid file");
        assert_eq!(config.vision.embed_batch_size, 7);
        assert_eq!(config.vision.detection.score_threshold, 0.6);
        assert_eq!(
            config.vision.detection.input_size_px, 640,
            "untouched keys keep defaults"
        );

        let mut typo = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(typo, "[vision]\nembed_batch = 7").expect("write");
        let error = FacedexConfig::load(Some(typo.path()), &Home::locate()).expect_err("unknown key");
        assert!(format!("{error:#}").contains("embed_batch"), "{error:#}");
    }

    #[test]
    fn environment_overrides_with_the_prefix() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FACEDEX__VISION__DETECTOR_MODEL_PATH", "/models/det.onnx");
            jail.set_env("FACEDEX__VISION__EXECUTION_PROVIDER__KIND", "cuda");
            jail.set_env("FACEDEX__VISION__EXECUTION_PROVIDER__DEVICE_ID", "1");
            let config = FacedexConfig::load(None, &Home::locate()).expect("valid env");
            assert_eq!(config.vision.detector_model_path, Path::new("/models/det.onnx"));
            assert_eq!(
                config.vision.execution_provider,
                facedex_vision::ExecutionProvider::cuda(1)
            );
            jail.set_env(
                "FACEDEX__VISION__EXECUTION_PROVIDER__CONV_ALGORITHM_SEARCH",
                "exhaustive",
            );
            jail.set_env("FACEDEX__VISION__EXECUTION_PROVIDER__MEMORY_LIMIT_BYTES", "8000000000");
            let tuned = FacedexConfig::load(None, &Home::locate()).expect("valid env");
            assert_eq!(
                tuned.vision.execution_provider,
                facedex_vision::ExecutionProvider::Cuda {
                    device_id: 1,
                    memory_limit_bytes: 8_000_000_000,
                    conv_algorithm_search: facedex_vision::ConvAlgorithmSearch::Exhaustive,
                    tf32: false,
                }
            );
            Ok(())
        });
    }

    #[test]
    fn attribute_models_default_to_the_homes_and_a_file_replaces_the_list() {
        figment::Jail::expect_with(|jail| {
            let home = Home::locate();
            let defaults = FacedexConfig::load(None, &home).expect("defaults");
            let names: Vec<&str> = defaults.vision.attributes.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(names, ["age", "gender"]);
            assert!(home.holds_asset(&defaults.vision.attributes[0].model_path));
            assert!(home.holds_asset(&defaults.vision.calibration_photos_dir));
            assert_eq!(
                defaults.vision.attributes[0].precision,
                facedex_vision::attributes::ModelPrecision::Int8
            );
            jail.create_file(
                "liveness.toml",
                r#"
                [[vision.attributes]]
                name = "liveness"
                model_path = "/models/liveness.onnx"
                crop = { kind = "box", size_px = 128, scale = 2.7 }
                output = { kind = "labels", labels = ["spoof", "real", "other"], softmax = true }
                "#,
            )?;
            let config = FacedexConfig::load(Some(Path::new("liveness.toml")), &home).expect("valid file");
            let names: Vec<&str> = config.vision.attributes.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(names, ["liveness"], "the file's list replaces the defaults");
            assert_eq!(
                config.vision.attributes[0].precision,
                facedex_vision::attributes::ModelPrecision::F32,
                "a model added runs as its file is unless it says otherwise"
            );
            jail.set_env("FACEDEX__VISION__ATTRIBUTES", "[]");
            let off = FacedexConfig::load(None, &home).expect("valid env");
            assert!(off.vision.attributes.is_empty(), "attributes = [] turns them off");
            Ok(())
        });
    }
}
