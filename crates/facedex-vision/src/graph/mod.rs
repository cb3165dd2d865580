//! Reading and rewriting ONNX model graphs: the schema's messages ([`onnx`], compiled from
//! `proto/onnx/onnx.proto`), ONNX Runtime's own float optimisations written back as a graph
//! ([`optimized_graph`]), static int8 quantisation ([`quantize`]), and 8-bit pixel inputs with
//! the normalisation inside the graph ([`pixels`]).

pub(crate) mod pixels;
pub(crate) mod quantize;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use prost::Message;

/// The ONNX schema's messages (package `onnx`), as prost generates them.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub(crate) mod onnx {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

/// The model at `path` after ONNX Runtime's basic, provider-independent optimisations (constant
/// folding, batch normalisation and `Mul`/`Add` folded into convolutions), decoded. Quantising
/// this graph rather than the file's puts each convolution right before its activation, the
/// pattern ONNX Runtime turns into one int8 kernel.
pub(crate) fn optimized_graph(environment: &Environment, path: &Path) -> Result<onnx::ModelProto, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // ONNX Runtime writes the optimised graph only to a file.
    let scratch = std::env::temp_dir().join(format!(
        "facedex-optimized-{}-{}.onnx",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = Session::builder(environment)
        .and_then(|builder| {
            builder
                .with_optimization_level(GraphOptimizationLevel::Level1)
                .map_err(Into::into)
        })
        .and_then(|builder| builder.with_intra_threads(1).map_err(Into::into))
        .and_then(|builder| builder.with_optimized_model_path(&scratch).map_err(Into::into))
        .and_then(|mut builder| builder.commit_from_file(path))
        .map_err(|error| format!("ONNX Runtime cannot optimise it: {error}"));
    let bytes = written.and_then(|_session| {
        std::fs::read(&scratch)
            .map_err(|error| format!("cannot read the optimised graph {}: {error}", scratch.display()))
    });
    let _ = std::fs::remove_file(&scratch);
    onnx::ModelProto::decode(bytes?.as_slice()).map_err(|error| format!("the optimised graph does not decode: {error}"))
}

/// The model file at `path` rewritten to take packed 8-bit pixels and normalise them with
/// `(pixel − mean) / std` itself, its outputs declared with the input's batch dimension;
/// encoded, ready for a session.
pub(crate) fn pixel_input_graph(path: &Path, mean: f32, std: f32) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("cannot read it: {error}"))?;
    let mut model =
        onnx::ModelProto::decode(bytes.as_slice()).map_err(|error| format!("it does not decode as ONNX: {error}"))?;
    pixels::with_pixel_input(&mut model, mean, std)?;
    pixels::with_batch_outputs(&mut model)?;
    Ok(model.encode_to_vec())
}
