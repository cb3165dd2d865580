//! Request metrics of the gRPC services (FaceSearch and Embedder): a count by method and status
//! code, and a latency histogram by method. Every handler runs inside [`observed`].

use std::time::Instant;

use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};
use tonic::Status;

/// Requests answered, by service, method and gRPC status code.
pub const REQUESTS: &str = "facedex_grpc_requests_total";
/// Time to answer a request, by service and method.
pub const REQUEST_DURATION: &str = "facedex_grpc_request_duration_seconds";

/// Registers the help text and unit of every metric above.
pub fn describe() {
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "gRPC requests answered, by service, method and status code (OK, InvalidArgument, …)."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer a gRPC request, by service and method (FaceSearch/Search is the search latency)."
    );
}

/// Runs one handler and records its outcome and latency.
pub(crate) async fn observed<T>(
    service: &'static str,
    method: &'static str,
    handler: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let started = Instant::now();
    let result = handler.await;
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    };
    histogram!(REQUEST_DURATION, "service" => service, "method" => method).record(started.elapsed().as_secs_f64());
    counter!(REQUESTS, "service" => service, "method" => method, "code" => format!("{code:?}")).increment(1);
    result
}
