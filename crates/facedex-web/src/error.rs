//! What can go wrong answering the console, and the one mapping of every failure to an HTTP
//! status with a JSON body `{"error": "...", "code": "INVALID_ARGUMENT"}`: the handlers' own
//! gRPC statuses keep their meaning (and message) over HTTP.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use facedex_pipeline::PipelineError;
use facedex_vision::VisionError;
use serde::Serialize;

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A FaceSearch or People handler refused or failed the call.
    #[error("{}", .0.message())]
    Call(Box<tonic::Status>),
    /// The request itself is malformed (a parameter out of range, a bad JSON body).
    #[error("{0}")]
    BadRequest(String),
    /// The photo of a face could not be read from its archive.
    #[error("cannot read the photo of face {face_id}: {source}")]
    Fetch {
        /// The face.
        face_id: String,
        /// Why.
        #[source]
        source: Box<PipelineError>,
    },
    /// The photo of a face could not be decoded.
    #[error("cannot decode the photo of face {face_id}: {source}")]
    Decode {
        /// The face.
        face_id: String,
        /// Why.
        #[source]
        source: Box<VisionError>,
    },
    /// A rendered image could not be encoded.
    #[error("cannot encode the image of face {face_id}: {source}")]
    Encode {
        /// The face.
        face_id: String,
        /// Why.
        #[source]
        source: image::ImageError,
    },
    /// A `[web]` setting is out of its range.
    #[error("{0}")]
    InvalidConfig(String),
    /// The listen address could not be bound (or the accept loop failed).
    #[error("web console: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("web console: TLS file {path}: {reason}")]
    Tls {
        /// The certificate or key file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The thumbnail cache folder could not be opened.
    #[error("web console: thumbnail cache {dir}: {source}")]
    Cache {
        /// The folder.
        dir: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bug or a broken environment (a task that panicked, a cache that cannot be written).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<tonic::Status> for WebError {
    fn from(status: tonic::Status) -> Self {
        Self::Call(Box::new(status))
    }
}

/// The JSON body of an error.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: String,
    code: &'a str,
}

impl WebError {
    /// The HTTP status and the gRPC code name of this failure.
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Call(status) => http_status(status.code()),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            Self::Fetch { source, .. } => match source.as_ref() {
                PipelineError::NotFound { .. } => (StatusCode::NOT_FOUND, "NOT_FOUND"),
                PipelineError::TooLarge { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "FAILED_PRECONDITION"),
                _ => (StatusCode::BAD_GATEWAY, "UNAVAILABLE"),
            },
            Self::Decode { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "FAILED_PRECONDITION"),
            Self::Encode { .. }
            | Self::InvalidConfig(_)
            | Self::Bind { .. }
            | Self::Tls { .. }
            | Self::Cache { .. }
            | Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

/// The HTTP status for a gRPC code (as grpc-gateway maps them), and the code's name.
pub(crate) fn http_status(code: tonic::Code) -> (StatusCode, &'static str) {
    use tonic::Code;
    match code {
        Code::Ok => (StatusCode::OK, "OK"),
        Code::Cancelled => (StatusCode::REQUEST_TIMEOUT, "CANCELLED"),
        Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
        Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
        Code::FailedPrecondition => (StatusCode::BAD_REQUEST, "FAILED_PRECONDITION"),
        Code::Aborted => (StatusCode::CONFLICT, "ABORTED"),
        Code::OutOfRange => (StatusCode::BAD_REQUEST, "OUT_OF_RANGE"),
        Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "UNIMPLEMENTED"),
        Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "DATA_LOSS"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        // A router's missing People is what it is, not a failure to look into.
        if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
            tracing::error!(error = %self, "web console request failed");
        }
        (
            status,
            Json(ErrorBody {
                error: self.to_string(),
                code,
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_statuses_keep_their_meaning_over_http() {
        let refused = WebError::from(tonic::Status::invalid_argument("limit must be 1 to 1000"));
        assert_eq!(refused.status(), (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"));
        assert_eq!(refused.to_string(), "limit must be 1 to 1000");
        let unauthenticated = WebError::from(tonic::Status::unauthenticated("no token"));
        assert_eq!(unauthenticated.status().0, StatusCode::UNAUTHORIZED);
        let read_only = WebError::from(tonic::Status::permission_denied("read token"));
        assert_eq!(read_only.status().0, StatusCode::FORBIDDEN);
        let gone = WebError::Fetch {
            face_id: "00".into(),
            source: Box::new(PipelineError::NotFound {
                uri: "file:///a.jpg".into(),
            }),
        };
        assert_eq!(gone.status().0, StatusCode::NOT_FOUND);
    }
}
