//! [`PipelineError`]: why a stage failed, which input it failed on, and whether trying again
//! can help ([`PipelineError::is_transient`]) or the photo belongs in the dead-letter topic
//! ([`PipelineError::dead_letter_kind`]). Errors from below (object store, vision, index,
//! the runtime) are kept as sources, not flattened into strings; [`describe`] spells out
//! the whole chain where one line of text must carry it (a dead letter, a JSON line).

use std::error::Error;
use std::sync::Arc;

use facedex_index::IndexError;
use facedex_vision::VisionError;

use crate::failure::PhotoFailureKind;

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
    /// `--prune` would remove every photo the index holds of an archive that lists none.
    #[error(
        "refusing to prune {archive}: it lists no photos, so all {indexed} photos the index holds of it would be removed; check the archive is there (mounted, spelled right), or delete them by URI prefix"
    )]
    PruneEverything {
        /// The archive root.
        archive: String,
        /// Photos the index holds under it.
        indexed: usize,
    },
    /// Listing the archive failed.
    #[error("cannot list {archive}")]
    Listing {
        /// The archive root.
        archive: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },
    /// An image reference does not name a photo inside its archive.
    #[error("{uri}: invalid image reference: {reason}")]
    InvalidReference {
        /// The reference's URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// A record names an archive root this worker's `archive.allowed_roots` does not allow.
    #[error("{uri}: archive root {archive:?} is not in archive.allowed_roots")]
    RootNotAllowed {
        /// The reference's URI.
        uri: String,
        /// The root it names.
        archive: String,
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
    #[error("{uri}: fetch failed")]
    Fetch {
        /// The photo's URI.
        uri: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
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
    /// A model run in this process failed; every caller whose input was in that batch gets
    /// the same shared error.
    #[error("the {model} run failed")]
    ModelRun {
        /// `detector` or `embedder`.
        model: &'static str,
        /// The vision core's error.
        #[source]
        source: Arc<VisionError>,
    },
    /// The index refused a record.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A stage's task panicked or could not be joined (a bug, not an input problem).
    #[error("the {task} task failed")]
    TaskFailed {
        /// Which task.
        task: &'static str,
        /// The join error (a panic or a cancelled runtime).
        #[source]
        source: tokio::task::JoinError,
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
            | Self::PruneEverything { .. }
            | Self::Listing { .. }
            | Self::InvalidReference { .. }
            | Self::RootNotAllowed { .. }
            | Self::NotFound { .. }
            | Self::TooLarge { .. }
            | Self::ModelRun { .. }
            | Self::Index(_)
            | Self::TaskFailed { .. }
            | Self::Cancelled => false,
        }
    }

    /// The dead-letter kind when this error condemns the photo, `None` when it is the
    /// pipeline's own failure (models missing, shutdown), which must not lose the photo.
    pub fn dead_letter_kind(&self) -> Option<PhotoFailureKind> {
        match self {
            Self::NotFound { .. } => Some(PhotoFailureKind::NotFound),
            Self::TooLarge { .. } => Some(PhotoFailureKind::TooLarge),
            Self::InvalidReference { .. } => Some(PhotoFailureKind::InvalidReference),
            Self::RootNotAllowed { .. } => Some(PhotoFailureKind::RootNotAllowed),
            Self::Fetch { .. } => Some(PhotoFailureKind::FetchFailed),
            Self::Vision(error) => PhotoFailureKind::of_vision(error),
            Self::InvalidArchive { .. }
            | Self::PruneEverything { .. }
            | Self::Listing { .. }
            | Self::Models { .. }
            | Self::ModelRun { .. }
            | Self::Index(_)
            | Self::TaskFailed { .. }
            | Self::Cancelled => None,
        }
    }
}

/// `error` and every source below it as one line, `outer: inner: innermost`, for records
/// that carry the reason as text (dead letters, `facedex detect --json`).
pub fn describe(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // A transparent wrapper repeats its source's text; say it once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_spells_out_the_source_chain_once() {
        let error = PipelineError::Fetch {
            uri: "s3://photos/a.jpg".into(),
            source: object_store::Error::NotImplemented,
        };
        let text = describe(&error);
        assert!(text.starts_with("s3://photos/a.jpg: fetch failed: "), "{text}");
        assert!(text.to_lowercase().contains("implemented"), "{text}");
        let vision = PipelineError::Vision(VisionError::EmptyInput { input: "e.jpg".into() });
        assert_eq!(describe(&vision), "e.jpg: the file is empty (0 bytes)");
    }
}
