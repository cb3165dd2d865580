//! `GET /api/pipeline`: the pipeline page's numbers, read fresh on every poll: the run in
//! this process (when there is one), the distributed pipeline's stages (on an indexer), and
//! the index as the FaceSearch handler reports it.

use axum::Json;
use axum::http::HeaderMap;
use serde::Serialize;

use super::{State, index_info};
use crate::error::WebError;
use crate::progress::RunView;

/// The index's side.
#[derive(Debug, Serialize)]
pub(crate) struct IndexView {
    faces: u64,
    images: u64,
    people: u64,
    memory_bytes: u64,
    /// The last snapshot's generation and time, once there is one.
    snapshot_generation: Option<u64>,
    snapshot_unix_ms: Option<i64>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub(crate) struct PipelineAnswer {
    run: Option<RunView>,
    /// The distributed pipeline's stages (on an indexer), as `facedex status --json` has them.
    stages: Option<serde_json::Value>,
    index: IndexView,
}

/// The run's counters and the index's size.
pub(crate) async fn pipeline(state: State, headers: HeaderMap) -> Result<Json<PipelineAnswer>, WebError> {
    let info = index_info(&state, &headers).await?;
    Ok(Json(PipelineAnswer {
        run: state.run.as_ref().map(|run| run.view()),
        stages: state.stages.as_ref().and_then(|stages| stages.latest()),
        index: IndexView {
            faces: info.faces,
            images: info.images,
            people: info.people,
            memory_bytes: info.memory_bytes,
            snapshot_generation: info.last_snapshot.as_ref().map(|snapshot| snapshot.generation),
            snapshot_unix_ms: info.last_snapshot.as_ref().map(|snapshot| snapshot.created_unix_ms),
        },
    }))
}
