//! Faces that fill the frame: square crops of the sample photos centred on each face, the face's
//! box spanning 30, 50, 70 and 90 % of the side, resized to 256 and 640 px, each analysed as a
//! photo of its own. With the close-up pass (the default) at least 95 % of the faces are found
//! at every fill and size; the table, with the pass off beside it, is what BENCHMARKS.md shows
//! (`cargo test -p facedex-cli --test close_up -- --nocapture`).

mod support;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use facedex_pipeline::{BatchingConfig, LocalModels, PhotoAnalyzer, StageTimings, Wanted};
use image::imageops::FilterType;
use image::{ImageFormat, RgbImage};
use support::{iou, photo, reference, vision_config};

/// The face box's share of the crop's side.
const FILLS: [f32; 4] = [0.3, 0.5, 0.7, 0.9];
/// The crops' sides after resizing.
const SIDES: [u32; 2] = [256, 640];
/// Faces smaller than this in their photo make crops of too little detail to count.
const MIN_FACE_PX: f32 = 40.0;
/// A face counts as found when a detection overlaps its box by this IoU.
const FOUND_IOU: f32 = 0.5;

/// One crop: PNG bytes, the face's box in crop pixels, and its fill and side.
struct CloseUp {
    png: Vec<u8>,
    bbox: [f32; 4],
    fill: f32,
    side: u32,
}

/// Every crop of the sample photos that fits inside its photo, from the faces InsightFace
/// found in them (the reference fixture).
fn close_ups() -> Vec<CloseUp> {
    let mut crops = Vec::new();
    for reference_photo in reference().photos {
        let picture = image::open(photo(&reference_photo.path))
            .expect("sample photo")
            .into_rgb8();
        for face in &reference_photo.faces {
            let [x1, y1, x2, y2] = face.bbox;
            let size = (x2 - x1).max(y2 - y1);
            if size < MIN_FACE_PX {
                continue;
            }
            let (centre_x, centre_y) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
            for fill in FILLS {
                let crop_side = size / fill;
                let (left, top) = (centre_x - crop_side / 2.0, centre_y - crop_side / 2.0);
                if left < 0.0
                    || top < 0.0
                    || left + crop_side > picture.width() as f32
                    || top + crop_side > picture.height() as f32
                {
                    continue;
                }
                let crop =
                    image::imageops::crop_imm(&picture, left as u32, top as u32, crop_side as u32, crop_side as u32)
                        .to_image();
                for side in SIDES {
                    let scale = side as f32 / crop.width() as f32;
                    let resized: RgbImage = image::imageops::resize(&crop, side, side, FilterType::Triangle);
                    let mut png = Vec::new();
                    resized
                        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
                        .expect("encode");
                    let (dx, dy) = (left.floor(), top.floor());
                    crops.push(CloseUp {
                        png,
                        bbox: [
                            (x1 - dx) * scale,
                            (y1 - dy) * scale,
                            (x2 - dx) * scale,
                            (y2 - dy) * scale,
                        ],
                        fill,
                        side,
                    });
                }
            }
        }
    }
    crops
}

/// (found, total) per (fill in percent, side), with the close-up pass on or off.
fn recall(crops: &[CloseUp], close_up_pass: bool) -> BTreeMap<(u32, u32), (usize, usize)> {
    let mut config = vision_config();
    config.detection.close_up_pass = close_up_pass;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let models = LocalModels::load(&config, &BatchingConfig::default()).expect("models load");
        let analyzer = Arc::new(PhotoAnalyzer::new(models, 2, &config));
        let mut counts = BTreeMap::new();
        for (index, crop) in crops.iter().enumerate() {
            let analysed = analyzer
                .analyze(
                    &format!("crop {index}"),
                    crop.png.clone(),
                    Wanted::DETECTIONS,
                    &mut StageTimings::default(),
                )
                .await
                .expect("a crop decodes");
            let found = analysed
                .faces
                .iter()
                .any(|face| iou(&face.detection.bbox, &crop.bbox) >= FOUND_IOU);
            let entry = counts
                .entry(((crop.fill * 100.0).round() as u32, crop.side))
                .or_insert((0, 0));
            entry.0 += usize::from(found);
            entry.1 += 1;
        }
        counts
    })
}

#[test]
fn faces_that_fill_the_frame_are_found_at_every_fill() {
    let crops = close_ups();
    let without = recall(&crops, false);
    let with = recall(&crops, true);
    println!("| face box / side | side px | faces | found, first pass only | found, with the close-up pass |");
    println!("|---:|---:|---:|---:|---:|");
    let share = |(found, total): (usize, usize)| found as f64 / total.max(1) as f64;
    for (key, counts) in &with {
        let before = without[key];
        println!(
            "| {} % | {} | {} | {:.1} % | {:.1} % |",
            key.0,
            key.1,
            counts.1,
            100.0 * share(before),
            100.0 * share(*counts)
        );
    }
    assert_eq!(with.len(), FILLS.len() * SIDES.len(), "every fill and side has crops");
    for (key, counts) in &with {
        assert!(counts.1 >= 10, "{key:?}: only {} crops", counts.1);
        assert!(
            share(*counts) >= 0.95,
            "{}% fill at {} px: {} of {} faces found",
            key.0,
            key.1,
            counts.0,
            counts.1
        );
    }
}
