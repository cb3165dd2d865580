//! Typed settings of the vision core: model and runtime paths, execution provider, detector
//! thresholds, batch sizes and the decode limit. Every field has a default; unknown keys are
//! rejected so a typo in a config file is an error, not a silently ignored setting.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attributes::config::{AttributeModelConfig, default_attribute_models, validate_attribute_models};
use crate::error::{Result, VisionError};

/// Where ONNX Runtime runs the models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU provider.
    Cpu {
        /// Intra-op threads per model; 0 lets ONNX Runtime use one per core.
        #[serde(default)]
        threads: usize,
    },
    /// NVIDIA CUDA on device `device_id`; fails loudly when CUDA cannot load.
    Cuda {
        /// CUDA device ordinal.
        #[serde(default)]
        device_id: i32,
        /// Most bytes each session's CUDA memory arena may hold; 0: no limit.
        #[serde(default)]
        memory_limit_bytes: usize,
        /// How cuDNN picks each convolution's algorithm.
        #[serde(default)]
        conv_algorithm_search: ConvAlgorithmSearch,
        /// TensorFloat-32 tensor-core math in float convolutions and matrix products: faster on
        /// Ampere and later, with a 10-bit mantissa in the products.
        #[serde(default)]
        tf32: bool,
    },
}

/// What the detector and the embedder take (`vision.model_input`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelInput {
    /// Pixels on CUDA, where the host-to-device copy of float planes bounds detection; planes
    /// on CPU, where the graph's four extra passes over the input cost more than the pipeline's
    /// one loop (BENCHMARKS.md).
    #[default]
    Auto,
    /// Normalised float planes `N×3×H×W`, written by the pipeline: the model files as they are.
    Planes,
    /// Packed 8-bit pixels `N×H×W×3`, normalised by nodes put in front of the graph at load.
    Pixels,
}

/// How `PRelu` with constant slopes runs on the CPU provider (`vision.cpu_prelu`). Every form
/// computes the same function; they differ in which of ONNX Runtime's kernels run it
/// (BENCHMARKS.md, "`PRelu`").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuPrelu {
    /// `slope·x + Relu((1 − slope)·x)` as two depthwise 1×1 convolutions and an `Add`, for
    /// per-channel slopes ≤ 1: ONNX Runtime's blocked-channel (NCHWc) layout fuses all three
    /// into its convolutions, where `PRelu` and `Max` are not in that layout and cost a reorder
    /// of the tensor before and after each. Other slopes ≤ 1 run as `Max(x, slope·x)`.
    #[default]
    DepthwiseConv,
    /// `Max(x, slope·x)` for slopes ≤ 1: two elementwise kernels.
    Max,
    /// ONNX Runtime's own `PRelu` kernel: the model file as it is (fast on 1.24, slow on 1.32).
    Kernel,
}

/// How cuDNN picks a convolution's algorithm (ONNX Runtime's `cudnn_conv_algo_search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvAlgorithmSearch {
    /// cuDNN's heuristics, no trial runs: the detector's input size follows each photo's
    /// shape, and a search per new shape would stall those runs.
    #[default]
    Heuristic,
    /// Time every algorithm once per input shape and keep the fastest.
    Exhaustive,
    /// cuDNN's default algorithm.
    Default,
}

impl ExecutionProvider {
    /// CUDA on `device_id` with the default options.
    pub fn cuda(device_id: i32) -> Self {
        Self::Cuda {
            device_id,
            memory_limit_bytes: 0,
            conv_algorithm_search: ConvAlgorithmSearch::default(),
            tf32: false,
        }
    }
}

impl Default for ExecutionProvider {
    fn default() -> Self {
        Self::Cpu { threads: 0 }
    }
}

impl std::fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu { threads } => write!(f, "cpu (threads: {threads})"),
            Self::Cuda { device_id, .. } => write!(f, "cuda:{device_id}"),
        }
    }
}

/// SCRFD detection settings (defaults are InsightFace's `prepare(det_size=(640, 640), det_thresh=0.5)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// Side of the square detector input; photos are letterboxed into it. Multiple of 32.
    pub input_size_px: u32,
    /// Minimum face score kept.
    pub score_threshold: f32,
    /// Boxes overlapping a better one by more than this IoU are suppressed.
    pub nms_iou_threshold: f32,
    /// Photos per detector run.
    pub batch_size: usize,
    /// Run the detector on the letterboxed photo rounded up to a multiple of 32 instead of the
    /// whole square (same scale, less padding, faster); off reproduces InsightFace's input.
    pub fit_input_to_photo: bool,
    /// A second pass over the photo shrunk onto a padded canvas when the first finds no face
    /// or a face near the frame's size, to find faces that fill the frame (`close_up`); off
    /// reproduces InsightFace, which misses them.
    pub close_up_pass: bool,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            input_size_px: 640,
            score_threshold: 0.5,
            nms_iou_threshold: 0.4,
            batch_size: 4,
            fit_input_to_photo: true,
            close_up_pass: true,
        }
    }
}

/// Everything the vision core needs to turn photos into faces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisionConfig {
    /// ONNX Runtime shared library (`libonnxruntime.so.1.32.0` from the `onnxruntime` wheel).
    pub onnxruntime_library_path: PathBuf,
    /// SCRFD detector with keypoints (`scrfd_500m_bnkps.onnx`).
    pub detector_model_path: PathBuf,
    /// ArcFace embedder (`w600k_mbf.onnx`).
    pub embedder_model_path: PathBuf,
    /// Where the models run.
    pub execution_provider: ExecutionProvider,
    /// Detector settings.
    pub detection: DetectionConfig,
    /// Aligned faces per embedder run (faces from several photos share a run).
    pub embed_batch_size: usize,
    /// Photos whose header declares more pixels than this are refused before decoding.
    pub max_image_pixels: u64,
    /// Threads decoding photos while the models run; 0 means one per core.
    pub decode_threads: usize,
    /// Per-face models run on every face beside the embedder (`[[vision.attributes]]`);
    /// age and gender by default, `attributes = []` turns them off.
    pub attributes: Vec<AttributeModelConfig>,
    /// What the detector and the embedder are fed: float planes, or packed 8-bit pixels their
    /// rewritten graphs normalise (a quarter of the bytes, the same values).
    pub model_input: ModelInput,
    /// On CPU, how `PRelu` with constant slopes runs (see [`CpuPrelu`]): ONNX Runtime 1.32's
    /// own CPU `PRelu` kernel is much slower than the other forms, and the depthwise form is
    /// the fastest on 1.24 as well (BENCHMARKS.md); `kernel` runs the model file as it is.
    pub cpu_prelu: CpuPrelu,
    /// Photos whose faces calibrate the int8 per-face models at load (`precision = "int8"`):
    /// the folder's own photo files, in name order, at most 64 of them.
    pub calibration_photos_dir: PathBuf,
}

/// Where `scripts/setup` puts the assets, relative to the repository root.
pub const DEFAULT_ASSETS_DIR: &str = ".facedex/assets";

impl Default for VisionConfig {
    fn default() -> Self {
        Self::with_assets_dir(Path::new(DEFAULT_ASSETS_DIR))
    }
}

impl VisionConfig {
    /// Whether the detector and the embedder take 8-bit pixels, as `model_input` and the
    /// execution provider decide.
    pub fn pixel_input(&self) -> bool {
        match self.model_input {
            ModelInput::Auto => matches!(self.execution_provider, ExecutionProvider::Cuda { .. }),
            ModelInput::Planes => false,
            ModelInput::Pixels => true,
        }
    }

    /// The defaults, with the runtime and models where `scripts/setup` puts them under `assets`.
    pub fn with_assets_dir(assets: &Path) -> Self {
        Self {
            onnxruntime_library_path: assets.join("lib/libonnxruntime.so.1.32.0"),
            detector_model_path: assets.join("models/scrfd_500m_bnkps.onnx"),
            embedder_model_path: assets.join("models/w600k_mbf.onnx"),
            execution_provider: ExecutionProvider::default(),
            detection: DetectionConfig::default(),
            embed_batch_size: 16,
            // 100 MP: every camera photo, not a decompression bomb.
            max_image_pixels: 100_000_000,
            decode_threads: 0,
            attributes: default_attribute_models(assets),
            calibration_photos_dir: assets.join("photos"),
            model_input: ModelInput::Auto,
            cpu_prelu: CpuPrelu::DepthwiseConv,
        }
    }

    /// Checks ranges that serde cannot express.
    pub fn validate(&self) -> Result<()> {
        let size = self.detection.input_size_px;
        if size == 0 || !size.is_multiple_of(32) {
            return Err(VisionError::InvalidConfig {
                setting: "detection.input_size_px",
                reason: format!("{size} is not a positive multiple of 32 (SCRFD's largest stride)"),
            });
        }
        if !(0.0..=1.0).contains(&self.detection.score_threshold) {
            return Err(VisionError::InvalidConfig {
                setting: "detection.score_threshold",
                reason: format!("{} is outside 0..=1", self.detection.score_threshold),
            });
        }
        if !(0.0..=1.0).contains(&self.detection.nms_iou_threshold) {
            return Err(VisionError::InvalidConfig {
                setting: "detection.nms_iou_threshold",
                reason: format!("{} is outside 0..=1", self.detection.nms_iou_threshold),
            });
        }
        if self.detection.batch_size == 0 || self.embed_batch_size == 0 {
            return Err(VisionError::InvalidConfig {
                setting: "detection.batch_size / embed_batch_size",
                reason: "batch sizes must be at least 1".to_owned(),
            });
        }
        validate_attribute_models(&self.attributes)?;
        if self.max_image_pixels == 0 {
            return Err(VisionError::InvalidConfig {
                setting: "max_image_pixels",
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_insightface_settings_and_valid() {
        let config = VisionConfig::default();
        assert_eq!(config.detection.input_size_px, 640);
        assert_eq!(config.detection.score_threshold, 0.5);
        assert_eq!(config.detection.nms_iou_threshold, 0.4);
        config.validate().expect("defaults are valid");
    }

    #[test]
    fn pixels_go_to_cuda_and_planes_to_the_cpu_unless_configured() {
        let mut config = VisionConfig::default();
        assert!(!config.pixel_input(), "auto on CPU: float planes");
        config.execution_provider = ExecutionProvider::cuda(0);
        assert!(config.pixel_input(), "auto on CUDA: 8-bit pixels");
        config.model_input = ModelInput::Planes;
        assert!(!config.pixel_input());
        config.execution_provider = ExecutionProvider::default();
        config.model_input = ModelInput::Pixels;
        assert!(config.pixel_input());
    }

    #[test]
    fn input_size_must_be_a_multiple_of_32() {
        let mut config = VisionConfig::default();
        config.detection.input_size_px = 600;
        let error = config.validate().expect_err("600 is not a multiple of 32");
        assert!(error.to_string().contains("detection.input_size_px"), "{error}");
    }
}
