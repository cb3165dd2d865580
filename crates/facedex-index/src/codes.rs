//! 8-bit copies of the graph's vectors, side by side in one array, for the graph walk.
//!
//! A search is bound by memory: at 1M faces almost every vector it scores is a cache miss, and
//! `hnsw_rs` keeps each vector behind two pointers (an `Arc<Point>`, then the `Vec`). The walk
//! scores 8-bit codes instead (512 B per face at 512 dimensions instead of 2 KiB, found at
//! `id × dimension`), then the candidates it keeps are scored again exactly from the f32
//! vectors, so results are ranked by exact similarity (Qdrant's scalar quantisation with
//! rescoring works the same way).

use crate::distance::{dot4_i8, quantize};

/// The codes of every point of a graph copy, by internal id.
#[derive(Clone)]
pub(crate) struct VectorCodes {
    dimension: usize,
    /// Point `i`'s code is `codes[i × dimension..(i + 1) × dimension]`.
    codes: Vec<i8>,
    /// Point `i`'s quantisation step (0 for an id the graph lacks: similarity 0 to anything).
    steps: Vec<f32>,
    /// The code of an id beyond the copy.
    zeros: Box<[i8]>,
}

/// A query coded like the points, to score against them.
pub(crate) struct QueryCode {
    code: Vec<i8>,
    step: f32,
}

impl QueryCode {
    pub(crate) fn new(query: &[f32]) -> Self {
        let mut code = vec![0; query.len()];
        let step = quantize(query, &mut code);
        Self { code, step }
    }
}

impl VectorCodes {
    /// Codes for `vectors` (by internal id; `None` for ids without a vector) of `dimension`
    /// components. The ids `earlier` has a code for take it from there instead of coding their
    /// vector again: the caller passes the codes of the same ids' same vectors, or `None`.
    pub(crate) fn new<'a>(
        dimension: usize,
        vectors: impl ExactSizeIterator<Item = Option<&'a [f32]>>,
        earlier: Option<&VectorCodes>,
    ) -> Self {
        let mut codes = Self::zeroed(dimension, vectors.len());
        let earlier = earlier.filter(|earlier| earlier.dimension == dimension);
        let reused = earlier.map_or(0, |earlier| earlier.steps.len().min(codes.steps.len()));
        if let Some(earlier) = earlier {
            codes.codes[..reused * dimension].copy_from_slice(&earlier.codes[..reused * dimension]);
            codes.steps[..reused].copy_from_slice(&earlier.steps[..reused]);
        }
        for (id, vector) in vectors.enumerate() {
            // An id without a code before (step 0) may have a vector now.
            if id < reused && codes.steps[id] != 0.0 {
                continue;
            }
            if let Some(vector) = vector {
                codes.set(id, vector);
            }
        }
        codes
    }

    /// Codes for `points` ids, none of which has a vector yet (see [`Self::set`]).
    pub(crate) fn zeroed(dimension: usize, points: usize) -> Self {
        Self {
            dimension,
            codes: vec![0; points * dimension],
            steps: vec![0.0; points],
            zeros: vec![0; dimension].into(),
        }
    }

    /// Codes `vector` as the point `id`'s; a vector of another dimension or an id beyond the
    /// codes is ignored (the point keeps no code: similarity 0 to anything).
    pub(crate) fn set(&mut self, id: usize, vector: &[f32]) {
        if vector.len() != self.dimension || id >= self.steps.len() {
            return;
        }
        let code = &mut self.codes[id * self.dimension..(id + 1) * self.dimension];
        self.steps[id] = quantize(vector, code);
    }

    fn code(&self, internal_id: u32) -> &[i8] {
        let start = internal_id as usize * self.dimension;
        self.codes.get(start..start + self.dimension).unwrap_or(&self.zeros)
    }

    /// Approximate cosine distances (`1 − min(dot, 1)`) from `query` to the (1 to 4) points of
    /// `ids`, four codes at a time; slots past `ids.len()` are not meaningful.
    pub(crate) fn distances(&self, query: &QueryCode, ids: &[u32]) -> [f32; 4] {
        let pick = |k: usize| ids[k.min(ids.len().saturating_sub(1))];
        let chosen: [u32; 4] = std::array::from_fn(pick);
        let dots = dot4_i8(&query.code, chosen.map(|id| self.code(id)));
        std::array::from_fn(|k| {
            let step = self.steps.get(chosen[k] as usize).copied().unwrap_or(0.0);
            1.0 - (dots[k] as f32 * query.step * step).min(1.0)
        })
    }

    /// Asks the CPU to start bringing the codes of `ids` into cache, so that the walk scores
    /// one group of neighbours while the next group's codes are on their way (hnswlib and faiss
    /// prefetch the same way). A hint only: nothing is read (an id beyond the copy hints at the
    /// shared zero code).
    pub(crate) fn prefetch(&self, ids: &[u32]) {
        for &id in ids {
            crate::distance::prefetch(self.code(id));
        }
    }

    /// The approximate distance from `query` to one point.
    pub(crate) fn distance(&self, query: &QueryCode, id: u32) -> f32 {
        self.distances(query, &[id])[0]
    }

    /// Bytes the codes take.
    pub(crate) fn bytes(&self) -> usize {
        self.codes.len() + self.steps.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_approximate_the_exact_ones_and_a_missing_vector_is_far() {
        let vectors: Vec<Vec<f32>> = vec![vec![0.6, 0.8, 0.0], vec![0.0, 0.6, 0.8], vec![1.0, 0.0, 0.0]];
        let codes = VectorCodes::new(
            3,
            vectors
                .iter()
                .map(|v| Some(v.as_slice()))
                .chain([None])
                .collect::<Vec<_>>()
                .into_iter(),
            None,
        );
        let query = QueryCode::new(&[0.6, 0.8, 0.0]);
        let distances = codes.distances(&query, &[0, 1, 2, 3]);
        let exact = [0.0, 1.0 - 0.48, 1.0 - 0.6, 1.0];
        for k in 0..4 {
            assert!(
                (distances[k] - exact[k]).abs() < 0.02,
                "point {k}: {} vs {}",
                distances[k],
                exact[k]
            );
        }
        assert_eq!(codes.distance(&query, 1), distances[1], "one at a time gives the same");
        assert_eq!(codes.distance(&query, 99), 1.0, "an id beyond the copy has no code");
    }

    #[test]
    fn codes_taken_from_an_earlier_copy_equal_codes_made_afresh() {
        let vectors: Vec<Vec<f32>> = vec![vec![0.6, 0.8, 0.0], vec![0.0, 0.6, 0.8], vec![1.0, 0.0, 0.0]];
        let of = |count: usize, missing: Option<usize>| {
            (0..count)
                .map(|id| (Some(id) != missing).then(|| vectors[id].as_slice()))
                .collect::<Vec<_>>()
                .into_iter()
        };
        // The earlier copy lacked id 1's vector and did not cover id 2.
        let earlier = VectorCodes::new(3, of(2, Some(1)), None);
        let reused = VectorCodes::new(3, of(3, None), Some(&earlier));
        let afresh = VectorCodes::new(3, of(3, None), None);
        assert_eq!(reused.codes, afresh.codes);
        assert_eq!(reused.steps, afresh.steps);
    }
}
