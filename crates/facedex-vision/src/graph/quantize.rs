//! Static int8 quantisation of a model's convolutions, in ONNX's QDQ form: each convolution's
//! input and output activations pass through `QuantizeLinear` → `DequantizeLinear` with ranges
//! measured on calibration data, its weights are stored as int8 per output channel and its bias
//! as int32, each behind a `DequantizeLinear`. ONNX Runtime fuses every such group into one int8
//! convolution at load; the rest of the graph stays float.
//!
//! Two steps, with a calibration run between them: [`QuantizationPlan::for_graph`] says which
//! activations need a range and [`with_outputs`] exposes them as outputs, then [`quantize`]
//! rewrites the graph with the measured [`ActivationRange`]s.

use std::collections::{HashMap, HashSet};

use super::onnx::{ModelProto, NodeProto, TensorProto, TypeProto, ValueInfoProto, tensor_proto, type_proto};
use super::{constant, float_values, int_attribute, node};

/// The first default-domain opset whose `DequantizeLinear` takes a per-channel `axis`.
const MIN_OPSET: i64 = 13;

/// Largest magnitude of a symmetric int8 weight (−127..=127, so the scale is the same both ways).
const INT8_LIMIT: f32 = 127.0;

/// What a graph's quantisation needs measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuantizationPlan {
    /// Names of the convolutions (their first output) that are quantised.
    convolutions: Vec<String>,
    /// Activations whose range a calibration run must measure, in graph order.
    pub activations: Vec<String>,
}

/// The values an activation took over the calibration data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ActivationRange {
    /// Smallest value seen.
    pub min: f32,
    /// Largest value seen.
    pub max: f32,
}

impl ActivationRange {
    /// The range of `values`, widened by this one.
    pub fn widened(self, values: &[f32]) -> Self {
        values.iter().fold(self, |range, &value| Self {
            min: range.min.min(value),
            max: range.max.max(value),
        })
    }

    /// Nothing seen yet.
    pub const EMPTY: Self = Self {
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
    };

    /// Scale and zero point of the asymmetric uint8 encoding of this range. The range is
    /// stretched to hold 0, which must be exact (zero padding, the floor of a `Relu`).
    fn uint8_encoding(self) -> (f32, u8) {
        let (min, max) = (self.min.min(0.0), self.max.max(0.0));
        let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
        let zero_point = (-min / scale).round().clamp(0.0, 255.0) as u8;
        (scale, zero_point)
    }
}

impl QuantizationPlan {
    /// Finds the convolutions whose weights are constants and the activations around them.
    /// A convolution followed only by a `Relu` is measured after it: ONNX Runtime folds that
    /// `Relu` into the int8 convolution's output encoding.
    pub fn for_graph(model: &ModelProto) -> Result<Self, String> {
        let opset = model
            .opset_import
            .iter()
            .find(|opset| opset.domain.as_deref().unwrap_or("").is_empty())
            .and_then(|opset| opset.version)
            .unwrap_or(0);
        if opset < MIN_OPSET {
            return Err(format!(
                "its opset is {opset}; int8 quantisation needs opset {MIN_OPSET} or later (per-channel weights)"
            ));
        }
        let graph = model.graph.as_ref().ok_or("the model has no graph")?;
        let constants: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .filter_map(|tensor| Some((tensor.name.as_deref()?, tensor)))
            .collect();
        let consumers = consumers(&graph.node);
        let graph_outputs: HashSet<&str> = graph
            .output
            .iter()
            .filter_map(|output| output.name.as_deref())
            .collect();
        let mut convolutions = Vec::new();
        let mut activations = Vec::new();
        for node in &graph.node {
            // A weight or bias two nodes share would need one encoding for both: left float.
            let shared = node.input[1..].iter().any(|constant| {
                consumers
                    .get(constant.as_str())
                    .is_some_and(|readers| readers.len() > 1)
            });
            if !is_quantisable_conv(node, &constants) || shared {
                continue;
            }
            let output = node.output[0].as_str();
            let after = match consumers.get(output).map(Vec::as_slice) {
                Some([relu]) if relu.op_type.as_deref() == Some("Relu") && !graph_outputs.contains(output) => {
                    relu.output[0].as_str()
                }
                _ => output,
            };
            convolutions.push(output.to_owned());
            for activation in [node.input[0].as_str(), after] {
                if !activations.iter().any(|known| known == activation) {
                    activations.push(activation.to_owned());
                }
            }
        }
        if convolutions.is_empty() {
            return Err("it has no convolution with constant float weights to quantise".to_owned());
        }
        Ok(Self {
            convolutions,
            activations,
        })
    }
}

/// `model` with every activation of `plan` added as a float output, for a calibration run.
pub(crate) fn with_outputs(model: &ModelProto, plan: &QuantizationPlan) -> ModelProto {
    let mut model = model.clone();
    if let Some(graph) = model.graph.as_mut() {
        let existing: HashSet<String> = graph.output.iter().filter_map(|output| output.name.clone()).collect();
        for name in plan.activations.iter().filter(|name| !existing.contains(*name)) {
            graph.output.push(ValueInfoProto {
                name: Some(name.clone()),
                r#type: Some(TypeProto {
                    value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                        elem_type: Some(tensor_proto::DataType::Float as i32),
                        shape: None,
                    })),
                    ..TypeProto::default()
                }),
                ..ValueInfoProto::default()
            });
        }
    }
    model
}

/// `model` with `plan`'s convolutions in int8, their activations encoded with `ranges` (one
/// per activation of the plan).
pub(crate) fn quantize(
    mut model: ModelProto,
    plan: &QuantizationPlan,
    ranges: &HashMap<String, ActivationRange>,
) -> Result<ModelProto, String> {
    let encodings: HashMap<&str, (f32, u8)> = plan
        .activations
        .iter()
        .map(|name| {
            let range = ranges
                .get(name)
                .filter(|range| range.min.is_finite() && range.max.is_finite())
                .ok_or_else(|| format!("no calibrated range for the activation {name:?}"))?;
            Ok((name.as_str(), range.uint8_encoding()))
        })
        .collect::<Result<_, String>>()?;
    let graph = model.graph.as_mut().ok_or("the model has no graph")?;
    let mut constants: HashMap<String, TensorProto> = std::mem::take(&mut graph.initializer)
        .into_iter()
        .filter_map(|tensor| Some((tensor.name.clone()?, tensor)))
        .collect();
    let mut new_constants = Vec::new();
    let mut head = Vec::new(); // weight and bias dequantisation: constants only, so first
    for node in &mut graph.node {
        if node.op_type.as_deref() != Some("Conv") || !plan.convolutions.contains(&node.output[0]) {
            continue;
        }
        let (input_scale, _) = encodings[node.input[0].as_str()];
        let weights = float_values(constants.get(&node.input[1]).ok_or("a planned weight is gone")?)?;
        let dims = constants[&node.input[1]].dims.clone();
        let channels = usize::try_from(*dims.first().ok_or("a weight without dimensions")?)
            .map_err(|_| "a weight with a negative dimension")?;
        if channels == 0 || weights.len() % channels != 0 {
            return Err(format!(
                "the weight {:?} does not split into {channels} channels",
                node.input[1]
            ));
        }
        let per_channel = weights.len() / channels;
        let scales: Vec<f32> = weights
            .chunks_exact(per_channel)
            .map(|channel| {
                let largest = channel.iter().fold(0.0f32, |largest, value| largest.max(value.abs()));
                if largest > 0.0 { largest / INT8_LIMIT } else { 1.0 }
            })
            .collect();
        let quantized: Vec<u8> = weights
            .chunks_exact(per_channel)
            .zip(&scales)
            .flat_map(|(channel, scale)| {
                channel
                    .iter()
                    .map(move |value| (value / scale).round().clamp(-INT8_LIMIT, INT8_LIMIT) as i8 as u8)
            })
            .collect();
        let weight_name = node.input[1].clone();
        head.push(dequantize_node(
            &weight_name,
            tensor_proto::DataType::Int8,
            dims,
            quantized,
            &scales,
            &mut new_constants,
        ));
        node.input[1] = format!("{weight_name}_dequantized");
        if let Some(bias_name) = node.input.get(2).filter(|name| !name.is_empty()).cloned() {
            let bias = float_values(
                constants
                    .get(&bias_name)
                    .ok_or("a convolution's bias is not a constant")?,
            )?;
            if bias.len() != channels {
                return Err(format!(
                    "the bias {bias_name:?} has {} values for {channels} channels",
                    bias.len()
                ));
            }
            let bias_scales: Vec<f32> = scales.iter().map(|scale| scale * input_scale).collect();
            let quantized: Vec<u8> = bias
                .iter()
                .zip(&bias_scales)
                .flat_map(|(value, scale)| ((value / scale).round() as i32).to_le_bytes())
                .collect();
            head.push(dequantize_node(
                &bias_name,
                tensor_proto::DataType::Int32,
                vec![channels as i64],
                quantized,
                &bias_scales,
                &mut new_constants,
            ));
            node.input[2] = format!("{bias_name}_dequantized");
        }
    }
    // Float weights and biases no node reads any more are dropped.
    let still_read: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|node| node.input.iter().map(String::as_str))
        .collect();
    constants.retain(|name, _| still_read.contains(name.as_str()));
    let mut initializer: Vec<TensorProto> = constants.into_values().collect();
    initializer.sort_by(|a, b| a.name.cmp(&b.name));
    initializer.extend(new_constants);

    // Activations: a quantise/dequantise pair right after the tensor is made, and every reader
    // reads the dequantised copy.
    let renamed: HashMap<&str, String> = encodings
        .keys()
        .map(|name| (*name, format!("{name}_dequantized")))
        .collect();
    let mut nodes = head;
    for name in graph.input.iter().filter_map(|input| input.name.as_deref()) {
        if let Some(&encoding) = encodings.get(name) {
            nodes.extend(activation_pair(name, encoding, &mut initializer));
        }
    }
    for mut node in std::mem::take(&mut graph.node) {
        for input in &mut node.input {
            if let Some(copy) = renamed.get(input.as_str()) {
                *input = copy.clone();
            }
        }
        let produced: Vec<String> = node
            .output
            .iter()
            .filter(|name| encodings.contains_key(name.as_str()))
            .cloned()
            .collect();
        nodes.push(node);
        for name in &produced {
            nodes.extend(activation_pair(name, encodings[name.as_str()], &mut initializer));
        }
    }
    graph.node = nodes;
    graph.initializer = initializer;
    Ok(model)
}

/// Which nodes read each tensor.
fn consumers(nodes: &[NodeProto]) -> HashMap<&str, Vec<&NodeProto>> {
    let mut readers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
    for node in nodes {
        for input in &node.input {
            readers.entry(input.as_str()).or_default().push(node);
        }
    }
    readers
}

/// A default-domain `Conv` with an activation input and float constant weights (and bias).
fn is_quantisable_conv(node: &NodeProto, constants: &HashMap<&str, &TensorProto>) -> bool {
    let is_float_constant = |name: &str| {
        constants
            .get(name)
            .is_some_and(|tensor| tensor.data_type == Some(tensor_proto::DataType::Float as i32))
    };
    node.op_type.as_deref() == Some("Conv")
        && node.domain.as_deref().unwrap_or("").is_empty()
        && node.output.len() == 1
        && (2..=3).contains(&node.input.len())
        && !constants.contains_key(node.input[0].as_str())
        && is_float_constant(&node.input[1])
        && node
            .input
            .get(2)
            .is_none_or(|bias| bias.is_empty() || is_float_constant(bias))
}

/// The `DequantizeLinear` that turns the quantised constant `values` (per-channel `scales` on
/// axis 0, zero points 0) back into `name`'s float values, under `{name}_dequantized`.
fn dequantize_node(
    name: &str,
    data_type: tensor_proto::DataType,
    dims: Vec<i64>,
    values: Vec<u8>,
    scales: &[f32],
    constants: &mut Vec<TensorProto>,
) -> NodeProto {
    let channels = vec![scales.len() as i64];
    let zero_bytes = match data_type {
        tensor_proto::DataType::Int32 => 4,
        _ => 1,
    };
    constants.push(constant(format!("{name}_quantized"), data_type, dims, values));
    constants.push(constant(
        format!("{name}_scale"),
        tensor_proto::DataType::Float,
        channels.clone(),
        scales.iter().flat_map(|scale| scale.to_le_bytes()).collect(),
    ));
    constants.push(constant(
        format!("{name}_zero_point"),
        data_type,
        channels,
        vec![0; scales.len() * zero_bytes],
    ));
    node(
        "DequantizeLinear",
        &[
            &format!("{name}_quantized"),
            &format!("{name}_scale"),
            &format!("{name}_zero_point"),
        ],
        &format!("{name}_dequantized"),
        vec![int_attribute("axis", 0)],
    )
}

/// `QuantizeLinear` → `DequantizeLinear` for the activation `name` with its uint8 encoding.
fn activation_pair(name: &str, (scale, zero_point): (f32, u8), constants: &mut Vec<TensorProto>) -> [NodeProto; 2] {
    let (scale_name, zero_name) = (format!("{name}_scale"), format!("{name}_zero_point"));
    constants.push(constant(
        scale_name.clone(),
        tensor_proto::DataType::Float,
        Vec::new(),
        scale.to_le_bytes().to_vec(),
    ));
    constants.push(constant(
        zero_name.clone(),
        tensor_proto::DataType::Uint8,
        Vec::new(),
        vec![zero_point],
    ));
    [
        node(
            "QuantizeLinear",
            &[name, &scale_name, &zero_name],
            &format!("{name}_quantized"),
            Vec::new(),
        ),
        node(
            "DequantizeLinear",
            &[&format!("{name}_quantized"), &scale_name, &zero_name],
            &format!("{name}_dequantized"),
            Vec::new(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::float_constant;
    use super::super::onnx::{GraphProto, OperatorSetIdProto};
    use super::*;

    fn value(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(name.to_owned()),
            ..ValueInfoProto::default()
        }
    }

    /// `x → Conv(w1, b1) → Relu → Conv(w2) → y`, 1×1 kernels, two channels, at `opset`.
    fn two_convolutions(opset: i64) -> ModelProto {
        ModelProto {
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            graph: Some(GraphProto {
                node: vec![
                    node("Conv", &["x", "w1", "b1"], "c1", Vec::new()),
                    node("Relu", &["c1"], "r1", Vec::new()),
                    node("Conv", &["r1", "w2"], "y", Vec::new()),
                ],
                initializer: vec![
                    float_constant("w1", vec![2, 1, 1, 1], &[0.5, -2.0]),
                    float_constant("b1", vec![2], &[0.1, 0.0]),
                    float_constant("w2", vec![2, 2, 1, 1], &[1.0, -1.0, 0.0, 0.0]),
                ],
                input: vec![value("x")],
                output: vec![value("y")],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    fn ranges(plan: &QuantizationPlan) -> HashMap<String, ActivationRange> {
        plan.activations
            .iter()
            .map(|name| (name.clone(), ActivationRange { min: -1.0, max: 1.55 }))
            .collect()
    }

    #[test]
    fn the_plan_measures_each_convolution_input_and_its_output_after_a_relu() {
        let plan = QuantizationPlan::for_graph(&two_convolutions(13)).expect("plans");
        assert_eq!(plan.activations, ["x", "r1", "y"]);
        let probe = with_outputs(&two_convolutions(13), &plan);
        let outputs: Vec<_> = probe
            .graph
            .expect("graph")
            .output
            .into_iter()
            .filter_map(|o| o.name)
            .collect();
        assert_eq!(outputs, ["y", "x", "r1"], "y is already an output");
    }

    #[test]
    fn old_opsets_and_graphs_without_convolutions_are_refused() {
        let error = QuantizationPlan::for_graph(&two_convolutions(11)).expect_err("opset 11");
        assert!(error.contains("opset is 11"), "{error}");
        let mut model = two_convolutions(13);
        model.graph.as_mut().expect("graph").initializer.clear();
        let error = QuantizationPlan::for_graph(&model).expect_err("weights are not constants");
        assert!(error.contains("no convolution"), "{error}");
    }

    #[test]
    fn weights_become_int8_per_channel_and_biases_int32_on_the_product_of_scales() {
        let model = two_convolutions(13);
        let plan = QuantizationPlan::for_graph(&model).expect("plans");
        let quantized = quantize(model, &plan, &ranges(&plan)).expect("quantizes");
        let graph = quantized.graph.expect("graph");
        let find = |name: &str| {
            graph
                .initializer
                .iter()
                .find(|tensor| tensor.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no {name}"))
        };
        assert!(
            graph
                .initializer
                .iter()
                .all(|tensor| tensor.name.as_deref() != Some("w1"))
        );
        // Each channel's largest magnitude maps to ±127.
        let w1 = find("w1_quantized");
        assert_eq!(w1.data_type, Some(tensor_proto::DataType::Int8 as i32));
        assert_eq!(w1.raw_data.as_deref(), Some([127u8, (-127i8) as u8].as_slice()));
        let scales = float_values(find("w1_scale")).expect("floats");
        assert_eq!(scales, [0.5 / 127.0, 2.0 / 127.0]);
        // An all-zero channel keeps scale 1 (no division by zero) and quantises to 0.
        assert_eq!(float_values(find("w2_scale")).expect("floats")[1], 1.0);
        // The input's encoding: [-1, 1.55] over 255 steps, 0 at step 100.
        let input_scale = float_values(find("x_scale")).expect("floats")[0];
        assert!((input_scale - 0.01).abs() < 1e-7, "{input_scale}");
        assert_eq!(find("x_zero_point").raw_data.as_deref(), Some([100u8].as_slice()));
        let bias = find("b1_quantized").raw_data.clone().expect("raw");
        let first = i32::from_le_bytes(bias[..4].try_into().expect("4 bytes"));
        assert_eq!(first, (0.1 / (input_scale * scales[0])).round() as i32);
    }

    #[test]
    fn every_node_reads_only_what_is_made_before_it() {
        let model = two_convolutions(13);
        let plan = QuantizationPlan::for_graph(&model).expect("plans");
        let graph = quantize(model, &plan, &ranges(&plan))
            .expect("quantizes")
            .graph
            .expect("graph");
        let mut known: HashSet<String> = graph
            .initializer
            .iter()
            .filter_map(|tensor| tensor.name.clone())
            .collect();
        known.insert("x".to_owned());
        for node in &graph.node {
            for input in &node.input {
                assert!(
                    known.contains(input),
                    "{:?} reads {input} before it is made",
                    node.op_type
                );
            }
            known.extend(node.output.iter().cloned());
        }
        let convolutions: Vec<&NodeProto> = graph
            .node
            .iter()
            .filter(|n| n.op_type.as_deref() == Some("Conv"))
            .collect();
        assert_eq!(
            convolutions[0].input,
            ["x_dequantized", "w1_dequantized", "b1_dequantized"]
        );
        assert_eq!(convolutions[1].input, ["r1_dequantized", "w2_dequantized"]);
        // The graph's output keeps its name; its quantised copy has no reader.
        assert_eq!(graph.output[0].name.as_deref(), Some("y"));
        assert_eq!(
            graph
                .node
                .iter()
                .filter(|n| n.op_type.as_deref() == Some("QuantizeLinear"))
                .count(),
            3
        );
    }

    #[test]
    fn a_missing_range_is_an_error_not_a_guess() {
        let model = two_convolutions(13);
        let plan = QuantizationPlan::for_graph(&model).expect("plans");
        let mut measured = ranges(&plan);
        measured.insert("r1".to_owned(), ActivationRange::EMPTY);
        let error = quantize(model, &plan, &measured).expect_err("r1 was never seen");
        assert!(error.contains("\"r1\""), "{error}");
    }
}
