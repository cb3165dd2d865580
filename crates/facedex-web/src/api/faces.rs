//! A face's details and its pictures: `GET /api/faces/{id}` (the face and the other faces of
//! its photo), `…/thumbnail` (a square JPEG cut from the original, cached on disk) and
//! `…/photo` (the photo downscaled, its faces boxed). Pictures are asked for by face id only:
//! the photo's location comes from the index, never from the client.

use std::sync::Arc;

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use facedex_index::FaceView;
use facedex_pipeline::{ImageRef, PipelineError};
use facedex_proto::conversions::{face, parse_face_id};
use facedex_proto::face_search_server::FaceSearch;
use facedex_proto::{GetFaceRequest, RequestError};
use facedex_server::Access;
use facedex_vision::{ScaledPhoto, decode_photo_scaled};
use serde::Serialize;

use super::{State, authorize, blocking, call};
use crate::cache::ThumbnailCache;
use crate::error::WebError;
use crate::json::FaceJson;
use crate::render;
use crate::server::ConsoleState;

/// The most faces of one photo listed beside a face.
const MAX_PHOTO_FACES: usize = 256;

/// `GET /api/faces/{id}`.
#[derive(Debug, Serialize)]
pub(crate) struct FaceAnswer {
    face: Option<FaceJson>,
    /// Every face of its photo, itself included.
    photo_faces: Vec<FaceJson>,
}

/// A face and the faces of its photo.
pub(crate) async fn show(
    state: State,
    headers: HeaderMap,
    Path(face_id): Path<String>,
) -> Result<Json<FaceAnswer>, WebError> {
    let request = GetFaceRequest {
        face_id,
        with_embedding: false,
    };
    let found = state
        .services
        .face_search
        .get_face(call(&headers, request))
        .await?
        .into_inner();
    let photo_faces = match &found.face {
        Some(found) => {
            let (store, uri) = (Arc::clone(&state.store), found.image_uri.clone());
            blocking(move || store.index().faces_of_image(&uri, MAX_PHOTO_FACES))
                .await?
                .iter()
                .map(|view| FaceJson::from(&face(&view.face_id, &view.metadata, &view.person)))
                .collect()
        }
        None => Vec::new(),
    };
    Ok(Json(FaceAnswer {
        face: found.face.as_ref().map(FaceJson::from),
        photo_faces,
    }))
}

/// The face's thumbnail, from the cache or rendered now.
pub(crate) async fn thumbnail(
    state: State,
    headers: HeaderMap,
    Path(face_id): Path<String>,
) -> Result<Response, WebError> {
    authorize(&state, &headers, Access::Read, "thumbnails")?;
    let view = face_view(&state, &face_id).await?;
    let config = &state.config;
    let corners = view.metadata.bounding_box.corners();
    let key = ThumbnailCache::key(&[
        &face_id,
        &view.metadata.image_uri,
        &format!("{corners:?}"),
        &config.thumbnail_size_px.to_string(),
        &config.thumbnail_margin_ratio.to_string(),
        &config.jpeg_quality.to_string(),
    ]);
    let cached = {
        let (state, key) = (Arc::clone(&state), key.clone());
        blocking(move || state.cache.get(&key)).await?
    };
    if let Some(bytes) = cached {
        return Ok(jpeg_response(bytes));
    }
    let (margin, size, quality) = (
        config.thumbnail_margin_ratio,
        config.thumbnail_size_px,
        config.jpeg_quality,
    );
    let budget = state.config.max_decoded_pixels;
    let bytes = render(&state, &face_id, &view, budget, move |photo| {
        render::jpeg(&render::thumbnail(photo, corners, margin, size), quality)
    })
    .await?;
    let stored = {
        let (state, bytes) = (Arc::clone(&state), bytes.clone());
        blocking(move || state.cache.put(&key, &bytes)).await?
    };
    if let Err(error) = stored {
        // The picture is still good: answer it, say the cache is broken.
        tracing::warn!(%error, face_id, "cannot cache a thumbnail");
    }
    Ok(jpeg_response(bytes))
}

/// The face's photo, downscaled, with every face of it boxed and this one highlighted.
pub(crate) async fn photo(state: State, headers: HeaderMap, Path(face_id): Path<String>) -> Result<Response, WebError> {
    authorize(&state, &headers, Access::Read, "photos")?;
    let view = face_view(&state, &face_id).await?;
    let faces = {
        let (store, uri) = (Arc::clone(&state.store), view.metadata.image_uri.clone());
        blocking(move || store.index().faces_of_image(&uri, MAX_PHOTO_FACES)).await?
    };
    let boxes: Vec<[f32; 4]> = faces.iter().map(|face| face.metadata.bounding_box.corners()).collect();
    let highlighted = faces.iter().position(|face| face.face_id == view.face_id);
    let (max_side, quality) = (state.config.photo_max_side_px, state.config.jpeg_quality);
    // Twice the view's side is all the detail it can show.
    let budget = state.config.max_decoded_pixels.min(4 * u64::from(max_side).pow(2));
    let bytes = render(&state, &face_id, &view, budget, move |photo| {
        render::jpeg(&render::photo_view(photo, &boxes, highlighted, max_side), quality)
    })
    .await?;
    Ok(jpeg_response(bytes))
}

/// The face `face_id` names, or why there is none.
async fn face_view(state: &Arc<ConsoleState>, face_id: &str) -> Result<FaceView, WebError> {
    let parsed =
        parse_face_id("face_id", face_id).map_err(|error: RequestError| WebError::BadRequest(error.to_string()))?;
    let store = Arc::clone(&state.store);
    blocking(move || store.index().get(&parsed, false))
        .await?
        .map_err(|error| WebError::from(tonic::Status::not_found(error.to_string())))
}

/// Reads the face's photo, decodes it within `max_decoded_pixels` and `draws` a JPEG from
/// it, holding one of the render permits throughout.
async fn render(
    state: &Arc<ConsoleState>,
    face_id: &str,
    view: &FaceView,
    max_decoded_pixels: u64,
    draw: impl FnOnce(&ScaledPhoto) -> Result<Vec<u8>, image::ImageError> + Send + 'static,
) -> Result<Vec<u8>, WebError> {
    let _permit = state
        .renders
        .acquire()
        .await
        .map_err(|_| WebError::Internal("the render permits were closed".into()))?;
    let uri = &view.metadata.image_uri;
    let fetch_error = |source| WebError::Fetch {
        face_id: face_id.to_owned(),
        source: Box::new(source),
    };
    let image = ImageRef::in_its_folder(uri).ok_or_else(|| {
        fetch_error(PipelineError::InvalidReference {
            uri: uri.clone(),
            reason: "the URI names no folder".into(),
        })
    })?;
    let bytes = state.archives.fetch(&image).await.map_err(fetch_error)?;
    let (max_pixels, max_decoded) = (state.max_image_pixels, max_decoded_pixels);
    let (face_id, uri) = (face_id.to_owned(), uri.clone());
    blocking(move || {
        let photo = decode_photo_scaled(&uri, &bytes, max_pixels, max_decoded).map_err(|source| WebError::Decode {
            face_id: face_id.clone(),
            source: Box::new(source),
        })?;
        draw(&photo).map_err(|source| WebError::Encode { face_id, source })
    })
    .await?
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
