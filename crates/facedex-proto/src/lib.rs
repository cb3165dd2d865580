//! facedex's public gRPC API, package `facedex.v1`: the generated messages and service stubs,
//! the descriptor set for reflection, and the one place that converts between them and the
//! domain types of `facedex-index`.

#[allow(missing_docs, clippy::all)]
mod generated {
    tonic::include_proto!("facedex.v1");
}

pub mod conversions;
mod error;

pub use error::RequestError;
pub use generated::*;

/// The encoded `FileDescriptorSet` of `facedex.v1`, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("facedex_v1_descriptor");
