//! What a face is besides who: the per-face models' results (age, gender, liveness, …) and
//! the quality score, as the index stores, returns and filters on them. The pipeline fills
//! them from the vision core's models; the index only checks they are well formed.

use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};

/// Most attributes one face may carry.
pub const MAX_ATTRIBUTES: usize = 16;
/// Longest attribute name, model id or label, in bytes.
pub const MAX_ATTRIBUTE_TEXT_BYTES: usize = 128;
/// Longest vector an attribute may hold.
pub const MAX_ATTRIBUTE_VECTOR: usize = 4096;

/// The attribute name age filters read (years, an expected value).
pub const AGE: &str = "age";
/// The attribute name gender filters read (a label with its confidence).
pub const GENDER: &str = "gender";

/// A decoded model output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttributeValue {
    /// The likeliest label and its probability.
    Label {
        /// The label.
        label: String,
        /// Its probability in `0..=1`.
        confidence: f32,
    },
    /// A number (an expected value, a score).
    Number(f32),
    /// A descriptor.
    Vector(Vec<f32>),
}

/// One model's result for one face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceAttribute {
    /// The attribute's name (`age`, `gender`).
    pub name: String,
    /// The weights that gave it.
    pub model_id: String,
    /// The value.
    pub value: AttributeValue,
}

/// The attributes and quality of a face; empty for faces indexed without them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FaceTraits {
    /// Quality in `0..=1` (detection, size, pose and sharpness together).
    pub quality: Option<f32>,
    /// The per-face models' results, one per model.
    pub attributes: Vec<FaceAttribute>,
}

impl FaceTraits {
    /// The named attribute's number.
    pub fn number(&self, name: &str) -> Option<f32> {
        self.find(name).and_then(|value| match value {
            AttributeValue::Number(number) => Some(*number),
            _ => None,
        })
    }

    /// The named attribute's label and confidence.
    pub fn label(&self, name: &str) -> Option<(&str, f32)> {
        self.find(name).and_then(|value| match value {
            AttributeValue::Label { label, confidence } => Some((label.as_str(), *confidence)),
            _ => None,
        })
    }

    fn find(&self, name: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find(|attribute| attribute.name == name)
            .map(|attribute| &attribute.value)
    }

    /// Rejects traits no model could have produced, naming `image_uri` in the error.
    pub(crate) fn check(&self, image_uri: &str) -> Result<()> {
        let invalid = |reason: String| IndexError::InvalidRecord {
            image_uri: image_uri.to_owned(),
            reason,
        };
        if let Some(quality) = self.quality
            && !(0.0..=1.0).contains(&quality)
        {
            return Err(invalid(format!("quality {quality} is outside 0..=1")));
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(invalid(format!(
                "{} attributes, at most {MAX_ATTRIBUTES}",
                self.attributes.len()
            )));
        }
        for (index, attribute) in self.attributes.iter().enumerate() {
            let long_text = [attribute.name.as_str(), attribute.model_id.as_str()]
                .into_iter()
                .chain(match &attribute.value {
                    AttributeValue::Label { label, .. } => Some(label.as_str()),
                    _ => None,
                })
                .any(|text| text.len() > MAX_ATTRIBUTE_TEXT_BYTES);
            if attribute.name.is_empty() || long_text {
                return Err(invalid(format!(
                    "attribute {index}: name, model id and label must be 1 to {MAX_ATTRIBUTE_TEXT_BYTES} bytes"
                )));
            }
            if self.attributes[..index]
                .iter()
                .any(|other| other.name == attribute.name)
            {
                return Err(invalid(format!("attribute {:?} appears twice", attribute.name)));
            }
            let finite = match &attribute.value {
                AttributeValue::Label { confidence, .. } => (0.0..=1.0).contains(confidence),
                AttributeValue::Number(number) => number.is_finite(),
                AttributeValue::Vector(values) => {
                    values.len() <= MAX_ATTRIBUTE_VECTOR && values.iter().all(|value| value.is_finite())
                }
            };
            if !finite {
                return Err(invalid(format!(
                    "attribute {:?}: a confidence outside 0..=1, a value that is not finite or a vector over {MAX_ATTRIBUTE_VECTOR}",
                    attribute.name
                )));
            }
        }
        Ok(())
    }
}

/// Conditions on a face's traits; a face without the trait a condition reads fails it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraitFilter {
    /// Youngest age, in years.
    pub min_age: Option<f32>,
    /// Oldest age, in years.
    pub max_age: Option<f32>,
    /// Only faces given this gender label…
    pub gender: Option<String>,
    /// …with at least this confidence.
    pub min_gender_confidence: f32,
    /// Lowest quality.
    pub min_quality: Option<f32>,
}

impl TraitFilter {
    /// Whether no condition is set.
    pub fn is_empty(&self) -> bool {
        self.min_age.is_none() && self.max_age.is_none() && self.gender.is_none() && self.min_quality.is_none()
    }

    /// Whether `traits` meet every condition.
    pub fn accepts(&self, traits: &FaceTraits) -> bool {
        if self.min_age.is_some() || self.max_age.is_some() {
            let Some(age) = traits.number(AGE) else {
                return false;
            };
            if self.min_age.is_some_and(|min| age < min) || self.max_age.is_some_and(|max| age > max) {
                return false;
            }
        }
        if let Some(wanted) = &self.gender {
            match traits.label(GENDER) {
                Some((label, confidence)) if label == wanted && confidence >= self.min_gender_confidence => {}
                _ => return false,
            }
        }
        match self.min_quality {
            Some(min) => traits.quality.is_some_and(|quality| quality >= min),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traits(age: f32, gender: &str, confidence: f32, quality: f32) -> FaceTraits {
        FaceTraits {
            quality: Some(quality),
            attributes: vec![
                FaceAttribute {
                    name: AGE.into(),
                    model_id: "age-v1-4f9f0075200b".into(),
                    value: AttributeValue::Number(age),
                },
                FaceAttribute {
                    name: GENDER.into(),
                    model_id: "gender-v1-d4c4116cf720".into(),
                    value: AttributeValue::Label {
                        label: gender.into(),
                        confidence,
                    },
                },
            ],
        }
    }

    #[test]
    fn a_filter_passes_only_faces_that_meet_every_condition() {
        let filter = TraitFilter {
            min_age: Some(20.0),
            max_age: Some(40.0),
            gender: Some("female".into()),
            min_gender_confidence: 0.8,
            min_quality: Some(0.5),
        };
        assert!(filter.accepts(&traits(30.0, "female", 0.9, 0.6)));
        assert!(!filter.accepts(&traits(50.0, "female", 0.9, 0.6)), "too old");
        assert!(!filter.accepts(&traits(10.0, "female", 0.9, 0.6)), "too young");
        assert!(!filter.accepts(&traits(30.0, "male", 0.9, 0.6)), "other gender");
        assert!(!filter.accepts(&traits(30.0, "female", 0.7, 0.6)), "unsure");
        assert!(!filter.accepts(&traits(30.0, "female", 0.9, 0.4)), "low quality");
        assert!(!filter.accepts(&FaceTraits::default()), "no traits fail a condition");
        assert!(TraitFilter::default().accepts(&FaceTraits::default()));
    }

    #[test]
    fn malformed_traits_are_refused() {
        assert!(traits(30.0, "male", 0.9, 0.6).check("a.jpg").is_ok());
        assert!(traits(30.0, "male", 1.5, 0.6).check("a.jpg").is_err());
        assert!(traits(f32::NAN, "male", 0.9, 0.6).check("a.jpg").is_err());
        assert!(traits(30.0, "male", 0.9, 2.0).check("a.jpg").is_err());
        let mut twice = traits(30.0, "male", 0.9, 0.6);
        twice.attributes[1].name = AGE.into();
        assert!(twice.check("a.jpg").expect_err("twice").to_string().contains("twice"));
        let mut long = traits(30.0, "male", 0.9, 0.6);
        long.attributes[1].value = AttributeValue::Label {
            label: "x".repeat(500),
            confidence: 0.5,
        };
        assert!(long.check("a.jpg").is_err());
    }
}
