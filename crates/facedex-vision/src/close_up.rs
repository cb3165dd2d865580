//! Faces that fill the frame. SCRFD learnt faces from crowds (WIDER FACE) and misses a face
//! spanning most of its input: portraits, selfies, ID photos, avatars (insightface #1518). The
//! remedy is a second detector pass over a *close-up canvas*: the photo letterboxed at
//! [`CLOSE_UP_SHRINK`] of its first-pass size and centred on a black canvas of
//! [`CLOSE_UP_CANVAS`] of that size, so a face filling 90 % of the photo fills 45 % of the
//! canvas, a size SCRFD knows, with black margins all round (InsightFace's own padding colour).
//! The canvas has a little over half the first pass's pixels, so the pass costs about half a
//! detector run.
//!
//! The second pass runs only when the first one suggests a close-up ([`needs_close_up_pass`]):
//! it found nothing, or a face near the frame's size. Its faces are mapped back to photo pixels
//! and added where the first pass has no face ([`merge_close_up`]): faces the first pass found
//! are kept as they are, so photos of ordinary framing give exactly what they gave before.

use image::RgbImage;

use crate::letterbox::{LetterboxGeometry, LetterboxedPhoto, Letterboxer, letterbox_geometry};
use crate::scrfd::{DetectedFace, non_maximum_suppression};

/// The close-up canvas holds the photo at this fraction of its first-pass size.
pub const CLOSE_UP_SHRINK: f32 = 0.375;

/// The close-up canvas's sides, as a fraction of the first pass's letterboxed photo: twice the
/// shrunk photo, so the margins match the photo's own size.
pub const CLOSE_UP_CANVAS: f32 = 2.0 * CLOSE_UP_SHRINK;

/// A first-pass face whose longer side spans at least this share of the photo's shorter side
/// counts as near the frame's size (SCRFD's boxes for such faces are often cut or shifted).
pub const NEAR_FRAME_SHARE: f32 = 0.4;

/// How a face found on the close-up canvas maps back: `photo = (canvas − offset) / scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CloseUpMapping {
    /// Where the shrunk photo's top-left corner lies on the canvas.
    pub offset: [f32; 2],
    /// Canvas pixels per photo pixel.
    pub scale: f32,
}

/// Whether the first pass's `faces` in a `width` × `height` photo call for a second pass.
pub fn needs_close_up_pass(faces: &[DetectedFace], width: u32, height: u32) -> bool {
    let shorter_side = width.min(height) as f32;
    faces.is_empty()
        || faces.iter().any(|face| {
            let [x1, y1, x2, y2] = face.bbox;
            (x2 - x1).max(y2 - y1) >= NEAR_FRAME_SHARE * shorter_side
        })
}

/// The close-up canvas for `photo`, whose first pass used `first`, and how to map its faces
/// back. The canvas is sent to the detector as a letterboxed photo of scale 1, so the
/// detector returns faces in canvas pixels.
pub fn close_up_canvas(
    letterboxer: &mut Letterboxer,
    photo: &RgbImage,
    first: LetterboxGeometry,
) -> (LetterboxedPhoto, CloseUpMapping) {
    let scaled = |side: u32, factor: f32| ((side as f32 * factor).round() as u32).max(1);
    let (canvas_width, canvas_height) = (
        scaled(first.resized_width, CLOSE_UP_CANVAS),
        scaled(first.resized_height, CLOSE_UP_CANVAS),
    );
    let shrunk_side = scaled(first.resized_width.max(first.resized_height), CLOSE_UP_SHRINK);
    let shrunk = letterboxer.letterbox(
        photo,
        letterbox_geometry(photo.width(), photo.height(), shrunk_side, false),
    );
    let (width, height) = (
        shrunk.geometry.resized_width.min(canvas_width),
        shrunk.geometry.resized_height.min(canvas_height),
    );
    let (left, top) = ((canvas_width - width) / 2, (canvas_height - height) / 2);
    let mut pixels = vec![0u8; canvas_width as usize * canvas_height as usize * 3];
    let source_stride = shrunk.geometry.resized_width as usize * 3;
    let canvas_stride = canvas_width as usize * 3;
    for row in 0..height as usize {
        let source = &shrunk.pixels[row * source_stride..][..width as usize * 3];
        let start = (top as usize + row) * canvas_stride + left as usize * 3;
        pixels[start..start + source.len()].copy_from_slice(source);
    }
    // The detector input fits the canvas, as `fit_input_to_photo` fits it to a photo.
    let geometry = LetterboxGeometry {
        resized_width: canvas_width,
        resized_height: canvas_height,
        scale: 1.0,
        input_width: canvas_width.div_ceil(32) * 32,
        input_height: canvas_height.div_ceil(32) * 32,
    };
    let mapping = CloseUpMapping {
        offset: [left as f32, top as f32],
        scale: shrunk.geometry.scale,
    };
    let canvas = LetterboxedPhoto { pixels, geometry };
    debug_assert_eq!(canvas.check(), Ok(()));
    (canvas, mapping)
}

/// `face`, found on the close-up canvas, in photo pixels.
pub fn map_back(face: DetectedFace, mapping: CloseUpMapping) -> DetectedFace {
    let [dx, dy] = mapping.offset;
    let x = |value: f32| (value - dx) / mapping.scale;
    let y = |value: f32| (value - dy) / mapping.scale;
    let [x1, y1, x2, y2] = face.bbox;
    DetectedFace {
        bbox: [x(x1), y(y1), x(x2), y(y2)],
        score: face.score,
        landmarks: face.landmarks.map(|[px, py]| [x(px), y(py)]),
    }
}

/// The first pass's faces, then each close-up face (in photo pixels) that overlaps none of
/// them by more than `nms_iou_threshold`, best score first within each pass.
pub fn merge_close_up(
    first: Vec<DetectedFace>,
    close_up: Vec<DetectedFace>,
    nms_iou_threshold: f32,
) -> Vec<DetectedFace> {
    let kept = first.len();
    let mut merged = non_maximum_suppression(first.into_iter().chain(close_up).collect(), nms_iou_threshold);
    debug_assert!(merged.len() >= kept, "every first-pass face survives the merge");
    // NMS keeps earlier faces first: the first pass's faces lead, in their own order.
    merged[kept..].sort_by(|a, b| b.score.total_cmp(&a.score));
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(bbox: [f32; 4], score: f32) -> DetectedFace {
        DetectedFace {
            bbox,
            score,
            landmarks: [[bbox[0], bbox[1]]; 5],
        }
    }

    #[test]
    fn a_second_pass_follows_no_face_or_a_face_near_the_frame_size() {
        assert!(needs_close_up_pass(&[], 640, 480));
        assert!(!needs_close_up_pass(&[face([10.0, 10.0, 100.0, 110.0], 0.9)], 640, 480));
        assert!(needs_close_up_pass(&[face([10.0, 10.0, 100.0, 210.0], 0.9)], 640, 480));
    }

    #[test]
    fn the_canvas_centres_the_shrunk_photo_and_faces_map_back_to_the_photo() {
        let photo = RgbImage::from_pixel(400, 200, image::Rgb([200, 100, 50]));
        let first = letterbox_geometry(400, 200, 640, true);
        let (canvas, mapping) = close_up_canvas(&mut Letterboxer::default(), &photo, first);
        assert_eq!(canvas.check(), Ok(()));
        let g = canvas.geometry;
        // The first pass sees 640x320; the canvas is 480x240 (input 480x256) and holds the
        // photo as 240x120 in its middle: margins of 120 and 60.
        assert_eq!((g.resized_width, g.resized_height, g.scale), (480, 240, 1.0));
        assert_eq!((g.input_width, g.input_height), (480, 256));
        assert_eq!(mapping.offset, [120.0, 60.0]);
        assert!((mapping.scale - 0.6).abs() < 1e-6);
        let pixel = |x: usize, y: usize| &canvas.pixels[(y * 480 + x) * 3..][..3];
        assert_eq!(pixel(0, 0), [0, 0, 0]);
        assert_eq!(pixel(120, 60), [200, 100, 50]);
        assert_eq!(pixel(359, 179), [200, 100, 50]);
        assert_eq!(pixel(360, 180), [0, 0, 0]);
        let back = map_back(face([120.0, 60.0, 360.0, 180.0], 0.8), mapping);
        let expected = [0.0, 0.0, 400.0, 200.0];
        assert!(
            back.bbox
                .iter()
                .zip(expected)
                .all(|(got, want)| (got - want).abs() < 1e-3),
            "{:?}",
            back.bbox
        );
        assert_eq!(back.landmarks[0], [0.0, 0.0]);
    }

    #[test]
    fn the_first_pass_faces_are_kept_and_close_ups_fill_in() {
        let first = vec![face([0.0, 0.0, 50.0, 50.0], 0.6)];
        let close_up = vec![
            face([1.0, 1.0, 51.0, 51.0], 0.99),
            face([100.0, 100.0, 300.0, 300.0], 0.7),
            face([200.0, 200.0, 400.0, 400.0], 0.9),
        ];
        let merged = merge_close_up(first, close_up, 0.4);
        let scores: Vec<f32> = merged.iter().map(|face| face.score).collect();
        assert_eq!(scores, [0.6, 0.9, 0.7], "the overlapping close-up face gives way");
    }
}
