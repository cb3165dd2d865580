//! A per-face model in int8 (`precision = "int8"`): ONNX Runtime's float optimisations, then
//! the convolutions' activation ranges measured over the calibration faces' chips, then the
//! graph rewritten in QDQ form ([`crate::graph::quantize`]). The result is kept for the
//! process's life, so a model is calibrated once however many times it is loaded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use prost::Message;

use crate::attributes::calibration::CalibrationChips;
use crate::attributes::config::AttributeModelConfig;
use crate::attributes::model::write_chip_tensor;
use crate::config::VisionConfig;
use crate::error::{Result, VisionError};
use crate::graph::onnx::ModelProto;
use crate::graph::optimized_graph;
use crate::graph::quantize::{ActivationRange, QuantizationPlan, quantize, with_outputs};

/// Chips per calibration run.
const CALIBRATION_BATCH: usize = 32;

/// Quantised graphs made in this process, by what they were made from.
static QUANTIZED: Mutex<Vec<(String, Arc<[u8]>)>> = Mutex::new(Vec::new());

/// The encoded int8 graph of `model` (whose file's id is `model_id`), calibrated on the faces
/// of `vision.calibration_photos_dir`, whose chips `calibration` cuts when the graph is not
/// cached yet.
pub(crate) fn int8_graph(
    environment: &Environment,
    vision: &VisionConfig,
    model: &AttributeModelConfig,
    model_id: &str,
    calibration: &mut CalibrationChips<'_>,
) -> Result<Arc<[u8]>> {
    let key = format!(
        "{model_id}|{}|{}|{:?}|{:?}|{:?}",
        vision.calibration_photos_dir.display(),
        vision.detector_model_path.display(),
        vision.detection,
        model.crop,
        model.input,
    );
    let cached = QUANTIZED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, graph)) = cached.iter().find(|(made_from, _)| *made_from == key) {
        return Ok(graph.clone());
    }
    drop(cached);
    let cannot = |reason: String| VisionError::IncompatibleModel {
        path: model.model_path.clone(),
        role: "an int8 per-face model (precision = \"int8\"; set \"f32\" to run it as it is)",
        reason,
    };
    let chips = calibration.for_crop(environment, &model.crop)?;
    let optimized = optimized_graph(environment, &model.model_path).map_err(cannot)?;
    let plan = QuantizationPlan::for_graph(&optimized).map_err(cannot)?;
    let ranges = measure_ranges(environment, model, &optimized, &plan, chips).map_err(cannot)?;
    let quantized = quantize(optimized, &plan, &ranges).map_err(cannot)?;
    let graph: Arc<[u8]> = quantized.encode_to_vec().into();
    QUANTIZED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push((key, graph.clone()));
    Ok(graph)
}

/// Runs the float graph over `chips` with every activation of `plan` as an output and keeps
/// each one's smallest and largest value.
fn measure_ranges(
    environment: &Environment,
    model: &AttributeModelConfig,
    graph: &ModelProto,
    plan: &QuantizationPlan,
    chips: &[u8],
) -> std::result::Result<HashMap<String, ActivationRange>, String> {
    let probe = with_outputs(graph, plan).encode_to_vec();
    // Already optimised: a second pass could fuse a measured activation away.
    let mut session = Session::builder(environment)
        .and_then(|builder| {
            builder
                .with_optimization_level(GraphOptimizationLevel::Disable)
                .map_err(Into::into)
        })
        .and_then(|mut builder| builder.commit_from_memory(&probe))
        .map_err(|error| format!("the calibration graph does not load: {error}"))?;
    let mut ranges: HashMap<String, ActivationRange> = plan
        .activations
        .iter()
        .map(|name| (name.clone(), ActivationRange::EMPTY))
        .collect();
    let chip_bytes = model.crop.chip_bytes();
    let mut values = Vec::new();
    for batch in chips.chunks(chip_bytes * CALIBRATION_BATCH) {
        let count = batch.len() / chip_bytes;
        let shape = write_chip_tensor(model, batch.chunks_exact(chip_bytes), count, &mut values);
        let input = TensorRef::from_array_view((shape, values.as_slice())).map_err(|error| error.to_string())?;
        let outputs = session
            .run(ort::inputs![input])
            .map_err(|error| format!("the calibration run failed: {error}"))?;
        for (name, range) in &mut ranges {
            let output = outputs
                .get(name.as_str())
                .ok_or_else(|| format!("the calibration run gave no {name:?}"))?;
            let (_, data) = output.try_extract_tensor::<f32>().map_err(|error| error.to_string())?;
            *range = range.widened(data);
        }
    }
    Ok(ranges)
}
