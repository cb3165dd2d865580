//! The embed stage: the face models behind one front end. [`FaceModels`] is the model
//! service at tensor level (letterboxed photos in, detections out; aligned crops in, vectors
//! out), with two implementations: [`LocalModels`] in this process, batched across callers,
//! and `facedex-server`'s `RemoteModels` over `facedex embed` workers. [`PhotoAnalyzer`] is the
//! photo-level front end over either: photo bytes in, faces with embeddings out. `facedex
//! detect`, local mode, ingest workers and photo queries in `serve` and `indexer` all go
//! through it; `facedex embed` serves a [`LocalModels`] to remote callers.

mod analyzer;
pub mod batcher;
mod local;

use facedex_vision::attributes::{ChipCrop, FaceAttribute};
use facedex_vision::{DetectedFace, LetterboxedPhoto};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use analyzer::{AnalyzedPhoto, PhotoAnalyzer, Wanted};

pub use local::LocalModels;

use crate::error::Result;

/// What callers must know about the models: how to letterbox for the detector, and which
/// embedding space the vectors live in.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The embedding model's id.
    pub model_id: String,
    /// The detector's square input side.
    pub detector_input_px: u32,
    /// Whether the detector input may shrink to the photo.
    pub fit_input_to_photo: bool,
    /// `cpu` or `cuda`.
    pub execution_provider: String,
    /// Photos per detector run.
    pub max_detect_batch: usize,
    /// Faces per embedder run.
    pub max_embed_batch: usize,
    /// The per-face attribute models, in the order [`FaceModels::attributes`] numbers them.
    pub attribute_models: Vec<AttributeModelInfo>,
}

/// What a caller must know of one per-face model: its name and how to cut its chips.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeModelInfo {
    /// The attribute's name.
    pub name: String,
    /// How its chips are cut.
    pub crop: ChipCrop,
}

/// Detection and embedding, wherever they run.
pub trait FaceModels: Send + Sync {
    /// The models' description.
    fn info(&self) -> &ModelInfo;
    /// The faces of each letterboxed photo, best score first.
    fn detect(&self, photos: Vec<LetterboxedPhoto>) -> BoxFuture<'_, Result<Vec<Vec<DetectedFace>>>>;
    /// One unit embedding per aligned crop (`crops` holds
    /// [`CROP_BYTES`](facedex_vision::align::CROP_BYTES) per face, back to back).
    fn embed(&self, crops: Vec<u8>) -> BoxFuture<'_, Result<Vec<Vec<f32>>>>;
    /// One result per chip of attribute model `model` (an index into
    /// [`ModelInfo::attribute_models`]; `chips` holds whole chips of its size, back to back).
    fn attributes(&self, model: usize, chips: Vec<u8>) -> BoxFuture<'_, Result<Vec<FaceAttribute>>>;
}

/// How requests are batched in front of the models (`[models]` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchingConfig {
    /// How long the first request of a batch waits for others.
    pub max_wait_ms: u64,
    /// Requests queued per model before callers wait.
    pub queue_capacity: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_wait_ms: 5,
            queue_capacity: 256,
        }
    }
}
