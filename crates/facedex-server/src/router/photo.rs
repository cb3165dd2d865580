//! Photo queries over shards, with the query photo's faces found once. One shard, each in turn,
//! analyses the photo (decode, detect, align, embed) and answers with its hits and its query
//! faces' embeddings; every other shard is searched by those embeddings, a `SearchBatch` per
//! shard, and its answer is put in the shape of a photo query's (one result per query face, in
//! the detecting shard's order) so that all of them merge as any other search. A photo query
//! thus costs one shard's models, not every shard's. An indexer that returns no embeddings (one
//! older than `with_query_embeddings`) has the photo sent to every other shard instead.

use std::sync::atomic::{AtomicUsize, Ordering};

use facedex_proto::{
    Embedding, QueryResult, SearchBatchRequest, SearchFilter, SearchRequest, SearchResponse, search_request,
};

use crate::error::ServiceError;
use crate::router::merge::ShardDisagreement;
use crate::router::shards::{Credentials, ShardSet};

/// Which shard analyses the next photo query: the shards take turns, so that photo queries
/// spread over every shard's models.
#[derive(Debug, Default)]
pub(crate) struct DetectingShard(AtomicUsize);

impl DetectingShard {
    /// The shard that analyses the next photo, of `shards`.
    fn next(&self, shards: usize) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed) % shards.max(1)
    }
}

/// `request` as sent to `shard`: with only the read-your-writes positions of its own partitions.
pub(crate) fn for_shard(shards: &ShardSet, shard: usize, request: &SearchRequest) -> SearchRequest {
    let mut request = request.clone();
    request.after.retain(|position| shards.reads(shard, position.partition));
    request
}

/// Every shard's answer (shard number, answer) to the photo query `request`, its photo analysed
/// by one shard only; `max_batch_searches` bounds each `SearchBatch` sent to the other shards.
pub(crate) async fn answers_to_photo(
    shards: &ShardSet,
    detecting: &DetectingShard,
    credentials: &Credentials,
    mut request: SearchRequest,
    max_batch_searches: usize,
) -> Result<Vec<(usize, SearchResponse)>, ServiceError> {
    debug_assert!(matches!(request.query, Some(search_request::Query::Image(_))));
    let photo = request.query.take();
    let wants_embeddings = request.with_query_embeddings;
    // The rest of the request, without the photo: what every shard's searches share.
    let template = request;
    let first = detecting.next(shards.len());
    let analysing = SearchRequest {
        query: photo,
        with_query_embeddings: true,
        ..for_shard(shards, first, &template)
    };
    let (_, mut detected) = shards
        .ask(first, |mut client| {
            let request = credentials.request(analysing.clone());
            async move { client.search(request).await }
        })
        .await?;
    let embeddings: Option<Vec<Vec<f32>>> = detected
        .results
        .iter()
        .map(|result| {
            result
                .query_embedding
                .as_ref()
                .map(|embedding| embedding.values.clone())
        })
        .collect();
    if !wants_embeddings {
        for result in &mut detected.results {
            result.query_embedding = None;
        }
    }
    let others = (0..shards.len()).filter(|shard| *shard != first);
    let Some(embeddings) = embeddings else {
        // An indexer that predates query embeddings: every other shard analyses the photo too.
        // From the template, not `analysing`: that one holds only the first shard's positions.
        let photo_for_all = SearchRequest {
            query: analysing.query,
            with_query_embeddings: wants_embeddings,
            ..template
        };
        let mut answers = vec![(first, detected)];
        answers.extend(
            futures::future::try_join_all(others.map(|shard| {
                let request = for_shard(shards, shard, &photo_for_all);
                async move {
                    let (_, answer) = shards
                        .ask(shard, |mut client| {
                            let request = credentials.request(request.clone());
                            async move { client.search(request).await }
                        })
                        .await?;
                    Ok::<_, ServiceError>((shard, answer))
                }
            }))
            .await?,
        );
        answers.sort_by_key(|(shard, _)| *shard);
        return Ok(answers);
    };
    let template = pinned_to_model(template, &detected.model_id);
    let searched = futures::future::try_join_all(others.map(|shard| {
        let request = for_shard(shards, shard, &template);
        let embeddings = &embeddings;
        async move {
            let results =
                search_by_embeddings(shards, shard, credentials, &request, embeddings, max_batch_searches).await?;
            Ok::<_, ServiceError>((shard, results))
        }
    }))
    .await?;
    let mut answers = Vec::with_capacity(shards.len());
    for (shard, responses) in searched {
        answers.push((shard, as_photo_answer(shard, &detected, responses)?));
    }
    answers.push((first, detected));
    answers.sort_by_key(|(shard, _)| *shard);
    Ok(answers)
}

/// `template` with its filter's model set to `model_id` where the caller set none. The query
/// embeddings come from the detecting shard's models, which its index checked against its own
/// model (`model_id`, empty while it holds no face): the other shards must hold that model too,
/// or refuse (FAILED_PRECONDITION), rather than rank faces of another embedding space.
fn pinned_to_model(mut template: SearchRequest, model_id: &str) -> SearchRequest {
    let filter = template.filter.get_or_insert_with(SearchFilter::default);
    if filter.model_id.is_empty() {
        model_id.clone_into(&mut filter.model_id);
    }
    template
}

/// `shard`'s answers to `template` with each of `embeddings` as the query, in their order, in
/// batches of at most `max_batch_searches`.
async fn search_by_embeddings(
    shards: &ShardSet,
    shard: usize,
    credentials: &Credentials,
    template: &SearchRequest,
    embeddings: &[Vec<f32>],
    max_batch_searches: usize,
) -> Result<Vec<SearchResponse>, ServiceError> {
    let mut responses = Vec::with_capacity(embeddings.len());
    for chunk in embeddings.chunks(max_batch_searches.max(1)) {
        let batch = SearchBatchRequest {
            searches: chunk
                .iter()
                .map(|values| SearchRequest {
                    query: Some(search_request::Query::Embedding(Embedding { values: values.clone() })),
                    ..template.clone()
                })
                .collect(),
        };
        let (_, answer) = shards
            .ask(shard, |mut client| {
                let request = credentials.request(batch.clone());
                async move { client.search_batch(request).await }
            })
            .await?;
        responses.extend(answer.responses);
    }
    Ok(responses)
}

/// A shard's embedding searches (one per query face of `detected`) as its answer to the photo
/// query: each query face's hits under the detecting shard's query face (and its embedding,
/// when `detected` still holds it because the caller asked for it).
fn as_photo_answer(
    shard: usize,
    detected: &SearchResponse,
    responses: Vec<SearchResponse>,
) -> Result<SearchResponse, ServiceError> {
    let faces = detected.results.len();
    let answered = responses.iter().map(|response| response.results.len()).sum::<usize>();
    if responses.len() != faces || answered != faces {
        return Err(ServiceError::ShardsDisagree {
            shard,
            disagreement: ShardDisagreement::QueryFaces {
                first: faces,
                other: answered,
            },
        });
    }
    let model_id = responses
        .iter()
        .map(|response| response.model_id.as_str())
        .find(|model_id| !model_id.is_empty())
        .unwrap_or_default()
        .to_owned();
    let results = detected
        .results
        .iter()
        .zip(responses)
        .map(|(query, response)| QueryResult {
            query_face: query.query_face.clone(),
            hits: response.results.into_iter().flat_map(|result| result.hits).collect(),
            // Whichever shard's answer the merge starts from carries the query faces whole.
            query_embedding: query.query_embedding.clone(),
        })
        .collect();
    Ok(SearchResponse { results, model_id })
}

#[cfg(test)]
mod tests {
    use facedex_proto::{BoundingBox, DetectedFace, Face, Hit};

    use super::*;

    fn hit(face_id: &str, similarity: f32) -> Hit {
        Hit {
            similarity,
            face: Some(Face {
                face_id: face_id.into(),
                ..Face::default()
            }),
        }
    }

    fn query_face(x: f32) -> DetectedFace {
        DetectedFace {
            bounding_box: Some(BoundingBox {
                x1: x,
                y1: 0.0,
                x2: x + 10.0,
                y2: 10.0,
            }),
            ..DetectedFace::default()
        }
    }

    fn detected(faces: usize) -> SearchResponse {
        SearchResponse {
            results: (0..faces)
                .map(|face| QueryResult {
                    query_face: Some(query_face(face as f32 * 20.0)),
                    hits: vec![hit(&format!("first-{face}"), 0.9)],
                    query_embedding: Some(Embedding {
                        values: vec![face as f32],
                    }),
                })
                .collect(),
            model_id: "m".into(),
        }
    }

    fn by_embedding(model_id: &str, hits: Vec<Hit>) -> SearchResponse {
        SearchResponse {
            results: vec![QueryResult {
                query_face: None,
                hits,
                query_embedding: None,
            }],
            model_id: model_id.into(),
        }
    }

    #[test]
    fn embedding_answers_take_the_detecting_shards_query_faces_in_order() {
        let detected = detected(2);
        let answer = as_photo_answer(
            1,
            &detected,
            vec![
                by_embedding("m", vec![hit("a", 0.8), hit("b", 0.7)]),
                by_embedding("", Vec::new()),
            ],
        )
        .expect("fits");
        assert_eq!(answer.model_id, "m");
        assert_eq!(answer.results.len(), 2);
        for (result, query) in answer.results.iter().zip(&detected.results) {
            assert_eq!(result.query_face, query.query_face);
            assert_eq!(result.query_embedding, query.query_embedding);
        }
        let first: Vec<&str> = answer.results[0]
            .hits
            .iter()
            .filter_map(|hit| hit.face.as_ref().map(|face| face.face_id.as_str()))
            .collect();
        assert_eq!(first, ["a", "b"]);
        assert!(answer.results[1].hits.is_empty());
    }

    #[test]
    fn a_shard_answering_another_number_of_searches_is_refused() {
        let refused = as_photo_answer(3, &detected(2), vec![by_embedding("m", Vec::new())]);
        assert!(matches!(
            refused,
            Err(ServiceError::ShardsDisagree {
                shard: 3,
                disagreement: ShardDisagreement::QueryFaces { first: 2, other: 1 }
            })
        ));
    }

    #[test]
    fn the_other_shards_must_hold_the_detecting_shards_model_unless_the_caller_named_one() {
        let pinned = pinned_to_model(SearchRequest::default(), "w600k_mbf");
        assert_eq!(
            pinned.filter.map(|filter| filter.model_id).as_deref(),
            Some("w600k_mbf")
        );
        let named = SearchRequest {
            filter: Some(SearchFilter {
                model_id: "mine".into(),
                ..SearchFilter::default()
            }),
            ..SearchRequest::default()
        };
        let kept = pinned_to_model(named, "w600k_mbf");
        assert_eq!(kept.filter.map(|filter| filter.model_id).as_deref(), Some("mine"));
        let empty_shard = pinned_to_model(SearchRequest::default(), "");
        assert_eq!(empty_shard.filter.map(|filter| filter.model_id).as_deref(), Some(""));
    }

    #[test]
    fn the_shards_take_turns_at_analysing() {
        let detecting = DetectingShard::default();
        let turns: Vec<usize> = (0..5).map(|_| detecting.next(3)).collect();
        assert_eq!(turns, [0, 1, 2, 0, 1]);
        assert_eq!(detecting.next(0), 0);
    }
}
