//! Reading and rewriting ONNX model graphs: the schema's messages ([`onnx`], compiled from
//! `proto/onnx/onnx.proto`), ONNX Runtime's own float optimisations written back as a graph
//! ([`optimized_graph`]), static int8 quantisation ([`quantize`]), 8-bit pixel inputs with the
//! normalisation inside the graph ([`pixels`]) and `PRelu` in faster forms ([`prelu`]).

pub(crate) mod pixels;
pub(crate) mod prelu;
pub(crate) mod quantize;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use prost::Message;

use crate::config::{CpuPrelu, ExecutionProvider, VisionConfig};

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

/// What changes in a detector's or embedder's graph when it loads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LoadRewrites {
    /// Take packed 8-bit pixels and normalise them with `(pixel − mean) / std`.
    pub pixel_input: Option<(f32, f32)>,
    /// `PRelu` in another form (see [`prelu`]); `None` keeps ONNX Runtime's kernel.
    pub prelu: Option<prelu::PreluForm>,
}

impl LoadRewrites {
    /// What `config` asks for a model whose input is normalised with `mean` and `std`.
    pub fn for_model(config: &VisionConfig, mean: f32, std: f32) -> Self {
        Self {
            pixel_input: config.pixel_input().then_some((mean, std)),
            prelu: match config.execution_provider {
                ExecutionProvider::Cpu { .. } => match config.cpu_prelu {
                    CpuPrelu::DepthwiseConv => Some(prelu::PreluForm::DepthwiseConv),
                    CpuPrelu::Max => Some(prelu::PreluForm::Max),
                    CpuPrelu::Kernel => None,
                },
                ExecutionProvider::Cuda { .. } => None,
            },
        }
    }
}

/// The model file at `path` with `rewrites` applied, encoded and ready for a session; `None`
/// when nothing changed, so the file loads as it is.
pub(crate) fn rewritten_graph(path: &Path, rewrites: LoadRewrites) -> Result<Option<Vec<u8>>, String> {
    if rewrites.pixel_input.is_none() && rewrites.prelu.is_none() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|error| format!("cannot read it: {error}"))?;
    let mut model =
        onnx::ModelProto::decode(bytes.as_slice()).map_err(|error| format!("it does not decode as ONNX: {error}"))?;
    let mut changed = false;
    if let Some((mean, std)) = rewrites.pixel_input {
        pixels::with_pixel_input(&mut model, mean, std)?;
        pixels::with_batch_outputs(&mut model)?;
        changed = true;
    }
    if let Some(form) = rewrites.prelu {
        changed |= prelu::with_prelu_rewritten(&mut model, form)? > 0;
    }
    Ok(changed.then(|| model.encode_to_vec()))
}

/// A default-domain node `op(inputs) -> output` with `attributes`, named after its output, as
/// every rewrite here builds them (an output name is unique in a graph, so the node's is too).
pub(crate) fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<onnx::AttributeProto>) -> onnx::NodeProto {
    onnx::NodeProto {
        name: Some(format!("{output}_{op}")),
        op_type: Some(op.to_owned()),
        input: inputs.iter().map(|input| (*input).to_owned()).collect(),
        output: vec![output.to_owned()],
        attribute: attributes,
        ..onnx::NodeProto::default()
    }
}

/// A node attribute holding one integer.
pub(crate) fn int_attribute(name: &str, value: i64) -> onnx::AttributeProto {
    onnx::AttributeProto {
        name: Some(name.to_owned()),
        r#type: Some(onnx::attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..onnx::AttributeProto::default()
    }
}

/// A node attribute holding a list of integers.
pub(crate) fn ints_attribute(name: &str, values: Vec<i64>) -> onnx::AttributeProto {
    onnx::AttributeProto {
        name: Some(name.to_owned()),
        r#type: Some(onnx::attribute_proto::AttributeType::Ints as i32),
        ints: values,
        ..onnx::AttributeProto::default()
    }
}

/// A constant `name` of `data_type` and `dims`, its values in `raw` (little-endian).
pub(crate) fn constant(
    name: String,
    data_type: onnx::tensor_proto::DataType,
    dims: Vec<i64>,
    raw: Vec<u8>,
) -> onnx::TensorProto {
    onnx::TensorProto {
        name: Some(name),
        data_type: Some(data_type as i32),
        dims,
        raw_data: Some(raw),
        ..onnx::TensorProto::default()
    }
}

/// A float constant `name` of `dims` holding `values`.
pub(crate) fn float_constant(name: &str, dims: Vec<i64>, values: &[f32]) -> onnx::TensorProto {
    let raw = values.iter().flat_map(|value| value.to_le_bytes()).collect();
    constant(name.to_owned(), onnx::tensor_proto::DataType::Float, dims, raw)
}

/// A float constant's values, from `raw_data` (little-endian) or `float_data`.
pub(crate) fn float_values(tensor: &onnx::TensorProto) -> Result<Vec<f32>, String> {
    let name = tensor.name.as_deref().unwrap_or("?");
    if tensor.data_location == Some(onnx::tensor_proto::DataLocation::External as i32) {
        return Err(format!("the constant {name:?} is stored outside the model file"));
    }
    let count: i64 = tensor.dims.iter().product();
    let values: Vec<f32> = match &tensor.raw_data {
        Some(raw) if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            .collect(),
        _ => tensor.float_data.clone(),
    };
    if i64::try_from(values.len()) != Ok(count) {
        return Err(format!(
            "the constant {name:?} holds {} values for dimensions {:?}",
            values.len(),
            tensor.dims
        ));
    }
    Ok(values)
}
