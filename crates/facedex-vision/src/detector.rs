//! The SCRFD detector session: runs a batch of letterboxed photos and decodes each photo's
//! faces with [`crate::scrfd`].

use std::path::Path;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::SessionInputValue;
use ort::value::TensorRef;

use crate::config::VisionConfig;
use crate::error::{Result, VisionError};
use crate::graph::{LoadRewrites, rewritten_graph};
use crate::letterbox::{
    DETECTOR_MEAN, DETECTOR_STD, LetterboxGeometry, LetterboxedPhoto, write_normalized, write_padded,
};
use crate::runtime::{ModelSource, build_session, require_file};
use crate::scrfd::{ANCHORS_PER_CELL, DetectedFace, LevelOutputs, STRIDES, decode_detections};

const ROLE: &str = "an SCRFD detector with keypoints (1 input, 9 outputs)";

/// An SCRFD-style ONNX model: one NCHW input, nine outputs (scores, boxes, keypoints for
/// strides 8, 16, 32), as `scrfd_500m_bnkps.onnx`.
pub struct Detector {
    session: Session,
    /// Normalised planes, or with `pixel_input` packed 8-bit pixels (`input_bytes`).
    input: Vec<f32>,
    input_bytes: Vec<u8>,
    pixel_input: bool,
    score_threshold: f32,
    nms_iou_threshold: f32,
}

impl Detector {
    /// Loads the detector named in `config`.
    pub(crate) fn load(environment: &Environment, config: &VisionConfig) -> Result<Self> {
        let path = &config.detector_model_path;
        require_file(path, "SCRFD detector model", "vision.detector_model_path")?;
        let rewrites = LoadRewrites::for_model(config, DETECTOR_MEAN, DETECTOR_STD);
        let rewritten = rewritten_graph(path, rewrites).map_err(|reason| incompatible(path, reason))?;
        let source = ModelSource::new(path, rewritten.as_deref());
        let session = build_session(environment, source, ROLE, &config.execution_provider)?;
        if session.inputs().len() != 1 || session.outputs().len() != 9 {
            return Err(incompatible(
                path,
                format!(
                    "it has {} inputs and {} outputs",
                    session.inputs().len(),
                    session.outputs().len()
                ),
            ));
        }
        Ok(Self {
            session,
            input: Vec::new(),
            input_bytes: Vec::new(),
            pixel_input: config.pixel_input(),
            score_threshold: config.detection.score_threshold,
            nms_iou_threshold: config.detection.nms_iou_threshold,
        })
    }

    /// Detects the faces of each letterboxed photo, best score first, in one detector run per
    /// input size (photos of one orientation share a size). Normalisation happens here, next to
    /// the model, so callers send 8-bit pixels.
    pub fn detect_letterboxed(&mut self, photos: &[&LetterboxedPhoto]) -> Result<Vec<Vec<DetectedFace>>> {
        let mut all: Vec<Vec<DetectedFace>> = vec![Vec::new(); photos.len()];
        let input_size = |i: &usize| (photos[*i].geometry.input_width, photos[*i].geometry.input_height);
        let mut order: Vec<usize> = (0..photos.len()).collect();
        order.sort_by_key(input_size);
        for group in order.chunk_by(|a, b| input_size(a) == input_size(b)) {
            let (width, height) = input_size(&group[0]);
            let slot = 3 * width as usize * height as usize;
            let geometries: Vec<_> = group.iter().map(|&i| photos[i].geometry).collect();
            let detected = if self.pixel_input {
                let mut input = std::mem::take(&mut self.input_bytes);
                input.resize(group.len() * slot, 0);
                for (&i, pixels) in group.iter().zip(input.chunks_exact_mut(slot)) {
                    write_padded(&photos[i].pixels, photos[i].geometry, pixels);
                }
                let shape = [group.len(), height as usize, width as usize, 3];
                let tensor = TensorRef::from_array_view((shape, input.as_slice())).map_err(inference);
                let detected = tensor.and_then(|tensor| self.run(tensor.into(), &geometries));
                self.input_bytes = input;
                detected
            } else {
                let mut input = std::mem::take(&mut self.input);
                input.resize(group.len() * slot, 0.0);
                for (&i, tensor) in group.iter().zip(input.chunks_exact_mut(slot)) {
                    write_normalized(&photos[i].pixels, photos[i].geometry, tensor);
                }
                let detected = self.detect_batch(&input, &geometries);
                self.input = input;
                detected
            };
            for (&i, faces) in group.iter().zip(detected?) {
                all[i] = faces;
            }
        }
        Ok(all)
    }

    /// Detects faces in `geometries.len()` letterboxed photos stored back to back in `tensor`
    /// as normalised planes; all of them must share one detector input size.
    fn detect_batch(&mut self, tensor: &[f32], geometries: &[LetterboxGeometry]) -> Result<Vec<Vec<DetectedFace>>> {
        let batch = geometries.len();
        let Some(first) = geometries.first() else {
            return Ok(Vec::new());
        };
        let (width, height) = (first.input_width as usize, first.input_height as usize);
        debug_assert!(
            geometries
                .iter()
                .all(|g| (g.input_width, g.input_height) == (first.input_width, first.input_height))
        );
        let input = TensorRef::from_array_view(([batch, 3, height, width], tensor)).map_err(inference)?;
        self.run(input.into(), geometries)
    }

    /// Runs one batch whose input is `input` (planes or pixels) and decodes each photo's faces.
    fn run(
        &mut self,
        input: SessionInputValue<'_>,
        geometries: &[LetterboxGeometry],
    ) -> Result<Vec<Vec<DetectedFace>>> {
        let batch = geometries.len();
        let Some(first) = geometries.first() else {
            return Ok(Vec::new());
        };
        let (width, height) = (first.input_width as usize, first.input_height as usize);
        let outputs = self.session.run(ort::inputs![input]).map_err(inference)?;
        let mut arrays = Vec::with_capacity(9);
        for index in 0..9 {
            let (shape, data) = outputs[index].try_extract_tensor::<f32>().map_err(inference)?;
            arrays.push((shape.to_vec(), data));
        }
        let mut per_photo = Vec::with_capacity(batch);
        for (photo, geometry) in geometries.iter().enumerate() {
            let mut levels = Vec::with_capacity(3);
            for (level, &stride) in STRIDES.iter().enumerate() {
                let anchors = (width / stride) * (height / stride) * ANCHORS_PER_CELL;
                let slice = |index: usize, width: usize| -> Result<&[f32]> {
                    let (shape, data) = &arrays[index];
                    let per_image = anchors * width;
                    if data.len() != per_image * batch {
                        return Err(VisionError::Inference {
                            model: "detector",
                            reason: format!(
                                "output {index} has shape {shape:?}; expected {anchors} anchors × {width} per photo for a batch of {batch}"
                            ),
                        });
                    }
                    Ok(&data[photo * per_image..(photo + 1) * per_image])
                };
                levels.push(LevelOutputs {
                    stride,
                    scores: slice(level, 1)?,
                    boxes: slice(level + 3, 4)?,
                    keypoints: slice(level + 6, 10)?,
                });
            }
            per_photo.push(decode_detections(
                &levels,
                width,
                self.score_threshold,
                geometry.scale,
                self.nms_iou_threshold,
            ));
        }
        Ok(per_photo)
    }
}

fn incompatible(path: &Path, reason: String) -> VisionError {
    VisionError::IncompatibleModel {
        path: path.to_owned(),
        role: ROLE,
        reason,
    }
}

fn inference(error: ort::Error) -> VisionError {
    VisionError::Inference {
        model: "detector",
        reason: error.to_string(),
    }
}
