//! The index crate's one error type: every way a request or a snapshot can fail, each naming
//! the input that failed and why, so the API layer can map it to a status without guessing.

use std::path::PathBuf;

/// Everything the face index can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A vector of the wrong length.
    #[error("{what} has {actual} dimensions, but this index holds {expected}-dimensional embeddings")]
    DimensionMismatch {
        /// Which vector (e.g. "the query vector", "the embedding of face 3f…").
        what: String,
        /// The index's dimension.
        expected: usize,
        /// The vector's length.
        actual: usize,
    },
    /// A NaN or infinite component.
    #[error("{what} has a non-finite value ({value}) at position {position}")]
    NonFiniteValue {
        /// Which vector.
        what: String,
        /// Index of the first bad component.
        position: usize,
        /// The bad value, printed.
        value: f32,
    },
    /// A vector whose L2 norm is not 1 (embeddings are compared by cosine as a dot product).
    #[error(
        "{what} has L2 norm {norm:.6}, but embeddings must be unit vectors (norm 1 ± {tolerance}); normalise it first"
    )]
    NotUnitVector {
        /// Which vector.
        what: String,
        /// Its norm.
        norm: f32,
        /// The accepted deviation from 1.
        tolerance: f32,
    },
    /// A limit outside what the index serves.
    #[error("limit must be between 1 and {max}, got {limit}")]
    InvalidLimit {
        /// The requested limit.
        limit: usize,
        /// The largest accepted limit.
        max: usize,
    },
    /// A graph-walk width outside the accepted range.
    #[error("ef must be between 1 and {max}, got {ef}")]
    InvalidEf {
        /// The requested ef.
        ef: usize,
        /// The largest accepted ef.
        max: usize,
    },
    /// A similarity threshold that is not a number in [-1, 1].
    #[error("min_score must be a cosine similarity between -1 and 1, got {min_score}")]
    InvalidMinScore {
        /// The requested threshold.
        min_score: f32,
    },
    /// A face id that the index does not hold (never inserted, or deleted).
    #[error("no face with id {face_id} in the index")]
    UnknownFace {
        /// The id asked for.
        face_id: String,
    },
    /// A string that is not a face id.
    #[error("{input:?} is not a face id: expected 32 hexadecimal characters")]
    MalformedFaceId {
        /// The string given.
        input: String,
    },
    /// A person id that the index does not hold (never founded, merged away, or emptied).
    #[error("no person with id {person_id} in the index")]
    UnknownPerson {
        /// The id asked for.
        person_id: String,
    },
    /// A string that is not a person id.
    #[error("{input:?} is not a person id: expected 16 hexadecimal characters")]
    MalformedPersonId {
        /// The string given.
        input: String,
    },
    /// A people edit out of its own bounds (a blank or long name, too many persons or faces).
    #[error("people edit refused: {reason}")]
    InvalidPeopleEdit {
        /// What is wrong and what to do instead.
        reason: String,
    },
    /// A well-formed people edit that the people as they are now do not allow.
    #[error("people edit refused: {reason}")]
    PeopleEditConflict {
        /// What stands in the way.
        reason: String,
    },
    /// A record or query from a different embedding model than the index holds.
    #[error(
        "{what} comes from model {actual:?}, but this index holds embeddings of model {expected:?}; embeddings of different models cannot be compared"
    )]
    ModelMismatch {
        /// Which input.
        what: String,
        /// The index's model id.
        expected: String,
        /// The input's model id.
        actual: String,
    },
    /// A record with metadata that cannot describe a face.
    #[error("face record for {image_uri:?} is invalid: {reason}")]
    InvalidRecord {
        /// The record's image URI.
        image_uri: String,
        /// What is wrong.
        reason: String,
    },
    /// An invalid index configuration.
    #[error("invalid index configuration: {0}")]
    InvalidConfig(String),
    /// A file or directory operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("create", "write", "fsync", …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot generation that is incomplete or damaged (torn write, bit rot, wrong format).
    #[error("snapshot {path} is unusable: {reason}")]
    CorruptSnapshot {
        /// The generation directory.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// The data directory is held by another process.
    #[error("data directory {path} is in use by another facedex process (lock file {lock})")]
    DataDirLocked {
        /// The data directory.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
}

impl IndexError {
    /// Shorthand for [`IndexError::Io`].
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`IndexError::CorruptSnapshot`].
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::CorruptSnapshot {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias for the index crate.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
