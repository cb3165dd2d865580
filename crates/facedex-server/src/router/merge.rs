//! Merging the shards' answers to one search. Per query face, every shard's hits go into one
//! list, most similar first (ties by face id, so the order never depends on which shard
//! answered first), each face once, each person once when grouped, cut to the limit. Each
//! shard answered with its own best `limit` hits, so the merged best `limit` is the best of the
//! whole index: the same hits one unsharded index gives.

use std::collections::HashSet;
use std::fmt;

use facedex_proto::{Hit, QueryResult, SearchResponse, face_person};

/// How the merged answer is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MergeSpec {
    /// Hits per query face.
    pub limit: usize,
    /// At most one hit per person.
    pub group_by_person: bool,
    /// A face left out of the hits (the query face of a face-id search).
    pub leave_out: Option<String>,
}

/// Why two shards' answers cannot be merged into one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardDisagreement {
    /// Their indexes hold different embedding models.
    Model {
        /// The model of the shards before.
        first: String,
        /// This shard's model.
        other: String,
    },
    /// They found a different number of faces in the query photo (different detectors).
    QueryFaces {
        /// Faces the shards before found.
        first: usize,
        /// Faces this shard found.
        other: usize,
    },
}

impl fmt::Display for ShardDisagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Model { first, other } => write!(
                f,
                "it holds embeddings of model {other}, the shards before it of {first}; one index holds one embedding space"
            ),
            Self::QueryFaces { first, other } => write!(
                f,
                "it found {other} faces in the query photo, the shards before it {first}; every indexer must run the same face models"
            ),
        }
    }
}

/// The shards' answers (shard number, answer) merged into one; the shard whose answer does not
/// fit the ones before when they cannot be merged.
pub(crate) fn merge(
    answers: Vec<(usize, SearchResponse)>,
    spec: &MergeSpec,
) -> Result<SearchResponse, (usize, ShardDisagreement)> {
    let mut model_id = String::new();
    let mut merged: Option<Vec<QueryResult>> = None;
    for (shard, answer) in answers {
        // A shard that holds no face yet has no model: it agrees with any.
        if !answer.model_id.is_empty() {
            if model_id.is_empty() {
                model_id = answer.model_id;
            } else if model_id != answer.model_id {
                return Err((
                    shard,
                    ShardDisagreement::Model {
                        first: model_id,
                        other: answer.model_id,
                    },
                ));
            }
        }
        match &mut merged {
            None => merged = Some(answer.results),
            Some(results) => {
                if results.len() != answer.results.len() {
                    return Err((
                        shard,
                        ShardDisagreement::QueryFaces {
                            first: results.len(),
                            other: answer.results.len(),
                        },
                    ));
                }
                for (result, more) in results.iter_mut().zip(answer.results) {
                    result.hits.extend(more.hits);
                }
            }
        }
    }
    let mut results = merged.unwrap_or_default();
    for result in &mut results {
        result.hits = best_hits(std::mem::take(&mut result.hits), spec);
    }
    Ok(SearchResponse { results, model_id })
}

fn best_hits(mut hits: Vec<Hit>, spec: &MergeSpec) -> Vec<Hit> {
    hits.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then_with(|| face_id(a).cmp(face_id(b)))
    });
    let mut faces = HashSet::with_capacity(hits.len());
    let mut persons = HashSet::new();
    hits.into_iter()
        .filter(|hit| {
            let face = face_id(hit);
            if spec.leave_out.as_deref() == Some(face) || !faces.insert(face.to_owned()) {
                return false;
            }
            match person_id(hit) {
                Some(person) if spec.group_by_person => persons.insert(person.to_owned()),
                _ => true,
            }
        })
        .take(spec.limit)
        .collect()
}

fn face_id(hit: &Hit) -> &str {
    hit.face.as_ref().map_or("", |face| face.face_id.as_str())
}

/// The hit's person, when it is assigned to one.
fn person_id(hit: &Hit) -> Option<&str> {
    let person = hit.face.as_ref()?.person.as_ref()?;
    (person.state() == face_person::State::Assigned && !person.person_id.is_empty())
        .then_some(person.person_id.as_str())
}

#[cfg(test)]
mod tests {
    use facedex_proto::{Face, FacePerson};

    use super::*;

    fn hit(face_id: &str, similarity: f32, person: Option<&str>) -> Hit {
        Hit {
            similarity,
            face: Some(Face {
                face_id: face_id.into(),
                person: person.map(|person| FacePerson {
                    state: face_person::State::Assigned.into(),
                    person_id: person.into(),
                    person_name: String::new(),
                }),
                ..Face::default()
            }),
        }
    }

    fn answer(model_id: &str, results: Vec<Vec<Hit>>) -> SearchResponse {
        SearchResponse {
            model_id: model_id.into(),
            results: results
                .into_iter()
                .map(|hits| QueryResult {
                    query_face: None,
                    hits,
                    query_embedding: None,
                })
                .collect(),
        }
    }

    fn spec(limit: usize) -> MergeSpec {
        MergeSpec {
            limit,
            group_by_person: false,
            leave_out: None,
        }
    }

    fn ids(response: &SearchResponse, result: usize) -> Vec<&str> {
        response.results[result].hits.iter().map(face_id).collect()
    }

    #[test]
    fn the_best_hits_of_every_shard_merge_in_order_each_face_once() {
        let merged = merge(
            vec![
                (0, answer("m", vec![vec![hit("a", 0.9, None), hit("c", 0.5, None)]])),
                // A replica answering twice for one face (a retried call) or two shards
                // holding it for a moment: the face comes once.
                (1, answer("m", vec![vec![hit("b", 0.7, None), hit("a", 0.9, None)]])),
                (2, answer("", vec![vec![]])),
            ],
            &spec(3),
        )
        .expect("one model");
        assert_eq!(merged.model_id, "m");
        assert_eq!(ids(&merged, 0), ["a", "b", "c"]);
        let cut = merge(
            vec![(0, answer("m", vec![vec![hit("a", 0.9, None), hit("b", 0.2, None)]]))],
            &spec(1),
        )
        .expect("one shard");
        assert_eq!(ids(&cut, 0), ["a"]);
    }

    #[test]
    fn equal_similarities_order_by_face_id_whatever_shard_answered_first() {
        let shards = |first: usize, second: usize| {
            vec![
                (first, answer("m", vec![vec![hit("y", 0.5, None)]])),
                (second, answer("m", vec![vec![hit("x", 0.5, None)]])),
            ]
        };
        let forward = merge(shards(0, 1), &spec(10)).expect("merged");
        let backward = merge(shards(1, 0), &spec(10)).expect("merged");
        assert_eq!(ids(&forward, 0), ["x", "y"]);
        assert_eq!(forward, backward);
    }

    #[test]
    fn grouped_hits_keep_each_persons_best_face_and_the_query_face_stays_out() {
        let spec = MergeSpec {
            limit: 10,
            group_by_person: true,
            leave_out: Some("q".into()),
        };
        let merged = merge(
            vec![
                (
                    0,
                    answer("m", vec![vec![hit("q", 1.0, Some("p")), hit("a", 0.8, Some("p"))]]),
                ),
                (
                    1,
                    answer(
                        "m",
                        vec![vec![hit("b", 0.9, Some("p")), hit("c", 0.6, None), hit("d", 0.5, None)]],
                    ),
                ),
            ],
            &spec,
        )
        .expect("merged");
        assert_eq!(ids(&merged, 0), ["b", "c", "d"]);
    }

    #[test]
    fn photo_queries_merge_per_query_face_and_shards_that_disagree_are_named() {
        let merged = merge(
            vec![
                (
                    0,
                    answer("m", vec![vec![hit("a", 0.9, None)], vec![hit("b", 0.4, None)]]),
                ),
                (
                    1,
                    answer("m", vec![vec![hit("c", 0.3, None)], vec![hit("d", 0.8, None)]]),
                ),
            ],
            &spec(10),
        )
        .expect("merged");
        assert_eq!((ids(&merged, 0), ids(&merged, 1)), (vec!["a", "c"], vec!["d", "b"]));

        let models = merge(
            vec![(0, answer("m", vec![vec![]])), (1, answer("n", vec![vec![]]))],
            &spec(10),
        );
        assert!(
            matches!(&models, Err((1, ShardDisagreement::Model { first, other })) if first == "m" && other == "n"),
            "{models:?}"
        );
        let faces = merge(
            vec![(0, answer("m", vec![vec![]])), (3, answer("m", vec![]))],
            &spec(10),
        );
        assert_eq!(faces, Err((3, ShardDisagreement::QueryFaces { first: 1, other: 0 })));
    }
}
