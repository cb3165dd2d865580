//! The FaceSearch handlers: validate and convert the request, run the index on the blocking
//! pool (image queries first go through the shared photo front end, which batches the faces
//! of concurrent queries together), convert the answer, map the error.

use std::sync::Arc;
use std::time::Duration;

use facedex_index::{DeleteSelector, FaceStore, IndexError};
use facedex_pipeline::{PhotoAnalyzer, StageTimings, Wanted};
use facedex_proto::conversions::{LogPosition, ParsedSearch, SearchTarget, index_info, parse_face_id};
use facedex_proto::face_search_server::FaceSearch;
use facedex_proto::{
    CreateSnapshotRequest, DeleteRequest, DeleteResponse, DetectedFace, Embedding, GetFaceRequest, GetFaceResponse,
    GetIndexInfoRequest, Hit, IndexInfo, QueryResult, SearchBatchRequest, SearchBatchResponse, SearchRequest,
    SearchResponse, Snapshot,
};
use facedex_vision::Face;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::access::{Access, AccessTokens};
use crate::calls::{at_position, check_batch_size, run_blocking, within_time_limit};
use crate::config::ServerConfig;
use crate::error::ServiceError;
use crate::metrics::observed;
use crate::search::deleter::{FaceDeleter, StoreDeleter};

/// The `service` label of this service's request metrics.
const SERVICE: &str = "FaceSearch";

/// The FaceSearch service over one face store.
#[derive(Clone)]
pub struct FaceSearchService {
    store: Arc<FaceStore>,
    analyzer: Option<Arc<PhotoAnalyzer>>,
    max_image_bytes: usize,
    max_batch_searches: usize,
    /// One permit per search allowed to run at once (`max_concurrent_searches`); waiters are
    /// served first come, first served.
    search_slots: Arc<Semaphore>,
    /// One permit per photo query between decoding and its last model run
    /// (`max_concurrent_photo_queries`): each holds a decoded photo.
    photo_slots: Arc<Semaphore>,
    /// `server.request_timeout_ms`, when set.
    pub(crate) read_time_limit: Option<Duration>,
    /// `server.default_min_score`: the floor of a search that sets none.
    default_min_score: f32,
    /// Who may read and who may write.
    tokens: AccessTokens,
    /// Where deletions go.
    deleter: Arc<dyn FaceDeleter>,
}

/// How often the applied offsets are looked at while a search waits for its `after`.
const AFTER_POLL: Duration = Duration::from_millis(10);

impl FaceSearchService {
    /// A service over `store`; image queries need `analyzer`.
    pub fn new(store: Arc<FaceStore>, analyzer: Option<Arc<PhotoAnalyzer>>, config: &ServerConfig) -> Self {
        Self {
            analyzer,
            max_image_bytes: config.max_image_bytes,
            max_batch_searches: config.max_batch_searches,
            search_slots: Arc::new(Semaphore::new(config.concurrent_searches())),
            photo_slots: Arc::new(Semaphore::new(config.max_concurrent_photo_queries.max(1))),
            read_time_limit: (config.request_timeout_ms > 0).then(|| Duration::from_millis(config.request_timeout_ms)),
            default_min_score: config.default_min_score,
            tokens: AccessTokens::default(),
            deleter: Arc::new(StoreDeleter::new(Arc::clone(&store))),
            store,
        }
    }

    /// Whether this service searches by photo (it has the models).
    pub fn searches_photos(&self) -> bool {
        self.analyzer.is_some()
    }

    /// The similarity floor of a search that sets none (`server.default_min_score`).
    pub fn default_min_score(&self) -> f32 {
        self.default_min_score
    }

    /// The service with deletions sent to `deleter` instead of the store.
    pub fn with_deleter(self, deleter: Arc<dyn FaceDeleter>) -> Self {
        Self { deleter, ..self }
    }

    /// The service with calls checked against `tokens` (none by default).
    pub fn with_tokens(self, tokens: AccessTokens) -> Self {
        Self { tokens, ..self }
    }

    async fn search_one(&self, request: SearchRequest) -> Result<SearchResponse, ServiceError> {
        let with_query_embeddings = request.with_query_embeddings;
        let mut parsed = ParsedSearch::try_from(request)?;
        parsed.template.min_score.get_or_insert(self.default_min_score);
        self.wait_for_positions(&parsed.after).await;
        // An image query's faces come first, off the search slots: the models batch concurrent
        // queries together, and the slots bound only the index work.
        let query_faces = match &mut parsed.target {
            SearchTarget::Image(bytes) => Some(self.query_faces(std::mem::take(bytes)).await?),
            SearchTarget::Embedding(_) | SearchTarget::FaceId(_) => None,
        };
        let slot = Arc::clone(&self.search_slots)
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Internal("the search slots were closed".into()))?;
        let service = self.clone();
        // The slot goes with the work: a caller that gives up does not free it while the search
        // still runs on the blocking pool.
        run_blocking(move || {
            let _slot = slot;
            service.search_blocking(parsed, query_faces, with_query_embeddings)
        })
        .await
    }

    /// Waits until the index applied every one of `after` (read your writes); the request's
    /// time limit ends the wait.
    async fn wait_for_positions(&self, after: &[LogPosition]) {
        while !after.is_empty() {
            let index = self.store.index();
            let reached = after
                .iter()
                .all(|position| index.has_applied(&position.topic, position.partition, position.next_offset));
            if reached {
                return;
            }
            tokio::time::sleep(AFTER_POLL).await;
        }
    }

    /// The faces of a query photo, with embeddings, and the model that embedded them.
    async fn query_faces(&self, bytes: Vec<u8>) -> Result<(Vec<Face>, String), ServiceError> {
        if bytes.len() > self.max_image_bytes {
            return Err(ServiceError::ImageTooLarge {
                bytes: bytes.len(),
                max: self.max_image_bytes,
            });
        }
        let analyzer = self.analyzer.as_ref().ok_or(ServiceError::ImageSearchUnavailable)?;
        let _slot = self
            .photo_slots
            .acquire()
            .await
            .map_err(|_| ServiceError::Internal("the photo query slots were closed".into()))?;
        let photo = analyzer
            .analyze(
                "the query image",
                bytes,
                Wanted::EMBEDDINGS,
                &mut StageTimings::default(),
            )
            .await?;
        Ok((photo.faces, analyzer.info().model_id.clone()))
    }

    /// The search, with an image query's `query_faces`; `with_query_embeddings` returns each
    /// query face's embedding beside its hits.
    fn search_blocking(
        &self,
        parsed: ParsedSearch,
        query_faces: Option<(Vec<Face>, String)>,
        with_query_embeddings: bool,
    ) -> Result<SearchResponse, ServiceError> {
        let index = self.store.index();
        let results = match &parsed.target {
            SearchTarget::Embedding(vector) => {
                let hits = index.search(&parsed.query_for(vector.clone()))?;
                vec![QueryResult {
                    query_face: None,
                    hits: hits.iter().map(Hit::from).collect(),
                    query_embedding: None,
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
                    query_embedding: None,
                }]
            }
            SearchTarget::Image(_) => {
                let (faces, model_id) = query_faces.ok_or_else(|| {
                    ServiceError::Internal("an image query reached the index without its faces".into())
                })?;
                self.search_faces(faces, &model_id, &parsed, with_query_embeddings)?
            }
        };
        let model_id = index.model_id().unwrap_or_default();
        Ok(SearchResponse { results, model_id })
    }

    fn search_faces(
        &self,
        faces: Vec<Face>,
        model_id: &str,
        parsed: &ParsedSearch,
        with_query_embeddings: bool,
    ) -> Result<Vec<QueryResult>, ServiceError> {
        let mut results = Vec::with_capacity(faces.len());
        for face in faces {
            let query_embedding = with_query_embeddings.then(|| Embedding {
                values: face.embedding.clone(),
            });
            let mut query = parsed.query_for(face.embedding);
            // The query's model is known for sure here: let the index refuse a mismatch.
            query.filter.model_id = Some(model_id.to_owned());
            let hits = self.store.index().search(&query)?;
            results.push(QueryResult {
                query_face: Some(DetectedFace::from(&face.detection)),
                hits: hits.iter().map(Hit::from).collect(),
                query_embedding,
            });
        }
        Ok(results)
    }
}

#[tonic::async_trait]
impl FaceSearch for FaceSearchService {
    async fn search(&self, request: Request<SearchRequest>) -> Result<Response<SearchResponse>, Status> {
        observed(
            SERVICE,
            "Search",
            within_time_limit(self.read_time_limit, "Search", async move {
                self.tokens.authorize(request.metadata(), Access::Read, "Search")?;
                Ok(Response::new(self.search_one(request.into_inner()).await?))
            }),
        )
        .await
    }

    async fn search_batch(
        &self,
        request: Request<SearchBatchRequest>,
    ) -> Result<Response<SearchBatchResponse>, Status> {
        observed(
            SERVICE,
            "SearchBatch",
            within_time_limit(self.read_time_limit, "SearchBatch", async move {
                self.tokens.authorize(request.metadata(), Access::Read, "SearchBatch")?;
                let searches = request.into_inner().searches;
                check_batch_size(searches.len(), self.max_batch_searches)?;
                let mut responses = Vec::with_capacity(searches.len());
                for (position, search) in searches.into_iter().enumerate() {
                    let response = self
                        .search_one(search)
                        .await
                        .map_err(|error| at_position(position, error))?;
                    responses.push(response);
                }
                Ok(Response::new(SearchBatchResponse { responses }))
            }),
        )
        .await
    }

    async fn get_face(&self, request: Request<GetFaceRequest>) -> Result<Response<GetFaceResponse>, Status> {
        observed(
            SERVICE,
            "GetFace",
            within_time_limit(self.read_time_limit, "GetFace", async move {
                self.tokens.authorize(request.metadata(), Access::Read, "GetFace")?;
                let request = request.into_inner();
                let face_id = parse_face_id("face_id", &request.face_id).map_err(ServiceError::from)?;
                let store = Arc::clone(&self.store);
                let view = run_blocking(move || Ok(store.index().get(&face_id, request.with_embedding)?)).await?;
                Ok(Response::new(view.into()))
            }),
        )
        .await
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        observed(SERVICE, "Delete", async move {
            self.tokens.authorize(request.metadata(), Access::Write, "Delete")?;
            let selector = DeleteSelector::try_from(request.into_inner()).map_err(ServiceError::from)?;
            let deleted = self.deleter.delete(selector).await?;
            tracing::info!(faces = deleted.face_ids.len(), "deleted faces");
            let store = Arc::clone(&self.store);
            // Vacuum in the background: the deletion is already durable and invisible to searches.
            tokio::task::spawn_blocking(move || {
                if let Err(error) = store.vacuum_if_needed() {
                    tracing::error!(%error, "vacuum failed");
                }
            });
            Ok(Response::new(DeleteResponse {
                deleted_face_ids: deleted.face_ids.iter().map(ToString::to_string).collect(),
                written: deleted.written,
            }))
        })
        .await
    }

    async fn get_index_info(&self, request: Request<GetIndexInfoRequest>) -> Result<Response<IndexInfo>, Status> {
        observed(
            SERVICE,
            "GetIndexInfo",
            within_time_limit(self.read_time_limit, "GetIndexInfo", async move {
                self.tokens
                    .authorize(request.metadata(), Access::Read, "GetIndexInfo")?;
                let store = Arc::clone(&self.store);
                let info =
                    run_blocking(move || Ok(index_info(store.index().info(), store.last_snapshot().as_ref()))).await?;
                Ok(Response::new(info))
            }),
        )
        .await
    }

    async fn create_snapshot(&self, request: Request<CreateSnapshotRequest>) -> Result<Response<Snapshot>, Status> {
        observed(SERVICE, "CreateSnapshot", async move {
            self.tokens
                .authorize(request.metadata(), Access::Write, "CreateSnapshot")?;
            let store = Arc::clone(&self.store);
            let snapshot = run_blocking(move || Ok(store.snapshot()?)).await?;
            Ok(Response::new(Snapshot::from(&snapshot)))
        })
        .await
    }
}
