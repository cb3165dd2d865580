//! A face's details and its pictures: `GET /api/faces/{id}` (the face and the other faces of
//! its photo), `…/thumbnail` (a square JPEG cut from the original, cached on disk) and
//! `…/photo` (the photo downscaled, its faces boxed). Pictures are asked for by face id only:
//! the photo's location comes from the index (through GetFace, which also checks the token),
//! never from the client.

use std::sync::Arc;

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use facedex_proto::search_request::Query;
use facedex_proto::{Embedding, Face, GetFaceRequest, SearchFilter, SearchRequest};
use serde::Serialize;

use super::{State, call};
use crate::error::WebError;
use crate::json::{self, FaceJson};
use crate::pictures::blocking;
use crate::server::ConsoleState;
use crate::{pictures, render};

/// The most faces of one photo listed beside a face.
const MAX_PHOTO_FACES: u32 = 256;

/// `GET /api/faces/{id}`.
#[derive(Debug, Serialize)]
pub(crate) struct FaceAnswer {
    face: FaceJson,
    /// Every face of its photo, itself included.
    photo_faces: Vec<FaceJson>,
}

/// A face and the faces of its photo.
pub(crate) async fn show(
    state: State,
    headers: HeaderMap,
    Path(face_id): Path<String>,
) -> Result<Json<FaceAnswer>, WebError> {
    let (face, embedding) = get_face(&state, &headers, face_id, true).await?;
    let photo_faces = photo_faces(&state, &headers, &face, embedding).await?;
    Ok(Json(FaceAnswer {
        face: FaceJson::from(&face),
        photo_faces: photo_faces.iter().map(FaceJson::from).collect(),
    }))
}

/// The face's thumbnail, from the cache or rendered now.
pub(crate) async fn thumbnail(
    state: State,
    headers: HeaderMap,
    Path(face_id): Path<String>,
) -> Result<Response, WebError> {
    let (face, _) = get_face(&state, &headers, face_id, false).await?;
    let corners = corners(&face);
    let key = pictures::thumbnail_key(&state.config, &face.face_id, &face.image_uri, corners);
    let cached = {
        let (state, key) = (Arc::clone(&state), key.clone());
        blocking(move || state.cache.get(&key)).await?
    };
    if let Some(bytes) = cached {
        return Ok(jpeg_response(bytes));
    }
    let config = state.config.clone();
    let budget = config.max_decoded_pixels;
    let bytes = pictures::render(&state, &face.face_id, &face.image_uri, budget, move |photo| {
        pictures::thumbnail_jpeg(&config, photo, corners)
    })
    .await?;
    let stored = {
        let (state, bytes) = (Arc::clone(&state), bytes.clone());
        blocking(move || state.cache.put(&key, &bytes)).await?
    };
    if let Err(error) = stored {
        // The picture is still good: answer it, say the cache is broken.
        tracing::warn!(%error, face_id = face.face_id, "cannot cache a thumbnail");
    }
    Ok(jpeg_response(bytes))
}

/// The face's photo, downscaled, with every face of it boxed and this one highlighted.
pub(crate) async fn photo(state: State, headers: HeaderMap, Path(face_id): Path<String>) -> Result<Response, WebError> {
    let (face, embedding) = get_face(&state, &headers, face_id, true).await?;
    let faces = photo_faces(&state, &headers, &face, embedding).await?;
    let boxes: Vec<[f32; 4]> = faces.iter().map(corners).collect();
    let highlighted = faces.iter().position(|other| other.face_id == face.face_id);
    let (max_side, quality) = (state.config.photo_max_side_px, state.config.jpeg_quality);
    // Twice the view's side is all the detail it can show.
    let budget = state.config.max_decoded_pixels.min(4 * u64::from(max_side).pow(2));
    let bytes = pictures::render(&state, &face.face_id, &face.image_uri, budget, move |photo| {
        render::jpeg(&render::photo_view(photo, &boxes, highlighted, max_side), quality)
    })
    .await?;
    Ok(jpeg_response(bytes))
}

/// The face `face_id` names, with its embedding when asked, through the FaceSearch handler
/// (which checks the token and the id).
async fn get_face(
    state: &ConsoleState,
    headers: &HeaderMap,
    face_id: String,
    with_embedding: bool,
) -> Result<(Face, Vec<f32>), WebError> {
    let request = GetFaceRequest {
        face_id,
        with_embedding,
    };
    let found = state
        .handlers
        .face_search
        .get_face(call(headers, request))
        .await?
        .into_inner();
    let face = found
        .face
        .ok_or_else(|| WebError::Internal("GetFace answered without its face".into()))?;
    Ok((
        face,
        found.embedding.map(|embedding| embedding.values).unwrap_or_default(),
    ))
}

/// Every face of `face`'s photo, itself included: an exact search with its own embedding among
/// the faces of that photo, which any FaceSearch answers (an index's, or a router's over its
/// shards).
async fn photo_faces(
    state: &ConsoleState,
    headers: &HeaderMap,
    face: &Face,
    embedding: Vec<f32>,
) -> Result<Vec<Face>, WebError> {
    let request = SearchRequest {
        query: Some(Query::Embedding(Embedding { values: embedding })),
        limit: Some(MAX_PHOTO_FACES),
        min_score: Some(-1.0),
        exact: true,
        filter: Some(SearchFilter {
            image_uri_prefix: face.image_uri.clone(),
            ..SearchFilter::default()
        }),
        ..SearchRequest::default()
    };
    let response = state
        .handlers
        .face_search
        .search(call(headers, request))
        .await?
        .into_inner();
    Ok(response
        .results
        .into_iter()
        .flat_map(|result| result.hits)
        .filter_map(|hit| hit.face)
        // The filter is a prefix: `a.jpg` also matches `a.jpg.bak`.
        .filter(|other| other.image_uri == face.image_uri)
        .collect())
}

/// A face's box as `[x1, y1, x2, y2]`.
fn corners(face: &Face) -> [f32; 4] {
    json::corners(face.bounding_box.as_ref())
}

/// A JPEG answer the browser may keep for an hour (a face's picture changes only when its
/// photo is re-indexed, which gives the face a new box and so a new cache key here).
fn jpeg_response(bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600")),
        ],
        bytes,
    )
        .into_response()
}
