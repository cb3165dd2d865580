//! Cutting a per-face model's input chip from the full-resolution photo: the chip→photo
//! similarity (fitted to a landmark template, or a square around the box), then a warp that
//! averages several bilinear samples per chip pixel when the chip is much smaller than the
//! face, so a 64-px chip of a 600-px face is not aliased (dlib's `extract_image_chip` reaches
//! the same end with an image pyramid).

use image::RgbImage;

use crate::align::{ALIGNED_SIZE, ARCFACE_TEMPLATE, Affine, estimate_similarity, sample_bilinear};
use crate::attributes::config::{ChipCrop, ChipTemplate};
use crate::scrfd::DetectedFace;

/// dlib's mean face (`get_face_chip_details`, points 17–67 of its 68-point shape, in a unit
/// square) at the five points SCRFD finds: the mean of each eye's six points (SCRFD marks eye
/// centres where dlib's 5-point model marks corners), the nose tip (point 30; dlib's 5-point
/// model uses the nose base) and the mouth corners (points 48 and 54).
pub const DLIB_TEMPLATE: [[f64; 2]; 5] = [
    [0.225_491_8, 0.215_990_3],
    [0.754_761_3, 0.215_990_3],
    [0.490_127, 0.515_625],
    [0.254_149, 0.780_233],
    [0.726_104, 0.780_233],
];

/// The map from chip pixels to photo pixels for `face`, or `None` when its landmarks admit
/// no alignment (they coincide) or its box is empty.
pub fn chip_to_photo(crop: &ChipCrop, face: &DetectedFace) -> Option<Affine> {
    match *crop {
        ChipCrop::Aligned {
            template,
            size_px,
            padding,
        } => {
            let unit_template = match template {
                ChipTemplate::Dlib => DLIB_TEMPLATE,
                ChipTemplate::Arcface => {
                    ARCFACE_TEMPLATE.map(|[x, y]| [x / ALIGNED_SIZE as f64, y / ALIGNED_SIZE as f64])
                }
            };
            let size = f64::from(size_px);
            let chip_points = unit_template.map(|[x, y]| {
                [
                    (padding + x) / (2.0 * padding + 1.0) * size,
                    (padding + y) / (2.0 * padding + 1.0) * size,
                ]
            });
            let landmarks = face.landmarks.map(|[x, y]| [f64::from(x), f64::from(y)]);
            // Fitted from the chip to the photo, as dlib does, not inverted from the other way;
            // coinciding landmarks give a transform of scale 0, which is no alignment either.
            estimate_similarity(&chip_points, &landmarks).filter(|m| {
                let scale = m[0][0].hypot(m[1][0]);
                scale.is_finite() && scale > 1e-6
            })
        }
        ChipCrop::Box { size_px, scale } => {
            let [x1, y1, x2, y2] = face.bbox.map(f64::from);
            let side = (x2 - x1).max(y2 - y1) * scale;
            if !(side.is_finite() && side > 0.0) {
                return None;
            }
            let per_pixel = side / f64::from(size_px);
            let (left, top) = ((x1 + x2 - side) / 2.0, (y1 + y2 - side) / 2.0);
            // Chip pixel centres sample the middle of their share of the square.
            Some([
                [per_pixel, 0.0, left + per_pixel / 2.0 - 0.5],
                [0.0, per_pixel, top + per_pixel / 2.0 - 0.5],
            ])
        }
    }
}

/// Most samples per axis averaged into one chip pixel: a chip up to 8× smaller than its
/// footprint is fully anti-aliased; beyond, the samples thin out rather than the work growing
/// with the face (BENCHMARKS.md has what 16 cost).
const MAX_SAMPLES_PER_AXIS: usize = 8;

/// Warps `photo` through `chip_to_photo` into a `size × size` RGB chip (packed `HWC`), each
/// chip pixel the mean of an `n × n` grid of bilinear samples spread over its footprint,
/// `n` the photo pixels per chip pixel (at least 1). Outside the photo reads black.
pub fn warp_chip(photo: &RgbImage, chip_to_photo: &Affine, size: usize, chip: &mut [u8]) {
    debug_assert_eq!(chip.len(), size * size * 3);
    let [[a, b, tx], [c, d, ty]] = *chip_to_photo;
    let scale = a.hypot(c);
    let samples = (scale.floor() as usize).clamp(1, MAX_SAMPLES_PER_AXIS);
    let step = 1.0 / samples as f64;
    let weight = 1.0 / (samples * samples) as f32;
    for v in 0..size {
        for u in 0..size {
            let mut sum = [0f32; 3];
            for j in 0..samples {
                for i in 0..samples {
                    // Sub-sample positions centred on the chip pixel: −½ + (k + ½)/n.
                    let cu = u as f64 - 0.5 + (i as f64 + 0.5) * step;
                    let cv = v as f64 - 0.5 + (j as f64 + 0.5) * step;
                    let rgb = sample_bilinear(photo, a * cu + b * cv + tx, c * cu + d * cv + ty);
                    for (total, value) in sum.iter_mut().zip(rgb) {
                        *total += value;
                    }
                }
            }
            let out = &mut chip[(v * size + u) * 3..][..3];
            for (value, total) in out.iter_mut().zip(sum) {
                *value = (total * weight).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// Cuts `face`'s chip for `crop` from `photo` into `chip` (resized to `size²·3`); `false`
/// when no chip can be cut (see [`chip_to_photo`]), leaving `chip` black.
pub fn cut_chip(photo: &RgbImage, face: &DetectedFace, crop: &ChipCrop, chip: &mut Vec<u8>) -> bool {
    let size = crop.size_px() as usize;
    chip.clear();
    chip.resize(crop.chip_bytes(), 0);
    match chip_to_photo(crop, face) {
        Some(transform) => {
            warp_chip(photo, &transform, size, chip);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;

    fn face_at(landmarks: [[f32; 2]; 5]) -> DetectedFace {
        DetectedFace {
            bbox: [0.0, 0.0, 100.0, 100.0],
            score: 0.9,
            landmarks,
        }
    }

    #[test]
    fn the_template_lands_on_the_landmarks() {
        // Landmarks placed exactly where the dlib template puts them in a 300-px face at
        // (50, 20): the chip's template points must map onto them.
        let landmarks = DLIB_TEMPLATE.map(|[x, y]| [(50.0 + 300.0 * x) as f32, (20.0 + 300.0 * y) as f32]);
        let crop = ChipCrop::Aligned {
            template: ChipTemplate::Dlib,
            size_px: 64,
            padding: 0.2,
        };
        let m = chip_to_photo(&crop, &face_at(landmarks)).expect("aligned");
        let chip_point = |[x, y]: [f64; 2]| [(0.2 + x) / 1.4 * 64.0, (0.2 + y) / 1.4 * 64.0];
        for (unit, landmark) in DLIB_TEMPLATE.iter().zip(landmarks) {
            let [u, v] = chip_point(*unit);
            let (x, y) = (m[0][0] * u + m[0][1] * v + m[0][2], m[1][0] * u + m[1][1] * v + m[1][2]);
            assert!((x - f64::from(landmark[0])).abs() < 1e-3 && (y - f64::from(landmark[1])).abs() < 1e-3);
        }
        // 300 px of face × 1.4 for the padding over 64 chip pixels.
        assert!((m[0][0].hypot(m[1][0]) - 300.0 * 1.4 / 64.0).abs() < 1e-6);
    }

    #[test]
    fn a_downscaled_chip_averages_instead_of_aliasing() {
        // A one-pixel checkerboard shrunk 8×: every chip pixel is the mean grey, where a
        // single bilinear sample would read pure black or white.
        let photo = RgbImage::from_fn(
            256,
            256,
            |x, y| if (x + y) % 2 == 0 { Rgb([255; 3]) } else { Rgb([0; 3]) },
        );
        let mut chip = vec![0; 32 * 32 * 3];
        warp_chip(&photo, &[[8.0, 0.0, 3.5], [0.0, 8.0, 3.5]], 32, &mut chip);
        assert!(
            chip.iter().all(|&value| (120..=135).contains(&value)),
            "{:?}",
            &chip[..12]
        );
    }

    #[test]
    fn a_box_chip_is_the_scaled_square_around_the_box() {
        let photo = RgbImage::from_fn(400, 400, |x, y| Rgb([(x / 2) as u8, (y / 2) as u8, 0]));
        let mut face = face_at([[0.0; 2]; 5]);
        face.bbox = [150.0, 100.0, 250.0, 300.0]; // 100 × 200, centre (200, 200)
        let crop = ChipCrop::Box {
            size_px: 40,
            scale: 1.5,
        };
        let mut chip = Vec::new();
        assert!(cut_chip(&photo, &face, &crop, &mut chip));
        // A 300-px square from (50, 50): chip pixel 20 covers photo 200..207.5.
        let centre = &chip[(20 * 40 + 20) * 3..][..3];
        assert!(
            (i32::from(centre[0]) - 101).abs() <= 1 && (i32::from(centre[1]) - 101).abs() <= 1,
            "{centre:?}"
        );
        // Coinciding landmarks have no aligned chip.
        let aligned = ChipCrop::Aligned {
            template: ChipTemplate::Arcface,
            size_px: 32,
            padding: 0.0,
        };
        assert!(!cut_chip(&photo, &face, &aligned, &mut chip));
        assert!(chip.iter().all(|&value| value == 0));
    }
}
