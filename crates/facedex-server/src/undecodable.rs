//! A request whose message does not decode is the client's mistake: tonic answers it
//! `INTERNAL` before any handler runs, this layer turns that answer into `INVALID_ARGUMENT`
//! (keeping tonic's message, which names the field and the wire-type problem). Both services
//! (FaceSearch and Embedder) are served behind it.

use http::HeaderValue;

/// The start of tonic's message for a request that prost could not decode.
const UNDECODABLE: &str = "failed to decode Protobuf message";

/// Rewrites an `INTERNAL` answer for an undecodable request to `INVALID_ARGUMENT`.
pub(crate) fn undecodable_is_invalid_argument<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let internal = headers.get("grpc-status").is_some_and(|status| status == "13");
    let undecodable = headers
        .get("grpc-message")
        .and_then(|message| message.to_str().ok())
        .is_some_and(|message| message.replace("%20", " ").starts_with(UNDECODABLE));
    if internal && undecodable {
        headers.insert("grpc-status", HeaderValue::from_static("3"));
    }
    response
}

/// The layer both servers add.
pub(crate) fn layer<B>() -> tower::util::MapResponseLayer<fn(http::Response<B>) -> http::Response<B>> {
    tower::util::MapResponseLayer::new(undecodable_is_invalid_argument::<B> as fn(_) -> _)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: &'static str, message: &'static str) -> http::Response<()> {
        let mut response = http::Response::new(());
        response
            .headers_mut()
            .insert("grpc-status", HeaderValue::from_static(status));
        response
            .headers_mut()
            .insert("grpc-message", HeaderValue::from_static(message));
        undecodable_is_invalid_argument(response)
    }

    #[test]
    fn only_an_undecodable_request_becomes_invalid_argument() {
        let rewritten = answer(
            "13",
            "failed to decode Protobuf message: GetFaceRequest.face_id: invalid wire type",
        );
        assert_eq!(rewritten.headers()["grpc-status"], "3");
        let encoded = answer("13", "failed%20to%20decode%20Protobuf%20message: buffer underflow");
        assert_eq!(encoded.headers()["grpc-status"], "3");
        assert_eq!(
            answer("13", "internal error: blocking task failed").headers()["grpc-status"],
            "13"
        );
        assert_eq!(
            answer("5", "failed to decode Protobuf message").headers()["grpc-status"],
            "5"
        );
    }
}
