//! The JSON the console's API answers with, made from the gRPC handlers' answers: the page
//! needs names and flat fields, not the proto's nesting (a face's person state as a word,
//! attributes as a map, boxes as `[x1, y1, x2, y2]`).

use std::collections::BTreeMap;

use facedex_proto::face_attribute::Value;
use facedex_proto::face_person::State;
use facedex_proto::{BoundingBox, Face, Person};
use serde::Serialize;

/// A proto box as `[x1, y1, x2, y2]`; zeros when absent.
pub(crate) fn corners(bounding_box: Option<&BoundingBox>) -> [f32; 4] {
    bounding_box.map_or([0.0; 4], |corners| [corners.x1, corners.y1, corners.x2, corners.y2])
}

/// A face of the index.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FaceJson {
    pub face_id: String,
    pub image_uri: String,
    /// The photo's file name, the last part of its URI.
    pub photo_name: String,
    /// `[x1, y1, x2, y2]` in the upright photo's pixels.
    #[serde(rename = "box")]
    pub bounding_box: [f32; 4],
    pub detection_score: f32,
    /// `assigned`, `waiting`, `skipped_too_small`, … (see `FacePerson.State`).
    pub person_state: String,
    pub person_id: Option<String>,
    pub person_name: Option<String>,
    /// Numbers (`age`) as numbers, labels (`gender`) as `{label, confidence}`.
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub quality: Option<f32>,
}

impl From<&Face> for FaceJson {
    fn from(face: &Face) -> Self {
        let person = face.person.clone().unwrap_or_default();
        let state = State::try_from(person.state).unwrap_or(State::Unspecified);
        let attributes = face
            .attributes
            .iter()
            .filter_map(|attribute| {
                let value = match attribute.value.as_ref()? {
                    Value::Number(number) => serde_json::json!(number),
                    Value::Label(label) => serde_json::json!({"label": label.label, "confidence": label.confidence}),
                    Value::Vector(_) => return None,
                };
                Some((attribute.name.clone(), value))
            })
            .collect();
        Self {
            face_id: face.face_id.clone(),
            image_uri: face.image_uri.clone(),
            photo_name: face
                .image_uri
                .rsplit_once('/')
                .map_or(face.image_uri.as_str(), |(_, name)| name)
                .to_owned(),
            bounding_box: corners(face.bounding_box.as_ref()),
            detection_score: face.detection_score,
            person_state: state.as_str_name().to_ascii_lowercase(),
            person_id: (!person.person_id.is_empty()).then_some(person.person_id),
            person_name: (!person.person_name.is_empty()).then_some(person.person_name),
            attributes,
            quality: face.quality,
        }
    }
}

/// A person with its face count and representative face.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PersonJson {
    pub person_id: String,
    pub name: String,
    pub hidden: bool,
    pub face_count: u64,
    pub representative: Option<FaceJson>,
}

impl From<&Person> for PersonJson {
    fn from(person: &Person) -> Self {
        Self {
            person_id: person.person_id.clone(),
            name: person.name.clone(),
            hidden: person.hidden,
            face_count: person.face_count,
            representative: person.representative.as_ref().map(FaceJson::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use facedex_proto::{FaceAttribute, FacePerson, LabelValue};

    use super::*;

    #[test]
    fn a_face_reads_flat() {
        let face = Face {
            face_id: "ab".into(),
            image_uri: "file:///photos/2024/yao.jpg".into(),
            bounding_box: Some(BoundingBox {
                x1: 1.0,
                y1: 2.0,
                x2: 3.0,
                y2: 4.0,
            }),
            person: Some(FacePerson {
                state: State::Assigned as i32,
                person_id: "0123456789abcdef".into(),
                person_name: "Yao".into(),
            }),
            attributes: vec![
                FaceAttribute {
                    name: "age".into(),
                    model_id: "m".into(),
                    value: Some(Value::Number(31.5)),
                },
                FaceAttribute {
                    name: "gender".into(),
                    model_id: "m".into(),
                    value: Some(Value::Label(LabelValue {
                        label: "male".into(),
                        confidence: 0.9,
                    })),
                },
            ],
            ..Face::default()
        };
        let json = serde_json::to_value(FaceJson::from(&face)).expect("json");
        assert_eq!(json["photo_name"], "yao.jpg");
        assert_eq!(json["box"], serde_json::json!([1.0, 2.0, 3.0, 4.0]));
        assert_eq!(json["person_state"], "assigned");
        assert_eq!(json["person_name"], "Yao");
        assert_eq!(json["attributes"]["age"], 31.5);
        assert_eq!(json["attributes"]["gender"]["label"], "male");
    }
}
