//! The graphs rewritten at load give what the model files give: over every sample photo, the
//! same faces and the same embeddings as the files fed float planes, with
//! `vision.model_input = "pixels"` (the default on CUDA: 8-bit pixels normalised inside the
//! graph) and with each of `vision.cpu_prelu`'s forms of `PRelu` (`depthwise_conv`, the default
//! on CPU, and `max`).

mod support;

use facedex_pipeline::Wanted;
use facedex_vision::{CpuPrelu, ModelInput, VisionConfig};
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

/// The files as they are: float planes, `PRelu` kept.
fn as_the_files_are() -> VisionConfig {
    let mut config = vision_config();
    config.model_input = ModelInput::Planes;
    config.cpu_prelu = CpuPrelu::Kernel;
    config.attributes.clear();
    config
}

/// `rewritten`'s faces against the files' over the sample photos; prints the largest change.
fn same_faces_as_the_files(what: &str, rewritten: &VisionConfig) {
    let from_files = analyze_photos(&PHOTOS, &as_the_files_are(), Wanted::EMBEDDINGS);
    let from_rewritten = analyze_photos(&PHOTOS, rewritten, Wanted::EMBEDDINGS);
    let mut faces = 0;
    let mut worst_cosine = 1.0f32;
    let mut worst_offset = 0.0f32;
    for ((name, files), rewritten) in PHOTOS.iter().zip(&from_files).zip(&from_rewritten) {
        assert_eq!(files.len(), rewritten.len(), "{what}, {name}: face counts differ");
        for (a, b) in files.iter().zip(rewritten) {
            let offsets = a
                .detection
                .bbox
                .iter()
                .zip(&b.detection.bbox)
                .map(|(x, y)| (x - y).abs());
            worst_offset = offsets.fold(worst_offset, f32::max);
            assert!(
                (a.detection.score - b.detection.score).abs() < 1e-4,
                "{what}, {name}: scores differ"
            );
            worst_cosine = worst_cosine.min(cosine(&a.embedding, &b.embedding));
            faces += 1;
        }
    }
    println!(
        "{what}: {faces} faces, largest box offset {worst_offset:.5} px, lowest embedding cosine {worst_cosine:.7}"
    );
    assert!(faces >= 30, "{faces} faces");
    assert!(worst_offset < 0.01, "{what}: boxes moved by {worst_offset} px");
    assert!(
        worst_cosine > 0.99999,
        "{what}: an embedding moved: cosine {worst_cosine}"
    );
}

#[test]
fn pixels_normalised_in_the_graph_give_the_same_faces_and_embeddings() {
    let mut pixels = as_the_files_are();
    pixels.model_input = ModelInput::Pixels;
    same_faces_as_the_files("8-bit pixels", &pixels);
}

#[test]
fn prelu_as_max_gives_the_same_faces_and_embeddings() {
    let mut prelu = as_the_files_are();
    prelu.cpu_prelu = CpuPrelu::Max;
    same_faces_as_the_files("PRelu as Max", &prelu);
}

#[test]
fn prelu_as_depthwise_convolutions_gives_the_same_faces_and_embeddings() {
    let mut prelu = as_the_files_are();
    prelu.cpu_prelu = CpuPrelu::DepthwiseConv;
    same_faces_as_the_files("PRelu as depthwise convolutions", &prelu);
}
