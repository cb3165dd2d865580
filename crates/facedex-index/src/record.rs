//! What the index stores per face: a stable id, where the face is, what it is (its traits)
//! and its embedding.
//!
//! Face ids are derived, not allocated: a hash of the image's identity, the face's box and the
//! model id. Re-running the pipeline over the same archive, or replaying a Kafka topic after a
//! crash, yields the same ids, so an upsert makes the replay a no-op instead of a duplicate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{IndexError, Result};
use crate::traits::FaceTraits;

/// A face's 128-bit id, written as 32 lowercase hexadecimal characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FaceId(pub u128);

impl FaceId {
    /// The id of the face at `bounding_box` in the image `image_identity` (its URI, plus its
    /// version or etag when the store has one) as embedded by `model_id`.
    ///
    /// Box coordinates are quantised to a quarter pixel so that the id does not hinge on the
    /// last bit of a float that went through JSON.
    pub fn derive(image_identity: &str, bounding_box: &BoundingBox, model_id: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"facedex-face-id-v1\0");
        hasher.update(image_identity.as_bytes());
        hasher.update(b"\0");
        hasher.update(model_id.as_bytes());
        hasher.update(b"\0");
        for coordinate in bounding_box.corners() {
            let quarter_pixels = (coordinate * 4.0).round() as i64;
            hasher.update(quarter_pixels.to_le_bytes());
        }
        let digest = hasher.finalize();
        let mut first_half = [0u8; 16];
        first_half.copy_from_slice(&digest[..16]);
        Self(u128::from_be_bytes(first_half))
    }
}

impl fmt::Display for FaceId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:032x}", self.0)
    }
}

impl FromStr for FaceId {
    type Err = IndexError;

    fn from_str(input: &str) -> Result<Self> {
        let malformed = || IndexError::MalformedFaceId {
            input: input.to_owned(),
        };
        if input.len() != 32 || !input.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        u128::from_str_radix(input, 16).map(FaceId).map_err(|_| malformed())
    }
}

/// A face's box in the source photo's pixel coordinates (after EXIF orientation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    /// Left edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
}

impl BoundingBox {
    /// The corners as `[x1, y1, x2, y2]`.
    pub fn corners(&self) -> [f32; 4] {
        [self.x1, self.y1, self.x2, self.y2]
    }
}

/// Everything the index keeps about a face besides its vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceMetadata {
    /// The photo the face was found in.
    pub image_uri: String,
    /// The face's box.
    pub bounding_box: BoundingBox,
    /// The five landmarks (eyes, nose, mouth corners) as `(x, y)`.
    pub landmarks: [[f32; 2]; 5],
    /// The detector's confidence.
    pub detection_score: f32,
    /// The embedding model's id (see [`crate::FaceIndex`]: one index holds one model).
    pub model_id: String,
    /// Attributes and quality. Snapshots keep them in a file of their own, so the face
    /// file keeps the layout older snapshots have.
    #[serde(skip)]
    pub traits: FaceTraits,
}

impl FaceMetadata {
    /// Rejects metadata no detector could have produced: empty URI or model, non-finite or
    /// inverted box, non-finite landmarks or score.
    pub fn check(&self) -> Result<()> {
        let invalid = |reason: &str| IndexError::InvalidRecord {
            image_uri: self.image_uri.clone(),
            reason: reason.to_owned(),
        };
        if self.image_uri.is_empty() {
            return Err(invalid("the image URI is empty"));
        }
        if self.model_id.is_empty() {
            return Err(invalid("the model id is empty"));
        }
        let corners = self.bounding_box.corners();
        if corners.iter().any(|value| !value.is_finite()) {
            return Err(invalid("the bounding box has a non-finite coordinate"));
        }
        if self.bounding_box.x2 < self.bounding_box.x1 || self.bounding_box.y2 < self.bounding_box.y1 {
            return Err(invalid("the bounding box has x2 < x1 or y2 < y1"));
        }
        if self.landmarks.iter().flatten().any(|value| !value.is_finite()) {
            return Err(invalid("a landmark has a non-finite coordinate"));
        }
        if !self.detection_score.is_finite() {
            return Err(invalid("the detection score is not finite"));
        }
        self.traits.check(&self.image_uri)
    }
}

/// A face to insert: id, metadata and the unit embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRecord {
    /// The face's stable id.
    pub face_id: FaceId,
    /// Where the face is.
    pub metadata: FaceMetadata,
    /// The L2-normalised embedding.
    pub embedding: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_box() -> BoundingBox {
        BoundingBox {
            x1: 10.0,
            y1: 20.0,
            x2: 110.5,
            y2: 140.25,
        }
    }

    #[test]
    fn face_id_is_stable_and_depends_on_image_box_and_model() {
        let id = FaceId::derive("file:///photos/a.jpg", &sample_box(), "w600k_mbf");
        assert_eq!(id, FaceId::derive("file:///photos/a.jpg", &sample_box(), "w600k_mbf"));
        let nudged = BoundingBox {
            x1: 10.01,
            ..sample_box()
        };
        assert_eq!(
            id,
            FaceId::derive("file:///photos/a.jpg", &nudged, "w600k_mbf"),
            "sub-quarter-pixel noise"
        );
        let moved = BoundingBox {
            x1: 11.0,
            ..sample_box()
        };
        assert_ne!(id, FaceId::derive("file:///photos/a.jpg", &moved, "w600k_mbf"));
        assert_ne!(id, FaceId::derive("file:///photos/b.jpg", &sample_box(), "w600k_mbf"));
        assert_ne!(id, FaceId::derive("file:///photos/a.jpg", &sample_box(), "other"));
    }

    #[test]
    fn face_id_round_trips_through_text_and_rejects_garbage() {
        let id = FaceId::derive("x", &sample_box(), "m");
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<FaceId>().expect("round trip"), id);
        for bad in [
            "",
            "xyz",
            "0123456789abcdef0123456789abcdeg",
            "+123456789abcdef0123456789abcdef",
        ] {
            assert!(
                matches!(bad.parse::<FaceId>(), Err(IndexError::MalformedFaceId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn metadata_check_rejects_impossible_faces() {
        let good = FaceMetadata {
            image_uri: "file:///a.jpg".into(),
            bounding_box: sample_box(),
            landmarks: [[1.0, 2.0]; 5],
            detection_score: 0.9,
            model_id: "m".into(),
            traits: Default::default(),
        };
        assert!(good.check().is_ok());
        let inverted = FaceMetadata {
            bounding_box: BoundingBox {
                x2: 0.0,
                ..sample_box()
            },
            ..good.clone()
        };
        assert!(inverted.check().is_err());
        let no_uri = FaceMetadata {
            image_uri: String::new(),
            ..good.clone()
        };
        assert!(no_uri.check().is_err());
        let nan_landmark = FaceMetadata {
            landmarks: [[f32::NAN, 0.0]; 5],
            ..good
        };
        assert!(nan_landmark.check().is_err());
    }
}
