//! Cosine distance between unit embeddings, and the checks that make a vector one.
//!
//! ArcFace embeddings are L2-normalised, so cosine similarity is a dot product. `hnsw_rs`'s own
//! `DistDot` asserts `dot <= 1`, which unit f32 vectors break by rounding (a vector against
//! itself can give 1.0000001) and then panic; this distance clamps instead: `1 - min(dot, 1)`.
//! The dot product runs on the widest SIMD the CPU has (AVX-512, AVX2+FMA, SSE), chosen at run
//! time, so one binary is fast on every x86-64 and aarch64 machine.

use std::sync::LazyLock;

use anndists::dist::Distance;
use pulp::{Arch, Simd, WithSimd};

use crate::error::{IndexError, Result};

/// How far from 1 an embedding's L2 norm may be. ArcFace output normalised in f32 is within
/// 1e-6; 1e-3 also admits vectors that went through a text format with 6 significant digits.
pub const UNIT_NORM_TOLERANCE: f32 = 1e-3;

static ARCH: LazyLock<Arch> = LazyLock::new(Arch::new);

/// `1 - min(dot(a, b), 1)`: cosine distance for unit vectors, never negative, never panics.
///
/// The type name is written into every graph snapshot by `hnsw_rs` and checked on load:
/// renaming this type makes older snapshots unloadable.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnitCosineDistance;

impl Distance<f32> for UnitCosineDistance {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        1.0 - dot(va, vb).min(1.0)
    }
}

/// Converts a distance from [`UnitCosineDistance`] back to cosine similarity.
pub fn similarity_from_distance(distance: f32) -> f32 {
    1.0 - distance
}

/// The dot product of two equally long slices, SIMD-dispatched.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    ARCH.dispatch(DotProduct { a, b })
}

struct DotProduct<'a> {
    a: &'a [f32],
    b: &'a [f32],
}

impl WithSimd for DotProduct<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f32 {
        let (a_lanes, a_tail) = S::as_simd_f32s(self.a);
        let (b_lanes, b_tail) = S::as_simd_f32s(self.b);
        // Four independent accumulators hide the FMA latency.
        let (a_quads, a_rest) = pulp::as_arrays::<4, _>(a_lanes);
        let (b_quads, b_rest) = pulp::as_arrays::<4, _>(b_lanes);
        let mut acc = [simd.splat_f32s(0.0); 4];
        for (a, b) in a_quads.iter().zip(b_quads) {
            for lane in 0..4 {
                acc[lane] = simd.mul_add_f32s(a[lane], b[lane], acc[lane]);
            }
        }
        for (a, b) in a_rest.iter().zip(b_rest) {
            acc[0] = simd.mul_add_f32s(*a, *b, acc[0]);
        }
        let sum = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
        let mut total = simd.reduce_sum_f32s(sum);
        for (a, b) in a_tail.iter().zip(b_tail) {
            total += a * b;
        }
        total
    }
}

/// The dot products of `query` with four equally long vectors at once: four independent
/// streams through memory, so a graph search waits for four cache-missing vectors at a time
/// instead of one (faiss's `distances_batch_4`).
pub fn dot4(query: &[f32], vectors: [&[f32]; 4]) -> [f32; 4] {
    ARCH.dispatch(DotProduct4 { query, vectors })
}

struct DotProduct4<'a> {
    query: &'a [f32],
    vectors: [&'a [f32]; 4],
}

impl WithSimd for DotProduct4<'_> {
    type Output = [f32; 4];

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> [f32; 4] {
        let (query_lanes, query_tail) = S::as_simd_f32s(self.query);
        let [(a, a_tail), (b, b_tail), (c, c_tail), (d, d_tail)] = self.vectors.map(S::as_simd_f32s);
        let mut acc = [simd.splat_f32s(0.0); 4];
        for ((((q, a), b), c), d) in query_lanes.iter().zip(a).zip(b).zip(c).zip(d) {
            acc[0] = simd.mul_add_f32s(*q, *a, acc[0]);
            acc[1] = simd.mul_add_f32s(*q, *b, acc[1]);
            acc[2] = simd.mul_add_f32s(*q, *c, acc[2]);
            acc[3] = simd.mul_add_f32s(*q, *d, acc[3]);
        }
        let tails = [a_tail, b_tail, c_tail, d_tail];
        std::array::from_fn(|k| {
            let tail: f32 = query_tail.iter().zip(tails[k]).map(|(q, v)| q * v).sum();
            simd.reduce_sum_f32s(acc[k]) + tail
        })
    }
}

/// Quantises `vector` to 8 bits into `code` (one `i8` per component, scaled so the largest
/// magnitude becomes 127) and returns the step: `vector[i] ≈ code[i] × step`. For a 512-d unit
/// vector the dot product of two codes is within ~1e-3 of the exact one, far finer than the
/// gaps a graph walk ranks by, and a code is a quarter of the bytes to bring in from memory.
pub fn quantize(vector: &[f32], code: &mut [i8]) -> f32 {
    let largest = vector.iter().fold(0.0_f32, |largest, x| largest.max(x.abs()));
    if largest == 0.0 || !largest.is_finite() {
        code.fill(0);
        return 0.0;
    }
    let step = largest / 127.0;
    for (c, x) in code.iter_mut().zip(vector) {
        *c = (x / step).round().clamp(-127.0, 127.0) as i8;
    }
    step
}

/// The dot products of an 8-bit `query` code with four codes at once, exact in `i32`
/// (127² × 512 fits many times over). Like [`dot4`], four streams through memory at a time.
pub fn dot4_i8(query: &[i8], codes: [&[i8]; 4]) -> [i32; 4] {
    ARCH.dispatch(DotProduct4I8 { query, codes })
}

struct DotProduct4I8<'a> {
    query: &'a [i8],
    codes: [&'a [i8]; 4],
}

impl WithSimd for DotProduct4I8<'_> {
    type Output = [i32; 4];

    /// A plain loop: dispatched with the CPU's features enabled, the compiler vectorises it
    /// across the widest registers there are (on AVX-512: sign-extend 16 codes to `i32`,
    /// multiply, add; `vpmaddwd` on `i16` pairs would halve the work, not tried yet).
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> [i32; 4] {
        let length = self
            .codes
            .iter()
            .fold(self.query.len(), |length, code| length.min(code.len()));
        let query = &self.query[..length];
        let [a, b, c, d] = self.codes.map(|code| &code[..length]);
        let mut sums = [0_i32; 4];
        for i in 0..length {
            let q = i32::from(query[i]);
            sums[0] += q * i32::from(a[i]);
            sums[1] += q * i32::from(b[i]);
            sums[2] += q * i32::from(c[i]);
            sums[3] += q * i32::from(d[i]);
        }
        sums
    }
}

/// Checks that `vector` is a finite unit vector of `dimension` components; `what` names it in
/// the error ("the query vector", "the embedding of face …").
pub fn check_embedding(what: &str, vector: &[f32], dimension: usize) -> Result<()> {
    if vector.len() != dimension {
        return Err(IndexError::DimensionMismatch {
            what: what.to_owned(),
            expected: dimension,
            actual: vector.len(),
        });
    }
    if let Some((position, value)) = vector.iter().enumerate().find(|(_, value)| !value.is_finite()) {
        return Err(IndexError::NonFiniteValue {
            what: what.to_owned(),
            position,
            value: *value,
        });
    }
    let norm = dot(vector, vector).sqrt();
    if (norm - 1.0).abs() > UNIT_NORM_TOLERANCE {
        return Err(IndexError::NotUnitVector {
            what: what.to_owned(),
            norm,
            tolerance: UNIT_NORM_TOLERANCE,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn simd_dot_matches_scalar_for_every_length_up_to_100() {
        for len in 0..100 {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            assert!((dot(&a, &b) - scalar_dot(&a, &b)).abs() < 1e-4, "length {len}");
        }
    }

    #[test]
    fn dot4_matches_scalar_for_every_length_up_to_100() {
        for len in 0..100 {
            let vectors: Vec<Vec<f32>> = (0..5)
                .map(|k| (0..len).map(|i| ((i * 7 + k * 13) as f32 * 0.37).sin()).collect())
                .collect();
            let four = dot4(&vectors[4], [&vectors[0], &vectors[1], &vectors[2], &vectors[3]]);
            for k in 0..4 {
                assert!(
                    (four[k] - scalar_dot(&vectors[4], &vectors[k])).abs() < 1e-4,
                    "length {len}, vector {k}"
                );
            }
        }
    }

    #[test]
    fn dot4_i8_matches_scalar_and_codes_keep_dot_products_within_1e_3() {
        let dimension = 512;
        let unit = |seed: usize| {
            let v: Vec<f32> = (0..dimension)
                .map(|i| ((i * 31 + seed * 17) as f32 * 0.013).sin())
                .collect();
            let norm = scalar_dot(&v, &v).sqrt();
            v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
        };
        let vectors: Vec<Vec<f32>> = (0..5).map(unit).collect();
        let mut codes = vec![vec![0_i8; dimension]; 5];
        let steps: Vec<f32> = vectors.iter().zip(&mut codes).map(|(v, c)| quantize(v, c)).collect();
        let four = dot4_i8(&codes[4], [&codes[0], &codes[1], &codes[2], &codes[3]]);
        for k in 0..4 {
            let scalar: i32 = codes[4]
                .iter()
                .zip(&codes[k])
                .map(|(a, b)| i32::from(*a) * i32::from(*b))
                .sum();
            assert_eq!(four[k], scalar, "vector {k}");
            let approximate = four[k] as f32 * steps[4] * steps[k];
            let exact = scalar_dot(&vectors[4], &vectors[k]);
            assert!(
                (approximate - exact).abs() < 1e-3,
                "vector {k}: {approximate} vs {exact}"
            );
        }
        let mut zero = vec![5_i8; 3];
        assert_eq!(quantize(&[0.0; 3], &mut zero), 0.0);
        assert_eq!(zero, vec![0; 3], "a zero vector codes to zeros");
    }

    #[test]
    fn distance_clamps_rounding_above_one_instead_of_going_negative() {
        let v = vec![1.000_001_f32, 0.0];
        assert_eq!(UnitCosineDistance.eval(&v, &v), 0.0);
    }

    #[test]
    fn check_embedding_names_the_problem() {
        let unit = vec![0.6, 0.8];
        assert!(check_embedding("v", &unit, 2).is_ok());
        assert!(matches!(
            check_embedding("v", &unit, 3),
            Err(IndexError::DimensionMismatch {
                expected: 3,
                actual: 2,
                ..
            })
        ));
        assert!(matches!(
            check_embedding("v", &[f32::NAN, 1.0], 2),
            Err(IndexError::NonFiniteValue { position: 0, .. })
        ));
        assert!(matches!(
            check_embedding("v", &[0.0, f32::INFINITY], 2),
            Err(IndexError::NonFiniteValue { .. })
        ));
        let message = check_embedding("the query vector", &[3.0, 4.0], 2)
            .expect_err("norm 5")
            .to_string();
        assert!(message.contains("the query vector has L2 norm 5.0"), "{message}");
    }
}
