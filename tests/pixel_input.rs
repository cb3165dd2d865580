//! `vision.model_input = "pixels"` (the default on CUDA): the detector and the embedder take
//! packed 8-bit pixels and normalise them inside their rewritten graphs. Over every sample photo they must find the
//! same faces and give the same embeddings as the float planes the pipeline writes itself,
//! and the embedder's declared output is `[batch, 512]`, not the file's `[1, 512]`.

mod support;

use facedex_pipeline::Wanted;
use facedex_vision::ModelInput;
use support::{analyze_photos, cosine, vision_config};

const PHOTOS: [&str; 9] = [
    "Tom_Hanks_54745.png",
    "gdp.jpg",
    "mask_black.jpg",
    "mask_blue.jpg",
    "mask_green.jpg",
    "mask_white.jpg",
    "players.jpg",
    "t1.jpg",
    "yaoming.jpg",
];

#[test]
fn pixels_normalised_in_the_graph_give_the_same_faces_and_embeddings() {
    let mut planes = vision_config();
    planes.model_input = ModelInput::Planes;
    planes.attributes.clear();
    let mut pixels = planes.clone();
    pixels.model_input = ModelInput::Pixels;
    let from_planes = analyze_photos(&PHOTOS, &planes, Wanted::EMBEDDINGS);
    let from_pixels = analyze_photos(&PHOTOS, &pixels, Wanted::EMBEDDINGS);
    let mut faces = 0;
    let mut worst_cosine = 1.0f32;
    let mut worst_offset = 0.0f32;
    for ((name, planes), pixels) in PHOTOS.iter().zip(&from_planes).zip(&from_pixels) {
        assert_eq!(planes.len(), pixels.len(), "{name}: face counts differ");
        for (a, b) in planes.iter().zip(pixels) {
            let offsets = a
                .detection
                .bbox
                .iter()
                .zip(&b.detection.bbox)
                .map(|(x, y)| (x - y).abs());
            worst_offset = offsets.fold(worst_offset, f32::max);
            assert!(
                (a.detection.score - b.detection.score).abs() < 1e-4,
                "{name}: scores differ"
            );
            worst_cosine = worst_cosine.min(cosine(&a.embedding, &b.embedding));
            faces += 1;
        }
    }
    println!("{faces} faces: largest box offset {worst_offset:.5} px, lowest embedding cosine {worst_cosine:.7}");
    assert!(faces >= 30, "{faces} faces");
    assert!(worst_offset < 0.01, "boxes moved by {worst_offset} px");
    assert!(worst_cosine > 0.99999, "an embedding moved: cosine {worst_cosine}");
}
