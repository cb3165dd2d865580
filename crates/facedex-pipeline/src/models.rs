//! [`FaceModels`]: detection and embedding as a service the ingest stage calls without caring
//! where the models run. [`LocalModels`] runs them in this process with dynamic batching (local
//! mode, and inside `facedex embed`); `facedex-server`'s `RemoteModels` calls `facedex embed`
//! workers over gRPC.

use std::sync::Arc;
use std::time::Duration;

use facedex_vision::align::ALIGNED_SIZE;
use facedex_vision::{DetectedFace, LetterboxedPhoto, VisionConfig, load_models};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::batcher::{BatchLimits, Batcher};
use crate::error::{PipelineError, Result};

/// Bytes of one aligned face crop (`112 × 112 × 3`).
pub const CROP_BYTES: usize = ALIGNED_SIZE * ALIGNED_SIZE * 3;

/// What callers must know about the models: how to letterbox for the detector, and which
/// embedding space the vectors live in.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// Detection and embedding, wherever they run.
pub trait FaceModels: Send + Sync {
    /// The models' description.
    fn info(&self) -> &ModelInfo;
    /// The faces of each letterboxed photo, best score first.
    fn detect(&self, photos: Vec<LetterboxedPhoto>) -> BoxFuture<'_, Result<Vec<Vec<DetectedFace>>>>;
    /// One unit embedding per aligned crop (`crops` holds [`CROP_BYTES`] per face).
    fn embed(&self, crops: Vec<u8>) -> BoxFuture<'_, Result<Vec<Vec<f32>>>>;
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

/// The models in this process, each behind its own batching thread.
pub struct LocalModels {
    info: ModelInfo,
    detector: Batcher<LetterboxedPhoto, Vec<DetectedFace>>,
    embedder: Batcher<Vec<u8>, Vec<f32>>,
}

impl LocalModels {
    /// Loads both models as `vision` says and starts their batching threads.
    pub fn load(vision: &VisionConfig, batching: &BatchingConfig) -> Result<Arc<Self>> {
        let (mut detector, mut embedder) = load_models(vision)?;
        let info = ModelInfo {
            model_id: embedder.model_id().to_owned(),
            detector_input_px: vision.detection.input_size_px,
            fit_input_to_photo: vision.detection.fit_input_to_photo,
            execution_provider: vision.execution_provider.to_string(),
            max_detect_batch: vision.detection.batch_size,
            max_embed_batch: vision.embed_batch_size,
        };
        let limits = |max_items| BatchLimits {
            max_items,
            max_wait: Duration::from_millis(batching.max_wait_ms),
            queue_capacity: batching.queue_capacity,
        };
        let thread_failed = |error: std::io::Error| PipelineError::Models {
            reason: format!("cannot start a model thread: {error}"),
            transient: false,
        };
        let detector = Batcher::spawn(
            "detector",
            limits(info.max_detect_batch),
            move |photos: Vec<LetterboxedPhoto>| {
                let borrowed: Vec<&LetterboxedPhoto> = photos.iter().collect();
                detector.detect_letterboxed(&borrowed)
            },
        )
        .map_err(thread_failed)?;
        let embedder = Batcher::spawn("embedder", limits(info.max_embed_batch), move |crops: Vec<Vec<u8>>| {
            embedder.embed_batch(&crops.concat())
        })
        .map_err(thread_failed)?;
        Ok(Arc::new(Self {
            info,
            detector,
            embedder,
        }))
    }
}

impl FaceModels for LocalModels {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn detect(&self, photos: Vec<LetterboxedPhoto>) -> BoxFuture<'_, Result<Vec<Vec<DetectedFace>>>> {
        Box::pin(async move { self.detector.submit(photos).await.map_err(model_failure) })
    }

    fn embed(&self, crops: Vec<u8>) -> BoxFuture<'_, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            let crops: Vec<Vec<u8>> = crops.chunks(CROP_BYTES).map(<[u8]>::to_vec).collect();
            self.embedder.submit(crops).await.map_err(model_failure)
        })
    }
}

fn model_failure(reason: String) -> PipelineError {
    PipelineError::Models {
        reason,
        transient: false,
    }
}
