//! [`PhotoAnalyzer`]: the one photo-level front end to the models. Photo bytes in, faces with
//! embeddings, attributes and quality out: decode and letterbox on the CPU pool, detect
//! through the models (and again over a close-up canvas when the first pass suggests a face
//! filling the frame, see `facedex_vision::close_up`), align each face and cut each attribute
//! model's chip from the full-resolution photo on the CPU pool, score its quality, then embed
//! and run the attribute models side by side. Any number of callers use one analyzer at once;
//! the models batch their requests together.

use std::sync::Arc;
use std::time::Instant;

use facedex_vision::align::{CROP_BYTES, arcface_transform, warp_aligned};
use facedex_vision::attributes::chip::cut_chip;
use facedex_vision::attributes::{ChipCrop, FaceAttribute, FaceQuality, face_quality};
use facedex_vision::close_up::{close_up_canvas, map_back, merge_close_up, needs_close_up_pass};
use facedex_vision::letterbox::Letterboxer;
use facedex_vision::{DetectedFace, Face, LetterboxGeometry, VisionConfig, decode_photo, letterbox_geometry};
use futures::future::try_join_all;
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

/// What a caller wants of each face beyond its detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// The ArcFace embedding; faces that cannot be aligned are dropped when it is wanted.
    pub embeddings: bool,
    /// The attribute models' results. Quality comes with either.
    pub attributes: bool,
}

impl Wanted {
    /// Everything: what indexing stores.
    pub const ALL: Self = Self {
        embeddings: true,
        attributes: true,
    };
    /// Embeddings only: what a photo query searches with.
    pub const EMBEDDINGS: Self = Self {
        embeddings: true,
        attributes: false,
    };
    /// Detections only.
    pub const DETECTIONS: Self = Self {
        embeddings: false,
        attributes: false,
    };
}

/// What the CPU pool makes of a photo's detections: the faces in order, whether each was
/// aligned, the aligned crops, their quality and each attribute model's chips.
struct Cut {
    faces: Vec<(DetectedFace, bool)>,
    crops: Vec<u8>,
    qualities: Vec<FaceQuality>,
    chips: Vec<Vec<u8>>,
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

    /// The faces of the photo `bytes` hold, with what `wanted` asks for; `name` is the
    /// photo's path or URI in errors. Time spent per stage is added to `timings`.
    pub async fn analyze(
        &self,
        name: &str,
        bytes: impl AsRef<[u8]> + Send + 'static,
        wanted: Wanted,
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
        if !(wanted.embeddings || wanted.attributes) || detections.is_empty() {
            analyzed.faces = detections.into_iter().map(bare_face).collect();
            return Ok(analyzed);
        }
        let started = Instant::now();
        let chip_crops: Vec<ChipCrop> = match wanted.attributes {
            true => self
                .info()
                .attribute_models
                .iter()
                .map(|model| model.crop.clone())
                .collect(),
            false => Vec::new(),
        };
        let cut = self
            .on_cpu_pool(move || Ok(cut_faces(&photo, detections, &chip_crops)))
            .await?;
        timings.align_us += elapsed_us(started);

        let started = Instant::now();
        let aligned = cut.qualities.len();
        let embed = async {
            match wanted.embeddings && aligned > 0 {
                true => self.models.embed(cut.crops).await,
                false => Ok(Vec::new()),
            }
        };
        // No aligned face, no chips: the models are not asked (a remote worker refuses an
        // empty call).
        let chips = if aligned > 0 { cut.chips } else { Vec::new() };
        let attributes = try_join_all(
            chips
                .into_iter()
                .enumerate()
                .map(|(model, chips)| self.models.attributes(model, chips)),
        );
        let (embeddings, attributes) = futures::try_join!(embed, attributes)?;
        timings.embed_us += elapsed_us(started);
        let counts_match = (!wanted.embeddings || embeddings.len() == aligned)
            && attributes.iter().all(|results| results.len() == aligned);
        if !counts_match {
            return Err(PipelineError::Models {
                reason: format!(
                    "{} embeddings and {:?} attribute results for {aligned} faces",
                    embeddings.len(),
                    attributes.iter().map(Vec::len).collect::<Vec<_>>()
                ),
                transient: false,
            });
        }
        analyzed.faces = assemble(cut.faces, cut.qualities, embeddings, attributes, wanted.embeddings);
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

/// A face with its detection only.
fn bare_face(detection: DetectedFace) -> Face {
    Face {
        detection,
        embedding: Vec::new(),
        attributes: Vec::new(),
        quality: None,
    }
}

/// Aligns each detection, scores it and cuts each attribute model's chip from `photo`.
fn cut_faces(photo: &image::RgbImage, detections: Vec<DetectedFace>, chip_crops: &[ChipCrop]) -> Cut {
    let mut cut = Cut {
        faces: Vec::with_capacity(detections.len()),
        crops: Vec::with_capacity(detections.len() * CROP_BYTES),
        qualities: Vec::with_capacity(detections.len()),
        chips: vec![Vec::new(); chip_crops.len()],
    };
    let mut chip = Vec::new();
    for detection in detections {
        let Some(transform) = arcface_transform(&detection.landmarks) else {
            tracing::warn!(?detection, "a face whose landmarks coincide cannot be aligned");
            cut.faces.push((detection, false));
            continue;
        };
        let start = cut.crops.len();
        cut.crops.resize(start + CROP_BYTES, 0);
        warp_aligned(photo, &transform, &mut cut.crops[start..]);
        cut.qualities.push(face_quality(&detection, &cut.crops[start..]));
        for (crop, chips) in chip_crops.iter().zip(&mut cut.chips) {
            // A face that aligns to ArcFace's template aligns to any other; a box chip always
            // cuts. A failed cut leaves a black chip rather than shifting the faces after it.
            cut_chip(photo, &detection, crop, &mut chip);
            chips.extend_from_slice(&chip);
        }
        cut.faces.push((detection, true));
    }
    cut
}

/// The faces in detection order, each aligned one with its quality, embedding and attribute
/// results; unaligned ones are dropped when embeddings are wanted (none could describe them).
fn assemble(
    faces: Vec<(DetectedFace, bool)>,
    qualities: Vec<FaceQuality>,
    embeddings: Vec<Vec<f32>>,
    attributes: Vec<Vec<FaceAttribute>>,
    embeddings_wanted: bool,
) -> Vec<Face> {
    let mut qualities = qualities.into_iter();
    let mut embeddings = embeddings.into_iter();
    let mut per_model: Vec<_> = attributes.into_iter().map(Vec::into_iter).collect();
    faces
        .into_iter()
        .filter(|(_, aligned)| *aligned || !embeddings_wanted)
        .map(|(detection, aligned)| match aligned {
            false => bare_face(detection),
            true => Face {
                detection,
                embedding: embeddings.next().unwrap_or_default(),
                attributes: per_model.iter_mut().filter_map(Iterator::next).collect(),
                quality: qualities.next(),
            },
        })
        .collect()
}

fn elapsed_us(started: Instant) -> u64 {
    started.elapsed().as_micros() as u64
}
