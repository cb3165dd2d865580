//! The ArcFace embedder session: aligned 112×112 crops in, L2-normalised embeddings out, any
//! number of faces per run. `w600k_mbf.onnx` declares its output as `[1, 512]`; ONNX Runtime
//! returns the real `[n, 512]`, so the shape is read from each result, never from the model.

use std::path::Path;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};

use crate::align::{ALIGNED_SIZE, CROP_BYTES};
use crate::config::VisionConfig;
use crate::error::{Result, VisionError};
use crate::graph::{LoadRewrites, rewritten_graph};
use crate::runtime::{ModelSource, one_input_session, require_file};

const ROLE: &str = "an ArcFace embedder (1 input of N×3×112×112)";

/// ArcFace's input normalisation: `(x − 127.5) / 127.5`.
const EMBEDDER_MEAN: f32 = 127.5;
const EMBEDDER_STD: f32 = 127.5;

/// The id of the embedding space of the model at `path`: its file stem and the first 12 hex
/// digits of its SHA-256, e.g. `w600k_mbf-9cc6e4a75f07`. Every indexed face carries it, so an
/// index never mixes embeddings of two models; renaming the file keeps the hash part.
pub fn model_id(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|error| VisionError::Unreadable {
        input: path.display().to_string(),
        reason: error.to_string(),
    })?;
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().take(6).map(|byte| format!("{byte:02x}")).collect();
    let stem = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or("model");
    Ok(format!("{stem}-{hex}"))
}

/// An ArcFace-style ONNX model.
pub struct Embedder {
    session: Session,
    /// Normalised planes, or with `pixel_input` the crops' bytes back to back (`input_bytes`).
    input: Vec<f32>,
    input_bytes: Vec<u8>,
    pixel_input: bool,
    model_id: String,
}

impl Embedder {
    /// Loads the embedder named in `config`.
    pub(crate) fn load(environment: &Environment, config: &VisionConfig) -> Result<Self> {
        let path = &config.embedder_model_path;
        let (what, setting) = ("ArcFace embedder model", "vision.embedder_model_path");
        let provider = &config.execution_provider;
        require_file(path, what, setting)?;
        let rewrites = LoadRewrites::for_model(config, EMBEDDER_MEAN, EMBEDDER_STD);
        let rewritten = rewritten_graph(path, rewrites).map_err(|reason| VisionError::IncompatibleModel {
            path: path.clone(),
            role: ROLE,
            reason,
        })?;
        let source = ModelSource::new(path, rewritten.as_deref());
        let session = one_input_session(environment, source, ROLE, provider)?;
        Ok(Self {
            session,
            input: Vec::new(),
            input_bytes: Vec::new(),
            pixel_input: config.pixel_input(),
            model_id: model_id(path)?,
        })
    }

    /// The embedding space's id: see [`model_id`].
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Embeds the crops of several callers in one run without joining their buffers first: each
    /// block holds whole crops (packed RGB `112×112×3`) back to back, and the vectors, one unit
    /// vector per crop, come back in block order.
    pub fn embed_blocks(&mut self, blocks: &[&[u8]]) -> Result<Vec<Vec<f32>>> {
        let count: usize = blocks.iter().map(|block| block.len() / CROP_BYTES).sum();
        if count == 0 {
            return Ok(Vec::new());
        }
        let crops = blocks.iter().flat_map(|block| block.chunks_exact(CROP_BYTES));
        let outputs = if self.pixel_input {
            self.input_bytes.clear();
            crops.for_each(|crop| self.input_bytes.extend_from_slice(crop));
            let shape = [count, ALIGNED_SIZE, ALIGNED_SIZE, 3];
            let input = TensorRef::from_array_view((shape, self.input_bytes.as_slice())).map_err(inference)?;
            self.session.run(ort::inputs![input]).map_err(inference)?
        } else {
            let plane = ALIGNED_SIZE * ALIGNED_SIZE;
            self.input.resize(count * CROP_BYTES, 0.0);
            for (crop, planes) in crops.zip(self.input.chunks_exact_mut(CROP_BYTES)) {
                for (pixel_index, pixel) in crop.chunks_exact(3).enumerate() {
                    for (channel, &value) in pixel.iter().enumerate() {
                        planes[channel * plane + pixel_index] = (f32::from(value) - EMBEDDER_MEAN) / EMBEDDER_STD;
                    }
                }
            }
            let shape = [count, 3, ALIGNED_SIZE, ALIGNED_SIZE];
            let input = TensorRef::from_array_view((shape, self.input.as_slice())).map_err(inference)?;
            self.session.run(ort::inputs![input]).map_err(inference)?
        };
        let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(inference)?;
        if data.is_empty() || data.len() % count != 0 {
            return Err(VisionError::Inference {
                model: "embedder",
                reason: format!("output shape {shape:?} does not hold one vector per face for {count} faces"),
            });
        }
        let dimension = data.len() / count;
        Ok(data.chunks_exact(dimension).map(l2_normalized).collect())
    }
}

/// `v / |v|`; a zero vector stays zero rather than becoming NaN.
fn l2_normalized(vector: &[f32]) -> Vec<f32> {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter().map(|v| v / norm).collect()
    } else {
        vector.to_vec()
    }
}

fn inference(error: ort::Error) -> VisionError {
    VisionError::Inference {
        model: "embedder",
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_to_unit_length_and_keeps_zero() {
        let unit = l2_normalized(&[3.0, 4.0]);
        assert_eq!(unit, vec![0.6, 0.8]);
        assert_eq!(l2_normalized(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
