//! The proto → domain conversions of everything a topic or a client sends: the pipeline's
//! records (`ImageRef`, `FaceBatch`, `DeadLetter`, `ImageRemoval`, catalog, run and people-edit
//! records) and the gRPC requests (`Search`, `Delete`, `GetFace`, the People calls, `Detect`,
//! `Embed`). The same bytes are
//! decoded as every message type, as a record of the wrong type on a topic would be.

use std::sync::LazyLock;

use facedex_index::PeopleEdit;
use facedex_index::synthetic::FaceLikeGenerator;
use facedex_index::{FaceStore, IndexConfig};
use facedex_pipeline::messages as domain;
use facedex_pipeline::plan::EnqueueRun;
use facedex_proto::conversions::{ParsedSearch, SearchTarget, parse_face_id};
use facedex_proto::embed::{DetectRequest, EmbedRequest};
use facedex_proto::people_conversions::{Page, logged_people_edit, parse_person_id, recluster_budget};
use facedex_proto::pipeline as wire;
use facedex_proto::pipeline_conversions::decode;
use facedex_proto::{
    DeleteRequest, GetFaceRequest, GetPersonRequest, HidePersonRequest, ListPeopleRequest, MergePeopleRequest,
    MoveFacesRequest, ReclusterRequest, RenamePersonRequest, SearchRequest,
};
use facedex_vision::LetterboxedPhoto;
use facedex_vision::align::CROP_BYTES;

/// Every pipeline record type from `data`, each converted to its domain type when it decodes.
pub fn pipeline_records(data: &[u8]) {
    if let Ok(record) = decode::<wire::ImageRef>("image reference", data) {
        let _ = domain::ImageRef::from(record);
    }
    if let Ok(record) = decode::<wire::FaceBatch>("face batch", data) {
        let _ = domain::FaceBatch::try_from(record);
    }
    if let Ok(record) = decode::<wire::DeadLetter>("dead letter", data) {
        let _ = domain::DeadLetter::try_from(record);
    }
    if let Ok(record) = decode::<wire::ImageRemoval>("image removal", data) {
        let _ = domain::ImageRemoval::try_from(record);
    }
    if let Ok(record) = decode::<wire::CatalogRecord>("catalog record", data) {
        let _ = facedex_index::CatalogEntry::from(record);
    }
    if let Ok(record) = decode::<wire::EnqueueRun>("enqueue run", data) {
        let _ = EnqueueRun::from(record);
    }
    if let Ok(record) = decode::<wire::PeopleEditRecord>("people edit record", data)
        && let Ok((edit, anchors)) = logged_people_edit(record)
    {
        // Checked against the shared index, not applied: an edit would change it between inputs.
        let _ = INDEX.1.index().check_people_edit(&edit);
        let _ = anchors.len();
    }
}

/// A small index every fuzzed search runs against: the request's bounds are checked before
/// the index does any work, and a search that passes them runs for real.
static INDEX: LazyLock<(tempfile::TempDir, FaceStore)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = FaceStore::open(dir.path(), IndexConfig::default()).expect("an empty index");
    let faces = FaceLikeGenerator::new(20, IndexConfig::default().dimension, 7).dataset(5);
    store
        .upsert((0..faces.len()).map(|position| faces.record(position)).collect())
        .expect("synthetic faces");
    (dir, store)
});

/// Every request type from `data`, converted as the handlers convert it; a search that
/// converts runs against a small index (embedding and face-id queries; a photo query's bytes
/// are the decode target's job).
pub fn requests(data: &[u8]) {
    let index = INDEX.1.index();
    if let Ok(request) = decode::<SearchRequest>("search request", data)
        && let Ok(parsed) = ParsedSearch::try_from(request)
    {
        match &parsed.target {
            SearchTarget::Embedding(vector) => {
                let _ = index.search(&parsed.query_for(vector.clone()));
            }
            SearchTarget::FaceId(face_id) => {
                if let Ok(face) = index.get(face_id, true)
                    && let Some(vector) = face.embedding
                {
                    let _ = index.search(&parsed.query_for(vector));
                }
            }
            SearchTarget::Image(_) => {}
        }
    }
    if let Ok(request) = decode::<DeleteRequest>("delete request", data) {
        // Converted only: a delete would empty the shared index between inputs.
        let _ = facedex_index::DeleteSelector::try_from(request);
    }
    if let Ok(request) = decode::<GetFaceRequest>("get-face request", data)
        && let Ok(face_id) = parse_face_id("face_id", &request.face_id)
    {
        let _ = index.get(&face_id, request.with_embedding);
    }
    if let Ok(request) = decode::<ListPeopleRequest>("list-people request", data)
        && let Ok(page) = Page::checked(request.offset, request.limit)
    {
        let _ = index.list_people(page.offset, page.limit, request.include_hidden);
    }
    if let Ok(request) = decode::<GetPersonRequest>("get-person request", data)
        && let (Ok(person_id), Ok(page)) = (
            parse_person_id("person_id", &request.person_id),
            Page::checked(request.offset, request.limit),
        )
    {
        let _ = index.person(&person_id, page.offset, page.limit);
    }
    let edits = [
        decode::<RenamePersonRequest>("rename request", data).map(PeopleEdit::try_from),
        decode::<HidePersonRequest>("hide request", data).map(PeopleEdit::try_from),
        decode::<MergePeopleRequest>("merge request", data).map(PeopleEdit::try_from),
        decode::<MoveFacesRequest>("move request", data).map(PeopleEdit::try_from),
    ];
    for edit in edits.into_iter().flatten().flatten() {
        let _ = index.check_people_edit(&edit);
    }
    if let Ok(request) = decode::<ReclusterRequest>("recluster request", data) {
        let _ = recluster_budget(&request);
    }
    if let Ok(request) = decode::<DetectRequest>("detect request", data) {
        for photo in request.photos {
            let _ = LetterboxedPhoto::from(photo).check();
        }
    }
    if let Ok(request) = decode::<EmbedRequest>("embed request", data) {
        let _ = request.crops.len().is_multiple_of(CROP_BYTES);
    }
}

/// Real records as the pipeline writes them: the record target's seed corpus.
pub fn record_seeds() -> Vec<Vec<u8>> {
    use prost::Message;
    let image = wire::ImageRef {
        uri: "s3://photos/2024/beach.jpg".into(),
        archive: "s3://photos".into(),
        key: "2024/beach.jpg".into(),
        size_bytes: 2_345_678,
        version: "\"9b2cf535f27731c974343645a3985328\"".into(),
        enqueued_at_unix_ms: 1_764_000_000_000,
    };
    let embedding = FaceLikeGenerator::new(1, 512, 3).sample(0);
    let face = wire::PipelineFace {
        r#box: Some(facedex_proto::BoundingBox {
            x1: 10.0,
            y1: 20.0,
            x2: 110.0,
            y2: 140.0,
        }),
        landmarks: (0..5)
            .map(|point| facedex_proto::Point {
                x: 40.0 + 10.0 * point as f32,
                y: 60.0 + 5.0 * point as f32,
            })
            .collect(),
        detection_score: 0.93,
        embedding,
        attributes: vec![
            facedex_proto::FaceAttribute {
                name: "age".into(),
                model_id: "age-v1-4f9f0075200b".into(),
                value: Some(facedex_proto::face_attribute::Value::Number(34.5)),
            },
            facedex_proto::FaceAttribute {
                name: "gender".into(),
                model_id: "gender-v1-d4c4116cf720".into(),
                value: Some(facedex_proto::face_attribute::Value::Label(facedex_proto::LabelValue {
                    label: "female".into(),
                    confidence: 0.91,
                })),
            },
        ],
        quality: Some(0.82),
    };
    vec![
        image.encode_to_vec(),
        wire::FaceBatch {
            image: Some(image.clone()),
            model_id: "w600k_mbf-1234abcd".into(),
            width: 1280,
            height: 886,
            faces: vec![face.clone(), face],
            timings: Some(wire::StageTimings {
                fetch_us: 1_000,
                decode_us: 20_000,
                detect_us: 30_000,
                align_us: 500,
                embed_us: 40_000,
            }),
        }
        .encode_to_vec(),
        wire::DeadLetter {
            image: Some(image),
            error_kind: "corrupt".into(),
            message: "s3://photos/2024/beach.jpg: the JPEG stream ends early".into(),
            attempts: 1,
            failed_at_unix_ms: 1_764_000_000_500,
        }
        .encode_to_vec(),
        wire::ImageRemoval {
            uri: "s3://photos/2024/old.jpg".into(),
            removed_at_unix_ms: 1_764_000_000_900,
        }
        .encode_to_vec(),
        wire::CatalogRecord {
            version: "etag".into(),
            size_bytes: 100,
            faces: 3,
            failed: false,
        }
        .encode_to_vec(),
        wire::EnqueueRun {
            archive: "file:///photos".into(),
            listed: 400,
            new_photos: 1,
            changed: 2,
            unchanged: 396,
            unchanged_failed: 1,
            removed: 0,
            gone_kept: 0,
            finished_at_unix_ms: 1_764_000_001_000,
        }
        .encode_to_vec(),
    ]
}

/// Real requests as clients send them: the request target's seed corpus.
pub fn request_seeds() -> Vec<Vec<u8>> {
    use facedex_proto::{Embedding, SearchFilter, search_request};
    use prost::Message;
    let some_face = format!("{}", FaceLikeGenerator::new(20, 512, 7).dataset(5).record(0).face_id);
    let vector = FaceLikeGenerator::new(20, 512, 7).sample(3);
    let search = |query| SearchRequest {
        query: Some(query),
        limit: Some(5),
        min_score: Some(0.3),
        ef: Some(64),
        exact: false,
        filter: Some(SearchFilter {
            image_uri_prefix: "synthetic://".into(),
            include_face_ids: Vec::new(),
            exclude_face_ids: vec![some_face.clone()],
            model_id: String::new(),
            person_ids: vec!["00000000000000ff".into()],
            min_age: Some(20.0),
            max_age: Some(45.0),
            gender: "female".into(),
            min_gender_confidence: 0.8,
            min_quality: Some(0.5),
        }),
        group_by_person: true,
        after: vec![facedex_proto::AppliedOffset {
            topic: "facedex.faces".into(),
            partition: 3,
            next_offset: 120,
        }],
        with_query_embeddings: false,
    };
    vec![
        search(search_request::Query::Embedding(Embedding { values: vector })).encode_to_vec(),
        search(search_request::Query::FaceId(some_face.clone())).encode_to_vec(),
        DeleteRequest {
            selector: Some(facedex_proto::delete_request::Selector::FaceIds(
                facedex_proto::FaceIds {
                    face_ids: vec![some_face.clone()],
                },
            )),
        }
        .encode_to_vec(),
        GetFaceRequest {
            face_id: some_face,
            with_embedding: true,
        }
        .encode_to_vec(),
        DetectRequest {
            photos: vec![facedex_proto::embed::LetterboxedPhoto {
                rgb: vec![128; 3 * 64 * 48],
                resized_width: 64,
                resized_height: 48,
                input_width: 640,
                input_height: 640,
                scale: 0.05,
            }],
        }
        .encode_to_vec(),
        EmbedRequest {
            crops: vec![90; CROP_BYTES],
        }
        .encode_to_vec(),
    ]
}
