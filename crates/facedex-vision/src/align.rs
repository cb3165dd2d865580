//! 5-point face alignment to the ArcFace template: the least-squares similarity transform
//! (Umeyama's method, as scikit-image's `SimilarityTransform.estimate`) from the detected
//! landmarks to the template, then a bilinear warp to 112×112 with a black border, sampling
//! like OpenCV's `warpAffine` (destination pixel `p` reads source point `M⁻¹·p`).

use image::RgbImage;

use crate::scrfd::DetectedFace;

/// Side of an aligned face crop.
pub const ALIGNED_SIZE: usize = 112;

/// Bytes of one aligned crop (`112 × 112` RGB): the unit every embedder input is counted in.
pub const CROP_BYTES: usize = ALIGNED_SIZE * ALIGNED_SIZE * 3;

/// ArcFace's landmark template for a 112×112 crop (InsightFace `face_align.arcface_dst`).
pub const ARCFACE_TEMPLATE: [[f64; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A 2×3 affine matrix `[[a, b, tx], [c, d, ty]]` mapping photo points to crop points.
pub type Affine = [[f64; 3]; 2];

/// The similarity transform that best maps `source` onto `target` in the least-squares sense.
///
/// In 2-D, Umeyama's SVD solution has a closed form: with centred points `p` (source) and `q`
/// (target), `a = Σ(p·q) / Σ|p|²` and `b = Σ(p × q) / Σ|p|²` give the rotation-and-scale
/// `[[a, −b], [b, a]]`. Returns `None` when the source points coincide (no transform exists).
pub fn estimate_similarity(source: &[[f64; 2]; 5], target: &[[f64; 2]; 5]) -> Option<Affine> {
    let mean = |points: &[[f64; 2]; 5]| {
        let (sx, sy) = points.iter().fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
        [sx / 5.0, sy / 5.0]
    };
    let (ms, mt) = (mean(source), mean(target));
    let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
    for (s, t) in source.iter().zip(target) {
        let (px, py) = (s[0] - ms[0], s[1] - ms[1]);
        let (qx, qy) = (t[0] - mt[0], t[1] - mt[1]);
        dot += px * qx + py * qy;
        cross += px * qy - py * qx;
        norm += px * px + py * py;
    }
    // NaN landmarks fail this test too, which is what we want.
    if norm.is_nan() || norm <= f64::EPSILON {
        return None;
    }
    let (a, b) = (dot / norm, cross / norm);
    Some([
        [a, -b, mt[0] - (a * ms[0] - b * ms[1])],
        [b, a, mt[1] - (b * ms[0] + a * ms[1])],
    ])
}

/// The transform that takes `landmarks` (photo pixels) onto the ArcFace template.
pub fn arcface_transform(landmarks: &[[f32; 2]; 5]) -> Option<Affine> {
    let source = landmarks.map(|[x, y]| [f64::from(x), f64::from(y)]);
    estimate_similarity(&source, &ARCFACE_TEMPLATE)
}

/// Warps `photo` through `transform` into a 112×112 RGB crop (packed `HWC` bytes).
/// Source samples outside the photo read as black, as with `BORDER_CONSTANT, 0`.
pub fn warp_aligned(photo: &RgbImage, transform: &Affine, crop: &mut [u8]) {
    debug_assert_eq!(crop.len(), CROP_BYTES);
    let [[a, b, tx], [c, d, ty]] = *transform;
    let determinant = a * d - b * c;
    // Inverse of the 2x2 part and the translation it implies.
    let (ia, ib, ic, id) = (d / determinant, -b / determinant, -c / determinant, a / determinant);
    let (itx, ity) = (-(ia * tx + ib * ty), -(ic * tx + id * ty));
    for v in 0..ALIGNED_SIZE {
        for u in 0..ALIGNED_SIZE {
            let (uf, vf) = (u as f64, v as f64);
            let sx = ia * uf + ib * vf + itx;
            let sy = ic * uf + id * vf + ity;
            let rgb = sample_bilinear(photo, sx, sy);
            let out = &mut crop[(v * ALIGNED_SIZE + u) * 3..][..3];
            for (value, sampled) in out.iter_mut().zip(rgb) {
                *value = sampled.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// The photo's colour at `(sx, sy)` by bilinear interpolation between the four pixels around
/// it (pixel centres at integer coordinates); pixels outside the photo read as black.
pub(crate) fn sample_bilinear(photo: &RgbImage, sx: f64, sy: f64) -> [f32; 3] {
    let (width, height) = (i64::from(photo.width()), i64::from(photo.height()));
    let pixels = photo.as_raw();
    let sample = |x: i64, y: i64, channel: usize| -> f32 {
        if x < 0 || y < 0 || x >= width || y >= height {
            0.0
        } else {
            f32::from(pixels[((y * width + x) * 3) as usize + channel])
        }
    };
    let (x0, y0) = (sx.floor(), sy.floor());
    let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
    // Saturating casts: a point far outside the photo reads black like any other outside point.
    let (x0, y0) = (x0 as i64, y0 as i64);
    std::array::from_fn(|channel| {
        let top = sample(x0, y0, channel) * (1.0 - fx) + sample(x0.saturating_add(1), y0, channel) * fx;
        let bottom = sample(x0, y0.saturating_add(1), channel) * (1.0 - fx)
            + sample(x0.saturating_add(1), y0.saturating_add(1), channel) * fx;
        top * (1.0 - fy) + bottom * fy
    })
}

/// Appends one aligned `112×112×3` crop per detection to `crops`, warped from the
/// full-resolution `photo`, and returns the detections that got one, in order. A face whose
/// landmarks admit no alignment (all five points coincide) is dropped: no embedding could
/// describe it.
pub fn aligned_crops(photo: &RgbImage, detections: Vec<DetectedFace>, crops: &mut Vec<u8>) -> Vec<DetectedFace> {
    let mut kept = Vec::with_capacity(detections.len());
    for detection in detections {
        let Some(transform) = arcface_transform(&detection.landmarks) else {
            tracing::warn!(?detection, "dropping a face whose landmarks coincide");
            continue;
        };
        let start = crops.len();
        crops.resize(start + CROP_BYTES, 0);
        warp_aligned(photo, &transform, &mut crops[start..]);
        kept.push(detection);
    }
    kept
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;

    fn apply(m: &Affine, p: [f64; 2]) -> [f64; 2] {
        [
            m[0][0] * p[0] + m[0][1] * p[1] + m[0][2],
            m[1][0] * p[0] + m[1][1] * p[1] + m[1][2],
        ]
    }

    #[test]
    fn recovers_an_exact_similarity() {
        // Template scaled by 2, rotated 30°, shifted: the estimate must invert it exactly.
        let (s, angle): (f64, f64) = (2.0, 30f64.to_radians());
        let source = ARCFACE_TEMPLATE.map(|[x, y]| {
            [
                s * (angle.cos() * x - angle.sin() * y) + 100.0,
                s * (angle.sin() * x + angle.cos() * y) - 40.0,
            ]
        });
        let m = estimate_similarity(&source, &ARCFACE_TEMPLATE).expect("non-degenerate");
        for (p, q) in source.iter().zip(ARCFACE_TEMPLATE) {
            let mapped = apply(&m, *p);
            assert!((mapped[0] - q[0]).abs() < 1e-9 && (mapped[1] - q[1]).abs() < 1e-9);
        }
        assert!((m[0][0].hypot(m[1][0]) - 0.5).abs() < 1e-12, "scale is 1/2");
    }

    #[test]
    fn matches_scikit_image_on_noisy_points() {
        // Expected matrix from skimage.transform.SimilarityTransform().estimate(src, arcface_dst).
        let source = [[10.0, 12.0], [30.5, 11.0], [21.0, 24.0], [12.0, 33.0], [29.0, 34.5]];
        let m = estimate_similarity(&source, &ARCFACE_TEMPLATE).expect("non-degenerate");
        let expected = [
            [1.774_830_57, 0.003_051_664_32, 19.572_250_3],
            [-0.003_051_664_32, 1.774_830_57, 31.319_719_1],
        ];
        for (row, expected_row) in m.iter().zip(expected) {
            for (value, want) in row.iter().zip(expected_row) {
                assert!((value - want).abs() < 1e-6, "{m:?} vs {expected:?}");
            }
        }
    }

    #[test]
    fn coincident_landmarks_have_no_transform() {
        assert!(estimate_similarity(&[[5.0, 5.0]; 5], &ARCFACE_TEMPLATE).is_none());
    }

    #[test]
    fn identity_warp_copies_and_borders_are_black() {
        let photo = RgbImage::from_fn(100, 100, |x, y| Rgb([x as u8, y as u8, 7]));
        let mut crop = vec![0; CROP_BYTES];
        let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        warp_aligned(&photo, &identity, &mut crop);
        assert_eq!(&crop[(10 * ALIGNED_SIZE + 20) * 3..][..3], &[20, 10, 7]);
        // Column 105 is outside the 100-px photo.
        assert_eq!(&crop[(10 * ALIGNED_SIZE + 105) * 3..][..3], &[0, 0, 0]);
    }
}
