//! [`PhotoAnalyzer`]: the one photo-level front end to the models. Photo bytes in, faces with
//! embeddings out: decode and letterbox on the CPU pool, detect through the models (and again
//! over a close-up canvas when the first pass suggests a face filling the frame, see
//! `facedex_vision::close_up`), align each face from the full-resolution photo on the CPU
//! pool, embed through the models. Any number
//! of callers use one analyzer at once; the models batch their requests together.

use std::sync::Arc;
use std::time::Instant;

use facedex_vision::align::aligned_crops;
use facedex_vision::close_up::{close_up_canvas, map_back, merge_close_up, needs_close_up_pass};
use facedex_vision::letterbox::Letterboxer;
use facedex_vision::{DetectedFace, Face, LetterboxGeometry, VisionConfig, decode_photo, letterbox_geometry};
use tokio::sync::Semaphore;

use crate::embed::{FaceModels, ModelInfo};
use crate::error::{PipelineError, Result};
use crate::messages::StageTimings;

/// A photo the models have seen.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzedPhoto {
    /// Width of the EXIF-oriented photo in pixels.
    pub width: u32,
    /// Height of the EXIF-oriented photo in pixels.
    pub height: u32,
    /// Faces, best detection score first.
    pub faces: Vec<Face>,
}

/// Photos to faces through a [`FaceModels`], shared by every caller.
pub struct PhotoAnalyzer {
    models: Arc<dyn FaceModels>,
    /// One permit per decode, letterbox or alignment running at once, so CPU work for photos
    /// in flight leaves the cores the models need.
    cpu_slots: Arc<Semaphore>,
    max_image_pixels: u64,
    /// The IoU over which a close-up pass's face is the first pass's, when that pass is on.
    close_up_nms_iou: Option<f32>,
}

impl PhotoAnalyzer {
    /// An analyzer over `models` running at most `cpu_threads` (at least one) decodes or
    /// alignments at once, refusing photos over `vision.max_image_pixels` and running the
    /// close-up pass as `vision.detection` says.
    pub fn new(models: Arc<dyn FaceModels>, cpu_threads: usize, vision: &VisionConfig) -> Self {
        let detection = &vision.detection;
        Self {
            models,
            cpu_slots: Arc::new(Semaphore::new(cpu_threads.max(1))),
            max_image_pixels: vision.max_image_pixels,
            close_up_nms_iou: detection.close_up_pass.then_some(detection.nms_iou_threshold),
        }
    }

    /// CPU slots for `vision.decode_threads`: the configured count, or when it is 0, half the
    /// cores with the models in this process (they use the other half) and every core when
    /// the models run elsewhere.
    pub fn cpu_threads(decode_threads: usize, models_in_process: bool) -> usize {
        if decode_threads > 0 {
            return decode_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        if models_in_process { (cores / 2).max(1) } else { cores }
    }

    /// The models' description.
    pub fn info(&self) -> &ModelInfo {
        self.models.info()
    }

    /// The faces of the photo `bytes` hold; `name` is the photo's path or URI in errors. With
    /// `with_embeddings`, faces whose landmarks admit no alignment are dropped (no embedding
    /// could describe them); without, every detection is kept. Time spent per stage is added
    /// to `timings`.
    pub async fn analyze(
        &self,
        name: &str,
        bytes: impl AsRef<[u8]> + Send + 'static,
        with_embeddings: bool,
        timings: &mut StageTimings,
    ) -> Result<AnalyzedPhoto> {
        let started = Instant::now();
        let (input_px, fit_input) = (self.info().detector_input_px, self.info().fit_input_to_photo);
        let (uri, max_pixels) = (name.to_owned(), self.max_image_pixels);
        let (photo, letterboxed) = self
            .on_cpu_pool(move || {
                let photo = decode_photo(&uri, bytes.as_ref(), max_pixels)?;
                let geometry = letterbox_geometry(photo.width(), photo.height(), input_px, fit_input);
                let letterboxed = Letterboxer::default().letterbox(&photo, geometry);
                Ok((photo, letterboxed))
            })
            .await?;
        timings.decode_us += elapsed_us(started);

        let started = Instant::now();
        let first_pass = letterboxed.geometry;
        let detections = self.detect(letterboxed).await?;
        let (photo, detections) = self.with_close_ups(photo, first_pass, detections).await?;
        timings.detect_us += elapsed_us(started);

        let (width, height) = photo.dimensions();
        let mut analyzed = AnalyzedPhoto {
            width,
            height,
            faces: Vec::new(),
        };
        if !with_embeddings || detections.is_empty() {
            analyzed.faces = detections
                .into_iter()
                .map(|detection| Face {
                    detection,
                    embedding: Vec::new(),
                })
                .collect();
            return Ok(analyzed);
        }
        let started = Instant::now();
        let (detections, crops) = self
            .on_cpu_pool(move || {
                let mut crops = Vec::new();
                let kept = aligned_crops(&photo, detections, &mut crops);
                Ok((kept, crops))
            })
            .await?;
        timings.align_us += elapsed_us(started);
        if detections.is_empty() {
            return Ok(analyzed);
        }

        let started = Instant::now();
        let embeddings = self.models.embed(crops).await?;
        timings.embed_us += elapsed_us(started);
        if embeddings.len() != detections.len() {
            return Err(PipelineError::Models {
                reason: format!("{} embeddings for {} faces", embeddings.len(), detections.len()),
                transient: false,
            });
        }
        analyzed.faces = detections
            .into_iter()
            .zip(embeddings)
            .map(|(detection, embedding)| Face { detection, embedding })
            .collect();
        Ok(analyzed)
    }

    /// The faces the detector finds in one letterboxed photo.
    async fn detect(&self, letterboxed: facedex_vision::LetterboxedPhoto) -> Result<Vec<DetectedFace>> {
        Ok(self
            .models
            .detect(vec![letterboxed])
            .await?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// `detections` with the faces of a close-up pass added, when the pass is on and the first
    /// pass (over `first_pass`) calls for it.
    async fn with_close_ups(
        &self,
        photo: image::RgbImage,
        first_pass: LetterboxGeometry,
        detections: Vec<DetectedFace>,
    ) -> Result<(image::RgbImage, Vec<DetectedFace>)> {
        let Some(nms_iou) = self.close_up_nms_iou else {
            return Ok((photo, detections));
        };
        if !needs_close_up_pass(&detections, photo.width(), photo.height()) {
            return Ok((photo, detections));
        }
        let (photo, (canvas, mapping)) = self
            .on_cpu_pool(move || {
                let canvas = close_up_canvas(&mut Letterboxer::default(), &photo, first_pass);
                Ok((photo, canvas))
            })
            .await?;
        let close_ups = self
            .detect(canvas)
            .await?
            .into_iter()
            .map(|face| map_back(face, mapping));
        Ok((photo, merge_close_up(detections, close_ups.collect(), nms_iou)))
    }

    /// Runs CPU work (decode, resize, warp) on the blocking pool, off the async workers, once
    /// a CPU slot is free.
    async fn on_cpu_pool<T: Send + 'static>(&self, work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        let slot = Arc::clone(&self.cpu_slots)
            .acquire_owned()
            .await
            .map_err(|_| PipelineError::Cancelled)?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .map_err(|source| PipelineError::TaskFailed {
            task: "decode/align",
            source,
        })?
    }
}

fn elapsed_us(started: Instant) -> u64 {
    started.elapsed().as_micros() as u64
}
