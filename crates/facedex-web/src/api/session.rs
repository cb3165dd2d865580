//! Signing in (the token becomes an `HttpOnly` cookie) and out, and what the page needs to
//! know first: the index's size, whether it may write, whether photos can be searched.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use facedex_server::Access;
use serde::{Deserialize, Serialize};

use super::{State, bad_json, index_info};
use crate::auth::{credentials, token_cookie};
use crate::error::WebError;

/// `POST /api/session`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    token: String,
}

/// The longest token accepted, in bytes.
const MAX_TOKEN_BYTES: usize = 4096;

/// Checks the token as a read would, then sets the cookie.
pub(crate) async fn sign_in(state: State, body: Result<Json<SignIn>, JsonRejection>) -> Result<Response, WebError> {
    let Json(SignIn { token }) = body.map_err(bad_json)?;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(WebError::BadRequest(format!(
            "the token is {} bytes; tokens are at most {MAX_TOKEN_BYTES}",
            token.len()
        )));
    }
    let mut headers = HeaderMap::new();
    let bearer = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| WebError::BadRequest("the token must be printable ASCII".into()))?;
    headers.insert(header::AUTHORIZATION, bearer);
    state
        .handlers
        .tokens
        .authorize(&credentials(&headers), Access::Read, "signing in")?;
    let cookie = HeaderValue::try_from(token_cookie(Some(&token), state.secure))
        .map_err(|error| WebError::Internal(error.to_string()))?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// Clears the cookie.
pub(crate) async fn sign_out(state: State) -> Result<Response, WebError> {
    let cookie = HeaderValue::try_from(token_cookie(None, state.secure))
        .map_err(|error| WebError::Internal(error.to_string()))?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// `GET /api/info`.
#[derive(Debug, Serialize)]
pub(crate) struct Info {
    faces: u64,
    images: u64,
    people: u64,
    model_id: String,
    /// The server has the models: photos can be searched.
    searches_photos: bool,
    /// The similarity floor of a search that sets none.
    default_min_score: f32,
    /// The request's credentials may edit people.
    can_write: bool,
    /// Calls need a token on this server.
    needs_token: bool,
    /// This process runs an indexing run the pipeline page can follow.
    has_run: bool,
}

/// What the page needs to know first; 401 without a valid token.
pub(crate) async fn info(state: State, headers: HeaderMap) -> Result<Json<Info>, WebError> {
    let info = index_info(&state, &headers).await?;
    let metadata = credentials(&headers);
    let can_write = state
        .handlers
        .tokens
        .authorize(&metadata, Access::Write, "editing people")
        .is_ok();
    Ok(Json(Info {
        faces: info.faces,
        images: info.images,
        people: info.people,
        model_id: info.model_id,
        searches_photos: state.handlers.searches_photos,
        default_min_score: state.handlers.default_min_score,
        can_write,
        needs_token: state.handlers.tokens.any(),
        has_run: state.run.is_some(),
    }))
}
