//! `POST /api/search`: the photo is the request body; the answer lists each face found in it
//! (its box) with its hits, through the FaceSearch handler's photo search.

use axum::Json;
use axum::body::Bytes;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::HeaderMap;
use facedex_proto::search_request::Query as SearchQuery;
use facedex_proto::{SearchFilter, SearchRequest};
use serde::{Deserialize, Serialize};

use super::{State, bad_query, call};
use crate::error::WebError;
use crate::json::{FaceJson, corners};

/// The search's settings, as query parameters (the handler checks their ranges).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SearchParams {
    /// Hits per face.
    limit: Option<u32>,
    /// The similarity threshold; the server's default when unset.
    min_score: Option<f32>,
    min_age: Option<f32>,
    max_age: Option<f32>,
    /// A gender label (`male`, `female`); empty for any.
    gender: Option<String>,
    min_gender_confidence: Option<f32>,
    min_quality: Option<f32>,
}

/// One face of the query photo.
#[derive(Debug, Serialize)]
pub(crate) struct QueryFace {
    /// `[x1, y1, x2, y2]` in the upright query photo's pixels.
    #[serde(rename = "box")]
    bounding_box: [f32; 4],
    detection_score: f32,
    hits: Vec<HitJson>,
}

/// A hit.
#[derive(Debug, Serialize)]
pub(crate) struct HitJson {
    similarity: f32,
    face: FaceJson,
}

/// The answer.
#[derive(Debug, Serialize)]
pub(crate) struct SearchAnswer {
    model_id: String,
    faces: Vec<QueryFace>,
}

/// Searches the index with every face of the photo in the body.
pub(crate) async fn search(
    state: State,
    headers: HeaderMap,
    params: Result<Query<SearchParams>, QueryRejection>,
    photo: Bytes,
) -> Result<Json<SearchAnswer>, WebError> {
    let Query(params) = params.map_err(bad_query)?;
    if photo.is_empty() {
        return Err(WebError::BadRequest(
            "send the photo as the request body (any format facedex indexes)".into(),
        ));
    }
    let request = SearchRequest {
        query: Some(SearchQuery::Image(photo.to_vec())),
        limit: params.limit,
        min_score: params.min_score,
        filter: Some(SearchFilter {
            min_age: params.min_age,
            max_age: params.max_age,
            gender: params.gender.unwrap_or_default(),
            min_gender_confidence: params.min_gender_confidence.unwrap_or_default(),
            min_quality: params.min_quality,
            ..SearchFilter::default()
        }),
        ..SearchRequest::default()
    };
    let response = state
        .handlers
        .face_search
        .search(call(&headers, request))
        .await?
        .into_inner();
    let faces = response
        .results
        .iter()
        .map(|result| {
            let query_face = result.query_face.clone().unwrap_or_default();
            QueryFace {
                bounding_box: corners(query_face.bounding_box.as_ref()),
                detection_score: query_face.detection_score,
                hits: result
                    .hits
                    .iter()
                    .filter_map(|hit| {
                        Some(HitJson {
                            similarity: hit.similarity,
                            face: FaceJson::from(hit.face.as_ref()?),
                        })
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Json(SearchAnswer {
        model_id: response.model_id,
        faces,
    }))
}
