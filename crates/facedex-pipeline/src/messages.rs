//! The records that flow between stages: [`ImageRef`] (a photo to index), [`FaceBatch`] (every
//! face of one photo), [`DeadLetter`] (a photo that cannot be indexed, with the reason) and
//! [`ImageRemoval`] (a photo that left the archive). `facedex-proto` converts them to and from
//! the Kafka wire format.

use facedex_index::{BoundingBox, FaceId, FaceMetadata, FaceRecord, FaceTraits, ImageChange, ImageVersion};

use crate::failure::PhotoFailureKind;

/// One photo to index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageRef {
    /// The archive root followed by the key: stable, face ids derive from it.
    pub uri: String,
    /// The archive root the photo was listed from.
    pub archive: String,
    /// The key inside the archive.
    pub key: String,
    /// Size when listed.
    pub size_bytes: u64,
    /// ETag or version when listed (empty where the store has none).
    pub version: String,
    /// Enqueue time, milliseconds since the Unix epoch.
    pub enqueued_at_unix_ms: i64,
}

impl ImageRef {
    /// A reference to the photo at `uri` (as the index keeps it) in the archive of its own
    /// folder, for a reader that knows only the URI (the web console); `None` when the URI
    /// has no folder.
    pub fn in_its_folder(uri: &str) -> Option<Self> {
        let (archive, key) = uri.rsplit_once('/')?;
        if key.is_empty() || archive.is_empty() || archive.ends_with(':') {
            return None;
        }
        Some(Self {
            uri: uri.to_owned(),
            archive: archive.to_owned(),
            key: key.to_owned(),
            size_bytes: 0,
            version: String::new(),
            enqueued_at_unix_ms: 0,
        })
    }

    /// The identity a re-run compares: the listed version and size.
    pub fn listed_version(&self) -> ImageVersion {
        ImageVersion {
            version: self.version.clone(),
            size_bytes: self.size_bytes,
        }
    }
}

/// A photo that left the archive (`--prune`): the index drops its faces and its catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRemoval {
    /// The photo.
    pub uri: String,
    /// When the removal was decided, milliseconds since the Unix epoch.
    pub removed_at_unix_ms: i64,
}

/// A detected, aligned and embedded face.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineFace {
    /// Box in photo pixels.
    pub bounding_box: BoundingBox,
    /// Five landmarks in photo pixels.
    pub landmarks: [[f32; 2]; 5],
    /// Detector confidence.
    pub detection_score: f32,
    /// Unit-length embedding.
    pub embedding: Vec<f32>,
    /// Attributes and quality.
    pub traits: FaceTraits,
}

/// Microseconds spent per stage on one photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StageTimings {
    /// Reading the bytes from the object store.
    pub fetch_us: u64,
    /// Decoding, orienting and letterboxing.
    pub decode_us: u64,
    /// Waiting for and running the detector.
    pub detect_us: u64,
    /// Aligning crops from the full-resolution photo.
    pub align_us: u64,
    /// Waiting for and running the embedder.
    pub embed_us: u64,
}

/// Every face of one photo (none is a valid, counted result).
#[derive(Debug, Clone, PartialEq)]
pub struct FaceBatch {
    /// The photo.
    pub image: ImageRef,
    /// The embedding model's id.
    pub model_id: String,
    /// Oriented photo width in pixels.
    pub width: u32,
    /// Oriented photo height in pixels.
    pub height: u32,
    /// The faces, best detection first.
    pub faces: Vec<PipelineFace>,
    /// Per-stage time.
    pub timings: StageTimings,
}

impl FaceBatch {
    /// The index records of these faces. Face ids derive from the image URI, the box and the
    /// model id, so a replayed batch upserts the same ids instead of adding duplicates.
    pub fn face_records(&self) -> Vec<FaceRecord> {
        self.faces
            .iter()
            .map(|face| FaceRecord {
                face_id: self.face_id(face),
                metadata: FaceMetadata {
                    image_uri: self.image.uri.clone(),
                    bounding_box: face.bounding_box,
                    landmarks: face.landmarks,
                    detection_score: face.detection_score,
                    model_id: self.model_id.clone(),
                    traits: face.traits.clone(),
                },
                embedding: face.embedding.clone(),
            })
            .collect()
    }

    /// The id `face` of this batch has in the index.
    pub fn face_id(&self, face: &PipelineFace) -> FaceId {
        FaceId::derive(&self.image.uri, &face.bounding_box, &self.model_id)
    }

    /// Each face's id and box (`[x1, y1, x2, y2]`), without the embeddings.
    pub fn placed_faces(&self) -> Vec<(FaceId, [f32; 4])> {
        self.faces
            .iter()
            .map(|face| (self.face_id(face), face.bounding_box.corners()))
            .collect()
    }

    /// The index change this batch makes: the photo, at its listed version, holds exactly
    /// these faces.
    pub fn image_change(&self) -> ImageChange {
        ImageChange::Indexed {
            image_uri: self.image.uri.clone(),
            version: self.image.listed_version(),
            faces: self.face_records(),
        }
    }
}

/// A photo that cannot be indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The photo.
    pub image: ImageRef,
    /// Why, as a kind.
    pub error_kind: PhotoFailureKind,
    /// The error's message.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was given up, milliseconds since the Unix epoch.
    pub failed_at_unix_ms: i64,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_splits_into_its_folder_and_name() {
        let image = ImageRef::in_its_folder("s3://photos/2024/a b.jpg").expect("a photo");
        assert_eq!(
            (image.archive.as_str(), image.key.as_str()),
            ("s3://photos/2024", "a b.jpg")
        );
        assert_eq!(format!("{}/{}", image.archive, image.key), image.uri);
        assert!(ImageRef::in_its_folder("file:///photos/").is_none());
        assert!(ImageRef::in_its_folder("no-folder.jpg").is_none());
        assert!(ImageRef::in_its_folder("file:/a.jpg").is_none());
    }
}
