//! A face's quality in `0..=1` from what facedex already knows of it: how sure the detector
//! is, how many pixels the face has, how frontal it is (from the landmarks) and how sharp its
//! aligned crop is. The score is the geometric mean of the four factors, so any one of them
//! at zero (a face of a few pixels, a full profile) makes the face worthless for search and
//! clustering, as it is.

use serde::{Deserialize, Serialize};

use crate::align::{ALIGNED_SIZE, CROP_BYTES};
use crate::scrfd::DetectedFace;

/// Shorter box side at which the size factor reaches 0 (no usable identity) and 1.
const SIZE_FACTOR_PX: (f32, f32) = (16.0, 96.0);
/// Nose offset from the eyes' midpoint, over the eye distance, at which the pose factor
/// reaches 0 (a profile: the nose beyond the eyes).
const PROFILE_NOSE_OFFSET: f32 = 0.6;
/// Laplacian variance of the aligned crop at which the sharpness factor is ½.
const SHARPNESS_HALF: f32 = 100.0;

/// A face's quality and what it is made of.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceQuality {
    /// The overall score in `0..=1`.
    pub score: f32,
    /// The detector's confidence.
    pub detection: f32,
    /// The box's shorter side in photo pixels.
    pub size_px: f32,
    /// Nose offset from the eyes' midpoint over the eye distance (0 frontal, ~0.5 profile).
    pub yaw: f32,
    /// Variance of the Laplacian of the aligned crop's grey levels.
    pub sharpness: f32,
}

/// Scores `face` with its aligned 112×112 ArcFace `crop`.
pub fn face_quality(face: &DetectedFace, crop: &[u8]) -> FaceQuality {
    let [x1, y1, x2, y2] = face.bbox;
    let size_px = (x2 - x1).min(y2 - y1).max(0.0);
    let yaw = nose_offset(&face.landmarks);
    let sharpness = laplacian_variance(crop);
    let detection = if face.score.is_finite() {
        face.score.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let size_factor = ((size_px - SIZE_FACTOR_PX.0) / (SIZE_FACTOR_PX.1 - SIZE_FACTOR_PX.0)).clamp(0.0, 1.0);
    let pose_factor = (1.0 - yaw / PROFILE_NOSE_OFFSET).clamp(0.0, 1.0);
    let sharp_factor = sharpness / (sharpness + SHARPNESS_HALF);
    let score = (detection * size_factor * pose_factor * sharp_factor).powf(0.25);
    FaceQuality {
        score: if score.is_finite() { score } else { 0.0 },
        detection,
        size_px,
        yaw,
        sharpness,
    }
}

/// How far the nose sits from the eyes' midpoint along the eye line, over the eye distance:
/// measured in the face's own frame, so a tilted head is not taken for a turned one.
fn nose_offset(landmarks: &[[f32; 2]; 5]) -> f32 {
    let [left, right, nose, ..] = *landmarks;
    let (dx, dy) = (right[0] - left[0], right[1] - left[1]);
    let eye_distance = dx.hypot(dy);
    if !(eye_distance.is_finite() && eye_distance > 0.0) {
        return PROFILE_NOSE_OFFSET;
    }
    let (mid_x, mid_y) = ((left[0] + right[0]) / 2.0, (left[1] + right[1]) / 2.0);
    let along = ((nose[0] - mid_x) * dx + (nose[1] - mid_y) * dy) / eye_distance;
    let offset = (along / eye_distance).abs();
    if offset.is_finite() {
        offset
    } else {
        PROFILE_NOSE_OFFSET
    }
}

/// Variance of the 4-neighbour Laplacian over the crop's interior grey levels.
fn laplacian_variance(crop: &[u8]) -> f32 {
    if crop.len() != CROP_BYTES {
        return 0.0;
    }
    let size = ALIGNED_SIZE;
    let grey: Vec<f32> = crop
        .chunks_exact(3)
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect();
    let (mut sum, mut sum_squares, mut count) = (0f64, 0f64, 0f64);
    for y in 1..size - 1 {
        for x in 1..size - 1 {
            let at = |x: usize, y: usize| grey[y * size + x];
            let laplacian = at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y);
            sum += f64::from(laplacian);
            sum_squares += f64::from(laplacian) * f64::from(laplacian);
            count += 1.0;
        }
    }
    let mean = sum / count;
    (sum_squares / count - mean * mean).max(0.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontal(size: f32) -> DetectedFace {
        DetectedFace {
            bbox: [0.0, 0.0, size, size],
            score: 0.9,
            landmarks: [
                [0.3 * size, 0.4 * size],
                [0.7 * size, 0.4 * size],
                [0.5 * size, 0.6 * size],
                [0.35 * size, 0.8 * size],
                [0.65 * size, 0.8 * size],
            ],
        }
    }

    fn checker_crop() -> Vec<u8> {
        (0..CROP_BYTES)
            .map(|i| {
                if (i / 3 + i / 3 / ALIGNED_SIZE).is_multiple_of(2) {
                    200
                } else {
                    40
                }
            })
            .collect()
    }

    #[test]
    fn a_large_sharp_frontal_face_scores_high_and_each_flaw_lowers_it() {
        let good = face_quality(&frontal(200.0), &checker_crop());
        assert!(good.score > 0.9, "{good:?}");
        assert!(good.yaw < 1e-6);
        let small = face_quality(&frontal(30.0), &checker_crop());
        assert!(small.score < good.score);
        assert_eq!(face_quality(&frontal(10.0), &checker_crop()).score, 0.0, "too small");
        let blurred = face_quality(&frontal(200.0), &vec![128; CROP_BYTES]);
        assert_eq!(blurred.score, 0.0, "a flat crop has no detail");
        let mut turned = frontal(200.0);
        turned.landmarks[2][0] = 0.68 * 200.0; // nose near the right eye
        let turned = face_quality(&turned, &checker_crop());
        assert!(turned.yaw > 0.4 && turned.score < good.score, "{turned:?}");
    }

    #[test]
    fn a_tilted_head_is_not_a_turned_one() {
        let mut tilted = frontal(200.0);
        let angle = 30f32.to_radians();
        for point in &mut tilted.landmarks {
            let (x, y) = (point[0] - 100.0, point[1] - 100.0);
            *point = [
                100.0 + x * angle.cos() - y * angle.sin(),
                100.0 + x * angle.sin() + y * angle.cos(),
            ];
        }
        assert!(face_quality(&tilted, &checker_crop()).yaw < 1e-4);
    }

    #[test]
    fn broken_numbers_give_zero_not_nan() {
        let mut face = frontal(200.0);
        face.score = f32::NAN;
        face.landmarks = [[f32::NAN; 2]; 5];
        let quality = face_quality(&face, &[]);
        assert_eq!(quality.score, 0.0);
    }
}
