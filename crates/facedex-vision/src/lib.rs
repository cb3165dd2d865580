//! facedex's vision core: photo bytes to face records that match InsightFace's
//! `FaceAnalysis` on the same models: decode with EXIF orientation, SCRFD detection, 5-point
//! alignment, ArcFace embedding and per-face attribute models with a quality score, each a building block that runs on one batch at a time.
//! `facedex-pipeline` puts them behind the one model front end (batching across callers);
//! this crate knows nothing of Kafka, gRPC or async.

pub mod align;
pub mod attributes;
pub mod close_up;
pub mod config;
pub mod decode;
pub mod detector;
pub mod embedder;
pub mod error;
mod face;
mod graph;
pub mod letterbox;
mod runtime;
pub mod scrfd;

pub use config::{ConvAlgorithmSearch, CpuPrelu, DetectionConfig, ExecutionProvider, ModelInput, VisionConfig};
pub use decode::{ScaledPhoto, decode_photo, decode_photo_scaled};
pub use detector::Detector;
pub use embedder::Embedder;
pub use error::{Result, VisionError};
pub use face::{Face, load_attribute_models, load_models};
pub use letterbox::{LetterboxGeometry, LetterboxedPhoto, letterbox_geometry};
pub use scrfd::DetectedFace;
