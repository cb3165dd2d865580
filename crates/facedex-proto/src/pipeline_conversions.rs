//! Conversions of the pipeline's Kafka records (`facedex.pipeline.v1`) and the embed service's
//! messages (`facedex.embed.v1`) to and from the domain types, and their wire encoding.

use facedex_index::{BoundingBox as DomainBox, CatalogEntry, ImageOutcome, ImageVersion};
use facedex_pipeline::PhotoFailureKind;
use facedex_pipeline::messages as domain;
use facedex_pipeline::plan::{self as domain_plan, RunPlan};
use facedex_vision::attributes::{ChipCrop, ChipTemplate};
use facedex_vision::{DetectedFace as VisionFace, LetterboxGeometry, LetterboxedPhoto as DomainPhoto};
use prost::Message;

use crate::conversions::{bounding_box, domain_box, landmarks};
use crate::embed::{self, LetterboxedPhoto};
use crate::error::RequestError;
use crate::pipeline::{
    CatalogRecord, DeadLetter, EnqueueRun, FaceBatch, ImageRef, ImageRemoval, PipelineFace, StageTimings,
};
use crate::trait_conversions::{attributes_to_proto, traits};
use crate::{BoundingBox, DetectedFace, Point};

impl From<&domain::ImageRef> for ImageRef {
    fn from(image: &domain::ImageRef) -> Self {
        ImageRef {
            uri: image.uri.clone(),
            archive: image.archive.clone(),
            key: image.key.clone(),
            size_bytes: image.size_bytes,
            version: image.version.clone(),
            enqueued_at_unix_ms: image.enqueued_at_unix_ms,
        }
    }
}

impl From<ImageRef> for domain::ImageRef {
    fn from(image: ImageRef) -> Self {
        domain::ImageRef {
            uri: image.uri,
            archive: image.archive,
            key: image.key,
            size_bytes: image.size_bytes,
            version: image.version,
            enqueued_at_unix_ms: image.enqueued_at_unix_ms,
        }
    }
}

impl From<&domain::FaceBatch> for FaceBatch {
    fn from(batch: &domain::FaceBatch) -> Self {
        let timings = batch.timings;
        FaceBatch {
            image: Some((&batch.image).into()),
            model_id: batch.model_id.clone(),
            width: batch.width,
            height: batch.height,
            faces: batch
                .faces
                .iter()
                .map(|face| PipelineFace {
                    r#box: Some(bounding_box(face.bounding_box.corners())),
                    landmarks: landmarks(&face.landmarks),
                    detection_score: face.detection_score,
                    embedding: face.embedding.clone(),
                    attributes: attributes_to_proto(&face.traits.attributes),
                    quality: face.traits.quality,
                })
                .collect(),
            timings: Some(StageTimings {
                fetch_us: timings.fetch_us,
                decode_us: timings.decode_us,
                detect_us: timings.detect_us,
                align_us: timings.align_us,
                embed_us: timings.embed_us,
            }),
        }
    }
}

impl TryFrom<FaceBatch> for domain::FaceBatch {
    type Error = RequestError;

    fn try_from(batch: FaceBatch) -> Result<Self, RequestError> {
        let image: domain::ImageRef = batch
            .image
            .ok_or(RequestError::MissingField {
                field: "image",
                hint: "a FaceBatch names its photo",
            })?
            .into();
        let faces = batch
            .faces
            .into_iter()
            .map(|face| {
                Ok(domain::PipelineFace {
                    bounding_box: required_box(face.r#box, "faces.box")?,
                    landmarks: five_points(&face.landmarks, "faces.landmarks")?,
                    detection_score: face.detection_score,
                    embedding: face.embedding,
                    traits: traits(face.attributes, face.quality)?,
                })
            })
            .collect::<Result<_, RequestError>>()?;
        let timings = batch.timings.unwrap_or_default();
        Ok(domain::FaceBatch {
            image,
            model_id: batch.model_id,
            width: batch.width,
            height: batch.height,
            faces,
            timings: domain::StageTimings {
                fetch_us: timings.fetch_us,
                decode_us: timings.decode_us,
                detect_us: timings.detect_us,
                align_us: timings.align_us,
                embed_us: timings.embed_us,
            },
        })
    }
}

impl From<&domain::DeadLetter> for DeadLetter {
    fn from(letter: &domain::DeadLetter) -> Self {
        DeadLetter {
            image: Some((&letter.image).into()),
            error_kind: letter.error_kind.label().to_owned(),
            message: letter.message.clone(),
            attempts: letter.attempts,
            failed_at_unix_ms: letter.failed_at_unix_ms,
        }
    }
}

impl TryFrom<DeadLetter> for domain::DeadLetter {
    type Error = RequestError;

    /// Fails on an `error_kind` this version does not know (a newer writer's).
    fn try_from(letter: DeadLetter) -> Result<Self, RequestError> {
        let error_kind = PhotoFailureKind::from_label(&letter.error_kind).ok_or_else(|| RequestError::Malformed {
            record: "DeadLetter",
            reason: format!("unknown error_kind {:?}", letter.error_kind),
        })?;
        Ok(domain::DeadLetter {
            image: letter.image.unwrap_or_default().into(),
            error_kind,
            message: letter.message,
            attempts: letter.attempts,
            failed_at_unix_ms: letter.failed_at_unix_ms,
        })
    }
}

impl From<&domain::ImageRemoval> for ImageRemoval {
    fn from(removal: &domain::ImageRemoval) -> Self {
        ImageRemoval {
            uri: removal.uri.clone(),
            removed_at_unix_ms: removal.removed_at_unix_ms,
        }
    }
}

impl TryFrom<ImageRemoval> for domain::ImageRemoval {
    type Error = RequestError;

    fn try_from(removal: ImageRemoval) -> Result<Self, RequestError> {
        if removal.uri.is_empty() {
            return Err(RequestError::MissingField {
                field: "uri",
                hint: "an ImageRemoval names the photo to remove",
            });
        }
        Ok(domain::ImageRemoval {
            uri: removal.uri,
            removed_at_unix_ms: removal.removed_at_unix_ms,
        })
    }
}

impl From<&CatalogEntry> for CatalogRecord {
    fn from(entry: &CatalogEntry) -> Self {
        let (faces, failed) = match entry.outcome {
            ImageOutcome::Indexed { faces } => (faces, false),
            ImageOutcome::Failed => (0, true),
        };
        CatalogRecord {
            version: entry.version.version.clone(),
            size_bytes: entry.version.size_bytes,
            faces,
            failed,
        }
    }
}

impl From<CatalogRecord> for CatalogEntry {
    fn from(record: CatalogRecord) -> Self {
        CatalogEntry {
            version: ImageVersion {
                version: record.version,
                size_bytes: record.size_bytes,
            },
            outcome: match record.failed {
                true => ImageOutcome::Failed,
                false => ImageOutcome::Indexed { faces: record.faces },
            },
        }
    }
}

impl From<&domain_plan::EnqueueRun> for EnqueueRun {
    fn from(run: &domain_plan::EnqueueRun) -> Self {
        let plan = &run.plan;
        EnqueueRun {
            archive: run.archive.clone(),
            listed: plan.listed,
            new_photos: plan.new,
            changed: plan.changed,
            unchanged: plan.unchanged,
            unchanged_failed: plan.unchanged_failed,
            removed: plan.removed,
            gone_kept: plan.gone_kept,
            finished_at_unix_ms: run.finished_at_unix_ms,
        }
    }
}

impl From<EnqueueRun> for domain_plan::EnqueueRun {
    fn from(run: EnqueueRun) -> Self {
        domain_plan::EnqueueRun {
            archive: run.archive,
            plan: RunPlan {
                listed: run.listed,
                new: run.new_photos,
                changed: run.changed,
                unchanged: run.unchanged,
                unchanged_failed: run.unchanged_failed,
                removed: run.removed,
                gone_kept: run.gone_kept,
            },
            finished_at_unix_ms: run.finished_at_unix_ms,
        }
    }
}

/// Decodes a Kafka record's payload as message `M`.
pub fn decode<M: Message + Default>(record: &'static str, payload: &[u8]) -> Result<M, RequestError> {
    M::decode(payload).map_err(|error| RequestError::Malformed {
        record,
        reason: error.to_string(),
    })
}

impl From<&DomainPhoto> for LetterboxedPhoto {
    fn from(photo: &DomainPhoto) -> Self {
        let geometry = photo.geometry;
        LetterboxedPhoto {
            rgb: photo.pixels.clone(),
            resized_width: geometry.resized_width,
            resized_height: geometry.resized_height,
            input_width: geometry.input_width,
            input_height: geometry.input_height,
            scale: geometry.scale,
        }
    }
}

impl From<LetterboxedPhoto> for DomainPhoto {
    fn from(photo: LetterboxedPhoto) -> Self {
        DomainPhoto {
            pixels: photo.rgb,
            geometry: LetterboxGeometry {
                resized_width: photo.resized_width,
                resized_height: photo.resized_height,
                scale: photo.scale,
                input_width: photo.input_width,
                input_height: photo.input_height,
            },
        }
    }
}

impl TryFrom<DetectedFace> for VisionFace {
    type Error = RequestError;

    fn try_from(face: DetectedFace) -> Result<Self, RequestError> {
        Ok(VisionFace {
            bbox: required_box(face.bounding_box, "bounding_box")?.corners(),
            score: face.detection_score,
            landmarks: five_points(&face.landmarks, "landmarks")?,
        })
    }
}

fn required_box(value: Option<BoundingBox>, field: &'static str) -> Result<DomainBox, RequestError> {
    let value = value.ok_or(RequestError::MissingField {
        field,
        hint: "every face has a box",
    })?;
    Ok(domain_box([value.x1, value.y1, value.x2, value.y2]))
}

fn five_points(points: &[Point], field: &'static str) -> Result<[[f32; 2]; 5], RequestError> {
    let points: [&Point; 5] = points
        .iter()
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|points: Vec<&Point>| RequestError::Malformed {
            record: field,
            reason: format!("{} landmarks; a face has 5", points.len()),
        })?;
    Ok(points.map(|point| [point.x, point.y]))
}

/// The proto form of how an attribute model's chips are cut.
pub fn chip_crop_to_proto(crop: &ChipCrop) -> embed::ChipCrop {
    let kind = match crop {
        ChipCrop::Aligned {
            template,
            size_px,
            padding,
        } => embed::chip_crop::Kind::Aligned(embed::AlignedCrop {
            template: match template {
                ChipTemplate::Dlib => "dlib",
                ChipTemplate::Arcface => "arcface",
            }
            .to_owned(),
            size_px: *size_px,
            padding: *padding,
        }),
        ChipCrop::Box { size_px, scale } => embed::chip_crop::Kind::Box(embed::BoxCrop {
            size_px: *size_px,
            scale: *scale,
        }),
    };
    embed::ChipCrop { kind: Some(kind) }
}

/// How an attribute model's chips are cut, from its proto form, checked as a configuration is.
pub fn chip_crop_from_proto(crop: Option<embed::ChipCrop>) -> Result<ChipCrop, RequestError> {
    let malformed = |reason: String| RequestError::Malformed {
        record: "ChipCrop",
        reason,
    };
    let crop = match crop.and_then(|crop| crop.kind) {
        Some(embed::chip_crop::Kind::Aligned(aligned)) => ChipCrop::Aligned {
            template: match aligned.template.as_str() {
                "dlib" => ChipTemplate::Dlib,
                "arcface" => ChipTemplate::Arcface,
                other => return Err(malformed(format!("unknown template {other:?} (dlib or arcface)"))),
            },
            size_px: aligned.size_px,
            padding: aligned.padding,
        },
        Some(embed::chip_crop::Kind::Box(crop)) => ChipCrop::Box {
            size_px: crop.size_px,
            scale: crop.scale,
        },
        None => return Err(malformed("no crop kind".to_owned())),
    };
    crop.validate().map_err(malformed)?;
    Ok(crop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueue_runs_round_trip() {
        let run = domain_plan::EnqueueRun {
            archive: "s3://photos/2024".into(),
            plan: RunPlan {
                listed: 400,
                new: 1,
                changed: 1,
                unchanged: 398,
                unchanged_failed: 2,
                removed: 2,
                gone_kept: 0,
            },
            finished_at_unix_ms: 9,
        };
        let wire: EnqueueRun = decode("EnqueueRun", &EnqueueRun::from(&run).encode_to_vec()).expect("decodes");
        assert_eq!(domain_plan::EnqueueRun::from(wire), run);
    }

    #[test]
    fn removals_and_catalog_records_round_trip_and_a_removal_names_its_photo() {
        let removal = domain::ImageRemoval {
            uri: "gs://b/gone.jpg".into(),
            removed_at_unix_ms: 7,
        };
        let wire: ImageRemoval =
            decode("ImageRemoval", &ImageRemoval::from(&removal).encode_to_vec()).expect("decodes");
        assert_eq!(domain::ImageRemoval::try_from(wire).expect("valid"), removal);
        assert!(domain::ImageRemoval::try_from(ImageRemoval::default()).is_err());
        for outcome in [ImageOutcome::Indexed { faces: 3 }, ImageOutcome::Failed] {
            let entry = CatalogEntry {
                version: ImageVersion {
                    version: "\"etag\"".into(),
                    size_bytes: 42,
                },
                outcome,
            };
            let wire: CatalogRecord =
                decode("CatalogRecord", &CatalogRecord::from(&entry).encode_to_vec()).expect("decodes");
            assert_eq!(CatalogEntry::from(wire), entry);
        }
    }

    #[test]
    fn face_batches_round_trip_through_the_wire_format() {
        let batch = domain::FaceBatch {
            image: domain::ImageRef {
                uri: "s3://bucket/a.jpg".into(),
                archive: "s3://bucket".into(),
                key: "a.jpg".into(),
                size_bytes: 10,
                version: "\"etag\"".into(),
                enqueued_at_unix_ms: 1,
            },
            model_id: "w600k_mbf-0123".into(),
            width: 640,
            height: 480,
            faces: vec![domain::PipelineFace {
                bounding_box: domain_box([1.0, 2.0, 3.0, 4.0]),
                landmarks: [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0], [5.0, 5.0]],
                detection_score: 0.9,
                embedding: vec![0.6, 0.8],
                traits: facedex_index::FaceTraits {
                    quality: Some(0.75),
                    attributes: vec![facedex_index::FaceAttribute {
                        name: "age".into(),
                        model_id: "age-v1-4f9f0075200b".into(),
                        value: facedex_index::AttributeValue::Number(41.5),
                    }],
                },
            }],
            timings: domain::StageTimings {
                fetch_us: 5,
                ..Default::default()
            },
        };
        let bytes = FaceBatch::from(&batch).encode_to_vec();
        let decoded: FaceBatch = decode("FaceBatch", &bytes).expect("decodes");
        assert_eq!(domain::FaceBatch::try_from(decoded).expect("valid"), batch);
        assert!(matches!(
            decode::<FaceBatch>("FaceBatch", b"\xff\xff\xff"),
            Err(RequestError::Malformed { .. })
        ));
        let mut short = FaceBatch::from(&batch);
        short.faces[0].landmarks.pop();
        assert!(domain::FaceBatch::try_from(short).is_err());
    }
}
