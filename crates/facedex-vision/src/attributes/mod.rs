//! Per-face models beside the embedder (age, gender, liveness, …) and the quality score: what
//! a face is, beyond who. Each model is configured ([`config`]), gets a chip cut from the
//! photo ([`chip`]) and returns one decoded value per face ([`model`]); [`quality`] scores a
//! face from what the detector and the aligned crop already tell.

pub(crate) mod calibration;
pub mod chip;
pub mod config;
mod int8;
pub mod model;
pub mod quality;

// The index's data model is the one form of an attribute: what the models give is what is stored.
pub use facedex_index::{AttributeValue, FaceAttribute};

pub use config::{
    AttributeModelConfig, ChipCrop, ChipTemplate, ModelPrecision, default_attribute_models, validate_attribute_models,
};
pub use model::AttributeModel;
pub use quality::{FaceQuality, face_quality};
