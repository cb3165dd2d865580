//! Conversions between `facedex.v1` messages and the domain types, in one place: the gRPC
//! handlers and the CLI client call these and never touch a field mapping themselves.

use std::collections::HashSet;

use facedex_index::{
    BoundingBox as DomainBox, DeleteSelector, FaceFilter, FaceId, FaceMetadata, FaceView, IndexError,
    IndexInfo as DomainInfo, PersonStatus, SearchHit, SearchQuery, SkipReason, SnapshotInfo,
};
use facedex_vision::DetectedFace as VisionFace;

use crate::error::RequestError;
use crate::trait_conversions::{attributes_to_proto, trait_filter};
use crate::{
    AppliedOffset, BoundingBox, DeleteRequest, DetectedFace, Embedding, Face, FacePerson, GetFaceResponse, Hit,
    IndexInfo, IndexParameters, Point, SearchFilter, SearchRequest, Snapshot, delete_request, face_person,
    search_request,
};

/// Hits per query face when a request does not say.
pub const DEFAULT_SEARCH_LIMIT: u32 = 10;

/// What a search is for, decoded from the request's `query` oneof.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchTarget {
    /// A query embedding, checked by the index.
    Embedding(Vec<f32>),
    /// Photo bytes: detect and embed every face, one result per face.
    Image(Vec<u8>),
    /// An indexed face.
    FaceId(FaceId),
}

/// A search request in domain terms: the target plus everything else as a query template
/// whose vector the handler fills in.
#[derive(Debug, Clone)]
pub struct ParsedSearch {
    /// What to search for.
    pub target: SearchTarget,
    /// Limit, threshold, ef, exact and filter, with an empty vector.
    pub template: SearchQuery,
    /// The Kafka positions the index must have applied before it is searched.
    pub after: Vec<LogPosition>,
}

/// A position in a Kafka partition: everything before `next_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPosition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// One past the last record meant.
    pub next_offset: i64,
}

/// The most positions a search may wait for: more than any topic has partitions.
pub const MAX_AFTER_POSITIONS: usize = 4096;

/// The positions of a request's `after`, checked.
pub fn parse_after(after: &[AppliedOffset]) -> Result<Vec<LogPosition>, RequestError> {
    if after.len() > MAX_AFTER_POSITIONS {
        return Err(RequestError::TooManyEntries {
            field: "after",
            count: after.len(),
            max: MAX_AFTER_POSITIONS,
        });
    }
    after
        .iter()
        .map(|position| {
            if position.partition < 0 || position.next_offset < 0 {
                return Err(RequestError::Malformed {
                    record: "after",
                    reason: format!(
                        "{} partition {} next_offset {}: neither may be negative",
                        position.topic, position.partition, position.next_offset
                    ),
                });
            }
            Ok(LogPosition {
                topic: position.topic.clone(),
                partition: position.partition,
                next_offset: position.next_offset,
            })
        })
        .collect()
}

impl ParsedSearch {
    /// The query for one query vector.
    pub fn query_for(&self, vector: Vec<f32>) -> SearchQuery {
        SearchQuery {
            vector,
            ..self.template.clone()
        }
    }
}

/// The most face ids one request may list (a filter's include or exclude list, a delete): each
/// is parsed and held in a set before any search runs.
pub const MAX_REQUEST_FACE_IDS: usize = 10_000;

/// Refuses a repeated field of more than [`MAX_REQUEST_FACE_IDS`] ids.
fn check_id_count(field: &'static str, ids: &[String]) -> Result<(), RequestError> {
    check_entries(field, ids, MAX_REQUEST_FACE_IDS)
}

/// Refuses a repeated field of more than `max` entries, before any of them is parsed.
pub(crate) fn check_entries<T>(field: &'static str, entries: &[T], max: usize) -> Result<(), RequestError> {
    if entries.len() > max {
        return Err(RequestError::TooManyEntries {
            field,
            count: entries.len(),
            max,
        });
    }
    Ok(())
}

/// Parses a face id field.
pub fn parse_face_id(field: &'static str, text: &str) -> Result<FaceId, RequestError> {
    text.parse()
        .map_err(|source| RequestError::InvalidField { field, source })
}

impl TryFrom<SearchRequest> for ParsedSearch {
    type Error = RequestError;

    fn try_from(request: SearchRequest) -> Result<Self, RequestError> {
        let target = match request.query {
            Some(search_request::Query::Embedding(embedding)) => SearchTarget::Embedding(embedding.values),
            Some(search_request::Query::Image(bytes)) => SearchTarget::Image(bytes),
            Some(search_request::Query::FaceId(text)) => SearchTarget::FaceId(parse_face_id("query.face_id", &text)?),
            None => {
                return Err(RequestError::MissingField {
                    field: "query",
                    hint: "set one of embedding (512 floats), image (photo bytes) or face_id",
                });
            }
        };
        let filter = request
            .filter
            .map(FaceFilter::try_from)
            .transpose()?
            .unwrap_or_default();
        let template = SearchQuery {
            vector: Vec::new(),
            limit: request.limit.unwrap_or(DEFAULT_SEARCH_LIMIT) as usize,
            min_score: request.min_score,
            ef: request.ef.map(|ef| ef as usize),
            exact: request.exact,
            filter,
            group_by_person: request.group_by_person,
        };
        let after = parse_after(&request.after)?;
        Ok(Self {
            target,
            template,
            after,
        })
    }
}

impl TryFrom<SearchFilter> for FaceFilter {
    type Error = RequestError;

    fn try_from(filter: SearchFilter) -> Result<Self, RequestError> {
        let traits = trait_filter(&filter)?;
        let parse_all = |field, ids: &[String]| -> Result<HashSet<FaceId>, RequestError> {
            check_id_count(field, ids)?;
            ids.iter().map(|id| parse_face_id(field, id)).collect()
        };
        Ok(Self {
            image_uri_prefix: non_empty(filter.image_uri_prefix),
            include_face_ids: match filter.include_face_ids.is_empty() {
                true => None,
                false => Some(parse_all("filter.include_face_ids", &filter.include_face_ids)?),
            },
            exclude_face_ids: parse_all("filter.exclude_face_ids", &filter.exclude_face_ids)?,
            model_id: non_empty(filter.model_id),
            person_ids: match filter.person_ids.is_empty() {
                true => None,
                false => {
                    check_id_count("filter.person_ids", &filter.person_ids)?;
                    Some(
                        filter
                            .person_ids
                            .iter()
                            .map(|id| {
                                id.parse().map_err(|source| RequestError::InvalidField {
                                    field: "filter.person_ids",
                                    source,
                                })
                            })
                            .collect::<Result<_, _>>()?,
                    )
                }
            },
            traits,
        })
    }
}

fn non_empty(text: String) -> Option<String> {
    if text.is_empty() { None } else { Some(text) }
}

impl TryFrom<DeleteRequest> for DeleteSelector {
    type Error = RequestError;

    fn try_from(request: DeleteRequest) -> Result<Self, RequestError> {
        match request.selector {
            Some(delete_request::Selector::FaceIds(ids)) => {
                check_id_count("face_ids", &ids.face_ids)?;
                Ok(DeleteSelector::FaceIds(
                    ids.face_ids
                        .iter()
                        .map(|id| parse_face_id("face_ids", id))
                        .collect::<Result<_, _>>()?,
                ))
            }
            Some(delete_request::Selector::ImageUri(uri)) => Ok(DeleteSelector::ImageUri(uri)),
            Some(delete_request::Selector::ImageUriPrefix(prefix)) if prefix.is_empty() => {
                Err(RequestError::InvalidField {
                    field: "image_uri_prefix",
                    source: IndexError::InvalidRecord {
                        image_uri: String::new(),
                        reason: "an empty prefix would delete every face; give a non-empty prefix".into(),
                    },
                })
            }
            Some(delete_request::Selector::ImageUriPrefix(prefix)) => Ok(DeleteSelector::ImageUriPrefix(prefix)),
            None => Err(RequestError::MissingField {
                field: "selector",
                hint: "set one of face_ids, image_uri or image_uri_prefix",
            }),
        }
    }
}

impl From<&DeleteSelector> for DeleteRequest {
    fn from(selector: &DeleteSelector) -> Self {
        let selector = match selector {
            DeleteSelector::FaceIds(ids) => delete_request::Selector::FaceIds(crate::FaceIds {
                face_ids: ids.iter().map(ToString::to_string).collect(),
            }),
            DeleteSelector::ImageUri(uri) => delete_request::Selector::ImageUri(uri.clone()),
            DeleteSelector::ImageUriPrefix(prefix) => delete_request::Selector::ImageUriPrefix(prefix.clone()),
        };
        Self {
            selector: Some(selector),
        }
    }
}

/// The proto form of a face's box.
pub fn bounding_box(corners: [f32; 4]) -> BoundingBox {
    let [x1, y1, x2, y2] = corners;
    BoundingBox { x1, y1, x2, y2 }
}

/// The proto form of five landmarks.
pub fn landmarks(points: &[[f32; 2]; 5]) -> Vec<Point> {
    points.iter().map(|[x, y]| Point { x: *x, y: *y }).collect()
}

/// An indexed face and where it stands with the people.
pub fn face(face_id: &FaceId, metadata: &FaceMetadata, person: &PersonStatus) -> Face {
    Face {
        face_id: face_id.to_string(),
        image_uri: metadata.image_uri.clone(),
        bounding_box: Some(bounding_box(metadata.bounding_box.corners())),
        landmarks: landmarks(&metadata.landmarks),
        detection_score: metadata.detection_score,
        model_id: metadata.model_id.clone(),
        person: Some(face_person(person)),
        attributes: attributes_to_proto(&metadata.traits.attributes),
        quality: metadata.traits.quality,
    }
}

/// The proto form of a face's standing with the people.
pub fn face_person(status: &PersonStatus) -> FacePerson {
    let (state, person) = match status {
        PersonStatus::Assigned(person) => (face_person::State::Assigned, Some(person)),
        PersonStatus::Waiting => (face_person::State::Waiting, None),
        PersonStatus::Skipped(SkipReason::TooSmall { .. }) => (face_person::State::SkippedTooSmall, None),
        PersonStatus::Skipped(SkipReason::LowScore { .. }) => (face_person::State::SkippedLowScore, None),
        PersonStatus::Skipped(SkipReason::LowQuality { .. }) => (face_person::State::SkippedLowQuality, None),
        PersonStatus::Disabled => (face_person::State::Disabled, None),
    };
    FacePerson {
        state: state.into(),
        person_id: person.map(|person| person.person_id.to_string()).unwrap_or_default(),
        person_name: person.and_then(|person| person.name.clone()).unwrap_or_default(),
    }
}

impl From<&SearchHit> for Hit {
    fn from(hit: &SearchHit) -> Self {
        Hit {
            similarity: hit.similarity,
            face: Some(face(&hit.face_id, &hit.metadata, &hit.person)),
        }
    }
}

impl From<&VisionFace> for DetectedFace {
    fn from(detection: &VisionFace) -> Self {
        DetectedFace {
            bounding_box: Some(bounding_box(detection.bbox)),
            landmarks: landmarks(&detection.landmarks),
            detection_score: detection.score,
        }
    }
}

/// The domain box of a vision detection.
pub fn domain_box(corners: [f32; 4]) -> DomainBox {
    let [x1, y1, x2, y2] = corners;
    DomainBox { x1, y1, x2, y2 }
}

impl From<FaceView> for GetFaceResponse {
    fn from(view: FaceView) -> Self {
        GetFaceResponse {
            face: Some(face(&view.face_id, &view.metadata, &view.person)),
            embedding: view.embedding.map(|values| Embedding { values }),
        }
    }
}

impl From<&SnapshotInfo> for Snapshot {
    fn from(snapshot: &SnapshotInfo) -> Self {
        Snapshot {
            generation: snapshot.generation,
            faces: snapshot.faces as u64,
            bytes: snapshot.bytes,
            created_unix_ms: i64::try_from(snapshot.created_unix_ms).unwrap_or(i64::MAX),
        }
    }
}

/// The index's info with the last snapshot, as the API reports it.
pub fn index_info(info: DomainInfo, last_snapshot: Option<&SnapshotInfo>) -> IndexInfo {
    let applied_offsets = info
        .applied_offsets
        .iter()
        .flat_map(|(topic, partitions)| {
            partitions.iter().map(|(partition, next_offset)| AppliedOffset {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next_offset,
            })
        })
        .collect();
    IndexInfo {
        faces: info.faces as u64,
        images: info.images as u64,
        tombstones: info.tombstones as u64,
        deleted_total: info.deleted_total as u64,
        memory_bytes: info.memory_bytes_estimate as u64,
        model_id: info.model_id.unwrap_or_default(),
        dimension: info.config.dimension as u32,
        parameters: Some(IndexParameters {
            max_connections: info.config.max_connections as u32,
            ef_construction: info.config.ef_construction as u32,
            default_ef_search: info.config.default_ef_search as u32,
        }),
        applied_offsets,
        last_snapshot: last_snapshot.map(Snapshot::from),
        unreachable_points: info.unreachable_points as u64,
        people: info.people as u64,
        shards: Vec::new(),
        sealed_faces: info.sealed_faces as u64,
        sealed_segments: info.sealed_segments as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_request_without_a_query_names_the_missing_field() {
        let error = ParsedSearch::try_from(SearchRequest::default()).expect_err("no query");
        assert!(error.to_string().starts_with("query is required"), "{error}");
    }

    #[test]
    fn unset_limit_defaults_and_bad_face_ids_name_their_field() {
        let request = SearchRequest {
            query: Some(search_request::Query::Embedding(Embedding { values: vec![1.0] })),
            filter: Some(SearchFilter {
                exclude_face_ids: vec!["nope".into()],
                ..SearchFilter::default()
            }),
            ..SearchRequest::default()
        };
        let error = ParsedSearch::try_from(request.clone()).expect_err("bad id");
        assert!(
            error
                .to_string()
                .starts_with("filter.exclude_face_ids: \"nope\" is not a face id"),
            "{error}"
        );
        let parsed = ParsedSearch::try_from(SearchRequest {
            filter: None,
            ..request
        })
        .expect("parses");
        assert_eq!(parsed.template.limit, DEFAULT_SEARCH_LIMIT as usize);
        assert_eq!(parsed.target, SearchTarget::Embedding(vec![1.0]));
    }

    #[test]
    fn id_lists_over_the_limit_are_refused_before_parsing() {
        let too_many = vec!["0123456789abcdef0123456789abcdef".to_owned(); MAX_REQUEST_FACE_IDS + 1];
        let search = SearchRequest {
            query: Some(search_request::Query::Embedding(Embedding { values: vec![1.0] })),
            filter: Some(SearchFilter {
                include_face_ids: too_many.clone(),
                ..SearchFilter::default()
            }),
            ..SearchRequest::default()
        };
        let error = ParsedSearch::try_from(search).expect_err("too many ids");
        assert_eq!(
            error.to_string(),
            "filter.include_face_ids has 10001 entries, over the limit of 10000"
        );
        let delete = DeleteRequest {
            selector: Some(delete_request::Selector::FaceIds(crate::FaceIds { face_ids: too_many })),
        };
        assert!(matches!(
            DeleteSelector::try_from(delete),
            Err(RequestError::TooManyEntries { field: "face_ids", .. })
        ));
    }

    #[test]
    fn delete_by_empty_prefix_is_refused() {
        let request = DeleteRequest {
            selector: Some(delete_request::Selector::ImageUriPrefix(String::new())),
        };
        assert!(DeleteSelector::try_from(request).is_err());
    }
}
