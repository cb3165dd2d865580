//! The JSON API under `/api/`, one module per page (`search`, `people`, `pipeline`), plus
//! the face pictures (`faces`) and signing in (`session`), and the routes that bind them.

mod faces;
mod people;
mod pipeline;
mod search;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post, put};
use facedex_proto::{GetIndexInfoRequest, IndexInfo};

use crate::auth::credentials;
use crate::error::WebError;
use crate::server::ConsoleState;

/// The shared state every handler gets.
type State = axum::extract::State<Arc<ConsoleState>>;

/// The console's routes: the API, then the page's files.
pub(crate) fn router(state: Arc<ConsoleState>) -> Router {
    // A photo somewhat over the limit still reaches the handler, which names the setting
    // that refused it; beyond twice the limit it is refused before it is buffered.
    let upload_limit = state.max_upload_bytes.saturating_mul(2).saturating_add(1024 * 1024);
    Router::new()
        .route("/api/session", post(session::sign_in).delete(session::sign_out))
        .route("/api/info", get(session::info))
        .route(
            "/api/search",
            post(search::search).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/api/people", get(people::list))
        .route("/api/people/{person_id}", get(people::show))
        .route("/api/people/{person_id}/name", put(people::rename))
        .route("/api/people/{person_id}/hidden", put(people::hide))
        .route("/api/people/{person_id}/merge", post(people::merge))
        .route("/api/faces/move", post(people::move_faces))
        .route("/api/faces/{face_id}", get(faces::show))
        .route("/api/faces/{face_id}/thumbnail", get(faces::thumbnail))
        .route("/api/faces/{face_id}/photo", get(faces::photo))
        .route("/api/pipeline", get(pipeline::pipeline))
        .fallback(crate::assets::serve)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// `message` as a handler call carrying the request's credentials.
fn call<T>(headers: &HeaderMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = credentials(headers);
    request
}

/// The index's counts through the FaceSearch handler (which checks the read token).
async fn index_info(state: &ConsoleState, headers: &HeaderMap) -> Result<IndexInfo, WebError> {
    let request = call(headers, GetIndexInfoRequest {});
    Ok(state.handlers.face_search.get_index_info(request).await?.into_inner())
}

/// A query string that did not parse, as a 400 saying why.
fn bad_query(rejection: QueryRejection) -> WebError {
    WebError::BadRequest(rejection.body_text())
}

/// A JSON body that did not parse (or was not sent as `application/json`), as a 400.
fn bad_json(rejection: JsonRejection) -> WebError {
    WebError::BadRequest(rejection.body_text())
}

/// What every answer carries: the page loads only its own scripts, styles and pictures, is
/// never framed, and sends no referrer.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
