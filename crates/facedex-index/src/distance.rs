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
///
/// On x86 the codes are widened to `i16` and multiplied and summed pairwise (`vpmaddwd`): one
/// instruction for 32 products on AVX-512, where the compiler's own vectorisation of the plain
/// loop widens to `i32` and multiplies with `vpmulld`, two instructions for 16. Elsewhere the
/// plain loop.
pub fn dot4_i8(query: &[i8], codes: [&[i8]; 4]) -> [i32; 4] {
    #[cfg(target_arch = "x86_64")]
    match *X86_LEVEL {
        X86Level::V4(simd) => return pairwise_x86::dot4_v4(simd, query, codes),
        X86Level::V3(simd) => return pairwise_x86::dot4_v3(simd, query, codes),
        X86Level::Older => {}
    }
    ARCH.dispatch(DotProduct4I8 { query, codes })
}

#[cfg(target_arch = "x86_64")]
enum X86Level {
    V4(pulp::x86::V4),
    V3(pulp::x86::V3),
    Older,
}

#[cfg(target_arch = "x86_64")]
static X86_LEVEL: LazyLock<X86Level> = LazyLock::new(|| {
    if let Some(simd) = pulp::x86::V4::try_new() {
        X86Level::V4(simd)
    } else if let Some(simd) = pulp::x86::V3::try_new() {
        X86Level::V3(simd)
    } else {
        X86Level::Older
    }
});

/// Asks the CPU to start loading every cache line of `bytes` (a hint: it never faults and
/// changes nothing; a no-op off x86).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub fn prefetch<T>(bytes: &[T]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(sse) = *SSE {
        const CACHE_LINE: usize = 64;
        let start = bytes.as_ptr().cast::<i8>();
        for offset in (0..std::mem::size_of_val(bytes)).step_by(CACHE_LINE) {
            sse._mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(start.wrapping_add(offset));
        }
    }
}

#[cfg(target_arch = "x86_64")]
static SSE: LazyLock<Option<pulp::core_arch::x86::Sse>> = LazyLock::new(pulp::core_arch::x86::Sse::try_new);

/// The length the query and the four codes have in common: the components a kernel scores.
fn common_length(query: &[i8], codes: [&[i8]; 4]) -> usize {
    codes.iter().fold(query.len(), |length, code| length.min(code.len()))
}

/// The codes' common length and the scalar dot products of the components past the last
/// whole block of `block` components.
#[cfg(target_arch = "x86_64")]
fn dot4_i8_tail(query: &[i8], codes: [&[i8]; 4], block: usize) -> (usize, [i32; 4]) {
    let length = common_length(query, codes);
    let whole = length - length % block;
    let tail = std::array::from_fn(|k| {
        query[whole..length]
            .iter()
            .zip(&codes[k][whole..length])
            .map(|(&q, &c)| i32::from(q) * i32::from(c))
            .sum()
    });
    (whole, tail)
}

#[cfg(target_arch = "x86_64")]
mod pairwise_x86 {
    use pulp::cast;
    use pulp::x86::{V3, V4};

    use super::dot4_i8_tail;

    pub(super) fn dot4_v4(simd: V4, query: &[i8], codes: [&[i8]; 4]) -> [i32; 4] {
        simd.vectorize(
            #[inline(always)]
            || {
                let (whole, tail) = dot4_i8_tail(query, codes, 32);
                let widen = |bytes: &[i8; 32]| simd.avx512bw._mm512_cvtepi8_epi16(cast(*bytes));
                let (query_blocks, _) = query[..whole].as_chunks::<32>();
                let [a, b, c, d] = codes.map(|code| code[..whole].as_chunks::<32>().0);
                let mut sums = [simd.avx512f._mm512_setzero_si512(); 4];
                for ((((q, a), b), c), d) in query_blocks.iter().zip(a).zip(b).zip(c).zip(d) {
                    let q = widen(q);
                    for (sum, code) in sums.iter_mut().zip([a, b, c, d]) {
                        let products = simd.avx512bw._mm512_madd_epi16(q, widen(code));
                        *sum = simd.avx512f._mm512_add_epi32(*sum, products);
                    }
                }
                std::array::from_fn(|k| simd.avx512f._mm512_reduce_add_epi32(sums[k]) + tail[k])
            },
        )
    }

    pub(super) fn dot4_v3(simd: V3, query: &[i8], codes: [&[i8]; 4]) -> [i32; 4] {
        simd.vectorize(
            #[inline(always)]
            || {
                let (whole, tail) = dot4_i8_tail(query, codes, 16);
                let widen = |bytes: &[i8; 16]| simd.avx2._mm256_cvtepi8_epi16(cast(*bytes));
                let (query_blocks, _) = query[..whole].as_chunks::<16>();
                let [a, b, c, d] = codes.map(|code| code[..whole].as_chunks::<16>().0);
                let mut sums = [simd.avx._mm256_setzero_si256(); 4];
                for ((((q, a), b), c), d) in query_blocks.iter().zip(a).zip(b).zip(c).zip(d) {
                    let q = widen(q);
                    for (sum, code) in sums.iter_mut().zip([a, b, c, d]) {
                        let products = simd.avx2._mm256_madd_epi16(q, widen(code));
                        *sum = simd.avx2._mm256_add_epi32(*sum, products);
                    }
                }
                std::array::from_fn(|k| cast::<_, [i32; 8]>(sums[k]).iter().sum::<i32>() + tail[k])
            },
        )
    }
}

/// The portable kernel (for CPUs without AVX2).
struct DotProduct4I8<'a> {
    query: &'a [i8],
    codes: [&'a [i8]; 4],
}

impl WithSimd for DotProduct4I8<'_> {
    type Output = [i32; 4];

    /// A plain loop, which the compiler vectorises for the CPU's features (on x86 it widens to
    /// `i32` and multiplies with `vpmulld`: the explicit kernels above do half the work).
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> [i32; 4] {
        let length = common_length(self.query, self.codes);
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
    fn every_i8_kernel_matches_scalar_for_every_length_up_to_100_and_the_extremes() {
        let code = |seed: i32, length: usize| -> Vec<i8> {
            (0..length as i32)
                .map(|i| match (i * 7 + seed) % 11 {
                    0 => 127,
                    1 => -127,
                    r => (((i * 37 + seed * 101) % 255) - 127 + r).clamp(-127, 127) as i8,
                })
                .collect()
        };
        for length in 0..=100 {
            let query = code(0, length);
            let codes: Vec<Vec<i8>> = (1..=4).map(|seed| code(seed, length)).collect();
            let four = [&codes[0][..], &codes[1], &codes[2], &codes[3]];
            let scalar = four.map(|c| {
                query
                    .iter()
                    .zip(c)
                    .map(|(&q, &c)| i32::from(q) * i32::from(c))
                    .sum::<i32>()
            });
            assert_eq!(dot4_i8(&query, four), scalar, "dispatched, length {length}");
            let portable = ARCH.dispatch(DotProduct4I8 {
                query: &query,
                codes: four,
            });
            assert_eq!(portable, scalar, "portable, length {length}");
            #[cfg(target_arch = "x86_64")]
            {
                if let Some(simd) = pulp::x86::V4::try_new() {
                    assert_eq!(
                        pairwise_x86::dot4_v4(simd, &query, four),
                        scalar,
                        "AVX-512, length {length}"
                    );
                }
                if let Some(simd) = pulp::x86::V3::try_new() {
                    assert_eq!(
                        pairwise_x86::dot4_v3(simd, &query, four),
                        scalar,
                        "AVX2, length {length}"
                    );
                }
            }
        }
        let extreme = vec![-127_i8; 512];
        let sum = dot4_i8(&extreme, [&extreme, &extreme, &extreme, &extreme]);
        assert_eq!(sum, [127 * 127 * 512; 4], "the largest sum does not overflow");
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
