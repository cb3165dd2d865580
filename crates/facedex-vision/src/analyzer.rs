//! [`FaceAnalyzer`]: decoded photos in, faces with embeddings out. Detection runs in batches of
//! photos, alignment reads the full-resolution photo, and embedding runs in batches of faces
//! drawn from several photos at once.

use image::RgbImage;

use crate::align::{ALIGNED_SIZE, arcface_transform, warp_aligned};
use crate::config::VisionConfig;
use crate::detector::Detector;
use crate::embedder::Embedder;
use crate::error::Result;
use crate::letterbox::{Letterboxer, letterbox_geometry};
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

/// The detector and embedder with their reusable buffers.
pub struct FaceAnalyzer {
    detector: Detector,
    embedder: Embedder,
    letterboxer: Letterboxer,
    canvas: u32,
    fit_input_to_photo: bool,
    detect_batch_size: usize,
    embed_batch_size: usize,
    detector_input: Vec<f32>,
    crops: Vec<u8>,
}

impl FaceAnalyzer {
    /// Loads ONNX Runtime and both models as `config` says.
    pub fn load(config: &VisionConfig) -> Result<Self> {
        config.validate()?;
        let environment = environment(&config.onnxruntime_library_path)?;
        let detector = Detector::load(&environment, config)?;
        let embedder = Embedder::load(&environment, config)?;
        Ok(Self {
            letterboxer: Letterboxer::default(),
            canvas: config.detection.input_size_px,
            fit_input_to_photo: config.detection.fit_input_to_photo,
            detector,
            embedder,
            detect_batch_size: config.detection.batch_size,
            embed_batch_size: config.embed_batch_size,
            detector_input: Vec::new(),
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
        let mut all: Vec<Vec<DetectedFace>> = vec![Vec::new(); photos.len()];
        for (chunk_index, chunk) in photos.chunks(self.detect_batch_size).enumerate() {
            let offset = chunk_index * self.detect_batch_size;
            let geometries: Vec<_> = chunk
                .iter()
                .map(|photo| letterbox_geometry(photo.width(), photo.height(), self.canvas, self.fit_input_to_photo))
                .collect();
            let input_size = |i: &usize| (geometries[*i].input_width, geometries[*i].input_height);
            let mut order: Vec<usize> = (0..chunk.len()).collect();
            order.sort_by_key(input_size);
            for group in order.chunk_by(|a, b| input_size(a) == input_size(b)) {
                let (width, height) = input_size(&group[0]);
                let slot = 3 * width as usize * height as usize;
                self.detector_input.resize(group.len() * slot, 0.0);
                for (&i, tensor) in group.iter().zip(self.detector_input.chunks_exact_mut(slot)) {
                    self.letterboxer.write_tensor(chunk[i], geometries[i], tensor);
                }
                let group_geometries: Vec<_> = group.iter().map(|&i| geometries[i]).collect();
                let detected = self.detector.detect_batch(&self.detector_input, &group_geometries)?;
                for (&i, faces) in group.iter().zip(detected) {
                    all[offset + i] = faces;
                }
            }
        }
        Ok(all)
    }

    /// Aligns every detected face from its full-resolution photo and embeds them all, in batches
    /// that mix faces of different photos. Faces whose landmarks admit no alignment (all five
    /// points coincide) are dropped: no embedding could describe them.
    pub fn embed(&mut self, photos: &[&RgbImage], detections: Vec<Vec<DetectedFace>>) -> Result<Vec<Vec<Face>>> {
        let crop_len = ALIGNED_SIZE * ALIGNED_SIZE * 3;
        let mut faces: Vec<Vec<Face>> = Vec::with_capacity(photos.len());
        let mut pending: Vec<(usize, usize)> = Vec::new();
        self.crops.clear();
        for (photo_index, (photo, detected)) in photos.iter().zip(detections).enumerate() {
            let mut photo_faces = Vec::with_capacity(detected.len());
            for detection in detected {
                let Some(transform) = arcface_transform(&detection.landmarks) else {
                    tracing::warn!(
                        photo = photo_index,
                        ?detection,
                        "dropping a face whose landmarks coincide"
                    );
                    continue;
                };
                let start = self.crops.len();
                self.crops.resize(start + crop_len, 0);
                warp_aligned(photo, &transform, &mut self.crops[start..]);
                pending.push((photo_index, photo_faces.len()));
                photo_faces.push(Face {
                    detection,
                    embedding: Vec::new(),
                });
            }
            faces.push(photo_faces);
        }
        let mut next = pending.into_iter();
        for chunk in self.crops.chunks(self.embed_batch_size * crop_len) {
            for embedding in self.embedder.embed_batch(chunk)? {
                if let Some((photo, face)) = next.next() {
                    faces[photo][face].embedding = embedding;
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
