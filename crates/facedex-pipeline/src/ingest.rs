//! The ingest step for one photo: fetch from the archive, then faces through the
//! [`PhotoAnalyzer`] (decode, detect, align, embed) into a [`FaceBatch`]. Transient failures
//! are retried with backoff; a photo that cannot be indexed becomes a [`DeadLetter`] with its
//! kind and reason, so the run goes on. Both local mode and the Kafka ingest worker call
//! [`Ingestor::ingest`].

use std::sync::Arc;
use std::time::Instant;

use facedex_index::{BoundingBox, FaceTraits};
use tokio_util::sync::CancellationToken;

use crate::archive::ArchiveRegistry;
use crate::config::IngestConfig;
use crate::embed::{PhotoAnalyzer, Wanted};
use crate::error::{PipelineError, Result, describe};
use crate::messages::{DeadLetter, FaceBatch, ImageRef, PipelineFace, StageTimings, now_unix_ms};
use crate::metrics;

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
    analyzer: Arc<PhotoAnalyzer>,
    config: IngestConfig,
    cancel: CancellationToken,
}

impl Ingestor {
    /// An ingestor reading through `archives` and finding faces with `analyzer`.
    pub fn new(
        archives: ArchiveRegistry,
        analyzer: Arc<PhotoAnalyzer>,
        config: IngestConfig,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            archives,
            analyzer,
            config,
            cancel,
        }
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
                let message = describe(&error);
                tracing::info!(uri = %image.uri, error_kind = %kind, attempts = attempt, error = %message, "dead-lettering photo");
                return Ok(Ingested::DeadLetter(DeadLetter {
                    image: image.clone(),
                    error_kind: kind,
                    message,
                    attempts: attempt,
                    failed_at_unix_ms: now_unix_ms(),
                }));
            }
            // Model-service outages are retried without limit (the photo is not at fault),
            // with the delay capped at the longest backoff.
            let delay = self.config.backoff(attempt);
            ::metrics::counter!(metrics::RETRIES).increment(1);
            tracing::warn!(uri = %image.uri, attempt, retry_in_ms = delay.as_millis() as u64, error = %describe(&error), "retrying photo");
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
        timings.fetch_us = started.elapsed().as_micros() as u64;
        ::metrics::counter!(metrics::PHOTOS_FETCHED).increment(1);
        ::metrics::counter!(metrics::FETCHED_BYTES).increment(bytes.len() as u64);

        let photo = self
            .analyzer
            .analyze(&image.uri, bytes, Wanted::ALL, &mut timings)
            .await?;
        ::metrics::counter!(metrics::PHOTOS_DECODED).increment(1);
        Ok(FaceBatch {
            image: image.clone(),
            model_id: self.analyzer.info().model_id.clone(),
            width: photo.width,
            height: photo.height,
            faces: photo
                .faces
                .into_iter()
                .map(|face| PipelineFace {
                    bounding_box: BoundingBox {
                        x1: face.detection.bbox[0],
                        y1: face.detection.bbox[1],
                        x2: face.detection.bbox[2],
                        y2: face.detection.bbox[3],
                    },
                    landmarks: face.detection.landmarks,
                    detection_score: face.detection.score,
                    traits: FaceTraits {
                        quality: face.quality.map(|quality| quality.score),
                        attributes: face.attributes,
                    },
                    embedding: face.embedding,
                })
                .collect(),
            timings,
        })
    }
}
