//! Face records from synthetic face-like vectors, shared by the index tests.

#![allow(dead_code)]

use facedex_index::synthetic::{FaceLikeGenerator, FaceLikeVectors};
use facedex_index::{BoundingBox, FaceId, FaceMetadata, FaceRecord};

pub const MODEL: &str = "test-model";

/// `identities × samples` face-like vectors, deterministic for `seed`.
pub fn vectors(identities: usize, samples: usize, seed: u64) -> FaceLikeVectors {
    FaceLikeGenerator::new(identities, 512, seed).dataset(samples)
}

/// Record `position` of `vectors`: image `test://identity-I/photo-P.jpg`, id = position.
pub fn record(vectors: &FaceLikeVectors, position: usize) -> FaceRecord {
    FaceRecord {
        face_id: FaceId(position as u128),
        metadata: FaceMetadata {
            image_uri: format!("test://identity-{}/photo-{position}.jpg", vectors.identity_of[position]),
            bounding_box: BoundingBox {
                x1: 1.0,
                y1: 2.0,
                x2: 50.0,
                y2: 60.0,
            },
            landmarks: [[10.0, 20.0]; 5],
            detection_score: 0.9,
            model_id: MODEL.into(),
            traits: Default::default(),
        },
        embedding: vectors.vector(position).to_vec(),
    }
}

/// Every record of `vectors`.
pub fn records(vectors: &FaceLikeVectors) -> Vec<FaceRecord> {
    (0..vectors.len()).map(|position| record(vectors, position)).collect()
}
