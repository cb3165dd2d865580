//! Faces that fill the frame: square crops of the sample photos centred on each face, the face's
//! box spanning 30, 50, 70 and 90 % of the side, resized to 256 and 640 px, each analysed as a
//! photo of its own. With the close-up pass (the default) at least 95 % of the faces are found
//! at every fill and size, and their embeddings stay those of the same face in its photo; the
//! table, with the pass off beside it, is what BENCHMARKS.md shows
//! (`cargo test -p facedex-cli --test close_up -- --nocapture`).

mod support;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use facedex_pipeline::{BatchingConfig, LocalModels, PhotoAnalyzer, StageTimings, Wanted};
use image::imageops::FilterType;
use image::{ImageFormat, RgbImage};
use support::{cosine, iou, photo, reference, vision_config};

/// The face box's share of the crop's side.
const FILLS: [f32; 4] = [0.3, 0.5, 0.7, 0.9];
/// The crops' sides after resizing.
const SIDES: [u32; 2] = [256, 640];
/// Faces smaller than this in their photo make crops of too little detail to count.
const MIN_FACE_PX: f32 = 40.0;
/// A face counts as found when a detection overlaps its box by this IoU.
const FOUND_IOU: f32 = 0.5;
/// The median cosine, at every fill and size, between a found face's embedding and
/// InsightFace's embedding of the same face in its photo must reach this: embedded as the same
/// person, not merely as a face.
const SAME_FACE_COSINE: f32 = 0.6;

/// One crop: PNG bytes, the face's box in crop pixels, InsightFace's embedding of the face in
/// its photo, and the crop's fill and side.
struct CloseUp {
    png: Vec<u8>,
    bbox: [f32; 4],
    embedding: Vec<f32>,
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
                        embedding: face.embedding.clone(),
                        fill,
                        side,
                    });
                }
            }
        }
    }
    crops
}

/// What one fill and side gave: faces found, crops, and the embedding cosines of the found
/// faces to the same faces in their photos.
#[derive(Default)]
struct Found {
    found: usize,
    total: usize,
    cosines: Vec<f32>,
}

impl Found {
    fn share(&self) -> f64 {
        self.found as f64 / self.total.max(1) as f64
    }

    fn median_cosine(&mut self) -> f32 {
        self.cosines.sort_by(f32::total_cmp);
        self.cosines.get(self.cosines.len() / 2).copied().unwrap_or(f32::NAN)
    }
}

/// What each (fill in percent, side) gave, with the close-up pass on or off.
fn recall(crops: &[CloseUp], close_up_pass: bool) -> BTreeMap<(u32, u32), Found> {
    let mut config = vision_config();
    config.detection.close_up_pass = close_up_pass;
    config.attributes.clear();
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
                    Wanted::EMBEDDINGS,
                    &mut StageTimings::default(),
                )
                .await
                .expect("a crop decodes");
            let best = analysed
                .faces
                .iter()
                .map(|face| (iou(&face.detection.bbox, &crop.bbox), face))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .filter(|(overlap, _)| *overlap >= FOUND_IOU);
            let entry: &mut Found = counts
                .entry(((crop.fill * 100.0).round() as u32, crop.side))
                .or_default();
            if let Some((_, face)) = best {
                entry.found += 1;
                entry.cosines.push(cosine(&face.embedding, &crop.embedding));
            }
            entry.total += 1;
        }
        counts
    })
}

#[test]
fn faces_that_fill_the_frame_are_found_at_every_fill() {
    let crops = close_ups();
    let mut without = recall(&crops, false);
    let mut with = recall(&crops, true);
    println!(
        "| face box / side | side px | faces | found, first pass only | found, with the close-up pass \
         | median cosine to the face in its photo, first pass only | with the close-up pass |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (key, found) in &mut with {
        let before = without.get_mut(key).expect("the same crops");
        let (cosine_before, cosine_with) = (before.median_cosine(), found.median_cosine());
        println!(
            "| {} % | {} | {} | {:.1} % | {:.1} % | {:.3} | {:.3} |",
            key.0,
            key.1,
            found.total,
            100.0 * before.share(),
            100.0 * found.share(),
            cosine_before,
            cosine_with
        );
    }
    assert_eq!(with.len(), FILLS.len() * SIDES.len(), "every fill and side has crops");
    for (key, found) in &mut with {
        assert!(found.total >= 10, "{key:?}: only {} crops", found.total);
        assert!(
            found.share() >= 0.95,
            "{}% fill at {} px: {} of {} faces found",
            key.0,
            key.1,
            found.found,
            found.total
        );
        let median = found.median_cosine();
        assert!(
            median >= SAME_FACE_COSINE,
            "{}% fill at {} px: the found faces' embeddings are not those of the faces in their photos \
             (median cosine {median:.3})",
            key.0,
            key.1
        );
    }
}
