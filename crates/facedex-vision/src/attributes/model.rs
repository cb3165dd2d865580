//! One per-face model's session: chips in (packed RGB, `size²·3` bytes each), one decoded
//! [`AttributeValue`] per chip out, any number of faces per run.

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;

use crate::attributes::calibration::CalibrationChips;
use crate::attributes::config::{AttributeModelConfig, ChannelOrder, OutputDecoding, TensorLayout};
use crate::attributes::int8::int8_graph;
use crate::attributes::{AttributeValue, FaceAttribute};
use crate::config::VisionConfig;
use crate::embedder::model_id;
use crate::error::{Result, VisionError};
use crate::runtime::{ModelSource, one_input_session, require_file};

const ROLE: &str = "a per-face attribute model (1 input of N×3×S×S or N×S×S×3, one row per face out)";

/// A loaded per-face model.
pub struct AttributeModel {
    config: AttributeModelConfig,
    session: Session,
    /// `file-stem-hash`, with `-int8` when it runs quantised: which weights made a result,
    /// stored with every one.
    model_id: String,
    input: Vec<f32>,
}

impl AttributeModel {
    /// Loads the model `config` describes, one of `vision`'s: in int8 when its precision says
    /// so and it runs on CPU.
    pub(crate) fn load(
        environment: &Environment,
        vision: &VisionConfig,
        config: &AttributeModelConfig,
        calibration: &mut CalibrationChips<'_>,
    ) -> Result<Self> {
        config.validate()?;
        let path = &config.model_path;
        let provider = &vision.execution_provider;
        require_file(path, "per-face attribute model", "vision.attributes[].model_path")?;
        let file_id = model_id(path)?;
        let int8 = config.runs_int8(provider);
        let quantized = if int8 {
            Some(int8_graph(environment, vision, config, &file_id, calibration)?)
        } else {
            None
        };
        let session = one_input_session(
            environment,
            ModelSource::new(path, quantized.as_deref()),
            ROLE,
            provider,
        )?;
        let model_id = if int8 { format!("{file_id}-int8") } else { file_id };
        if model_id.len() > facedex_index::MAX_ATTRIBUTE_TEXT_BYTES {
            return Err(VisionError::InvalidConfig {
                setting: "attributes",
                reason: format!(
                    "{}: the model's id {model_id:?} (file stem and hash) is over {} bytes: give the file a shorter name",
                    config.name,
                    facedex_index::MAX_ATTRIBUTE_TEXT_BYTES
                ),
            });
        }
        Ok(Self {
            model_id,
            config: config.clone(),
            session,
            input: Vec::new(),
        })
    }

    /// The model's settings.
    pub fn config(&self) -> &AttributeModelConfig {
        &self.config
    }

    /// The weights' id (file stem and hash, as embedding model ids).
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Runs the chips of several callers in one run: each block holds whole chips back to
    /// back; results come back in block order, one per chip.
    pub fn run_blocks(&mut self, blocks: &[&[u8]]) -> Result<Vec<FaceAttribute>> {
        let chip_bytes = self.config.crop.chip_bytes();
        let count: usize = blocks.iter().map(|block| block.len() / chip_bytes).sum();
        if count == 0 {
            return Ok(Vec::new());
        }
        let chips = blocks.iter().flat_map(|block| block.chunks_exact(chip_bytes));
        let shape = write_chip_tensor(&self.config, chips, count, &mut self.input);
        let input = TensorRef::from_array_view((shape, self.input.as_slice())).map_err(inference)?;
        let outputs = self.session.run(ort::inputs![input]).map_err(inference)?;
        let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(inference)?;
        if data.is_empty() || data.len() % count != 0 {
            return Err(VisionError::Inference {
                model: "attribute",
                reason: format!(
                    "{}: output shape {shape:?} does not hold one row per face for {count} faces",
                    self.config.name
                ),
            });
        }
        let row_len = data.len() / count;
        data.chunks_exact(row_len)
            .map(|row| {
                let value = decode(&self.config.output, row).map_err(|reason| VisionError::Inference {
                    model: "attribute",
                    reason: format!("{}: {reason}", self.config.name),
                })?;
                Ok(FaceAttribute {
                    name: self.config.name.clone(),
                    model_id: self.model_id.clone(),
                    value,
                })
            })
            .collect()
    }
}

/// Writes `count` chips as the model's float input into `values` (normalised, in its channel
/// order and layout) and returns the tensor's shape.
pub(crate) fn write_chip_tensor<'a>(
    config: &AttributeModelConfig,
    chips: impl Iterator<Item = &'a [u8]>,
    count: usize,
    values: &mut Vec<f32>,
) -> [usize; 4] {
    let size = config.crop.size_px() as usize;
    let chip_bytes = config.crop.chip_bytes();
    let plane = size * size;
    values.resize(count * chip_bytes, 0.0);
    let (mean, std) = (config.input.mean, config.input.std);
    let order = match config.input.channels {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let nhwc = config.input.layout == TensorLayout::Nhwc;
    for (chip, values) in chips.zip(values.chunks_exact_mut(chip_bytes)) {
        for (pixel_index, pixel) in chip.chunks_exact(3).enumerate() {
            for (channel, &source) in order.iter().enumerate() {
                let at = if nhwc {
                    pixel_index * 3 + channel
                } else {
                    channel * plane + pixel_index
                };
                values[at] = (f32::from(pixel[source]) - mean[channel]) / std[channel];
            }
        }
    }
    if nhwc {
        [count, size, size, 3]
    } else {
        [count, 3, size, size]
    }
}

/// Reads one face's output row as `decoding` says; an error when the row does not fit it.
pub fn decode(decoding: &OutputDecoding, row: &[f32]) -> std::result::Result<AttributeValue, String> {
    if row.iter().any(|value| !value.is_finite()) {
        return Err("the output holds a value that is not finite".to_owned());
    }
    let expect_len = |want: usize| {
        if row.len() == want {
            Ok(())
        } else {
            Err(format!("{} values per face where {want} were configured", row.len()))
        }
    };
    match decoding {
        OutputDecoding::Labels { labels, softmax } => {
            expect_len(labels.len())?;
            let probabilities = probabilities(row, *softmax);
            let (best, confidence) =
                probabilities
                    .iter()
                    .copied()
                    .enumerate()
                    .fold(
                        (0, f32::MIN),
                        |best, (index, p)| if p > best.1 { (index, p) } else { best },
                    );
            if !(0.0..=1.0).contains(&confidence) {
                return Err(format!(
                    "label probability {confidence} is outside 0..=1: the model gives logits, set output.softmax = true"
                ));
            }
            Ok(AttributeValue::Label {
                label: labels[best].clone(),
                confidence,
            })
        }
        OutputDecoding::ExpectedValue { weights, softmax } => {
            expect_len(weights.len())?;
            let probabilities = probabilities(row, *softmax);
            Ok(AttributeValue::Number(
                probabilities.iter().zip(weights).map(|(p, w)| p * w).sum(),
            ))
        }
        OutputDecoding::Score { sigmoid } => {
            expect_len(1)?;
            let value = if *sigmoid {
                1.0 / (1.0 + (-row[0]).exp())
            } else {
                row[0]
            };
            Ok(AttributeValue::Number(value))
        }
        OutputDecoding::Vector { max_len } => {
            if row.len() > *max_len {
                return Err(format!("{} values per face, over output.max_len {max_len}", row.len()));
            }
            Ok(AttributeValue::Vector(row.to_vec()))
        }
    }
}

fn probabilities(row: &[f32], softmax: bool) -> Vec<f32> {
    if !softmax {
        return row.to_vec();
    }
    let max = row.iter().copied().fold(f32::MIN, f32::max);
    let exps: Vec<f32> = row.iter().map(|value| (value - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    exps.iter().map(|value| value / total).collect()
}

fn inference(error: ort::Error) -> VisionError {
    VisionError::Inference {
        model: "attribute",
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_kind() {
        let labels = OutputDecoding::Labels {
            labels: vec!["female".into(), "male".into()],
            softmax: false,
        };
        assert_eq!(
            decode(&labels, &[0.2, 0.8]),
            Ok(AttributeValue::Label {
                label: "male".into(),
                confidence: 0.8
            })
        );
        let age = OutputDecoding::ExpectedValue {
            weights: vec![0.25, 1.0, 2.0],
            softmax: false,
        };
        assert_eq!(decode(&age, &[0.0, 0.5, 0.5]), Ok(AttributeValue::Number(1.5)));
        let logits = OutputDecoding::Labels {
            labels: vec!["a".into(), "b".into()],
            softmax: true,
        };
        let Ok(AttributeValue::Label { label, confidence }) = decode(&logits, &[0.0, 2.0f32.ln()]) else {
            panic!("a label")
        };
        assert_eq!(label, "b");
        assert!((confidence - 2.0 / 3.0).abs() < 1e-6);
        let score = OutputDecoding::Score { sigmoid: true };
        assert_eq!(decode(&score, &[0.0]), Ok(AttributeValue::Number(0.5)));
    }

    #[test]
    fn a_row_that_does_not_fit_is_an_error() {
        let age = OutputDecoding::ExpectedValue {
            weights: vec![1.0; 81],
            softmax: false,
        };
        assert!(
            decode(&age, &[0.5; 80])
                .expect_err("80 values")
                .contains("80 values per face where 81")
        );
        assert!(decode(&OutputDecoding::Score { sigmoid: false }, &[f32::NAN]).is_err());
        assert!(decode(&OutputDecoding::Vector { max_len: 2 }, &[1.0; 3]).is_err());
        let logits_as_probabilities = OutputDecoding::Labels {
            labels: vec!["a".into(), "b".into()],
            softmax: false,
        };
        let error = decode(&logits_as_probabilities, &[-3.0, 4.5]).expect_err("logits");
        assert!(error.contains("set output.softmax = true"), "{error}");
    }
}
