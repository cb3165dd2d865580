//! The int8 per-face models (`precision = "int8"`, the default for age and gender) against the
//! same models in float, face by face, on photos the calibration did not see (the face-api and
//! labelled folders; calibration reads only the sample photos at the top of `photos/`): the
//! genders agree, the ages move by a fraction of a year at the median. Also: what a model that
//! cannot be calibrated or quantised says.

mod support;

use facedex_pipeline::{BatchingConfig, LocalModels, Wanted};
use facedex_vision::attributes::{AttributeValue, FaceAttribute, ModelPrecision};
use facedex_vision::{Face, VisionConfig};
use support::{analyze_photos, vision_config};

/// Photos outside the calibration set, with 3–5 faces each or one large face.
const HELD_OUT: [&str; 13] = [
    "face-api/sample1.jpg",
    "face-api/sample2.jpg",
    "face-api/sample3.jpg",
    "face-api/sample4.jpg",
    "face-api/sample5.jpg",
    "face-api/sample6.jpg",
    "labelled/32bit.png",
    "labelled/biden.jpg",
    "labelled/obama.jpg",
    "labelled/obama2.jpg",
    "labelled/obama3.jpg",
    "labelled/obama_partial_face.jpg",
    "labelled/obama_partial_face2.jpg",
];

fn with_precision(precision: ModelPrecision) -> VisionConfig {
    let mut config = vision_config();
    for model in &mut config.attributes {
        model.precision = precision;
    }
    config
}

fn attribute<'a>(face: &'a Face, name: &str) -> &'a FaceAttribute {
    face.attributes
        .iter()
        .find(|attribute| attribute.name == name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", face.attributes))
}

fn number(attribute: &FaceAttribute) -> f32 {
    match attribute.value {
        AttributeValue::Number(value) => value,
        ref other => panic!("{} is not a number: {other:?}", attribute.name),
    }
}

fn label(attribute: &FaceAttribute) -> (&str, f32) {
    match &attribute.value {
        AttributeValue::Label { label, confidence } => (label.as_str(), *confidence),
        other => panic!("{} is not a label: {other:?}", attribute.name),
    }
}

#[test]
fn int8_age_and_gender_match_the_float_models_on_photos_outside_the_calibration() {
    let float = analyze_photos(&HELD_OUT, &with_precision(ModelPrecision::F32), Wanted::ALL);
    let int8 = analyze_photos(&HELD_OUT, &with_precision(ModelPrecision::Int8), Wanted::ALL);
    let mut age_gaps = Vec::new();
    let mut gender_gaps = Vec::new();
    let mut genders_agree = 0;
    for ((name, float), int8) in HELD_OUT.iter().zip(&float).zip(&int8) {
        // The detector and embedder are the same either way: the same faces in the same order.
        assert_eq!(float.len(), int8.len(), "{name}");
        for (float, int8) in float.iter().zip(int8) {
            assert_eq!(float.detection, int8.detection, "{name}");
            let (age_f32, age_int8) = (attribute(float, "age"), attribute(int8, "age"));
            assert!(!age_f32.model_id.ends_with("-int8"), "{}", age_f32.model_id);
            assert_eq!(age_int8.model_id, format!("{}-int8", age_f32.model_id));
            age_gaps.push((number(age_f32) - number(age_int8)).abs());
            let (gender_f32, gender_int8) = (label(attribute(float, "gender")), label(attribute(int8, "gender")));
            genders_agree += usize::from(gender_f32.0 == gender_int8.0);
            gender_gaps.push((gender_f32.1 - gender_int8.1).abs());
        }
    }
    let faces = age_gaps.len();
    assert!(faces >= 20, "only {faces} faces in the held-out photos");
    age_gaps.sort_by(f32::total_cmp);
    gender_gaps.sort_by(f32::total_cmp);
    let median_age = age_gaps[faces / 2];
    let worst_age = age_gaps[faces - 1];
    println!(
        "{faces} faces: |Δage| median {median_age:.2} years, largest {worst_age:.2}; genders agree on {genders_agree}; \
         |Δconfidence| largest {:.3}",
        gender_gaps[faces - 1]
    );
    assert!(median_age <= 1.0, "int8 ages moved {median_age:.2} years at the median");
    assert!(worst_age <= 5.0, "an int8 age moved {worst_age:.2} years");
    assert!(
        genders_agree * 100 >= faces * 95,
        "genders agree on {genders_agree} of {faces}"
    );
}

#[test]
fn int8_models_without_calibration_faces_say_what_to_set() {
    let empty = tempfile::tempdir().expect("tempdir");
    let mut config = with_precision(ModelPrecision::Int8);
    config.calibration_photos_dir = empty.path().to_owned();
    let error = LocalModels::load(&config, &BatchingConfig::default())
        .err()
        .expect("no faces to calibrate on");
    let message = error.to_string();
    assert!(message.contains("calibration_photos_dir"), "{message}");
    assert!(message.contains("precision = \"f32\""), "{message}");

    // With float models the folder is not read at all.
    config
        .attributes
        .iter_mut()
        .for_each(|model| model.precision = ModelPrecision::F32);
    LocalModels::load(&config, &BatchingConfig::default()).expect("float models need no calibration");
}

#[test]
fn a_model_whose_opset_predates_per_channel_int8_is_refused_with_the_reason() {
    // The SCRFD detector as an "attribute model" has convolutions, but its opset (11) predates
    // per-channel dequantisation: int8 is refused with the reason, not run wrong.
    let mut config = with_precision(ModelPrecision::Int8);
    config.attributes.truncate(1);
    config.attributes[0].model_path = config.detector_model_path.clone();
    let error = LocalModels::load(&config, &BatchingConfig::default())
        .err()
        .expect("opset 11 cannot be quantised per channel");
    let message = error.to_string();
    assert!(message.contains("opset"), "{message}");
    assert!(message.contains("scrfd_500m_bnkps.onnx"), "{message}");
}
