//! The kinds of record on the faces topic, and how a photo's change is published. Besides face
//! batches it carries a photo's permanent failure (a `DeadLetter`) and its removal (an
//! `ImageRemoval`), so every indexer of a partition applies a photo's changes in the order they
//! happened, and users' deletions of faces. The kind travels in the `facedex-record` header; a record without one is a face
//! batch (what every writer before the header wrote). Records of the people-edits topic are
//! `PeopleEditRecord`s.

use std::collections::BTreeMap;

use facedex_index::DeleteSelector;
use facedex_pipeline::indexer::{IndexRecord, IndexUpdate, Refusal, RefusalKind};
use facedex_pipeline::{DeadLetter, FaceBatch, ImageRemoval, describe};
use facedex_proto::DeleteRequest;
use facedex_proto::people_conversions::logged_people_edit;
use facedex_proto::pipeline as wire;
use facedex_proto::pipeline_conversions::decode;
use prost::Message as _;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;

use crate::catalog::publish_entry;
use crate::client::publish_record;
use crate::config::KafkaConfig;
use crate::error::Result;

/// The header naming a faces-topic record's kind.
pub const RECORD_KIND_HEADER: &str = "facedex-record";

/// What a faces-topic record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FacesRecordKind {
    /// A `FaceBatch`: every face of a photo.
    FaceBatch,
    /// A `DeadLetter` of a permanent kind: the photo at its version cannot be indexed.
    PhotoFailed,
    /// An `ImageRemoval`: the photo left the archive.
    ImageRemoval,
    /// A `facedex.v1.DeleteRequest`: a user deleted faces; written to every partition of the
    /// shard that deleted them.
    Deletion,
}

impl FacesRecordKind {
    /// The header value.
    pub fn label(self) -> &'static str {
        match self {
            Self::FaceBatch => "face-batch",
            Self::PhotoFailed => "photo-failed",
            Self::ImageRemoval => "image-removal",
            Self::Deletion => "deletion",
        }
    }

    /// The kind a header value names; a record without the header is a face batch.
    fn of_header(value: Option<&[u8]>) -> std::result::Result<Self, String> {
        let Some(value) = value else {
            return Ok(Self::FaceBatch);
        };
        [Self::FaceBatch, Self::PhotoFailed, Self::ImageRemoval, Self::Deletion]
            .into_iter()
            .find(|kind| kind.label().as_bytes() == value)
            .ok_or_else(|| {
                format!(
                    "unknown {RECORD_KIND_HEADER} header {:?} (a newer writer's record?)",
                    String::from_utf8_lossy(value)
                )
            })
    }
}

/// The faces-topic record of `update`: its kind and payload.
pub fn encode_update(update: &IndexUpdate) -> (FacesRecordKind, Vec<u8>) {
    match update {
        IndexUpdate::Faces(batch) => (FacesRecordKind::FaceBatch, wire::FaceBatch::from(batch).encode_to_vec()),
        IndexUpdate::Removed(removal) => (
            FacesRecordKind::ImageRemoval,
            wire::ImageRemoval::from(removal).encode_to_vec(),
        ),
        IndexUpdate::Failed(letter) => (
            FacesRecordKind::PhotoFailed,
            wire::DeadLetter::from(letter).encode_to_vec(),
        ),
    }
}

/// Publishes `update` on the faces topic, keyed by its photo's URI, then the photo's catalog
/// entry (a tombstone for a removal), each acknowledged: the catalog never names a version
/// the faces topic lacks.
pub async fn publish_update(producer: &FutureProducer, config: &KafkaConfig, update: &IndexUpdate) -> Result<()> {
    let (kind, payload) = encode_update(update);
    let change = update.image_change();
    publish_record(
        producer,
        &config.topics.faces,
        change.image_uri(),
        Some(&payload),
        Some((RECORD_KIND_HEADER, kind.label())),
    )
    .await?;
    publish_entry(producer, config, change.image_uri(), change.entry().as_ref()).await
}

/// Faces-topic partitions and the next offset each must have been applied to.
pub type Watermark = BTreeMap<i32, i64>;

/// The people edit a record of the people-edits topic holds, and the positions of
/// `faces_topic` it must wait for (none when the record is refused).
pub fn people_edit(
    message: &impl Message,
    faces_topic: &str,
) -> (std::result::Result<IndexRecord, Refusal>, Watermark) {
    let payload = message.payload().unwrap_or_default();
    let record = match decode::<wire::PeopleEditRecord>("PeopleEditRecord", payload) {
        Ok(record) => record,
        Err(error) => {
            let refusal = Refusal {
                kind: RefusalKind::Undecodable,
                reason: describe(&error),
            };
            return (Err(refusal), Watermark::new());
        }
    };
    let watermark = record
        .faces_applied
        .iter()
        .filter(|applied| applied.topic == faces_topic)
        .map(|applied| (applied.partition, applied.next_offset))
        .collect();
    match logged_people_edit(record) {
        Ok((edit, anchors)) => (Ok(IndexRecord::People(edit, anchors)), watermark),
        Err(error) => {
            let refusal = Refusal {
                kind: RefusalKind::Invalid,
                reason: describe(&error),
            };
            (Err(refusal), Watermark::new())
        }
    }
}

/// The value of a message's [`RECORD_KIND_HEADER`] (empty for a header without a value), or
/// `None` when it has none.
pub fn record_kind_header(message: &impl Message) -> Option<&[u8]> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == RECORD_KIND_HEADER)
            .map(|header| header.value.unwrap_or_default())
    })
}

/// The payload of a deletion record.
pub fn encode_deletion(selector: &DeleteSelector) -> Vec<u8> {
    DeleteRequest::from(selector).encode_to_vec()
}

/// The index record a faces-topic message holds, or why it holds none.
pub fn index_record(message: &impl Message) -> std::result::Result<IndexRecord, Refusal> {
    let header = record_kind_header(message);
    let undecodable = |reason: String| Refusal {
        kind: RefusalKind::Undecodable,
        reason,
    };
    let invalid = |error: &dyn std::error::Error| Refusal {
        kind: RefusalKind::Invalid,
        reason: describe(error),
    };
    let payload = message.payload().unwrap_or_default();
    match FacesRecordKind::of_header(header).map_err(undecodable)? {
        FacesRecordKind::FaceBatch => {
            let record =
                decode::<wire::FaceBatch>("FaceBatch", payload).map_err(|error| undecodable(describe(&error)))?;
            FaceBatch::try_from(record)
                .map(|batch| IndexUpdate::Faces(batch).into())
                .map_err(|error| invalid(&error))
        }
        FacesRecordKind::Deletion => {
            let record =
                decode::<DeleteRequest>("DeleteRequest", payload).map_err(|error| undecodable(describe(&error)))?;
            DeleteSelector::try_from(record)
                .map(IndexRecord::Deletion)
                .map_err(|error| invalid(&error))
        }
        FacesRecordKind::PhotoFailed => {
            let record =
                decode::<wire::DeadLetter>("DeadLetter", payload).map_err(|error| undecodable(describe(&error)))?;
            let letter = DeadLetter::try_from(record).map_err(|error| invalid(&error))?;
            if letter.image.uri.is_empty() {
                return Err(Refusal {
                    kind: RefusalKind::Invalid,
                    reason: "a photo-failed record names no photo".into(),
                });
            }
            Ok(IndexUpdate::Failed(letter).into())
        }
        FacesRecordKind::ImageRemoval => {
            let record =
                decode::<wire::ImageRemoval>("ImageRemoval", payload).map_err(|error| undecodable(describe(&error)))?;
            ImageRemoval::try_from(record)
                .map(|removal| IndexUpdate::Removed(removal).into())
                .map_err(|error| invalid(&error))
        }
    }
}

#[cfg(test)]
mod tests {
    use facedex_pipeline::{ImageRef, PhotoFailureKind};
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    use super::*;

    fn message(kind: Option<&str>, payload: Vec<u8>) -> OwnedMessage {
        let headers = kind.map(|kind| {
            OwnedHeaders::new().insert(Header {
                key: RECORD_KIND_HEADER,
                value: Some(kind),
            })
        });
        OwnedMessage::new(
            Some(payload),
            None,
            "faces".into(),
            Timestamp::NotAvailable,
            0,
            0,
            headers,
        )
    }

    #[test]
    fn every_kind_round_trips_and_an_unknown_kind_is_refused() {
        let image = ImageRef {
            uri: "s3://b/a.jpg".into(),
            ..ImageRef::default()
        };
        let updates = [
            IndexUpdate::Removed(ImageRemoval {
                uri: image.uri.clone(),
                removed_at_unix_ms: 3,
            }),
            IndexUpdate::Failed(DeadLetter {
                image: image.clone(),
                error_kind: PhotoFailureKind::Corrupt,
                message: "truncated".into(),
                attempts: 1,
                failed_at_unix_ms: 4,
            }),
        ];
        for update in updates {
            let (kind, payload) = encode_update(&update);
            let decoded = index_record(&message(Some(kind.label()), payload)).expect("decodes");
            assert_eq!(format!("{decoded:?}"), format!("{:?}", IndexRecord::from(update)));
        }
        let deletion = DeleteSelector::ImageUriPrefix("s3://b/".into());
        let decoded = index_record(&message(Some("deletion"), encode_deletion(&deletion))).expect("decodes");
        assert_eq!(format!("{decoded:?}"), format!("{:?}", IndexRecord::Deletion(deletion)));
        let refusal = index_record(&message(Some("deletion"), DeleteRequest::default().encode_to_vec()))
            .expect_err("a deletion of nothing");
        assert_eq!(refusal.kind, RefusalKind::Invalid);
        let refusal = index_record(&message(Some("people-edit"), Vec::new())).expect_err("unknown kind");
        assert_eq!(refusal.kind, RefusalKind::Undecodable);
        assert!(refusal.reason.contains("people-edit"), "{}", refusal.reason);
        // No header: a face batch, as before the header existed.
        let refusal = index_record(&message(None, vec![0xff, 0xff])).expect_err("not protobuf");
        assert!(refusal.reason.contains("FaceBatch"), "{}", refusal.reason);
    }
}
