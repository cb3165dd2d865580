//! The FaceSearch handlers: validate and convert the request, run the index (and, for image
//! queries, the face models) on the blocking pool, convert the answer, map the error.

use std::sync::Arc;

use facedex_index::{DeleteSelector, FaceStore, IndexError};
use facedex_proto::conversions::{ParsedSearch, SearchTarget, index_info, parse_face_id};
use facedex_proto::face_search_server::FaceSearch;
use facedex_proto::{
    CreateSnapshotRequest, DeleteRequest, DeleteResponse, DetectedFace, GetFaceRequest, GetFaceResponse,
    GetIndexInfoRequest, Hit, IndexInfo, QueryResult, SearchBatchRequest, SearchBatchResponse, SearchRequest,
    SearchResponse, Snapshot,
};
use facedex_vision::{FaceAnalyzer, decode_photo};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::config::ServerConfig;
use crate::error::ServiceError;
use crate::metrics::observed;

/// The `service` label of this service's request metrics.
const SERVICE: &str = "FaceSearch";

/// The face models for image queries, shared by all calls (one photo analysed at a time).
pub type SharedAnalyzer = Arc<Mutex<FaceAnalyzer>>;

/// The FaceSearch service over one face store.
#[derive(Clone)]
pub struct FaceSearchService {
    store: Arc<FaceStore>,
    analyzer: Option<SharedAnalyzer>,
    max_image_bytes: usize,
    max_image_pixels: u64,
    max_batch_searches: usize,
    /// One permit per search allowed to run at once (`max_concurrent_searches`); waiters are
    /// served first come, first served.
    search_slots: Arc<Semaphore>,
}

impl FaceSearchService {
    /// A service over `store`; image queries need `analyzer`.
    pub fn new(
        store: Arc<FaceStore>,
        analyzer: Option<SharedAnalyzer>,
        config: &ServerConfig,
        max_image_pixels: u64,
    ) -> Self {
        Self {
            store,
            analyzer,
            max_image_bytes: config.max_image_bytes,
            max_image_pixels,
            max_batch_searches: config.max_batch_searches,
            search_slots: Arc::new(Semaphore::new(config.concurrent_searches())),
        }
    }

    async fn search_one(&self, request: SearchRequest) -> Result<SearchResponse, ServiceError> {
        let parsed = ParsedSearch::try_from(request)?;
        let slot = Arc::clone(&self.search_slots)
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Internal("the search slots were closed".into()))?;
        let service = self.clone();
        // The slot goes with the work: a caller that gives up does not free it while the search
        // still runs on the blocking pool.
        run_blocking(move || {
            let _slot = slot;
            service.search_blocking(parsed)
        })
        .await
    }

    fn search_blocking(&self, parsed: ParsedSearch) -> Result<SearchResponse, ServiceError> {
        let index = self.store.index();
        let results = match &parsed.target {
            SearchTarget::Embedding(vector) => {
                let hits = index.search(&parsed.query_for(vector.clone()))?;
                vec![QueryResult {
                    query_face: None,
                    hits: hits.iter().map(Hit::from).collect(),
                }]
            }
            SearchTarget::FaceId(face_id) => {
                let view = index.get(face_id, true)?;
                let vector = view.embedding.ok_or_else(|| IndexError::UnknownFace {
                    face_id: face_id.to_string(),
                })?;
                let mut query = parsed.query_for(vector);
                query.filter.exclude_face_ids.insert(*face_id);
                let hits = index.search(&query)?;
                vec![QueryResult {
                    query_face: None,
                    hits: hits.iter().map(Hit::from).collect(),
                }]
            }
            SearchTarget::Image(bytes) => self.search_image(bytes, &parsed)?,
        };
        let model_id = index.model_id().unwrap_or_default();
        Ok(SearchResponse { results, model_id })
    }

    fn search_image(&self, bytes: &[u8], parsed: &ParsedSearch) -> Result<Vec<QueryResult>, ServiceError> {
        if bytes.len() > self.max_image_bytes {
            return Err(ServiceError::ImageTooLarge {
                bytes: bytes.len(),
                max: self.max_image_bytes,
            });
        }
        let analyzer = self.analyzer.as_ref().ok_or(ServiceError::ImageSearchUnavailable)?;
        let photo = decode_photo("the query image", bytes, self.max_image_pixels)?;
        let (faces, model_id) = {
            let mut analyzer = analyzer.lock();
            let faces = analyzer.analyze(&[&photo], true)?.pop().unwrap_or_default();
            (faces, analyzer.model_id().to_owned())
        };
        let mut results = Vec::with_capacity(faces.len());
        for face in faces {
            let mut query = parsed.query_for(face.embedding);
            // The query's model is known for sure here: let the index refuse a mismatch.
            query.filter.model_id = Some(model_id.clone());
            let hits = self.store.index().search(&query)?;
            results.push(QueryResult {
                query_face: Some(DetectedFace::from(&face.detection)),
                hits: hits.iter().map(Hit::from).collect(),
            });
        }
        Ok(results)
    }
}

/// Runs CPU-bound index or model work off the async runtime.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ServiceError::Internal(format!("blocking task failed: {error}")))?
}

#[tonic::async_trait]
impl FaceSearch for FaceSearchService {
    async fn search(&self, request: Request<SearchRequest>) -> Result<Response<SearchResponse>, Status> {
        observed(SERVICE, "Search", async move {
            Ok(Response::new(self.search_one(request.into_inner()).await?))
        })
        .await
    }

    async fn search_batch(
        &self,
        request: Request<SearchBatchRequest>,
    ) -> Result<Response<SearchBatchResponse>, Status> {
        observed(SERVICE, "SearchBatch", async move {
            let searches = request.into_inner().searches;
            if searches.is_empty() || searches.len() > self.max_batch_searches {
                return Err(ServiceError::BatchSize {
                    count: searches.len(),
                    max: self.max_batch_searches,
                }
                .into());
            }
            let mut responses = Vec::with_capacity(searches.len());
            for (position, search) in searches.into_iter().enumerate() {
                let response = self.search_one(search).await.map_err(|error| {
                    let status = Status::from(error);
                    Status::new(status.code(), format!("searches[{position}]: {}", status.message()))
                })?;
                responses.push(response);
            }
            Ok(Response::new(SearchBatchResponse { responses }))
        })
        .await
    }

    async fn get_face(&self, request: Request<GetFaceRequest>) -> Result<Response<GetFaceResponse>, Status> {
        observed(SERVICE, "GetFace", async move {
            let request = request.into_inner();
            let face_id = parse_face_id("face_id", &request.face_id).map_err(ServiceError::from)?;
            let store = Arc::clone(&self.store);
            let view = run_blocking(move || Ok(store.index().get(&face_id, request.with_embedding)?)).await?;
            Ok(Response::new(view.into()))
        })
        .await
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        observed(SERVICE, "Delete", async move {
            let selector = DeleteSelector::try_from(request.into_inner()).map_err(ServiceError::from)?;
            let store = Arc::clone(&self.store);
            let deleted = run_blocking(move || Ok(store.delete(&selector)?)).await?;
            tracing::info!(faces = deleted.len(), "deleted faces");
            let store = Arc::clone(&self.store);
            // Vacuum in the background: the deletion is already durable and invisible to searches.
            tokio::task::spawn_blocking(move || {
                if let Err(error) = store.vacuum_if_needed() {
                    tracing::error!(%error, "vacuum failed");
                }
            });
            Ok(Response::new(DeleteResponse {
                deleted_face_ids: deleted.iter().map(ToString::to_string).collect(),
            }))
        })
        .await
    }

    async fn get_index_info(&self, _request: Request<GetIndexInfoRequest>) -> Result<Response<IndexInfo>, Status> {
        observed(SERVICE, "GetIndexInfo", async move {
            let store = Arc::clone(&self.store);
            let info =
                run_blocking(move || Ok(index_info(store.index().info(), store.last_snapshot().as_ref()))).await?;
            Ok(Response::new(info))
        })
        .await
    }

    async fn create_snapshot(&self, _request: Request<CreateSnapshotRequest>) -> Result<Response<Snapshot>, Status> {
        observed(SERVICE, "CreateSnapshot", async move {
            let store = Arc::clone(&self.store);
            let snapshot = run_blocking(move || Ok(store.snapshot()?)).await?;
            Ok(Response::new(Snapshot::from(&snapshot)))
        })
        .await
    }
}
