//! What every handler shares: index and model work runs on the blocking pool, and reads end at
//! the server's time limit.

use std::time::Duration;

use tonic::Status;

use crate::error::ServiceError;

/// Runs CPU-bound index or model work off the async runtime.
pub(crate) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ServiceError::Internal(format!("blocking task failed: {error}")))?
}

/// Runs the read request `method`'s `work` within `limit` (`server.request_timeout_ms`), when
/// set. Work given to the blocking pool finishes there (it is bounded by the request's checked
/// limits); its answer is dropped.
pub(crate) async fn within_time_limit<T>(
    limit: Option<Duration>,
    method: &'static str,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let Some(limit) = limit else {
        return work.await;
    };
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(ServiceError::TimeLimitExceeded {
            method,
            limit_ms: limit.as_millis() as u64,
        }
        .into())
    })
}

/// Refuses a SearchBatch of no searches or more than `max` (`server.max_batch_searches`).
pub(crate) fn check_batch_size(count: usize, max: usize) -> Result<(), ServiceError> {
    if count == 0 || count > max {
        return Err(ServiceError::BatchSize { count, max });
    }
    Ok(())
}

/// The failure of a SearchBatch's search at `position`, saying which one it was.
pub(crate) fn at_position(position: usize, error: ServiceError) -> Status {
    let status = Status::from(error);
    Status::new(status.code(), format!("searches[{position}]: {}", status.message()))
}
