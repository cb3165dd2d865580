//! Pictures of faces, shared by the API and by pre-rendering during a run: a photo fetched
//! through `object_store`, decoded within a pixel budget and drawn from, under a render permit;
//! the thumbnail's cache key; and the queue through which a local run hands over each photo it
//! indexed, so its thumbnails are ready before anyone asks (`web.thumbnails_during_indexing`).

use std::sync::Arc;

use facedex_pipeline::{ImageRef, PipelineError};
use facedex_vision::{ScaledPhoto, decode_photo_scaled};
use tokio::sync::mpsc;

use crate::cache::ThumbnailCache;
use crate::config::WebConfig;
use crate::error::WebError;
use crate::render;
use crate::server::ConsoleState;

/// Photos waiting to have their thumbnails rendered; a run that outpaces the renderer skips
/// photos rather than waiting (their thumbnails are made on first request).
pub(crate) const QUEUED_PHOTOS: usize = 64;

/// Runs CPU-bound work (decoding, rendering, cache I/O) off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, WebError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| WebError::Internal(format!("blocking task failed: {error}")))
}

/// The cache key of a face's thumbnail under `config`'s settings.
pub(crate) fn thumbnail_key(config: &WebConfig, face_id: &str, image_uri: &str, corners: [f32; 4]) -> String {
    ThumbnailCache::key(&[
        face_id,
        image_uri,
        &format!("{corners:?}"),
        &config.thumbnail_size_px.to_string(),
        &config.thumbnail_margin_ratio.to_string(),
        &config.jpeg_quality.to_string(),
    ])
}

/// The thumbnail JPEG of the face at `corners` in `photo`, as `config` sets it.
pub(crate) fn thumbnail_jpeg(
    config: &WebConfig,
    photo: &ScaledPhoto,
    corners: [f32; 4],
) -> Result<Vec<u8>, image::ImageError> {
    let thumbnail = render::thumbnail(photo, corners, config.thumbnail_margin_ratio, config.thumbnail_size_px);
    render::jpeg(&thumbnail, config.jpeg_quality)
}

/// Reads the photo `image_uri` (of face `face_id`, for errors), decodes it within
/// `max_decoded_pixels` and `draw`s from it, holding one of the render permits throughout.
pub(crate) async fn render<T: Send + 'static>(
    state: &ConsoleState,
    face_id: &str,
    image_uri: &str,
    max_decoded_pixels: u64,
    draw: impl FnOnce(&ScaledPhoto) -> Result<T, image::ImageError> + Send + 'static,
) -> Result<T, WebError> {
    let _permit = state
        .renders
        .acquire()
        .await
        .map_err(|_| WebError::Internal("the render permits were closed".into()))?;
    let fetch_error = |source| WebError::Fetch {
        face_id: face_id.to_owned(),
        source: Box::new(source),
    };
    let image = ImageRef::in_its_folder(image_uri).ok_or_else(|| {
        fetch_error(PipelineError::InvalidReference {
            uri: image_uri.to_owned(),
            reason: "the URI names no folder".into(),
        })
    })?;
    let bytes = state.archives.fetch(&image).await.map_err(fetch_error)?;
    let max_pixels = state.max_image_pixels;
    let (face_id, uri) = (face_id.to_owned(), image_uri.to_owned());
    blocking(move || {
        let photo =
            decode_photo_scaled(&uri, &bytes, max_pixels, max_decoded_pixels).map_err(|source| WebError::Decode {
                face_id: face_id.clone(),
                source: Box::new(source),
            })?;
        draw(&photo).map_err(|source| WebError::Encode { face_id, source })
    })
    .await?
}

/// A photo a run just indexed: its URI and its faces' ids and boxes.
#[derive(Debug, Clone)]
pub struct IndexedPhoto {
    /// The photo.
    pub image_uri: String,
    /// Each face's id (32 hexadecimal characters) and box `[x1, y1, x2, y2]`.
    pub faces: Vec<(String, [f32; 4])>,
}

/// Where a run hands over the photos it indexed, for their thumbnails to be rendered.
#[derive(Debug, Clone)]
pub struct ThumbnailQueue(pub(crate) mpsc::Sender<IndexedPhoto>);

impl ThumbnailQueue {
    /// Queues `photo`; false when the queue is full (or the console gone) and it was skipped.
    pub fn offer(&self, photo: IndexedPhoto) -> bool {
        self.0.try_send(photo).is_ok()
    }
}

/// Renders the thumbnails of every queued photo not yet cached, one photo decode for all of
/// its faces, until every [`ThumbnailQueue`] is dropped and the queue is empty.
pub(crate) async fn prerender(state: Arc<ConsoleState>, mut photos: mpsc::Receiver<IndexedPhoto>) {
    while let Some(photo) = photos.recv().await {
        if let Err(error) = prerender_photo(&state, photo).await {
            tracing::warn!(%error, "cannot render thumbnails ahead");
        }
    }
}

async fn prerender_photo(state: &Arc<ConsoleState>, photo: IndexedPhoto) -> Result<(), WebError> {
    let config = state.config.clone();
    let keyed: Vec<(String, [f32; 4])> = photo
        .faces
        .iter()
        .map(|(face_id, corners)| (thumbnail_key(&config, face_id, &photo.image_uri, *corners), *corners))
        .collect();
    let missing = {
        let state = Arc::clone(state);
        blocking(move || {
            keyed
                .into_iter()
                .filter(|(key, _)| !state.cache.contains(key))
                .collect::<Vec<_>>()
        })
        .await?
    };
    let Some((first_face, _)) = photo.faces.first() else {
        return Ok(());
    };
    if missing.is_empty() {
        return Ok(());
    }
    let budget = config.max_decoded_pixels;
    let rendered = render(state, first_face, &photo.image_uri, budget, move |scaled| {
        missing
            .into_iter()
            .map(|(key, corners)| Ok((key, thumbnail_jpeg(&config, scaled, corners)?)))
            .collect::<Result<Vec<_>, image::ImageError>>()
    })
    .await?;
    let state = Arc::clone(state);
    blocking(move || rendered.iter().try_for_each(|(key, bytes)| state.cache.put(key, bytes)))
        .await?
        .map_err(|error| WebError::Internal(format!("cannot cache a thumbnail: {error}")))
}
