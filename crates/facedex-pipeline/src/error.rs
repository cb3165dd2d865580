//! [`PipelineError`]: why a stage failed, which input it failed on, and whether trying again
//! can help ([`PipelineError::is_transient`]) or the photo belongs in the dead-letter topic
//! ([`PipelineError::dead_letter_kind`]).

use facedex_index::IndexError;
use facedex_vision::VisionError;

/// Result of the pipeline's stages.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Everything a pipeline stage can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The archive URL cannot be opened (unknown scheme, missing bucket, bad options).
    #[error("cannot open the archive {url:?}: {reason}")]
    InvalidArchive {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// Listing the archive failed.
    #[error("cannot list {archive}: {reason}")]
    Listing {
        /// The archive root.
        archive: String,
        /// The object store's error.
        reason: String,
    },
    /// An image reference does not name a photo inside its archive.
    #[error("{uri}: invalid image reference: {reason}")]
    InvalidReference {
        /// The reference's URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// The photo is not in the archive (deleted after it was enqueued).
    #[error("{uri}: not found in the archive (deleted or renamed after it was enqueued?)")]
    NotFound {
        /// The photo's URI.
        uri: String,
    },
    /// The photo is larger than the configured limit.
    #[error("{uri}: {size_bytes} bytes is over the limit of {limit_bytes} (archive.max_image_bytes)")]
    TooLarge {
        /// The photo's URI.
        uri: String,
        /// Its size.
        size_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// Reading the photo failed in a way that may pass (network, throttling, a 5xx).
    #[error("{uri}: fetch failed: {reason}")]
    Fetch {
        /// The photo's URI.
        uri: String,
        /// The object store's error.
        reason: String,
    },
    /// The photo could not be decoded, or the models failed on it.
    #[error(transparent)]
    Vision(#[from] VisionError),
    /// The model service (in-process or remote) could not be reached or failed.
    #[error("the model service failed: {reason}")]
    Models {
        /// Why.
        reason: String,
        /// Whether another try may succeed (a worker down or overloaded).
        transient: bool,
    },
    /// The index refused a record.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A stage's task panicked or could not be joined (a bug, not an input problem).
    #[error("the {task} task failed: {reason}")]
    TaskFailed {
        /// Which task.
        task: &'static str,
        /// The join error.
        reason: String,
    },
    /// Shutdown was requested while the work was in flight.
    #[error("cancelled by shutdown")]
    Cancelled,
}

impl PipelineError {
    /// Whether a later attempt may succeed, so the work should be retried with backoff rather
    /// than dead-lettered.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Fetch { .. } => true,
            Self::Models { transient, .. } => *transient,
            Self::Vision(error) => !error.is_bad_input(),
            Self::InvalidArchive { .. }
            | Self::Listing { .. }
            | Self::InvalidReference { .. }
            | Self::NotFound { .. }
            | Self::TooLarge { .. }
            | Self::Index(_)
            | Self::TaskFailed { .. }
            | Self::Cancelled => false,
        }
    }

    /// The dead-letter `error_kind` when this error condemns the photo, `None` when it is the
    /// pipeline's own failure (models missing, shutdown), which must not lose the photo.
    pub fn dead_letter_kind(&self) -> Option<&'static str> {
        match self {
            Self::NotFound { .. } => Some("not_found"),
            Self::TooLarge { .. } => Some("too_large"),
            Self::InvalidReference { .. } => Some("invalid_reference"),
            Self::Fetch { .. } => Some("fetch_failed"),
            Self::Vision(error) if error.is_bad_input() => Some(match error.kind() {
                "unsupported_format" => "not_an_image",
                other => other,
            }),
            Self::Vision(_)
            | Self::InvalidArchive { .. }
            | Self::Listing { .. }
            | Self::Models { .. }
            | Self::Index(_)
            | Self::TaskFailed { .. }
            | Self::Cancelled => None,
        }
    }
}
