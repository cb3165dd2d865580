//! facedex's public gRPC API, package `facedex.v1`: the generated messages and service stubs,
//! the descriptor set for reflection, and the one place that converts between them and the
//! domain types of `facedex-index`.

/// Modules nest as the proto packages do, so the generated cross-package paths resolve.
#[allow(missing_docs, clippy::all)]
mod generated {
    pub mod v1 {
        tonic::include_proto!("facedex.v1");
    }
    pub mod pipeline {
        pub mod v1 {
            tonic::include_proto!("facedex.pipeline.v1");
        }
    }
    pub mod embed {
        pub mod v1 {
            tonic::include_proto!("facedex.embed.v1");
        }
    }
}

pub mod conversions;
mod error;
pub mod people_conversions;
pub mod pipeline_conversions;
pub mod trait_conversions;

pub use error::RequestError;
pub use generated::v1::*;

/// `facedex.pipeline.v1`: the Kafka records (`ImageRef`, `FaceBatch`, `DeadLetter`).
pub mod pipeline {
    pub use crate::generated::pipeline::v1::*;
}

/// `facedex.embed.v1`: the internal model service of `facedex embed`.
pub mod embed {
    pub use crate::generated::embed::v1::*;
}

/// The encoded `FileDescriptorSet` of every facedex package, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("facedex_v1_descriptor");
