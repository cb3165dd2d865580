//! The service's error type and its one mapping to gRPC status codes.

use facedex_index::IndexError;
use facedex_pipeline::{PipelineError, describe};
use facedex_proto::RequestError;
use facedex_vision::VisionError;
use tonic::{Code, Status};

use crate::replicas::ReplicaFailure;
use crate::router::merge::ShardDisagreement;

/// Everything a FaceSearch call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed (missing oneof, bad id).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The index refused or failed the operation.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The query photo could not be decoded or analysed.
    #[error("query image: {0}")]
    Vision(#[from] VisionError),
    /// The query photo is over the configured size.
    #[error(
        "the query image has {bytes} bytes, over this server's limit of {max} (server.max_image_bytes); send a smaller photo"
    )]
    ImageTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A SearchBatch with too many or no searches.
    #[error("a SearchBatch must hold 1 to {max} searches, got {count}")]
    BatchSize {
        /// Searches sent.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Photo search asked of a server started without face models.
    #[error(
        "this server was started without face models, so it cannot search by image; search by embedding or face id, or restart it with the models"
    )]
    ImageSearchUnavailable,
    /// The photo front end failed: the photo itself, or the model service (in this process or
    /// an embed worker).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A read request ran past the server's time limit (`server.request_timeout_ms`).
    #[error(
        "{method} did not finish within the server's limit of {limit_ms} ms (server.request_timeout_ms); ask for less (a lower ef or limit, fewer searches, a smaller photo) or retry"
    )]
    TimeLimitExceeded {
        /// The RPC.
        method: &'static str,
        /// The limit.
        limit_ms: u64,
    },
    /// A people edit could not go through the log every indexer applies (the broker is
    /// away, or this indexer did not apply the edit in time).
    #[error("people edit: {source}")]
    EditLog {
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No replica of an index shard answered a router in time.
    #[error("shard {shard} is unavailable: {}", list_failures(failures))]
    ShardUnavailable {
        /// The shard.
        shard: usize,
        /// What each replica did, in the order tried.
        failures: Vec<ReplicaFailure>,
    },
    /// A replica of an index shard refused a router's request (every replica would).
    #[error("shard {shard} ({replica}): {message}")]
    ShardRefused {
        /// The shard.
        shard: usize,
        /// The replica that answered.
        replica: String,
        /// Its status code, passed on.
        code: Code,
        /// Its message.
        message: String,
    },
    /// Two shards answered a router in ways that cannot be merged.
    #[error("shard {shard} disagrees with the others: {disagreement}")]
    ShardsDisagree {
        /// The shard that did not fit the ones before.
        shard: usize,
        /// How.
        disagreement: ShardDisagreement,
    },
    /// A call a router cannot answer for the indexers (a snapshot is each indexer's own).
    #[error("{method} is not served by a router: send it to each indexer (facedex indexer) itself")]
    NotOnRouter {
        /// The RPC.
        method: &'static str,
    },
    /// A blocking task died (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// The gRPC code for this error. Exhaustive on purpose: a new variant in any of the
    /// wrapped enums must be given a code here.
    pub fn code(&self) -> Code {
        match self {
            ServiceError::Request(
                RequestError::MissingField { .. }
                | RequestError::InvalidField { .. }
                | RequestError::Malformed { .. }
                | RequestError::TooManyEntries { .. }
                | RequestError::OutOfRange { .. }
                | RequestError::OutOfRangeDecimal { .. },
            ) => Code::InvalidArgument,
            ServiceError::Index(error) => index_code(error),
            ServiceError::Vision(error) => vision_code(error),
            ServiceError::ImageTooLarge { .. } | ServiceError::BatchSize { .. } => Code::InvalidArgument,
            ServiceError::ImageSearchUnavailable => Code::FailedPrecondition,
            ServiceError::Pipeline(error) => pipeline_code(error),
            ServiceError::TimeLimitExceeded { .. } => Code::DeadlineExceeded,
            ServiceError::EditLog { .. } | ServiceError::ShardUnavailable { .. } => Code::Unavailable,
            ServiceError::ShardRefused { code, .. } => *code,
            ServiceError::ShardsDisagree { .. } => Code::FailedPrecondition,
            ServiceError::NotOnRouter { .. } => Code::Unimplemented,
            ServiceError::Internal(_) => Code::Internal,
        }
    }
}

fn list_failures(failures: &[ReplicaFailure]) -> String {
    if failures.is_empty() {
        return "it has no replica now (its DNS name resolves to no address)".into();
    }
    let each: Vec<String> = failures.iter().map(ToString::to_string).collect();
    format!("no replica answered ({})", each.join("; "))
}

fn index_code(error: &IndexError) -> Code {
    match error {
        IndexError::DimensionMismatch { .. }
        | IndexError::NonFiniteValue { .. }
        | IndexError::NotUnitVector { .. }
        | IndexError::InvalidLimit { .. }
        | IndexError::InvalidEf { .. }
        | IndexError::InvalidMinScore { .. }
        | IndexError::MalformedFaceId { .. }
        | IndexError::MalformedPersonId { .. }
        | IndexError::InvalidPeopleEdit { .. }
        | IndexError::InvalidRecord { .. } => Code::InvalidArgument,
        // The edit is well-formed but the people as they are now do not allow it.
        IndexError::PeopleEditConflict { .. } => Code::FailedPrecondition,
        IndexError::UnknownFace { .. } | IndexError::UnknownPerson { .. } => Code::NotFound,
        IndexError::ModelMismatch { .. } => Code::FailedPrecondition,
        IndexError::DataDirLocked { .. } => Code::Unavailable,
        IndexError::CorruptSnapshot { .. } => Code::DataLoss,
        // A full disk (or quota, or file size limit) is a resource the operator must free, not a bug.
        IndexError::Io { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded | std::io::ErrorKind::FileTooLarge
            ) =>
        {
            Code::ResourceExhausted
        }
        IndexError::InvalidConfig(_) | IndexError::Io { .. } => Code::Internal,
    }
}

fn pipeline_code(error: &PipelineError) -> Code {
    match error {
        PipelineError::Vision(error) => vision_code(error),
        PipelineError::Index(error) => index_code(error),
        PipelineError::Models { transient: true, .. } => Code::Unavailable,
        PipelineError::Cancelled => Code::Cancelled,
        PipelineError::InvalidReference { .. } | PipelineError::TooLarge { .. } => Code::InvalidArgument,
        PipelineError::NotFound { .. } => Code::NotFound,
        PipelineError::RootNotAllowed { .. } => Code::PermissionDenied,
        PipelineError::Fetch { .. } => Code::Unavailable,
        PipelineError::InvalidArchive { .. } => Code::InvalidArgument,
        PipelineError::PruneEverything { .. } => Code::FailedPrecondition,
        PipelineError::Models { transient: false, .. }
        | PipelineError::ModelRun { .. }
        | PipelineError::Listing { .. }
        | PipelineError::TaskFailed { .. } => Code::Internal,
    }
}

fn vision_code(error: &VisionError) -> Code {
    match error {
        VisionError::Unreadable { .. }
        | VisionError::EmptyInput { .. }
        | VisionError::UnsupportedFormat { .. }
        | VisionError::TooManyPixels { .. }
        | VisionError::CorruptImage { .. } => Code::InvalidArgument,
        VisionError::MissingFile { .. }
        | VisionError::RuntimeUnavailable { .. }
        | VisionError::ExecutionProviderUnavailable { .. }
        | VisionError::IncompatibleModel { .. }
        | VisionError::Inference { .. }
        | VisionError::InvalidConfig { .. } => Code::Internal,
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        let code = error.code();
        // The whole source chain: the caller needs the reason, not just the outermost line.
        let message = describe(&error);
        if code == Code::Internal || code == Code::DataLoss {
            tracing::error!(error = %message, "request failed");
        }
        Status::new(code, message)
    }
}
