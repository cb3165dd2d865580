//! facedex's vision core: photo bytes to face records that match InsightFace's
//! `FaceAnalysis` on the same models: decode with EXIF orientation, SCRFD detection, 5-point
//! alignment and ArcFace embedding, batched across photos. Knows nothing of Kafka or gRPC.

pub mod align;
pub mod analyzer;
pub mod config;
pub mod decode;
pub mod detector;
pub mod embedder;
pub mod error;
pub mod letterbox;
pub mod pipeline;
mod runtime;
pub mod scrfd;

pub use analyzer::{Face, FaceAnalyzer, load_models};
pub use config::{DetectionConfig, ExecutionProvider, VisionConfig};
pub use decode::decode_photo;
pub use detector::Detector;
pub use embedder::Embedder;
pub use error::{Result, VisionError};
pub use letterbox::{LetterboxGeometry, LetterboxedPhoto, letterbox_geometry};
pub use pipeline::{AnalyzedPhoto, PhotoFile, PhotoResult, PhotoSource, PipelineOptions, analyze_photos};
pub use scrfd::DetectedFace;
