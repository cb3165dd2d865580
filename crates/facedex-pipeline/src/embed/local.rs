//! [`LocalModels`]: the face models in this process, each behind its own batching thread, so
//! the requests of every caller (photos in flight, gRPC clients) share model runs.

use std::sync::Arc;
use std::time::Duration;

use facedex_vision::align::CROP_BYTES;
use facedex_vision::attributes::FaceAttribute;
use facedex_vision::{
    DetectedFace, ExecutionProvider, LetterboxedPhoto, VisionConfig, VisionError, load_attribute_models, load_models,
};
use futures::future::BoxFuture;

use crate::embed::batcher::{BatchError, BatchLimits, Batcher, RunLock};
use crate::embed::{AttributeModelInfo, BatchingConfig, FaceModels, ModelInfo};
use crate::error::{PipelineError, Result};

/// The models in this process, each behind its own batching thread.
pub struct LocalModels {
    info: ModelInfo,
    detector: Batcher<Vec<LetterboxedPhoto>, Vec<DetectedFace>, VisionError>,
    embedder: Batcher<Vec<u8>, Vec<f32>, VisionError>,
    attributes: Vec<Batcher<Vec<u8>, FaceAttribute, VisionError>>,
}

impl LocalModels {
    /// Loads both models as `vision` says and starts their batching threads. On CPU the two
    /// take turns (each already runs on every core); on a GPU they run side by side.
    pub fn load(vision: &VisionConfig, batching: &BatchingConfig) -> Result<Arc<Self>> {
        let (mut detector, mut embedder) = load_models(vision)?;
        let attribute_models = load_attribute_models(vision)?;
        let info = ModelInfo {
            model_id: embedder.model_id().to_owned(),
            detector_input_px: vision.detection.input_size_px,
            fit_input_to_photo: vision.detection.fit_input_to_photo,
            execution_provider: vision.execution_provider.to_string(),
            max_detect_batch: vision.detection.batch_size,
            max_embed_batch: vision.embed_batch_size,
            attribute_models: attribute_models
                .iter()
                .map(|model| AttributeModelInfo {
                    name: model.config().name.clone(),
                    crop: model.config().crop.clone(),
                })
                .collect(),
        };
        let limits = |max_items| BatchLimits {
            max_items,
            max_wait: Duration::from_millis(batching.max_wait_ms),
            queue_capacity: batching.queue_capacity,
        };
        let run_lock: Option<RunLock> =
            matches!(vision.execution_provider, ExecutionProvider::Cpu { .. }).then(RunLock::default);
        let thread_failed = |error: std::io::Error| PipelineError::Models {
            reason: format!("cannot start a model thread: {error}"),
            transient: false,
        };
        let detector = Batcher::spawn(
            "detector",
            limits(info.max_detect_batch),
            run_lock.clone(),
            move |requests: Vec<Vec<LetterboxedPhoto>>| {
                let photos: Vec<&LetterboxedPhoto> = requests.iter().flatten().collect();
                detector.detect_letterboxed(&photos)
            },
        )
        .map_err(thread_failed)?;
        let embedder = Batcher::spawn(
            "embedder",
            limits(info.max_embed_batch),
            run_lock.clone(),
            move |requests: Vec<Vec<u8>>| {
                let blocks: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
                embedder.embed_blocks(&blocks)
            },
        )
        .map_err(thread_failed)?;
        let attributes = attribute_models
            .into_iter()
            .map(|mut model| {
                let name = model.config().name.clone();
                Batcher::spawn(
                    name,
                    limits(model.config().batch_size),
                    run_lock.clone(),
                    move |requests: Vec<Vec<u8>>| {
                        let blocks: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
                        model.run_blocks(&blocks)
                    },
                )
                .map_err(thread_failed)
            })
            .collect::<Result<_>>()?;
        Ok(Arc::new(Self {
            info,
            detector,
            embedder,
            attributes,
        }))
    }

    async fn run_attributes(&self, model: usize, chips: Vec<u8>) -> Result<Vec<FaceAttribute>> {
        let (Some(batcher), Some(spec)) = (self.attributes.get(model), self.info.attribute_models.get(model)) else {
            return Err(PipelineError::Models {
                reason: format!("no attribute model {model}: {} are loaded", self.attributes.len()),
                transient: false,
            });
        };
        let per_chip = spec.crop.chip_bytes();
        debug_assert!(chips.len().is_multiple_of(per_chip), "whole chips only");
        let count = chips.len() / per_chip;
        batcher
            .submit(chips, count)
            .await
            .map_err(|error| model_failure("attribute", error))
    }
}

impl FaceModels for LocalModels {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn detect(&self, photos: Vec<LetterboxedPhoto>) -> BoxFuture<'_, Result<Vec<Vec<DetectedFace>>>> {
        Box::pin(async move {
            let count = photos.len();
            self.detector
                .submit(photos, count)
                .await
                .map_err(|error| model_failure("detector", error))
        })
    }

    fn embed(&self, crops: Vec<u8>) -> BoxFuture<'_, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            debug_assert!(crops.len().is_multiple_of(CROP_BYTES), "whole crops only");
            let count = crops.len() / CROP_BYTES;
            self.embedder
                .submit(crops, count)
                .await
                .map_err(|error| model_failure("embedder", error))
        })
    }

    fn attributes(&self, model: usize, chips: Vec<u8>) -> BoxFuture<'_, Result<Vec<FaceAttribute>>> {
        Box::pin(self.run_attributes(model, chips))
    }
}

fn model_failure(model: &'static str, error: BatchError<VisionError>) -> PipelineError {
    match error {
        BatchError::Run(source) => PipelineError::ModelRun { model, source },
        other => PipelineError::Models {
            reason: format!("{model}: {other}"),
            transient: false,
        },
    }
}
