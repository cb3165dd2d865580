//! The per-face model stage is configuration, not code: a liveness-shaped model (three
//! classes, 128×128 BGR input cut from the box scaled 2.7×, logits through a softmax), made
//! here as ONNX from scratch, runs beside the default age and gender models and gives every
//! face the label and confidence its chip implies. The model averages each input channel and
//! calls that the class's logit, so the expected answer is computed from the same chip; a
//! channels-last variant (`layout = "nhwc"`) gives the same answers.

mod support;

use facedex_pipeline::Wanted;
use facedex_vision::attributes::chip::cut_chip;
use facedex_vision::attributes::config::{ChannelOrder, ChipInput, OutputDecoding, TensorLayout};
use facedex_vision::attributes::{AttributeModelConfig, AttributeValue, ChipCrop, ModelPrecision};
use prost::Message;
use support::{analyze_photos, photo, vision_config};

/// The parts of `onnx.proto` the model needs (field numbers as there).
mod onnx {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(int64, repeated, tag = "8")]
        pub ints: Vec<i64>,
        /// 7 = INTS.
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TensorType>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorType {
        /// 1 = FLOAT.
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(int64, optional, tag = "1")]
        pub dim_value: Option<i64>,
        #[prost(string, optional, tag = "2")]
        pub dim_param: Option<String>,
    }
}

/// A float tensor of shape `dims` (`None` is the batch dimension `N`).
fn tensor(name: &str, dims: &[Option<i64>]) -> onnx::ValueInfoProto {
    onnx::ValueInfoProto {
        name: name.into(),
        r#type: Some(onnx::TypeProto {
            tensor_type: Some(onnx::TensorType {
                elem_type: 1,
                shape: Some(onnx::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|dim| onnx::Dimension {
                            dim_value: *dim,
                            dim_param: dim.is_none().then(|| "N".to_owned()),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// `[N,3,128,128] → GlobalAveragePool → Flatten → [N,3]`: each channel's mean as a logit;
/// with `nhwc`, the input is `[N,128,128,3]` and a Transpose comes first.
fn channel_mean_model(nhwc: bool) -> Vec<u8> {
    let node = |op: &str, input: &str, output: &str| onnx::NodeProto {
        input: vec![input.into()],
        output: vec![output.into()],
        op_type: op.into(),
        attribute: Vec::new(),
    };
    let mut nodes = vec![
        node("GlobalAveragePool", "nchw", "pooled"),
        node("Flatten", "pooled", "logits"),
    ];
    let input = if nhwc {
        nodes.insert(
            0,
            onnx::NodeProto {
                attribute: vec![onnx::AttributeProto {
                    name: "perm".into(),
                    ints: vec![0, 3, 1, 2],
                    r#type: 7,
                }],
                ..node("Transpose", "chip", "nchw")
            },
        );
        tensor("chip", &[None, Some(128), Some(128), Some(3)])
    } else {
        tensor("nchw", &[None, Some(3), Some(128), Some(128)])
    };
    onnx::ModelProto {
        ir_version: 8,
        opset_import: vec![onnx::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(onnx::GraphProto {
            name: "channel-means".into(),
            node: nodes,
            input: vec![input],
            output: vec![tensor("logits", &[None, Some(3)])],
        }),
    }
    .encode_to_vec()
}

#[test]
fn a_liveness_shaped_model_runs_from_configuration_alone() {
    liveness_over_t1(TensorLayout::Nchw);
}

#[test]
fn a_channels_last_model_gets_its_input_channels_last() {
    liveness_over_t1(TensorLayout::Nhwc);
}

fn liveness_over_t1(layout: TensorLayout) {
    let dir = tempfile::tempdir().expect("tempdir");
    let model_path = dir.path().join("liveness.onnx");
    std::fs::write(&model_path, channel_mean_model(layout == TensorLayout::Nhwc)).expect("write the model");
    let liveness = AttributeModelConfig {
        name: "liveness".into(),
        model_path,
        crop: ChipCrop::Box {
            size_px: 128,
            scale: 2.7,
        },
        input: ChipInput {
            layout,
            channels: ChannelOrder::Bgr,
            mean: [0.0; 3],
            std: [255.0; 3],
        },
        output: OutputDecoding::Labels {
            labels: vec!["spoof".into(), "real".into(), "other".into()],
            softmax: true,
        },
        batch_size: 8,
        precision: ModelPrecision::F32,
    };
    let mut config = vision_config();
    config.attributes.push(liveness.clone());
    let name = "t1.jpg";
    let faces = analyze_photos(&[name], &config, Wanted::ALL).remove(0);
    assert_eq!(faces.len(), 6);

    let bytes = std::fs::read(photo(name)).expect("photo");
    let decoded = facedex_vision::decode_photo(name, &bytes, config.max_image_pixels).expect("decodes");
    let mut chip = Vec::new();
    let mut labels = std::collections::BTreeSet::new();
    for face in &faces {
        let names: Vec<&str> = face.attributes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["age", "gender", "liveness"]);
        assert!(cut_chip(&decoded, &face.detection, &liveness.crop, &mut chip));
        // The model's logits: each channel's mean in BGR order, over 255.
        let pixels = (chip.len() / 3) as f32;
        let logits: Vec<f32> = [2, 1, 0]
            .iter()
            .map(|&channel| chip.iter().skip(channel).step_by(3).map(|&v| f32::from(v)).sum::<f32>() / pixels / 255.0)
            .collect();
        let total: f32 = logits.iter().map(|logit| logit.exp()).sum();
        let (best, logit) = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("three classes");
        let expected_label = ["spoof", "real", "other"][best];
        let AttributeValue::Label { label, confidence } = &face.attributes[2].value else {
            panic!("liveness is a label: {:?}", face.attributes[2])
        };
        assert_eq!(label, expected_label);
        assert!(
            (confidence - logit.exp() / total).abs() < 1e-4,
            "{confidence} vs {}",
            logit.exp() / total
        );
        labels.insert(label.clone());
        assert!(
            face.attributes[2].model_id.starts_with("liveness-"),
            "{}",
            face.attributes[2].model_id
        );
    }
    println!("{layout:?}: liveness labels over t1.jpg's faces: {labels:?}");
}
