//! The vision crate's one error type. Every variant names the input or file it is about and
//! why it failed, and maps to a short, stable [`VisionError::kind`] label that the CLI prints,
//! the dead-letter topic records and metrics use as a bounded label.

use std::path::PathBuf;

/// Why turning a photo into faces failed.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// The photo's bytes could not be read (missing file, permission, I/O error).
    #[error("{input}: cannot read: {reason}")]
    Unreadable {
        /// Which photo.
        input: String,
        /// The operating system's or store's explanation.
        reason: String,
    },
    /// The input holds no bytes at all.
    #[error("{input}: the file is empty (0 bytes)")]
    EmptyInput {
        /// Which photo.
        input: String,
    },
    /// The bytes are not an image in a format facedex decodes.
    #[error(
        "{input}: not a supported image (expected JPEG, PNG, WebP, TIFF, GIF, BMP, JPEG XL, HEIF, AVIF or a camera RAW with a JPEG preview){detail}"
    )]
    UnsupportedFormat {
        /// Which photo.
        input: String,
        /// What was recognised instead, if anything, with a leading separator.
        detail: String,
    },
    /// The header declares more pixels than allowed; refused before any pixel buffer is allocated.
    #[error(
        "{input}: {width}x{height} is {pixels} pixels, over the limit of {max_pixels} \
         (raise vision.max_image_pixels to accept it)"
    )]
    TooManyPixels {
        /// Which photo.
        input: String,
        /// Declared width in pixels.
        width: u32,
        /// Declared height in pixels.
        height: u32,
        /// `width × height`.
        pixels: u64,
        /// The configured limit.
        max_pixels: u64,
    },
    /// The image is recognised but its data is broken (truncated, bad markers, bad checksum…).
    #[error("{input}: corrupt {format} image: {reason}")]
    CorruptImage {
        /// Which photo.
        input: String,
        /// The format the header announced.
        format: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// A model, or the ONNX Runtime library, is not where the configuration says.
    #[error("{what} not found at {}: run `scripts/setup` to fetch it, or set {setting}", path.display())]
    MissingFile {
        /// What the file is ("SCRFD detector model", …).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// The config key / env var that points at it.
        setting: &'static str,
    },
    /// ONNX Runtime itself could not be loaded or initialised.
    #[error("cannot load ONNX Runtime from {}: {reason}", path.display())]
    RuntimeUnavailable {
        /// The shared library that was tried.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The requested execution provider cannot run here; there is no silent fall-back to CPU.
    #[error("execution provider {provider} is unavailable: {reason}")]
    ExecutionProviderUnavailable {
        /// The provider asked for, e.g. `cuda:0`.
        provider: String,
        /// Why it is unavailable.
        reason: String,
    },
    /// A model file loaded but does not have the inputs/outputs facedex needs.
    #[error("model {} is not usable as {role}: {reason}", path.display())]
    IncompatibleModel {
        /// The model file.
        path: PathBuf,
        /// What it was loaded as ("an SCRFD detector", "an ArcFace embedder").
        role: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// ONNX Runtime failed while running a model.
    #[error("{model} inference failed: {reason}")]
    Inference {
        /// Which model ("detector" or "embedder").
        model: &'static str,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid vision setting {setting}: {reason}")]
    InvalidConfig {
        /// The config key.
        setting: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

impl VisionError {
    /// A short, stable, bounded label for the failure: printed as `error.kind`, recorded in the
    /// dead-letter topic and used as a metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "unreadable",
            Self::EmptyInput { .. } => "empty",
            Self::UnsupportedFormat { .. } => "not_an_image",
            Self::TooManyPixels { .. } => "too_large",
            Self::CorruptImage { .. } => "corrupt",
            Self::MissingFile { .. } => "missing_file",
            Self::RuntimeUnavailable { .. } => "runtime_unavailable",
            Self::ExecutionProviderUnavailable { .. } => "execution_provider_unavailable",
            Self::IncompatibleModel { .. } => "incompatible_model",
            Self::Inference { .. } => "inference",
            Self::InvalidConfig { .. } => "invalid_config",
        }
    }

    /// True when the photo itself is at fault, so retrying it cannot help (it belongs in the
    /// dead-letter topic); false for failures of the machine or its configuration.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Unreadable { .. }
                | Self::EmptyInput { .. }
                | Self::UnsupportedFormat { .. }
                | Self::TooManyPixels { .. }
                | Self::CorruptImage { .. }
        )
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = VisionError> = std::result::Result<T, E>;
