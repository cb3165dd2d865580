//! Why a request could not be turned into a domain query: the proto crate's one error type.

use facedex_index::IndexError;

/// A request that is malformed before it reaches the index.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A required field or `oneof` is not set.
    #[error("{field} is required: {hint}")]
    MissingField {
        /// The field's name in the request.
        field: &'static str,
        /// What to set.
        hint: &'static str,
    },
    /// A field whose value is invalid (an id that is not one, a value out of range).
    #[error("{field}: {source}")]
    InvalidField {
        /// The field's name in the request.
        field: &'static str,
        /// What is wrong with it.
        #[source]
        source: IndexError,
    },
}
