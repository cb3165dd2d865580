//! `PRelu` as `Max(x, slope·x)`: the same values whenever every slope is at most 1 (for x > 0,
//! slope·x ≤ x; for x < 0, slope·x ≥ x), computed by two of ONNX Runtime's fastest elementwise
//! kernels. ONNX Runtime 1.32's CPU `PRelu` kernel takes 40 % of `w600k_mbf.onnx`'s time where
//! 1.24's took 14 % (BENCHMARKS.md), and the two-node form gives the embedder back most of that.

use super::float_values;
use super::onnx::{ModelProto, NodeProto, TensorProto, tensor_proto};

/// Rewrites every default-domain `PRelu` whose slope is a float constant no larger than 1 as
/// `Mul` then `Max`; returns how many were rewritten. Others are left as they are.
pub(crate) fn with_prelu_as_max(model: &mut ModelProto) -> Result<usize, String> {
    let graph = model.graph.as_mut().ok_or("the model has no graph")?;
    let slopes_at_most_one = |name: &str| {
        graph
            .initializer
            .iter()
            .find(|tensor: &&TensorProto| tensor.name.as_deref() == Some(name))
            .filter(|tensor| tensor.data_type == Some(tensor_proto::DataType::Float as i32))
            .and_then(|tensor| float_values(tensor).ok())
            .is_some_and(|slopes| slopes.iter().all(|slope| *slope <= 1.0))
    };
    let mut rewritten = 0;
    let mut nodes = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let is_prelu = node.op_type.as_deref() == Some("PRelu")
            && node.domain.as_deref().unwrap_or("").is_empty()
            && node.input.len() == 2
            && node.output.len() == 1;
        if !is_prelu || !slopes_at_most_one(&node.input[1]) {
            nodes.push(node);
            continue;
        }
        let (x, slope, y) = (&node.input[0], &node.input[1], &node.output[0]);
        let scaled = format!("{y}_slope_times_x");
        let step = |op: &str, inputs: [&String; 2], output: &String| NodeProto {
            name: Some(format!("{output}_{op}")),
            op_type: Some(op.to_owned()),
            input: inputs.into_iter().cloned().collect(),
            output: vec![output.clone()],
            ..NodeProto::default()
        };
        nodes.push(step("Mul", [x, slope], &scaled));
        nodes.push(step("Max", [x, &scaled], y));
        rewritten += 1;
    }
    graph.node = nodes;
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::super::onnx::GraphProto;
    use super::*;

    fn prelu_model(slopes: &[f32]) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: Some("PRelu".to_owned()),
                    input: vec!["x".to_owned(), "a".to_owned()],
                    output: vec!["y".to_owned()],
                    ..NodeProto::default()
                }],
                initializer: vec![TensorProto {
                    name: Some("a".to_owned()),
                    data_type: Some(tensor_proto::DataType::Float as i32),
                    dims: vec![slopes.len() as i64, 1, 1],
                    raw_data: Some(slopes.iter().flat_map(|s| s.to_le_bytes()).collect()),
                    ..TensorProto::default()
                }],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    #[test]
    fn slopes_up_to_one_become_mul_then_max() {
        let mut model = prelu_model(&[0.25, -0.8, 1.0]);
        assert_eq!(with_prelu_as_max(&mut model), Ok(1));
        let graph = model.graph.expect("graph");
        let ops: Vec<(&str, &[String], &[String])> = graph
            .node
            .iter()
            .map(|n| {
                (
                    n.op_type.as_deref().unwrap_or(""),
                    n.input.as_slice(),
                    n.output.as_slice(),
                )
            })
            .collect();
        assert_eq!(ops[0].0, "Mul");
        assert_eq!(ops[0].1, ["x", "a"]);
        assert_eq!(ops[1].0, "Max");
        assert_eq!(ops[1].1, ["x".to_owned(), ops[0].2[0].clone()]);
        assert_eq!(ops[1].2, ["y"]);
    }

    #[test]
    fn the_identity_holds_for_slopes_up_to_one_and_fails_above() {
        let prelu = |x: f32, a: f32| if x > 0.0 { x } else { a * x };
        for a in [-2.0f32, -0.8, 0.0, 0.25, 1.0] {
            for x in [-3.0f32, -0.5, 0.0, 0.5, 3.0] {
                assert_eq!(x.max(a * x), prelu(x, a), "x {x}, slope {a}");
            }
        }
        assert_ne!(3.0f32.max(1.5 * 3.0), prelu(3.0, 1.5), "a slope over 1 breaks it");
        let mut model = prelu_model(&[0.5, 1.5]);
        assert_eq!(with_prelu_as_max(&mut model), Ok(0), "left as PRelu");
        assert_eq!(model.graph.expect("graph").node[0].op_type.as_deref(), Some("PRelu"));
    }
}
