//! [`Face`], what the vision core makes of one face, [`load_models`], which loads the two
//! models it takes (the detector finds faces, the embedder describes each aligned crop), and
//! [`load_attribute_models`], the per-face models configured beside them.

use crate::attributes::calibration::CalibrationChips;
use crate::attributes::{AttributeModel, FaceAttribute, FaceQuality};
use crate::config::VisionConfig;
use crate::detector::Detector;
use crate::embedder::Embedder;
use crate::error::Result;
use crate::runtime::environment;
use crate::scrfd::DetectedFace;

/// One face: where it is and, when asked for, its ArcFace embedding (unit length).
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// Box, score and landmarks in photo pixels.
    pub detection: DetectedFace,
    /// The L2-normalised embedding; empty when embeddings were not requested.
    pub embedding: Vec<f32>,
    /// The per-face models' results, in configuration order.
    pub attributes: Vec<FaceAttribute>,
    /// The face's quality; `None` when it could not be aligned.
    pub quality: Option<FaceQuality>,
}

/// Loads ONNX Runtime and both models as `config` says, as two values that can run on two
/// threads (each is batched on its own).
pub fn load_models(config: &VisionConfig) -> Result<(Detector, Embedder)> {
    config.validate()?;
    let environment = environment(&config.onnxruntime_library_path)?;
    let detector = Detector::load(&environment, config)?;
    let embedder = Embedder::load(&environment, config)?;
    Ok((detector, embedder))
}

/// Loads the per-face models `config.attributes` lists, each its own session (each is
/// batched on its own).
pub fn load_attribute_models(config: &VisionConfig) -> Result<Vec<AttributeModel>> {
    config.validate()?;
    let environment = environment(&config.onnxruntime_library_path)?;
    let mut calibration = CalibrationChips::new(config);
    config
        .attributes
        .iter()
        .map(|model| AttributeModel::load(&environment, config, model, &mut calibration))
        .collect()
}
