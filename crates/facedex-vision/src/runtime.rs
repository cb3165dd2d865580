//! Loading ONNX Runtime and building model sessions on the configured execution provider.
//!
//! ONNX Runtime allows one environment per process, so it is created once, from the configured
//! shared library, and shared by every session. Asking for CUDA where it cannot load is an error:
//! a silent fall-back to CPU would make a GPU node 20× slower without anyone noticing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::config::ExecutionProvider;
use crate::error::{Result, VisionError};

static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// The process's ONNX Runtime environment, loading the library at `library` on first use.
pub(crate) fn environment(library: &Path) -> Result<Environment> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((loaded_from, environment)) = slot.as_ref() {
        if loaded_from != library {
            return Err(VisionError::RuntimeUnavailable {
                path: library.to_owned(),
                reason: format!(
                    "this process already loaded ONNX Runtime from {}; one library per process",
                    loaded_from.display()
                ),
            });
        }
        return Ok(environment.clone());
    }
    require_file(library, "ONNX Runtime library", "vision.onnxruntime_library_path")?;
    let unavailable = |reason: String| VisionError::RuntimeUnavailable {
        path: library.to_owned(),
        reason,
    };
    let environment = ort::init_from(library)
        .map_err(|error| unavailable(error.to_string()))?
        .with_name("facedex")
        .build()
        .map_err(|error| unavailable(error.to_string()))?;
    *slot = Some((library.to_owned(), environment.clone()));
    Ok(environment)
}

/// Fails with [`VisionError::MissingFile`] unless `path` is a file.
pub(crate) fn require_file(path: &Path, what: &'static str, setting: &'static str) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(VisionError::MissingFile {
            what,
            path: path.to_owned(),
            setting,
        })
    }
}

/// Where a session's graph comes from.
#[derive(Clone, Copy)]
pub(crate) enum ModelSource<'a> {
    /// The model file as it is.
    File(&'a Path),
    /// A rewritten graph of the model file at `path` (named in errors).
    Rewritten {
        /// The file the graph was made from.
        path: &'a Path,
        /// The encoded graph.
        bytes: &'a [u8],
    },
}

impl<'a> ModelSource<'a> {
    /// The file at `path`, or the graph `rewritten` from it when there is one.
    pub fn new(path: &'a Path, rewritten: Option<&'a [u8]>) -> Self {
        match rewritten {
            Some(bytes) => Self::Rewritten { path, bytes },
            None => Self::File(path),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Self::File(path) | Self::Rewritten { path, .. } => path,
        }
    }
}

/// Builds a session for the graph `source` gives on `provider`.
pub(crate) fn build_session(
    environment: &Environment,
    source: ModelSource<'_>,
    role: &'static str,
    provider: &ExecutionProvider,
) -> Result<Session> {
    let path = source.path();
    let incompatible = |reason: String| VisionError::IncompatibleModel {
        path: path.to_owned(),
        role,
        reason,
    };
    let mut builder = Session::builder(environment)
        .and_then(|builder| {
            builder
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(Into::into)
        })
        .map_err(|error| incompatible(error.to_string()))?;
    match provider {
        ExecutionProvider::Cpu { threads } => {
            if *threads > 0 {
                builder = builder
                    .with_intra_threads(*threads)
                    .map_err(|error| incompatible(error.to_string()))?;
            }
            // Each session has its own pool of intra-op threads, and by default they spin on
            // the cores after a run: with several models taking turns, one model's spinning
            // pool slows the next model's run.
            builder = builder
                .with_intra_op_spinning(false)
                .map_err(|error| incompatible(error.to_string()))?;
        }
        ExecutionProvider::Cuda { .. } => {
            builder = with_cuda(builder, provider)?;
        }
    }
    match source {
        ModelSource::File(path) => builder.commit_from_file(path),
        ModelSource::Rewritten { bytes, .. } => builder.commit_from_memory(bytes),
    }
    .map_err(|error| incompatible(error.to_string()))
}

#[cfg(feature = "cuda")]
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
    provider: &ExecutionProvider,
) -> Result<ort::session::builder::SessionBuilder> {
    use crate::config::ConvAlgorithmSearch;
    use ort::ep::cuda::ConvAlgorithmSearch as Search;
    let ExecutionProvider::Cuda {
        device_id,
        memory_limit_bytes,
        conv_algorithm_search,
        tf32,
    } = *provider
    else {
        unreachable!("with_cuda is only called for CUDA");
    };
    let mut cuda = ort::ep::CUDA::default()
        .with_device_id(device_id)
        .with_conv_algorithm_search(match conv_algorithm_search {
            ConvAlgorithmSearch::Heuristic => Search::Heuristic,
            ConvAlgorithmSearch::Exhaustive => Search::Exhaustive,
            ConvAlgorithmSearch::Default => Search::Default,
        })
        .with_tf32(tf32);
    if memory_limit_bytes > 0 {
        cuda = cuda.with_memory_limit(memory_limit_bytes);
    }
    builder
        .with_execution_providers([cuda.build().error_on_failure()])
        .map_err(|error| VisionError::ExecutionProviderUnavailable {
            provider: provider.to_string(),
            reason: error.to_string(),
        })
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _builder: ort::session::builder::SessionBuilder,
    provider: &ExecutionProvider,
) -> Result<ort::session::builder::SessionBuilder> {
    Err(VisionError::ExecutionProviderUnavailable {
        provider: provider.to_string(),
        reason: "this facedex binary was built without CUDA support; rebuild with `--features cuda`".to_owned(),
    })
}

/// A session for `source` that has one input and at least one output, or why not.
pub(crate) fn one_input_session(
    environment: &Environment,
    source: ModelSource<'_>,
    role: &'static str,
    provider: &ExecutionProvider,
) -> Result<Session> {
    let path = source.path();
    let session = build_session(environment, source, role, provider)?;
    if session.inputs().len() != 1 || session.outputs().is_empty() {
        return Err(VisionError::IncompatibleModel {
            path: path.to_owned(),
            role,
            reason: format!(
                "it has {} inputs and {} outputs",
                session.inputs().len(),
                session.outputs().len()
            ),
        });
    }
    Ok(session)
}
