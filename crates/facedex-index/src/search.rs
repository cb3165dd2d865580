//! Search: requests and results (top-k by cosine similarity, a similarity floor, filters on
//! image URI, face ids and model) and how the index answers them — graph, exact, or exact over
//! the few faces a selective filter allows.

use std::collections::HashSet;

use crate::config::MAX_SEARCH_LIMIT;
use crate::distance::{check_embedding, dot};
use crate::error::{IndexError, Result};
use crate::index::{FaceIndex, IndexState};
use crate::people::{PersonId, PersonStatus, status};
use crate::ranked::TopK;
use crate::record::{FaceId, FaceMetadata};
use crate::traits::TraitFilter;

/// What to search for and how.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The unit query embedding.
    pub vector: Vec<f32>,
    /// How many hits at most (1..=[`crate::MAX_SEARCH_LIMIT`]).
    pub limit: usize,
    /// Drop hits below this cosine similarity.
    pub min_score: Option<f32>,
    /// HNSW candidate list size; the index default when `None`. Raised to `limit` if lower.
    /// An index of several segments shares it among them by size (see `segments.rs`).
    pub ef: Option<usize>,
    /// Brute force over every face instead of the graph: slow, exact, for checking recall.
    pub exact: bool,
    /// Which faces may be returned.
    pub filter: FaceFilter,
    /// At most one hit per person (its best face); faces in no person are their own group.
    pub group_by_person: bool,
}

impl SearchQuery {
    /// A query for the `limit` nearest faces to `vector`, no threshold, no filter.
    pub fn nearest(vector: Vec<f32>, limit: usize) -> Self {
        Self {
            vector,
            limit,
            min_score: None,
            ef: None,
            exact: false,
            filter: FaceFilter::default(),
            group_by_person: false,
        }
    }
}

/// Restricts which faces a search may return. Empty means every face.
#[derive(Debug, Clone, Default)]
pub struct FaceFilter {
    /// Only faces of images whose URI starts with this.
    pub image_uri_prefix: Option<String>,
    /// Only these faces (when set).
    pub include_face_ids: Option<HashSet<FaceId>>,
    /// Never these faces.
    pub exclude_face_ids: HashSet<FaceId>,
    /// Only faces of these persons (when set).
    pub person_ids: Option<HashSet<PersonId>>,
    /// The model the caller's embeddings come from: a mismatch with the index is an error,
    /// not an empty result, because the similarities would be meaningless.
    pub model_id: Option<String>,
    /// Conditions on age, gender and quality.
    pub traits: TraitFilter,
}

impl FaceFilter {
    /// Whether the filter lets every face through (the model check aside).
    pub fn is_empty(&self) -> bool {
        self.image_uri_prefix.is_none()
            && self.include_face_ids.is_none()
            && self.exclude_face_ids.is_empty()
            && self.person_ids.is_none()
            && self.traits.is_empty()
    }

    /// Whether the face passes every condition except the model check.
    pub(crate) fn accepts(&self, face_id: &FaceId, metadata: &FaceMetadata) -> bool {
        if self.exclude_face_ids.contains(face_id) {
            return false;
        }
        if let Some(include) = &self.include_face_ids
            && !include.contains(face_id)
        {
            return false;
        }
        if let Some(prefix) = &self.image_uri_prefix
            && !metadata.image_uri.starts_with(prefix.as_str())
        {
            return false;
        }
        self.traits.accepts(&metadata.traits)
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The face found.
    pub face_id: FaceId,
    /// Cosine similarity to the query (1 − distance), higher is closer.
    pub similarity: f32,
    /// Where the face is.
    pub metadata: FaceMetadata,
    /// The face's person, or why it has none.
    pub person: PersonStatus,
}

/// A filter matching at most this many faces is answered by exact search over them: a graph
/// search that must skip almost every node finds too few.
const EXACT_SEARCH_FILTER_THRESHOLD: usize = 20_000;

/// How many more faces a search grouped by person ranks than it returns.
const GROUPED_SEARCH_WIDENING: usize = 4;

impl FaceIndex {
    /// The `query.limit` faces most similar to `query.vector` that pass the filter.
    pub fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
        self.check_query(query)?;
        let state = self.state.read();
        if let Some(model_id) = &query.filter.model_id {
            state.check_model("the query", model_id)?;
        }
        let candidates = self.filtered_candidates(&state, &query.filter);
        // Grouped, several faces of one person may crowd the top: look further, then keep each
        // person's best.
        let widened;
        let ranking_query = match query.group_by_person {
            true => {
                widened = SearchQuery {
                    limit: query.limit * GROUPED_SEARCH_WIDENING,
                    ..query.clone()
                };
                &widened
            }
            false => query,
        };
        let ef = query.ef.unwrap_or(self.config.default_ef_search);
        let ranked: Vec<(usize, f32)> = match (query.exact, candidates) {
            (_, Some(candidates)) => self.exact_over(&state, &candidates, ranking_query),
            (true, None) => exact_over_segments(&state, ranking_query)?,
            (false, None) => graph_search(&state, ranking_query, ef.max(ranking_query.limit)),
        };
        let mut seen_persons = HashSet::new();
        Ok(ranked
            .into_iter()
            .filter(|(_, similarity)| query.min_score.is_none_or(|floor| *similarity >= floor))
            .filter_map(|(internal_id, similarity)| {
                let face = state.ids.live_face(internal_id)?;
                let person = status(&state, &self.config.people, face);
                if query.group_by_person
                    && let PersonStatus::Assigned(person) = &person
                    && !seen_persons.insert(person.person_id)
                {
                    return None;
                }
                Some(SearchHit {
                    face_id: face.face_id,
                    similarity,
                    metadata: face.metadata.clone(),
                    person,
                })
            })
            .take(query.limit)
            .collect())
    }

    fn check_query(&self, query: &SearchQuery) -> Result<()> {
        check_embedding("the query vector", &query.vector, self.config.dimension)?;
        if query.limit == 0 || query.limit > MAX_SEARCH_LIMIT {
            return Err(IndexError::InvalidLimit {
                limit: query.limit,
                max: MAX_SEARCH_LIMIT,
            });
        }
        let max_ef = self.config.max_ef_search;
        if let Some(ef) = query.ef
            && !(1..=max_ef).contains(&ef)
        {
            return Err(IndexError::InvalidEf { ef, max: max_ef });
        }
        if let Some(min_score) = query.min_score
            && !(-1.0..=1.0).contains(&min_score)
        {
            return Err(IndexError::InvalidMinScore { min_score });
        }
        Ok(())
    }

    /// The internal ids a selective filter allows, when few enough for exact search.
    fn filtered_candidates(&self, state: &IndexState, filter: &FaceFilter) -> Option<Vec<usize>> {
        if let Some(persons) = &filter.person_ids {
            // Exact over the persons' faces: every other condition is checked per face.
            return Some(
                persons
                    .iter()
                    .filter_map(|person_id| state.people.get(person_id))
                    .flat_map(|person| person.faces.iter())
                    .filter(|face_id| {
                        filter
                            .include_face_ids
                            .as_ref()
                            .is_none_or(|include| include.contains(face_id))
                    })
                    .filter_map(|face_id| state.ids.internal_id(face_id))
                    .collect(),
            );
        }
        if let Some(include) = &filter.include_face_ids {
            return Some(include.iter().filter_map(|id| state.ids.internal_id(id)).collect());
        }
        let prefix = filter.image_uri_prefix.as_deref()?;
        let mut candidates = Vec::new();
        for internal_id in state.ids.with_image_prefix(prefix) {
            candidates.push(internal_id);
            if candidates.len() > EXACT_SEARCH_FILTER_THRESHOLD {
                return None;
            }
        }
        Some(candidates)
    }

    fn exact_over(&self, state: &IndexState, candidates: &[usize], query: &SearchQuery) -> Vec<(usize, f32)> {
        let mut top = TopK::new(query.limit);
        for &internal_id in candidates {
            let Some(face) = state.ids.live_face(internal_id) else {
                continue;
            };
            if !query.filter.accepts(&face.face_id, &face.metadata) {
                continue;
            }
            if let Some(vector) = state.vector(internal_id) {
                top.offer(internal_id, dot(&query.vector, &vector).min(1.0));
            }
        }
        top.into_sorted()
    }
}

/// HNSW search over every segment's flat copy of its graph, filtered inside the walks
/// (deleted faces and what the user's filter refuses are walked through but never returned),
/// plus brute force over the points no copy serves: those inserted since the last freeze and
/// the ones no graph search reaches (`hnsw_rs` #37).
fn graph_search(state: &IndexState, query: &SearchQuery, ef: usize) -> Vec<(usize, f32)> {
    let unfiltered = query.filter.is_empty();
    let accepts = |internal_id: usize| {
        state.ids.is_live(internal_id)
            && (unfiltered
                || state
                    .ids
                    .live_face(internal_id)
                    .is_some_and(|face| query.filter.accepts(&face.face_id, &face.metadata)))
    };
    let graph_hits = state.walk(&query.vector, ef, query.limit, &accepts);
    let mut top = TopK::new(query.limit);
    for &(internal_id, similarity) in &graph_hits {
        top.offer(internal_id, similarity);
    }
    for (internal_id, vector) in state.orphans.iter().chain(&state.unfrozen) {
        // Score first: most of these cannot enter the top k, and for them the lookups behind
        // `accepts` would cost more than the dot product. An orphan may also have been found
        // through the graph (it is unreachable only from its own vector's point of view).
        let similarity = dot(&query.vector, vector).min(1.0);
        if top.could_take(similarity) && accepts(*internal_id) && !graph_hits.iter().any(|(hit, _)| hit == internal_id)
        {
            top.offer(*internal_id, similarity);
        }
    }
    top.into_sorted()
}

/// Brute force over every live face of every segment.
fn exact_over_segments(state: &IndexState, query: &SearchQuery) -> Result<Vec<(usize, f32)>> {
    let mut top = TopK::new(query.limit);
    state.for_each_vector(|internal_id, vector| {
        if let Some(face) = state.ids.live_face(internal_id)
            && query.filter.accepts(&face.face_id, &face.metadata)
        {
            top.offer(internal_id, dot(&query.vector, vector).min(1.0));
        }
    })?;
    Ok(top.into_sorted())
}
