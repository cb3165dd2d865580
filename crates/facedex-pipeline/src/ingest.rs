//! The ingest step for one photo: fetch → decode and letterbox (CPU pool) → detect → align
//! from the full-resolution photo (CPU pool) → embed → [`FaceBatch`]. Transient failures are
//! retried with backoff; a photo that cannot be indexed becomes a [`DeadLetter`] with its
//! reason, so the run goes on. Both local mode and the Kafka ingest worker call
//! [`Ingestor::ingest`].

use std::sync::Arc;
use std::time::Instant;

use facedex_index::BoundingBox;
use facedex_vision::align::aligned_crops;
use facedex_vision::letterbox::Letterboxer;
use facedex_vision::{decode_photo, letterbox_geometry};
use tokio_util::sync::CancellationToken;

use crate::archive::ArchiveRegistry;
use crate::config::IngestConfig;
use crate::error::{PipelineError, Result};
use crate::messages::{DeadLetter, FaceBatch, ImageRef, PipelineFace, StageTimings, now_unix_ms};
use crate::metrics;
use crate::models::FaceModels;

/// What became of one photo.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// Its faces (possibly none), ready to index.
    Faces(FaceBatch),
    /// Why it cannot be indexed.
    DeadLetter(DeadLetter),
}

/// Runs the ingest step; shared by every in-flight photo of a worker.
pub struct Ingestor {
    archives: ArchiveRegistry,
    models: Arc<dyn FaceModels>,
    config: IngestConfig,
    max_image_pixels: u64,
    cancel: CancellationToken,
}

impl Ingestor {
    /// An ingestor reading through `archives` and running `models`.
    pub fn new(
        archives: ArchiveRegistry,
        models: Arc<dyn FaceModels>,
        config: IngestConfig,
        max_image_pixels: u64,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            archives,
            models,
            config,
            max_image_pixels,
            cancel,
        }
    }

    /// The models' description.
    pub fn models(&self) -> &Arc<dyn FaceModels> {
        &self.models
    }

    /// Processes `image` to its faces or to a dead letter. Fails only when the photo must not
    /// be given up: shutdown, or the models failing for reasons of their own.
    pub async fn ingest(&self, image: &ImageRef) -> Result<Ingested> {
        let _in_flight = metrics::InFlight::enter();
        let mut attempt = 1u32;
        loop {
            let error = match self.attempt(image).await {
                Ok(batch) => return Ok(Ingested::Faces(batch)),
                Err(error) => error,
            };
            let outage = matches!(error, PipelineError::Models { transient: true, .. });
            let give_up = !error.is_transient() || (!outage && attempt >= self.config.max_attempts);
            if give_up {
                let Some(kind) = error.dead_letter_kind() else {
                    return Err(error);
                };
                tracing::info!(uri = %image.uri, error_kind = kind, attempts = attempt, %error, "dead-lettering photo");
                return Ok(Ingested::DeadLetter(DeadLetter {
                    image: image.clone(),
                    error_kind: kind.to_owned(),
                    message: error.to_string(),
                    attempts: attempt,
                    failed_at_unix_ms: now_unix_ms(),
                }));
            }
            // Model-service outages are retried without limit (the photo is not at fault),
            // with the delay capped at the longest backoff.
            let delay = self.config.backoff(attempt);
            ::metrics::counter!(metrics::RETRIES).increment(1);
            tracing::warn!(uri = %image.uri, attempt, retry_in_ms = delay.as_millis() as u64, %error, "retrying photo");
            tokio::select! {
                () = self.cancel.cancelled() => return Err(PipelineError::Cancelled),
                () = tokio::time::sleep(delay) => {}
            }
            attempt = attempt.saturating_add(1);
        }
    }

    async fn attempt(&self, image: &ImageRef) -> Result<FaceBatch> {
        let mut timings = StageTimings::default();
        let started = Instant::now();
        let bytes = tokio::select! {
            () = self.cancel.cancelled() => return Err(PipelineError::Cancelled),
            fetched = self.archives.fetch(image) => fetched?,
        };
        timings.fetch_us = elapsed_us(started);
        ::metrics::counter!(metrics::PHOTOS_FETCHED).increment(1);
        ::metrics::counter!(metrics::FETCHED_BYTES).increment(bytes.len() as u64);

        let started = Instant::now();
        let info = self.models.info().clone();
        let (uri, max_pixels) = (image.uri.clone(), self.max_image_pixels);
        let (photo, letterboxed) = on_cpu_pool(move || {
            let photo = decode_photo(&uri, &bytes, max_pixels)?;
            let geometry = letterbox_geometry(
                photo.width(),
                photo.height(),
                info.detector_input_px,
                info.fit_input_to_photo,
            );
            let letterboxed = Letterboxer::default().letterbox(&photo, geometry);
            Ok((Arc::new(photo), letterboxed))
        })
        .await?;
        timings.decode_us = elapsed_us(started);
        ::metrics::counter!(metrics::PHOTOS_DECODED).increment(1);

        let started = Instant::now();
        let detections = self
            .models
            .detect(vec![letterboxed])
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        timings.detect_us = elapsed_us(started);

        let (width, height) = photo.dimensions();
        let mut batch = FaceBatch {
            image: image.clone(),
            model_id: self.models.info().model_id.clone(),
            width,
            height,
            faces: Vec::new(),
            timings,
        };
        if detections.is_empty() {
            return Ok(batch);
        }
        let started = Instant::now();
        let (detections, crops) = on_cpu_pool(move || {
            let mut crops = Vec::new();
            let kept = aligned_crops(&photo, detections, &mut crops);
            Ok((kept, crops))
        })
        .await?;
        batch.timings.align_us = elapsed_us(started);

        let started = Instant::now();
        let embeddings = self.models.embed(crops).await?;
        batch.timings.embed_us = elapsed_us(started);
        if embeddings.len() != detections.len() {
            return Err(PipelineError::Models {
                reason: format!("{} embeddings for {} faces", embeddings.len(), detections.len()),
                transient: false,
            });
        }
        batch.faces = detections
            .into_iter()
            .zip(embeddings)
            .map(|(detection, embedding)| PipelineFace {
                bounding_box: BoundingBox {
                    x1: detection.bbox[0],
                    y1: detection.bbox[1],
                    x2: detection.bbox[2],
                    y2: detection.bbox[3],
                },
                landmarks: detection.landmarks,
                detection_score: detection.score,
                embedding,
            })
            .collect();
        Ok(batch)
    }
}

/// Runs CPU work (decode, resize, warp) on the blocking pool, off the async workers.
async fn on_cpu_pool<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| PipelineError::TaskFailed {
            task: "decode/align",
            reason: error.to_string(),
        })?
}

fn elapsed_us(started: Instant) -> u64 {
    started.elapsed().as_micros() as u64
}
