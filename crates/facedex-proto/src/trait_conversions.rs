//! A face's traits (the per-face models' results and its quality) between the proto messages
//! and `facedex-index`'s types, and the search filter's trait conditions, bounded before use.

use facedex_index::{
    AttributeValue, FaceAttribute as DomainAttribute, FaceTraits, MAX_ATTRIBUTE_TEXT_BYTES, TraitFilter,
};

use crate::error::RequestError;
use crate::{Embedding, FaceAttribute, LabelValue, SearchFilter, face_attribute};

/// The oldest age a filter may ask for, in years.
pub const MAX_FILTER_AGE: f32 = 150.0;

/// The proto form of attributes.
pub fn attributes_to_proto(attributes: &[DomainAttribute]) -> Vec<FaceAttribute> {
    attributes
        .iter()
        .map(|attribute| FaceAttribute {
            name: attribute.name.clone(),
            model_id: attribute.model_id.clone(),
            value: Some(match &attribute.value {
                AttributeValue::Label { label, confidence } => face_attribute::Value::Label(LabelValue {
                    label: label.clone(),
                    confidence: *confidence,
                }),
                AttributeValue::Number(number) => face_attribute::Value::Number(*number),
                AttributeValue::Vector(values) => face_attribute::Value::Vector(Embedding { values: values.clone() }),
            }),
        })
        .collect()
}

/// A face's traits from their proto form; the index checks their ranges when it stores them.
pub fn traits(attributes: Vec<FaceAttribute>, quality: Option<f32>) -> Result<FaceTraits, RequestError> {
    Ok(FaceTraits {
        quality,
        attributes: attributes_from_proto(attributes)?,
    })
}

/// Attributes from their proto form; one without a value is malformed.
pub fn attributes_from_proto(attributes: Vec<FaceAttribute>) -> Result<Vec<DomainAttribute>, RequestError> {
    attributes
        .into_iter()
        .map(|attribute| {
            let value = match attribute.value {
                Some(face_attribute::Value::Label(label)) => AttributeValue::Label {
                    label: label.label,
                    confidence: label.confidence,
                },
                Some(face_attribute::Value::Number(number)) => AttributeValue::Number(number),
                Some(face_attribute::Value::Vector(vector)) => AttributeValue::Vector(vector.values),
                None => {
                    return Err(RequestError::Malformed {
                        record: "FaceAttribute",
                        reason: format!("attribute {:?} has no value", attribute.name),
                    });
                }
            };
            Ok(DomainAttribute {
                name: attribute.name,
                model_id: attribute.model_id,
                value,
            })
        })
        .collect()
}

/// The trait conditions of a search filter, each checked against its range.
pub fn trait_filter(filter: &SearchFilter) -> Result<TraitFilter, RequestError> {
    let bounded = |field: &'static str, value: Option<f32>, max: f32| match value {
        Some(value) if !(0.0..=max).contains(&value) => Err(RequestError::OutOfRangeDecimal {
            field,
            value,
            min: 0.0,
            max,
        }),
        other => Ok(other),
    };
    let min_age = bounded("filter.min_age", filter.min_age, MAX_FILTER_AGE)?;
    let max_age = bounded("filter.max_age", filter.max_age, MAX_FILTER_AGE)?;
    if let (Some(min), Some(max)) = (min_age, max_age)
        && min > max
    {
        return Err(RequestError::OutOfRangeDecimal {
            field: "filter.max_age",
            value: max,
            min,
            max: MAX_FILTER_AGE,
        });
    }
    let min_gender_confidence =
        bounded("filter.min_gender_confidence", Some(filter.min_gender_confidence), 1.0)?.unwrap_or_default();
    if filter.gender.len() > MAX_ATTRIBUTE_TEXT_BYTES {
        return Err(RequestError::OutOfRange {
            field: "filter.gender (bytes)",
            value: filter.gender.len() as u64,
            min: 0,
            max: MAX_ATTRIBUTE_TEXT_BYTES as u64,
        });
    }
    Ok(TraitFilter {
        min_age,
        max_age,
        gender: (!filter.gender.is_empty()).then(|| filter.gender.clone()),
        min_gender_confidence,
        min_quality: bounded("filter.min_quality", filter.min_quality, 1.0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trait_conditions_out_of_range_name_their_field() {
        let filter = |edit: fn(&mut SearchFilter)| {
            let mut filter = SearchFilter::default();
            edit(&mut filter);
            trait_filter(&filter)
        };
        let error = filter(|f| f.min_age = Some(-1.0)).expect_err("negative age");
        assert!(error.to_string().contains("filter.min_age is -1"), "{error}");
        let error = filter(|f| f.min_quality = Some(f32::NAN)).expect_err("NaN");
        assert!(error.to_string().contains("filter.min_quality"), "{error}");
        let error = filter(|f| {
            f.min_age = Some(40.0);
            f.max_age = Some(20.0);
        })
        .expect_err("inverted range");
        assert!(
            error
                .to_string()
                .contains("filter.max_age is 20, outside the accepted range 40"),
            "{error}"
        );
        assert!(filter(|f| f.gender = "x".repeat(200)).is_err());
        let ok = filter(|f| {
            f.min_age = Some(20.0);
            f.gender = "female".into();
            f.min_gender_confidence = 0.9;
        })
        .expect("valid");
        assert_eq!(
            (ok.min_age, ok.gender.as_deref(), ok.min_gender_confidence),
            (Some(20.0), Some("female"), 0.9)
        );
        assert!(filter(|_| {}).expect("empty").is_empty());
    }

    #[test]
    fn traits_round_trip_and_a_valueless_attribute_is_malformed() {
        let domain = FaceTraits {
            quality: Some(0.7),
            attributes: vec![
                DomainAttribute {
                    name: "age".into(),
                    model_id: "age-v1".into(),
                    value: AttributeValue::Number(31.5),
                },
                DomainAttribute {
                    name: "gender".into(),
                    model_id: "gender-v1".into(),
                    value: AttributeValue::Label {
                        label: "male".into(),
                        confidence: 0.97,
                    },
                },
            ],
        };
        assert_eq!(
            traits(attributes_to_proto(&domain.attributes), domain.quality).expect("decodes"),
            domain
        );
        let valueless = FaceAttribute {
            name: "age".into(),
            ..FaceAttribute::default()
        };
        assert!(traits(vec![valueless], None).is_err());
    }
}
