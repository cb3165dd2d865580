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
    /// A record or message that does not decode, or decodes to something inconsistent.
    #[error("malformed {record}: {reason}")]
    Malformed {
        /// What was being decoded.
        record: &'static str,
        /// Why it is malformed.
        reason: String,
    },
    /// A repeated field with more entries than a request may carry.
    #[error("{field} has {count} entries, over the limit of {max}")]
    TooManyEntries {
        /// The field's name in the request.
        field: &'static str,
        /// How many it has.
        count: usize,
        /// The most accepted.
        max: usize,
    },
    /// A number outside the range a request may ask for.
    #[error("{field} is {value}, outside the accepted range {min} to {max}")]
    OutOfRange {
        /// The field's name in the request.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The least accepted.
        min: u64,
        /// The most accepted.
        max: u64,
    },
    /// A decimal number outside the range a request may ask for (or not a number).
    #[error("{field} is {value}, outside the accepted range {min} to {max}")]
    OutOfRangeDecimal {
        /// The field's name in the request.
        field: &'static str,
        /// The value given.
        value: f32,
        /// The least accepted.
        min: f32,
        /// The most accepted.
        max: f32,
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
