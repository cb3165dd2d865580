//! [`Ranked`] and [`TopK`]: the ordering every search shares. The graph walk's heaps key
//! candidates by distance, exact scans keep their best in a [`TopK`]; neither knows the index.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// An id with a ranking key, ordered by the key (lower is better), then by id for determinism:
/// a max-heap of them keeps the worst on top. The graph walk keys by distance, [`TopK`] by
/// negated similarity (negation is exact, so the order is the similarity's, reversed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranked<Id> {
    pub(crate) key: f32,
    pub(crate) id: Id,
}

impl<Id: Ord> PartialEq for Ranked<Id> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<Id: Ord> Eq for Ranked<Id> {}

impl<Id: Ord> PartialOrd for Ranked<Id> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<Id: Ord> Ord for Ranked<Id> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.total_cmp(&other.key).then(self.id.cmp(&other.id))
    }
}

/// Keeps the `limit` most similar candidates seen (exact search).
pub(crate) struct TopK {
    limit: usize,
    heap: BinaryHeap<Ranked<usize>>,
}

impl TopK {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            heap: BinaryHeap::with_capacity(limit + 1),
        }
    }

    pub(crate) fn offer(&mut self, internal_id: usize, similarity: f32) {
        let candidate = Ranked {
            key: -similarity,
            id: internal_id,
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

    /// Whether a candidate this similar could enter: a cheap test before costlier checks.
    pub(crate) fn could_take(&self, similarity: f32) -> bool {
        self.heap.len() < self.limit || self.heap.peek().is_some_and(|worst| -similarity <= worst.key)
    }

    /// `(internal_id, similarity)`, most similar first.
    pub(crate) fn into_sorted(self) -> Vec<(usize, f32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|ranked| (ranked.id, -ranked.key))
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
        assert!(
            top.could_take(0.6) && top.could_take(0.5),
            "better than or tied with the worst kept"
        );
        assert!(!top.could_take(0.4));
        assert!(TopK::new(1).could_take(-1.0), "an empty heap takes anything");
        assert_eq!(top.into_sorted(), vec![(3, 0.95), (1, 0.9), (2, 0.5)]);
    }
}
