//! Search requests and results: top-k by cosine similarity, a similarity floor, and filters on
//! image URI, face ids and model.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use crate::record::{FaceId, FaceMetadata};

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
    pub ef: Option<usize>,
    /// Brute force over every face instead of the graph: slow, exact, for checking recall.
    pub exact: bool,
    /// Which faces may be returned.
    pub filter: FaceFilter,
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
    /// The model the caller's embeddings come from: a mismatch with the index is an error,
    /// not an empty result, because the similarities would be meaningless.
    pub model_id: Option<String>,
}

impl FaceFilter {
    /// Whether the filter lets every face through (the model check aside).
    pub fn is_empty(&self) -> bool {
        self.image_uri_prefix.is_none() && self.include_face_ids.is_none() && self.exclude_face_ids.is_empty()
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
        match &self.image_uri_prefix {
            Some(prefix) => metadata.image_uri.starts_with(prefix.as_str()),
            None => true,
        }
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
}

/// An internal id with its similarity, ordered so that a max-heap keeps the worst on top.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    similarity: f32,
    internal_id: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    /// Lower similarity is "greater" (worse); ties broken by internal id for determinism.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .similarity
            .total_cmp(&self.similarity)
            .then(self.internal_id.cmp(&other.internal_id))
    }
}

/// Keeps the `limit` most similar candidates seen (exact search).
pub(crate) struct TopK {
    limit: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            heap: BinaryHeap::with_capacity(limit + 1),
        }
    }

    pub(crate) fn offer(&mut self, internal_id: usize, similarity: f32) {
        let candidate = Candidate {
            similarity,
            internal_id,
        };
        if self.heap.len() < self.limit {
            self.heap.push(candidate);
        } else if let Some(worst) = self.heap.peek()
            && candidate < *worst
        {
            self.heap.pop();
            self.heap.push(candidate);
        }
    }

    /// `(internal_id, similarity)`, most similar first.
    pub(crate) fn into_sorted(self) -> Vec<(usize, f32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|c| (c.internal_id, c.similarity))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_most_similar_in_order() {
        let mut top = TopK::new(3);
        for (id, similarity) in [(0, 0.1), (1, 0.9), (2, 0.5), (3, 0.95), (4, -0.3), (5, 0.5)] {
            top.offer(id, similarity);
        }
        assert_eq!(top.into_sorted(), vec![(3, 0.95), (1, 0.9), (2, 0.5)]);
    }
}
