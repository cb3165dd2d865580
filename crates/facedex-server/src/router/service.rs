//! FaceSearch answered by fanning out to the shards: a request is checked here first (a bad one
//! costs no fan-out), then sent to one replica of every shard, and the answers merged
//! ([`super::merge`]). A face-id query first fetches the face's embedding from the shard that
//! holds it, and a photo query's faces are found by one shard, whose embeddings of them the
//! other shards are searched by ([`super::photo`]). A Delete goes to every shard, whose
//! indexers write it to Kafka for their replicas; a snapshot is an indexer's own business and
//! is refused here.

use std::sync::Arc;
use std::time::Duration;

use facedex_index::{DeleteSelector, IndexError, MAX_SEARCH_LIMIT};
use facedex_proto::conversions::{MAX_REQUEST_FACE_IDS, ParsedSearch, SearchTarget, parse_face_id};
use facedex_proto::face_search_server::FaceSearch;
use facedex_proto::{
    AppliedOffset, CreateSnapshotRequest, DeleteRequest, DeleteResponse, Embedding, GetFaceRequest, GetFaceResponse,
    GetIndexInfoRequest, IndexInfo, SearchBatchRequest, SearchBatchResponse, SearchFilter, SearchRequest,
    SearchResponse, ShardInfo, Snapshot, search_request,
};
use tonic::{Code, Request, Response, Status};

use crate::access::{Access, AccessTokens};
use crate::calls::{at_position, check_batch_size, within_time_limit};
use crate::config::ServerConfig;
use crate::error::ServiceError;
use crate::metrics::observed;
use crate::router::merge::{MergeSpec, merge};
use crate::router::photo::{DetectingShard, answers_to_photo, for_shard};
use crate::router::shards::{Credentials, ShardSet};

/// The `service` label of this service's request metrics: the same API as an indexer's.
const SERVICE: &str = "FaceSearch";

/// FaceSearch over the shards of a [`ShardSet`].
#[derive(Clone)]
pub struct RouterService {
    shards: Arc<ShardSet>,
    max_image_bytes: usize,
    max_batch_searches: usize,
    read_time_limit: Option<Duration>,
    default_min_score: f32,
    tokens: AccessTokens,
    detecting: Arc<DetectingShard>,
}

impl RouterService {
    /// A router over `shards`, with the request limits of `config`.
    pub fn new(shards: Arc<ShardSet>, config: &ServerConfig) -> Self {
        Self {
            shards,
            max_image_bytes: config.max_image_bytes,
            max_batch_searches: config.max_batch_searches,
            read_time_limit: (config.request_timeout_ms > 0).then(|| Duration::from_millis(config.request_timeout_ms)),
            default_min_score: config.default_min_score,
            tokens: AccessTokens::default(),
            detecting: Arc::default(),
        }
    }

    /// The service with calls checked against `tokens` (none by default).
    pub fn with_tokens(self, tokens: AccessTokens) -> Self {
        Self { tokens, ..self }
    }

    async fn search_one(
        &self,
        credentials: &Credentials,
        mut request: SearchRequest,
    ) -> Result<SearchResponse, ServiceError> {
        let parsed = self.check(&mut request)?;
        let mut leave_out = None;
        if let SearchTarget::FaceId(face_id) = &parsed.target {
            let face_id = face_id.to_string();
            let vector = self.embedding_of(credentials, &face_id).await?;
            request.query = Some(search_request::Query::Embedding(Embedding { values: vector }));
            let filter = request.filter.get_or_insert_with(SearchFilter::default);
            // The shards leave the face out themselves when the list has room; the merge
            // drops it in any case.
            if !filter.exclude_face_ids.contains(&face_id) && filter.exclude_face_ids.len() < MAX_REQUEST_FACE_IDS {
                filter.exclude_face_ids.push(face_id.clone());
            }
            leave_out = Some(face_id);
        }
        let spec = MergeSpec {
            limit: parsed.template.limit,
            group_by_person: parsed.template.group_by_person,
            leave_out,
        };
        let answers = if matches!(parsed.target, SearchTarget::Image(_)) && self.shards.len() > 1 {
            answers_to_photo(
                &self.shards,
                &self.detecting,
                credentials,
                request,
                self.max_batch_searches,
            )
            .await?
        } else {
            self.shards
                .ask_every(|shard, mut client| {
                    // Each shard waits only for the positions of its own partitions.
                    let request = credentials.request(for_shard(&self.shards, shard, &request));
                    async move { client.search(request).await }
                })
                .await?
                .into_iter()
                .enumerate()
                .map(|(shard, (_, answer))| (shard, answer))
                .collect()
        };
        merge(answers, &spec).map_err(|(shard, disagreement)| ServiceError::ShardsDisagree { shard, disagreement })
    }

    /// Checks what the merge relies on and what costs fan-out, sets the router's default
    /// threshold, and leaves the rest (the embedding, `ef`) to the shards, which check it
    /// before any work.
    fn check(&self, request: &mut SearchRequest) -> Result<ParsedSearch, ServiceError> {
        // The photo is not copied for the check: it is put back once the rest is parsed.
        let photo = match &mut request.query {
            Some(search_request::Query::Image(bytes)) => {
                if bytes.len() > self.max_image_bytes {
                    return Err(ServiceError::ImageTooLarge {
                        bytes: bytes.len(),
                        max: self.max_image_bytes,
                    });
                }
                Some(std::mem::take(bytes))
            }
            _ => None,
        };
        let parsed = ParsedSearch::try_from(request.clone());
        if let (Some(bytes), Some(search_request::Query::Image(slot))) = (photo, &mut request.query) {
            *slot = bytes;
        }
        let parsed = parsed?;
        let limit = parsed.template.limit;
        if limit == 0 || limit > MAX_SEARCH_LIMIT {
            return Err(IndexError::InvalidLimit {
                limit,
                max: MAX_SEARCH_LIMIT,
            }
            .into());
        }
        if let Some(min_score) = request.min_score
            && !(-1.0..=1.0).contains(&min_score)
        {
            return Err(IndexError::InvalidMinScore { min_score }.into());
        }
        request.min_score.get_or_insert(self.default_min_score);
        Ok(parsed)
    }

    /// The embedding of an indexed face, from the shard that holds it.
    async fn embedding_of(&self, credentials: &Credentials, face_id: &str) -> Result<Vec<f32>, ServiceError> {
        let found = self.find_face(credentials, face_id, true).await?;
        found
            .and_then(|answer| answer.embedding)
            .map(|embedding| embedding.values)
            .ok_or_else(|| {
                IndexError::UnknownFace {
                    face_id: face_id.to_owned(),
                }
                .into()
            })
    }

    /// The face from whichever shard holds it; `None` when none does.
    async fn find_face(
        &self,
        credentials: &Credentials,
        face_id: &str,
        with_embedding: bool,
    ) -> Result<Option<GetFaceResponse>, ServiceError> {
        let request = GetFaceRequest {
            face_id: face_id.to_owned(),
            with_embedding,
        };
        let answers = self
            .shards
            .ask_every(|_, mut client| {
                let request = credentials.request(request.clone());
                async move {
                    match client.get_face(request).await {
                        Ok(answer) => Ok(answer.map(Some)),
                        // Not this shard's face: another shard may hold it. The answer keeps
                        // its headers, which say which shard answered.
                        Err(status) if status.code() == Code::NotFound => Ok(Response::from_parts(
                            status.metadata().clone(),
                            None,
                            tonic::Extensions::default(),
                        )),
                        Err(status) => Err(status),
                    }
                }
            })
            .await?;
        Ok(answers.into_iter().find_map(|(_, answer)| answer))
    }

    async fn index_info(&self, credentials: &Credentials) -> Result<IndexInfo, ServiceError> {
        let answers = self
            .shards
            .ask_every(|_, mut client| {
                let request = credentials.request(GetIndexInfoRequest {});
                async move { client.get_index_info(request).await }
            })
            .await?;
        let shards = answers
            .into_iter()
            .enumerate()
            .map(|(shard, (replica, info))| ShardInfo {
                shard: shard as u32,
                replica,
                info: Some(info),
            })
            .collect();
        Ok(sum_of_shards(shards))
    }
}

/// The whole index's info from its shards': counts summed, every shard's applied offsets, the
/// first model and parameters reported; no single last snapshot.
fn sum_of_shards(shards: Vec<ShardInfo>) -> IndexInfo {
    let mut total = IndexInfo::default();
    for info in shards.iter().filter_map(|shard| shard.info.as_ref()) {
        total.faces += info.faces;
        total.images += info.images;
        total.tombstones += info.tombstones;
        total.deleted_total += info.deleted_total;
        total.memory_bytes += info.memory_bytes;
        total.unreachable_points += info.unreachable_points;
        total.people += info.people;
        total.sealed_faces += info.sealed_faces;
        total.sealed_segments += info.sealed_segments;
        if total.model_id.is_empty() {
            total.model_id.clone_from(&info.model_id);
        }
        if total.dimension == 0 {
            total.dimension = info.dimension;
        }
        if total.parameters.is_none() {
            total.parameters = info.parameters;
        }
        total.applied_offsets.extend(info.applied_offsets.iter().cloned());
    }
    total
        .applied_offsets
        .sort_by(|a: &AppliedOffset, b: &AppliedOffset| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    // Replicas of one shard never both answer, but a misconfigured list could name one indexer
    // twice.
    total
        .applied_offsets
        .dedup_by(|a, b| a.topic == b.topic && a.partition == b.partition);
    total.shards = shards;
    total
}

#[tonic::async_trait]
impl FaceSearch for RouterService {
    async fn search(&self, request: Request<SearchRequest>) -> Result<Response<SearchResponse>, Status> {
        observed(
            SERVICE,
            "Search",
            within_time_limit(self.read_time_limit, "Search", async move {
                self.tokens.authorize(request.metadata(), Access::Read, "Search")?;
                let credentials = Credentials::of(request.metadata());
                Ok(Response::new(
                    self.search_one(&credentials, request.into_inner()).await?,
                ))
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
                let credentials = Credentials::of(request.metadata());
                let searches = request.into_inner().searches;
                check_batch_size(searches.len(), self.max_batch_searches)?;
                // Every search fans out at once: a batch costs one round trip, not one per search.
                let responses =
                    futures::future::try_join_all(searches.into_iter().enumerate().map(|(position, search)| {
                        let credentials = &credentials;
                        async move {
                            self.search_one(credentials, search)
                                .await
                                .map_err(|error| at_position(position, error))
                        }
                    }))
                    .await?;
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
                let credentials = Credentials::of(request.metadata());
                let request = request.into_inner();
                let face_id = parse_face_id("face_id", &request.face_id).map_err(ServiceError::from)?;
                let face_id = face_id.to_string();
                let found = self
                    .find_face(&credentials, &face_id, request.with_embedding)
                    .await?
                    .ok_or(ServiceError::Index(IndexError::UnknownFace { face_id }))?;
                Ok(Response::new(found))
            }),
        )
        .await
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        observed(SERVICE, "Delete", async move {
            self.tokens.authorize(request.metadata(), Access::Write, "Delete")?;
            let credentials = Credentials::of(request.metadata());
            let request = request.into_inner();
            // Checked here: a bad selector costs no fan-out.
            DeleteSelector::try_from(request.clone()).map_err(ServiceError::from)?;
            // Each shard's indexer writes the deletion to its partitions and answers once it
            // applied them; the shard's other replicas apply it from Kafka.
            let answers = self
                .shards
                .ask_every(|_, mut client| {
                    let request = credentials.request(request.clone());
                    async move { client.delete(request).await }
                })
                .await?;
            let mut deleted = DeleteResponse::default();
            for (_, answer) in answers {
                deleted.deleted_face_ids.extend(answer.deleted_face_ids);
                deleted.written.extend(answer.written);
            }
            Ok(Response::new(deleted))
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
                let credentials = Credentials::of(request.metadata());
                Ok(Response::new(self.index_info(&credentials).await?))
            }),
        )
        .await
    }

    async fn create_snapshot(&self, request: Request<CreateSnapshotRequest>) -> Result<Response<Snapshot>, Status> {
        observed(SERVICE, "CreateSnapshot", async move {
            self.tokens
                .authorize(request.metadata(), Access::Write, "CreateSnapshot")?;
            Err(ServiceError::NotOnRouter {
                method: "CreateSnapshot",
            }
            .into())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(shard: u32, faces: u64, model_id: &str, partitions: &[i32]) -> ShardInfo {
        ShardInfo {
            shard,
            replica: format!("http://indexer-{shard}:7051"),
            info: Some(IndexInfo {
                faces,
                images: faces / 2,
                memory_bytes: faces * 100,
                model_id: model_id.into(),
                dimension: if model_id.is_empty() { 0 } else { 512 },
                applied_offsets: partitions
                    .iter()
                    .map(|partition| AppliedOffset {
                        topic: "facedex.faces".into(),
                        partition: *partition,
                        next_offset: 10,
                    })
                    .collect(),
                ..IndexInfo::default()
            }),
        }
    }

    #[test]
    fn index_info_sums_the_shards_and_lists_each() {
        let total = sum_of_shards(vec![
            shard(0, 0, "", &[]),
            shard(1, 40, "m", &[3, 1]),
            shard(2, 60, "m", &[0, 2]),
        ]);
        assert_eq!((total.faces, total.images, total.memory_bytes), (100, 50, 10_000));
        assert_eq!((total.model_id.as_str(), total.dimension), ("m", 512));
        let partitions: Vec<i32> = total.applied_offsets.iter().map(|offset| offset.partition).collect();
        assert_eq!(partitions, [0, 1, 2, 3]);
        assert_eq!(total.shards.len(), 3);
        assert!(total.last_snapshot.is_none());
    }
}
