//! [`FaceAnalyzer`]: decoded photos in, faces with embeddings out. Detection runs in batches of
//! photos, alignment reads the full-resolution photo, and embedding runs in batches of faces
//! drawn from several photos at once.

use image::RgbImage;

use crate::align::{ALIGNED_SIZE, aligned_crops};
use crate::config::VisionConfig;
use crate::detector::Detector;
use crate::embedder::Embedder;
use crate::error::Result;
use crate::letterbox::{LetterboxedPhoto, Letterboxer, letterbox_geometry};
use crate::runtime::environment;
use crate::scrfd::DetectedFace;

/// One face: where it is and, when asked for, its ArcFace embedding (unit length).
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// Box, score and landmarks in photo pixels.
    pub detection: DetectedFace,
    /// The L2-normalised embedding; empty when embeddings were not requested.
    pub embedding: Vec<f32>,
}

/// Loads ONNX Runtime and both models as `config` says, as two values that can run on two
/// threads (the embed service batches each on its own).
pub fn load_models(config: &VisionConfig) -> Result<(Detector, Embedder)> {
    config.validate()?;
    let environment = environment(&config.onnxruntime_library_path)?;
    let detector = Detector::load(&environment, config)?;
    let embedder = Embedder::load(&environment, config)?;
    Ok((detector, embedder))
}

/// The detector and embedder with their reusable buffers.
pub struct FaceAnalyzer {
    detector: Detector,
    embedder: Embedder,
    letterboxer: Letterboxer,
    canvas: u32,
    fit_input_to_photo: bool,
    detect_batch_size: usize,
    embed_batch_size: usize,
    crops: Vec<u8>,
}

impl FaceAnalyzer {
    /// Loads ONNX Runtime and both models as `config` says.
    pub fn load(config: &VisionConfig) -> Result<Self> {
        let (detector, embedder) = load_models(config)?;
        Ok(Self {
            letterboxer: Letterboxer::default(),
            canvas: config.detection.input_size_px,
            fit_input_to_photo: config.detection.fit_input_to_photo,
            detector,
            embedder,
            detect_batch_size: config.detection.batch_size,
            embed_batch_size: config.embed_batch_size,
            crops: Vec::new(),
        })
    }

    /// The embedding model's id (file stem and hash prefix), carried by every face record.
    pub fn model_id(&self) -> &str {
        self.embedder.model_id()
    }

    /// Photos per detector run this analyzer was configured with.
    pub fn detect_batch_size(&self) -> usize {
        self.detect_batch_size
    }

    /// Detects the faces of each photo, best score first. Photos run in batches of the
    /// configured size; within a batch, photos sharing a detector input size run together.
    pub fn detect(&mut self, photos: &[&RgbImage]) -> Result<Vec<Vec<DetectedFace>>> {
        let mut all = Vec::with_capacity(photos.len());
        for chunk in photos.chunks(self.detect_batch_size) {
            let letterboxed: Vec<LetterboxedPhoto> = chunk.iter().map(|photo| self.letterbox(photo)).collect();
            let borrowed: Vec<&LetterboxedPhoto> = letterboxed.iter().collect();
            all.extend(self.detector.detect_letterboxed(&borrowed)?);
        }
        Ok(all)
    }

    /// `photo` resized for the detector as this analyzer's configuration says.
    pub fn letterbox(&mut self, photo: &RgbImage) -> LetterboxedPhoto {
        let geometry = letterbox_geometry(photo.width(), photo.height(), self.canvas, self.fit_input_to_photo);
        self.letterboxer.letterbox(photo, geometry)
    }

    /// Aligns every detected face from its full-resolution photo and embeds them all, in batches
    /// that mix faces of different photos. Faces whose landmarks admit no alignment (all five
    /// points coincide) are dropped: no embedding could describe them.
    pub fn embed(&mut self, photos: &[&RgbImage], detections: Vec<Vec<DetectedFace>>) -> Result<Vec<Vec<Face>>> {
        let crop_len = ALIGNED_SIZE * ALIGNED_SIZE * 3;
        self.crops.clear();
        let mut faces: Vec<Vec<Face>> = photos
            .iter()
            .zip(detections)
            .map(|(photo, detected)| {
                aligned_crops(photo, detected, &mut self.crops)
                    .into_iter()
                    .map(|detection| Face {
                        detection,
                        embedding: Vec::new(),
                    })
                    .collect()
            })
            .collect();
        let mut slots = faces.iter_mut().flatten();
        for chunk in self.crops.chunks(self.embed_batch_size * crop_len) {
            for embedding in self.embedder.embed_batch(chunk)? {
                if let Some(face) = slots.next() {
                    face.embedding = embedding;
                }
            }
        }
        Ok(faces)
    }

    /// Detects, and when `with_embeddings` also embeds, the faces of each photo.
    pub fn analyze(&mut self, photos: &[&RgbImage], with_embeddings: bool) -> Result<Vec<Vec<Face>>> {
        let detections = self.detect(photos)?;
        if with_embeddings {
            return self.embed(photos, detections);
        }
        Ok(detections
            .into_iter()
            .map(|detected| {
                detected
                    .into_iter()
                    .map(|detection| Face {
                        detection,
                        embedding: Vec::new(),
                    })
                    .collect()
            })
            .collect())
    }
}
