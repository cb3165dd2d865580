//! Two rewrites that let a model take what the pipeline already has:
//!
//! - [`with_pixel_input`]: 8-bit packed pixels in (`N×H×W×3`), the normalisation
//!   `(pixel − mean) / std` and the move to planes done by the first nodes of the graph. A quarter
//!   of the bytes cross to the model, which is what a GPU node's host-to-device copies are
//!   bound by, and the CPU's normalisation loop goes away.
//! - [`with_batch_outputs`]: outputs declared with a batch of 1 (`w600k_mbf.onnx` says
//!   `[1, 512]` for any batch) get the input's batch dimension, so their shape can be known and
//!   bound before a run.

use super::onnx::{ModelProto, TensorShapeProto, tensor_proto, tensor_shape_proto, type_proto};
use super::{float_constant, int_attribute, ints_attribute, node};

/// The one input that is not a constant, with its name.
fn model_input(model: &mut ModelProto) -> Result<&mut super::onnx::ValueInfoProto, String> {
    let graph = model.graph.as_mut().ok_or("the model has no graph")?;
    let constants: Vec<String> = graph
        .initializer
        .iter()
        .filter_map(|tensor| tensor.name.clone())
        .collect();
    let mut inputs = graph
        .input
        .iter_mut()
        .filter(|input| input.name.as_ref().is_some_and(|name| !constants.contains(name)));
    match (inputs.next(), inputs.next()) {
        (Some(input), None) => Ok(input),
        _ => Err("the model does not have exactly one input".to_owned()),
    }
}

/// The dimensions of a tensor-typed value.
fn tensor_shape(r#type: Option<&mut super::onnx::TypeProto>) -> Option<&mut TensorShapeProto> {
    match r#type?.value.as_mut()? {
        type_proto::Value::TensorType(tensor) => tensor.shape.as_mut(),
        _ => None,
    }
}

/// Rewrites `model`, whose input is float planes `N×3×H×W`, to take packed 8-bit pixels
/// `N×H×W×3` (same name, same channel order) and compute `(pixel − mean) / std` itself, with
/// the same float operations the pipeline's own loop does, so the model sees the same values.
pub(crate) fn with_pixel_input(model: &mut ModelProto, mean: f32, std: f32) -> Result<(), String> {
    let input = model_input(model)?;
    let name = input.name.clone().ok_or("the input has no name")?;
    let r#type = input.r#type.as_mut();
    let shape = tensor_shape(r#type).ok_or("the input is not a tensor with a declared shape")?;
    let channels = shape.dim.get(1).and_then(|dim| match dim.value {
        Some(tensor_shape_proto::dimension::Value::DimValue(value)) => Some(value),
        _ => None,
    });
    if shape.dim.len() != 4 || channels != Some(3) {
        return Err(format!(
            "its input {name:?} is not N×3×H×W float planes (dimensions {:?})",
            shape.dim
        ));
    }
    // N×3×H×W → N×H×W×3
    let channel_dim = shape.dim.remove(1);
    shape.dim.push(channel_dim);
    if let Some(type_proto::Value::TensorType(tensor)) = input.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        tensor.elem_type = Some(tensor_proto::DataType::Uint8 as i32);
    }
    let graph = model.graph.as_mut().ok_or("the model has no graph")?;
    let planes = format!("{name}_planes");
    for node in &mut graph.node {
        for node_input in &mut node.input {
            if *node_input == name {
                node_input.clone_from(&planes);
            }
        }
    }
    let (mean_name, std_name) = (format!("{name}_mean"), format!("{name}_std"));
    graph.initializer.push(float_constant(&mean_name, Vec::new(), &[mean]));
    graph.initializer.push(float_constant(&std_name, Vec::new(), &[std]));
    let (as_float, moved, centred) = (
        format!("{name}_float"),
        format!("{name}_nchw"),
        format!("{name}_centred"),
    );
    let to_float = int_attribute("to", i64::from(tensor_proto::DataType::Float as i32));
    let prologue = [
        node("Cast", &[&name], &as_float, vec![to_float]),
        node(
            "Transpose",
            &[&as_float],
            &moved,
            vec![ints_attribute("perm", vec![0, 3, 1, 2])],
        ),
        node("Sub", &[&moved, &mean_name], &centred, Vec::new()),
        node("Div", &[&centred, &std_name], &planes, Vec::new()),
    ];
    graph.node.splice(0..0, prologue);
    Ok(())
}

/// Gives every output declared with a first dimension of 1 the input's batch dimension, when
/// the input's is not fixed: the file's `[1, 512]` becomes `[N, 512]`. Other outputs are left
/// as they are.
pub(crate) fn with_batch_outputs(model: &mut ModelProto) -> Result<usize, String> {
    let input = model_input(model)?;
    let first = tensor_shape(input.r#type.as_mut())
        .and_then(|shape| shape.dim.first_mut())
        .ok_or("the input has no declared batch dimension")?;
    let batch = match &first.value {
        Some(tensor_shape_proto::dimension::Value::DimValue(_)) => return Ok(0), // fixed: the outputs' 1 may be right
        Some(tensor_shape_proto::dimension::Value::DimParam(name)) => name.clone(),
        None => {
            // Unnamed: name it, so input and outputs share it.
            first.value = Some(tensor_shape_proto::dimension::Value::DimParam("batch".to_owned()));
            "batch".to_owned()
        }
    };
    let batch = tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimParam(batch)),
        ..first.clone()
    };
    let graph = model.graph.as_mut().ok_or("the model has no graph")?;
    let mut rewritten = 0;
    for output in &mut graph.output {
        if let Some(first) = tensor_shape(output.r#type.as_mut()).and_then(|shape| shape.dim.first_mut())
            && first.value == Some(tensor_shape_proto::dimension::Value::DimValue(1))
        {
            *first = batch.clone();
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::super::onnx::{GraphProto, TypeProto, ValueInfoProto};
    use super::*;
    use tensor_shape_proto::dimension::Value as Dim;

    fn tensor_value(name: &str, elem_type: tensor_proto::DataType, dims: &[Option<Dim>]) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(name.to_owned()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(elem_type as i32),
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|value| tensor_shape_proto::Dimension {
                                value: value.clone(),
                                ..tensor_shape_proto::Dimension::default()
                            })
                            .collect(),
                    }),
                })),
                ..TypeProto::default()
            }),
            ..ValueInfoProto::default()
        }
    }

    /// `x [None, 3, 112, 112] → Flatten → y [1, 512]`, as `w600k_mbf.onnx` declares them.
    fn embedder_shaped() -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                node: vec![node("Flatten", &["x"], "y", Vec::new())],
                input: vec![tensor_value(
                    "x",
                    tensor_proto::DataType::Float,
                    &[
                        Some(Dim::DimParam("None".to_owned())),
                        Some(Dim::DimValue(3)),
                        Some(Dim::DimValue(112)),
                        Some(Dim::DimValue(112)),
                    ],
                )],
                output: vec![tensor_value(
                    "y",
                    tensor_proto::DataType::Float,
                    &[Some(Dim::DimValue(1)), Some(Dim::DimValue(512))],
                )],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    fn dims(value: &ValueInfoProto) -> (i32, Vec<Option<Dim>>) {
        match value.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(tensor)) => (
                tensor.elem_type.unwrap_or_default(),
                tensor
                    .shape
                    .iter()
                    .flat_map(|shape| shape.dim.iter().map(|dim| dim.value.clone()))
                    .collect(),
            ),
            _ => panic!("not a tensor"),
        }
    }

    #[test]
    fn the_input_becomes_packed_bytes_normalised_by_the_first_nodes() {
        let mut model = embedder_shaped();
        with_pixel_input(&mut model, 127.5, 128.0).expect("rewrites");
        let graph = model.graph.expect("graph");
        let (elem_type, input_dims) = dims(&graph.input[0]);
        assert_eq!(elem_type, tensor_proto::DataType::Uint8 as i32);
        assert_eq!(
            input_dims,
            [
                Some(Dim::DimParam("None".to_owned())),
                Some(Dim::DimValue(112)),
                Some(Dim::DimValue(112)),
                Some(Dim::DimValue(3))
            ]
        );
        let ops: Vec<&str> = graph.node.iter().filter_map(|node| node.op_type.as_deref()).collect();
        assert_eq!(ops, ["Cast", "Transpose", "Sub", "Div", "Flatten"]);
        assert_eq!(graph.node[0].input, ["x"]);
        assert_eq!(
            graph.node[4].input,
            ["x_planes"],
            "the old first node reads the normalised planes"
        );
        assert_eq!(graph.node[1].attribute[0].ints, [0, 3, 1, 2]);
        let constant = |name: &str| {
            let tensor = graph
                .initializer
                .iter()
                .find(|t| t.name.as_deref() == Some(name))
                .expect(name);
            f32::from_le_bytes(tensor.raw_data.clone().expect("raw").try_into().expect("4 bytes"))
        };
        assert_eq!((constant("x_mean"), constant("x_std")), (127.5, 128.0));
    }

    #[test]
    fn an_output_declared_for_one_face_gets_the_inputs_batch() {
        let mut model = embedder_shaped();
        assert_eq!(with_batch_outputs(&mut model), Ok(1));
        let (_, output_dims) = dims(&model.graph.expect("graph").output[0]);
        assert_eq!(
            output_dims,
            [Some(Dim::DimParam("None".to_owned())), Some(Dim::DimValue(512))]
        );

        // An unnamed batch is named on both sides; a fixed batch leaves the outputs alone.
        let mut unnamed = embedder_shaped();
        if let Some(type_proto::Value::TensorType(tensor)) = unnamed
            .graph
            .as_mut()
            .and_then(|g| g.input[0].r#type.as_mut())
            .and_then(|t| t.value.as_mut())
        {
            tensor.shape.as_mut().expect("shape").dim[0].value = None;
        }
        assert_eq!(with_batch_outputs(&mut unnamed), Ok(1));
        let graph = unnamed.graph.expect("graph");
        assert_eq!(dims(&graph.input[0]).1[0], Some(Dim::DimParam("batch".to_owned())));
        assert_eq!(dims(&graph.output[0]).1[0], Some(Dim::DimParam("batch".to_owned())));
    }

    #[test]
    fn an_input_that_is_not_three_planes_is_refused() {
        let mut model = embedder_shaped();
        if let Some(type_proto::Value::TensorType(tensor)) = model
            .graph
            .as_mut()
            .and_then(|g| g.input[0].r#type.as_mut())
            .and_then(|t| t.value.as_mut())
        {
            tensor.shape.as_mut().expect("shape").dim[1].value = Some(Dim::DimValue(1));
        }
        let error = with_pixel_input(&mut model, 0.0, 1.0).expect_err("one channel");
        assert!(error.contains("N×3×H×W"), "{error}");
    }
}
