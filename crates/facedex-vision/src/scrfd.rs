//! SCRFD post-processing, exactly as InsightFace's `scrfd.py`: anchor centres per stride,
//! distance decoding of boxes and 5 keypoints, score threshold, and greedy NMS with the `+1`
//! area convention. Pure functions over the model's output arrays, so they are tested without
//! a model.

/// A face found by the detector, in pixels of the (EXIF-oriented) photo.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectedFace {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// Detector confidence in `0..=1`.
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corner, as `[x, y]`.
    pub landmarks: [[f32; 2]; 5],
}

/// Feature-map strides of SCRFD's three output levels.
pub const STRIDES: [usize; 3] = [8, 16, 32];
/// Anchors per feature-map cell.
pub const ANCHORS_PER_CELL: usize = 2;

/// One output level of one image: `scores[n]`, `boxes[n×4]`, `keypoints[n×10]` for the
/// `n = (h/stride)·(w/stride)·2` anchors of that stride.
pub struct LevelOutputs<'a> {
    /// The level's stride (8, 16 or 32).
    pub stride: usize,
    /// One score per anchor.
    pub scores: &'a [f32],
    /// Four distances per anchor, in stride units.
    pub boxes: &'a [f32],
    /// Ten keypoint offsets per anchor, in stride units.
    pub keypoints: &'a [f32],
}

/// Decodes every level's anchors scoring at least `threshold` into faces in photo pixels
/// (`scale` is the letterbox scale), sorted by score (stable, best first), then applies NMS.
pub fn decode_detections(
    levels: &[LevelOutputs<'_>],
    input_width: usize,
    threshold: f32,
    scale: f32,
    nms_iou_threshold: f32,
) -> Vec<DetectedFace> {
    let mut candidates = Vec::new();
    for level in levels {
        let stride = level.stride;
        let cells_per_row = input_width / stride;
        let stride_f = stride as f32;
        for (anchor, &score) in level.scores.iter().enumerate() {
            if score < threshold {
                continue;
            }
            let cell = anchor / ANCHORS_PER_CELL;
            let centre_x = ((cell % cells_per_row) * stride) as f32;
            let centre_y = ((cell / cells_per_row) * stride) as f32;
            let d = &level.boxes[anchor * 4..anchor * 4 + 4];
            let bbox = [
                (centre_x - d[0] * stride_f) / scale,
                (centre_y - d[1] * stride_f) / scale,
                (centre_x + d[2] * stride_f) / scale,
                (centre_y + d[3] * stride_f) / scale,
            ];
            let k = &level.keypoints[anchor * 10..anchor * 10 + 10];
            let landmarks = std::array::from_fn(|i| {
                [
                    (centre_x + k[2 * i] * stride_f) / scale,
                    (centre_y + k[2 * i + 1] * stride_f) / scale,
                ]
            });
            candidates.push(DetectedFace { bbox, score, landmarks });
        }
    }
    // InsightFace sorts with a stable argsort on -score: ties keep level-then-anchor order.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    non_maximum_suppression(candidates, nms_iou_threshold)
}

/// Greedy NMS over faces sorted best first: a face is kept unless it overlaps an already kept
/// one by IoU > `iou_threshold`, with areas computed as `(x2 − x1 + 1)·(y2 − y1 + 1)`.
pub fn non_maximum_suppression(sorted: Vec<DetectedFace>, iou_threshold: f32) -> Vec<DetectedFace> {
    let area = |b: &[f32; 4]| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
    let mut kept: Vec<DetectedFace> = Vec::new();
    for face in sorted {
        let suppressed = kept.iter().any(|better| {
            let (a, b) = (&better.bbox, &face.bbox);
            let width = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
            let height = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
            let intersection = width * height;
            intersection / (area(a) + area(b) - intersection) > iou_threshold
        });
        if !suppressed {
            kept.push(face);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(bbox: [f32; 4], score: f32) -> DetectedFace {
        DetectedFace {
            bbox,
            score,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn decodes_anchor_centres_boxes_and_keypoints() {
        // A 32x32 input at stride 16: 2x2 cells, 2 anchors each = 8 anchors.
        let mut scores = vec![0.0; 8];
        let mut boxes = vec![0.0; 32];
        let mut keypoints = vec![0.0; 80];
        // Anchor 7 = second anchor of cell (x=1, y=1): centre (16, 16).
        scores[7] = 0.9;
        boxes[28..32].copy_from_slice(&[0.5, 0.25, 1.0, 2.0]);
        keypoints[70..80].copy_from_slice(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]);
        let levels = [LevelOutputs {
            stride: 16,
            scores: &scores,
            boxes: &boxes,
            keypoints: &keypoints,
        }];
        let faces = decode_detections(&levels, 32, 0.5, 2.0, 0.4);
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        assert_eq!(
            f.bbox,
            [
                (16.0 - 8.0) / 2.0,
                (16.0 - 4.0) / 2.0,
                (16.0 + 16.0) / 2.0,
                (16.0 + 32.0) / 2.0
            ]
        );
        assert!((f.landmarks[0][0] - (16.0 + 1.6) / 2.0).abs() < 1e-5);
        assert!((f.landmarks[4][1] - (16.0 + 16.0) / 2.0).abs() < 1e-5);
    }

    #[test]
    fn threshold_is_inclusive() {
        let scores = [0.5, 0.49];
        let levels = [LevelOutputs {
            stride: 32,
            scores: &scores,
            boxes: &[1.0; 8],
            keypoints: &[0.0; 20],
        }];
        assert_eq!(decode_detections(&levels, 32, 0.5, 1.0, 0.4).len(), 1);
    }

    #[test]
    fn nms_uses_plus_one_areas_and_keeps_iou_equal_to_threshold() {
        // Boxes 0..9 and 0..9 shifted by 6 in x: +1 widths are 10, overlap 4 → IoU 40/160 = 0.25.
        let kept = non_maximum_suppression(
            vec![face([0.0, 0.0, 9.0, 9.0], 0.9), face([6.0, 0.0, 15.0, 9.0], 0.8)],
            0.25,
        );
        assert_eq!(kept.len(), 2, "IoU equal to the threshold is kept");
        let kept = non_maximum_suppression(
            vec![face([0.0, 0.0, 9.0, 9.0], 0.9), face([5.0, 0.0, 14.0, 9.0], 0.8)],
            0.25,
        );
        assert_eq!(kept.len(), 1, "IoU 50/150 > 0.25 is suppressed");
        assert_eq!(kept[0].score, 0.9);
    }

    #[test]
    fn suppression_compares_with_kept_faces_only() {
        // B overlaps A (suppressed); C overlaps only B, so C survives.
        let kept = non_maximum_suppression(
            vec![
                face([0.0, 0.0, 9.0, 9.0], 0.9),
                face([3.0, 0.0, 12.0, 9.0], 0.8),
                face([10.0, 0.0, 19.0, 9.0], 0.7),
            ],
            0.4,
        );
        let scores: Vec<f32> = kept.iter().map(|f| f.score).collect();
        assert_eq!(scores, vec![0.9, 0.7]);
    }
}
