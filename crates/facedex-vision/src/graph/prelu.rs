//! `PRelu` in forms that ONNX Runtime 1.32's CPU provider runs faster, with the same function.
//! Its own CPU `PRelu` kernel takes 34–40 % of `w600k_mbf.onnx`'s time where 1.24's took 14 %
//! (BENCHMARKS.md). Both forms hold for slopes a ≤ 1 only:
//!
//! - [`PreluForm::Max`]: `Max(x, a·x)` (for x > 0, a·x ≤ x; for x < 0, a·x ≥ x): two
//!   elementwise kernels.
//! - [`PreluForm::DepthwiseConv`]: `a·x + Relu((1 − a)·x)` (for x > 0, a·x + (1 − a)·x = x; for
//!   x < 0, a·x + 0), each product a depthwise 1×1 convolution with the slopes as weights. Every
//!   node of it is one that ONNX Runtime's blocked-channel (NCHWc) layout knows, so the layout
//!   pass turns the three into its own convolutions (the `Relu` and the `Add` fused into them)
//!   and the tensor stays in that layout, where `PRelu` or `Max` make it reorder the tensor
//!   into plain NCHW and back around each node. Only for per-channel slopes (shape `[C, 1, 1]`
//!   or `[1, C, 1, 1]`) of a 4-D input, as after every 2-D convolution; other slopes ≤ 1 get
//!   the `Max` form.

use std::collections::HashSet;

use super::onnx::{GraphProto, ModelProto, NodeProto, tensor_proto, type_proto};
use super::{float_constant, float_values, int_attribute, ints_attribute, node};

/// Which form [`with_prelu_rewritten`] gives a `PRelu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreluForm {
    /// `Max(x, a·x)`.
    Max,
    /// `a·x + Relu((1 − a)·x)` with depthwise 1×1 convolutions, where the slopes are per
    /// channel; `Max` elsewhere.
    DepthwiseConv,
}

/// Rewrites every default-domain `PRelu` whose slope is a float constant no larger than 1 into
/// `form`; returns how many were rewritten. Others are left as they are.
pub(crate) fn with_prelu_rewritten(model: &mut ModelProto, form: PreluForm) -> Result<usize, String> {
    let graph = model.graph.as_mut().ok_or("the model has no graph")?;
    let mut rewritten = 0;
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut constants = Vec::new();
    let mut replaced_slopes = HashSet::new();
    for prelu in std::mem::take(&mut graph.node) {
        let is_prelu = prelu.op_type.as_deref() == Some("PRelu")
            && prelu.domain.as_deref().unwrap_or("").is_empty()
            && prelu.input.len() == 2
            && prelu.output.len() == 1;
        let Some((slopes, dims)) = is_prelu.then(|| constant_slopes(graph, &prelu.input[1])).flatten() else {
            nodes.push(prelu);
            continue;
        };
        if !slopes.iter().all(|slope| *slope <= 1.0) {
            nodes.push(prelu);
            continue;
        }
        let (x, y) = (&prelu.input[0], &prelu.output[0]);
        let per_channel =
            per_channel_count(&dims) == Some(slopes.len()) && declared_rank(graph, x).is_none_or(|rank| rank == 4);
        if form == PreluForm::DepthwiseConv && per_channel {
            let (slope_weights, rest_weights) = (format!("{y}_slope_weights"), format!("{y}_rest_weights"));
            let rest: Vec<f32> = slopes.iter().map(|slope| 1.0 - slope).collect();
            let weights_dims = vec![slopes.len() as i64, 1, 1, 1];
            constants.push(float_constant(&slope_weights, weights_dims.clone(), &slopes));
            constants.push(float_constant(&rest_weights, weights_dims, &rest));
            let (rest_times_x, positive_rest, slope_times_x) = (
                format!("{y}_rest_times_x"),
                format!("{y}_positive_rest"),
                format!("{y}_slope_times_x"),
            );
            // This order (the `Relu` branch first, the `Add` taking the other convolution's
            // output first) is the one whose `Add` the layout pass folds into that convolution.
            nodes.push(depthwise_conv(x, &rest_weights, &rest_times_x, slopes.len()));
            nodes.push(node("Relu", &[&rest_times_x], &positive_rest, Vec::new()));
            nodes.push(depthwise_conv(x, &slope_weights, &slope_times_x, slopes.len()));
            nodes.push(node("Add", &[&slope_times_x, &positive_rest], y, Vec::new()));
            replaced_slopes.insert(prelu.input[1].clone());
        } else {
            let scaled = format!("{y}_slope_times_x");
            nodes.push(node("Mul", &[x, &prelu.input[1]], &scaled, Vec::new()));
            nodes.push(node("Max", &[x, &scaled], y, Vec::new()));
        }
        rewritten += 1;
    }
    graph.node = nodes;
    // Slopes that only the rewritten `PRelu`s read are now unused: left in, ONNX Runtime drops
    // each one at load with a warning in its own log.
    let used: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    let outputs: Vec<&str> = graph
        .output
        .iter()
        .filter_map(|output| output.name.as_deref())
        .collect();
    graph.initializer.retain(|tensor| {
        let name = tensor.name.as_deref().unwrap_or("");
        !replaced_slopes.contains(name) || used.contains(name) || outputs.contains(&name)
    });
    graph.initializer.extend(constants);
    Ok(rewritten)
}

/// The values and dimensions of the float constant `name`, when it is one in the file.
fn constant_slopes(graph: &GraphProto, name: &str) -> Option<(Vec<f32>, Vec<i64>)> {
    let tensor = graph
        .initializer
        .iter()
        .find(|tensor| tensor.name.as_deref() == Some(name))
        .filter(|tensor| tensor.data_type == Some(tensor_proto::DataType::Float as i32))?;
    Some((float_values(tensor).ok()?, tensor.dims.clone()))
}

/// `C` for slopes shaped `[C, 1, 1]` or `[1, C, 1, 1]`: one slope per channel of an NCHW tensor.
fn per_channel_count(dims: &[i64]) -> Option<usize> {
    match dims {
        [channels, 1, 1] | [1, channels, 1, 1] => usize::try_from(*channels).ok().filter(|c| *c > 0),
        _ => None,
    }
}

/// The rank of `name` where the graph declares its type (an input, output or value info).
fn declared_rank(graph: &GraphProto, name: &str) -> Option<usize> {
    let declared = graph.input.iter().chain(&graph.value_info).chain(&graph.output);
    let value = declared.into_iter().find(|value| value.name.as_deref() == Some(name))?;
    match value.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(tensor) => Some(tensor.shape.as_ref()?.dim.len()),
        _ => None,
    }
}

/// `output = input × weights`, channel by channel, as a 1×1 convolution with one group per
/// channel.
fn depthwise_conv(input: &str, weights: &str, output: &str, channels: usize) -> NodeProto {
    let attributes = vec![
        int_attribute("group", channels as i64),
        ints_attribute("kernel_shape", vec![1, 1]),
    ];
    node("Conv", &[input, weights], output, attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prelu_model(slopes: &[f32], dims: Vec<i64>) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: Some("PRelu".to_owned()),
                    input: vec!["x".to_owned(), "a".to_owned()],
                    output: vec!["y".to_owned()],
                    ..NodeProto::default()
                }],
                initializer: vec![float_constant("a", dims, slopes)],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    fn per_channel(slopes: &[f32]) -> ModelProto {
        prelu_model(slopes, vec![slopes.len() as i64, 1, 1])
    }

    /// Each node as (op, inputs, outputs).
    fn ops(model: &ModelProto) -> Vec<(String, Vec<String>, Vec<String>)> {
        let graph = model.graph.as_ref().expect("graph");
        let named = |n: &NodeProto| (n.op_type.clone().unwrap_or_default(), n.input.clone(), n.output.clone());
        graph.node.iter().map(named).collect()
    }

    fn constant(model: &ModelProto, name: &str) -> (Vec<i64>, Vec<f32>) {
        let graph = model.graph.as_ref().expect("graph");
        let tensor = graph
            .initializer
            .iter()
            .find(|tensor| tensor.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no constant {name}"));
        (tensor.dims.clone(), float_values(tensor).expect("floats"))
    }

    #[test]
    fn slopes_up_to_one_become_mul_then_max() {
        let mut model = per_channel(&[0.25, -0.8, 1.0]);
        assert_eq!(with_prelu_rewritten(&mut model, PreluForm::Max), Ok(1));
        let ops = ops(&model);
        assert_eq!(ops.len(), 2);
        assert_eq!(
            (ops[0].0.as_str(), ops[0].1.as_slice()),
            ("Mul", ["x", "a"].map(String::from).as_slice())
        );
        assert_eq!(ops[1].0, "Max");
        assert_eq!(ops[1].1, ["x".to_owned(), ops[0].2[0].clone()]);
        assert_eq!(ops[1].2, ["y"]);
        assert!(constant(&model, "a").1.len() == 3, "the Mul still reads the slopes");
    }

    #[test]
    fn per_channel_slopes_become_depthwise_convolutions_and_an_add() {
        let slopes = [0.25, -0.8, 1.0];
        for dims in [vec![3, 1, 1], vec![1, 3, 1, 1]] {
            let mut model = prelu_model(&slopes, dims);
            assert_eq!(with_prelu_rewritten(&mut model, PreluForm::DepthwiseConv), Ok(1));
            let ops = ops(&model);
            let kinds: Vec<&str> = ops.iter().map(|(op, _, _)| op.as_str()).collect();
            assert_eq!(kinds, ["Conv", "Relu", "Conv", "Add"]);
            let (rest_conv, relu, slope_conv, add) = (&ops[0], &ops[1], &ops[2], &ops[3]);
            assert_eq!(rest_conv.1[0], "x");
            assert_eq!(slope_conv.1[0], "x");
            assert_eq!(relu.1, rest_conv.2);
            assert_eq!(add.1, [slope_conv.2[0].clone(), relu.2[0].clone()]);
            assert_eq!(add.2, ["y"]);
            assert_eq!(constant(&model, &slope_conv.1[1]), (vec![3, 1, 1, 1], slopes.to_vec()));
            assert_eq!(
                constant(&model, &rest_conv.1[1]),
                (vec![3, 1, 1, 1], vec![0.75, 1.8, 0.0])
            );
            let graph = model.graph.as_ref().expect("graph");
            for conv in [&graph.node[0], &graph.node[2]] {
                let attribute = |name: &str| conv.attribute.iter().find(|a| a.name.as_deref() == Some(name)).cloned();
                assert_eq!(attribute("group").and_then(|a| a.i), Some(3), "one group per channel");
                assert_eq!(attribute("kernel_shape").map(|a| a.ints), Some(vec![1, 1]));
            }
        }
    }

    #[test]
    fn slopes_not_per_channel_of_a_4d_input_get_the_max_form() {
        // One slope for every channel: no channel count to give the convolution.
        let mut shared = prelu_model(&[0.25], vec![1]);
        assert_eq!(with_prelu_rewritten(&mut shared, PreluForm::DepthwiseConv), Ok(1));
        assert_eq!(
            ops(&shared).iter().map(|op| op.0.as_str()).collect::<Vec<_>>(),
            ["Mul", "Max"]
        );
        // `[C, 1, 1]` against a declared 3-D input scales its first axis, not channels.
        let mut three_d = per_channel(&[0.25, 0.5]);
        let graph = three_d.graph.as_mut().expect("graph");
        graph.value_info.push(super::super::onnx::ValueInfoProto {
            name: Some("x".to_owned()),
            r#type: Some(super::super::onnx::TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(tensor_proto::DataType::Float as i32),
                    shape: Some(super::super::onnx::TensorShapeProto {
                        dim: vec![Default::default(); 3],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(with_prelu_rewritten(&mut three_d, PreluForm::DepthwiseConv), Ok(1));
        assert_eq!(
            ops(&three_d).iter().map(|op| op.0.as_str()).collect::<Vec<_>>(),
            ["Mul", "Max"]
        );
    }

    #[test]
    fn the_identities_hold_for_slopes_up_to_one_and_fail_above() {
        let prelu = |x: f32, a: f32| if x > 0.0 { x } else { a * x };
        for a in [-2.0f32, -0.8, 0.0, 0.25, 1.0] {
            for x in [-3.0f32, -0.5, 0.0, 0.5, 3.0] {
                assert_eq!(x.max(a * x), prelu(x, a), "max form: x {x}, slope {a}");
                let depthwise = a * x + ((1.0 - a) * x).max(0.0);
                assert!(
                    (depthwise - prelu(x, a)).abs() <= 1e-6 * x.abs(),
                    "depthwise form: x {x}, slope {a}"
                );
            }
        }
        assert_ne!(3.0f32.max(1.5 * 3.0), prelu(3.0, 1.5), "a slope over 1 breaks it");
        for form in [PreluForm::Max, PreluForm::DepthwiseConv] {
            let mut model = per_channel(&[0.5, 1.5]);
            assert_eq!(with_prelu_rewritten(&mut model, form), Ok(0), "left as PRelu");
            assert_eq!(ops(&model)[0].0, "PRelu");
        }
    }
}
