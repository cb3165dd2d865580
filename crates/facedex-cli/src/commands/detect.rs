//! `facedex detect PHOTO...`: the faces of each photo as a table, or as JSON Lines with
//! `--json` (one object per photo, in input order). A photo that fails gets an error object and
//! the command exits with status 1 after finishing the others.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use facedex_pipeline::{AnalyzedPhoto, PipelineError, StageTimings, Wanted, describe};
use facedex_vision::attributes::{AttributeValue, FaceAttribute};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::FacedexConfig;
use crate::shared::local_analyzer;

/// Arguments of `facedex detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Photos to analyse (JPEG, PNG, WebP, TIFF, GIF, BMP, JPEG XL).
    #[arg(required = true, value_name = "PHOTO")]
    photos: Vec<PathBuf>,
    /// Print JSON Lines, one object per photo, instead of a table.
    #[arg(long)]
    json: bool,
    /// Also compute each face's 512-d ArcFace embedding (printed with --json).
    #[arg(long)]
    embeddings: bool,
}

/// What became of one photo.
struct PhotoResult {
    name: String,
    outcome: Result<AnalyzedPhoto, PipelineError>,
}

/// Runs the command; the exit code is 1 when any photo failed.
pub fn run(config: &FacedexConfig, args: DetectArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let analyzer = local_analyzer(config)?;
        let model_id = args.embeddings.then(|| analyzer.info().model_id.clone());
        // Enough photos in flight for the detector to fill its batches while others decode.
        let in_flight = config.vision.detection.batch_size.max(1) * 2;
        let wanted = Wanted {
            embeddings: args.embeddings,
            attributes: true,
        };
        let max_bytes = config.archive.max_image_bytes;
        let mut results = futures::stream::iter(args.photos)
            .map(|path| {
                let analyzer = analyzer.clone();
                async move {
                    let name = path.to_str().unwrap_or("<non-UTF-8 path>").to_owned();
                    let outcome = match read_photo(&path, max_bytes).await {
                        Ok(bytes) => {
                            analyzer
                                .analyze(&name, bytes, wanted, &mut StageTimings::default())
                                .await
                        }
                        Err(error) => Err(error),
                    };
                    PhotoResult { name, outcome }
                }
            })
            // In input order: photos run concurrently, results print as the list gave them.
            .buffered(in_flight);
        let stdout = io::stdout();
        let mut failures = 0usize;
        while let Some(result) = results.next().await {
            let result = match result.outcome {
                // Not the photo's fault: the models or the machine failed; stop.
                Err(error) if error.dead_letter_kind().is_none() => {
                    return Err(anyhow::Error::new(error).context("cannot analyse the photos"));
                }
                outcome => PhotoResult {
                    name: result.name,
                    outcome,
                },
            };
            failures += usize::from(result.outcome.is_err());
            let mut out = stdout.lock();
            if args.json {
                writeln!(out, "{}", photo_json(&result, model_id.as_deref()))
            } else {
                write_table(&mut out, &result)
            }
            .context("cannot write to standard output")?;
        }
        stdout.lock().flush().context("cannot write to standard output")?;
        if failures > 0 {
            eprintln!("facedex: {failures} photo(s) could not be processed");
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A photo file's bytes, read on the blocking pool; a file over `max_bytes`
/// (`archive.max_image_bytes`) is refused before it is read, as in an archive.
async fn read_photo(path: &std::path::Path, max_bytes: u64) -> Result<Vec<u8>, PipelineError> {
    let unreadable = |error: std::io::Error| {
        PipelineError::Vision(facedex_vision::VisionError::Unreadable {
            input: path.display().to_string(),
            reason: error.to_string(),
        })
    };
    let size_bytes = tokio::fs::metadata(path).await.map_err(unreadable)?.len();
    if size_bytes > max_bytes {
        return Err(PipelineError::TooLarge {
            uri: path.display().to_string(),
            size_bytes,
            limit_bytes: max_bytes,
        });
    }
    tokio::fs::read(path).await.map_err(unreadable)
}

/// The JSON object printed for one photo; `model_id` is set when embeddings were computed.
fn photo_json(result: &PhotoResult, model_id: Option<&str>) -> Value {
    match &result.outcome {
        Ok(AnalyzedPhoto { width, height, faces }) => {
            let faces: Vec<Value> = faces
                .iter()
                .map(|face| {
                    let detection = &face.detection;
                    let mut object = json!({
                        "bbox": detection.bbox,
                        "score": detection.score,
                        "landmarks": detection.landmarks,
                    });
                    if let Some(quality) = &face.quality {
                        object["quality"] = json!(quality);
                    }
                    if !face.attributes.is_empty() {
                        object["attributes"] = attributes_json(&face.attributes);
                    }
                    if !face.embedding.is_empty() {
                        object["embedding"] = json!(face.embedding);
                    }
                    object
                })
                .collect();
            let mut object = json!({"path": result.name, "width": width, "height": height, "faces": faces});
            if let Some(model_id) = model_id {
                object["model_id"] = json!(model_id);
            }
            object
        }
        Err(error) => json!({
            "path": result.name,
            "error": {"kind": failure_label(error), "message": describe(error)},
        }),
    }
}

/// One attribute in `detect --json` (`{"label", "confidence"}`, `{"value"}` or `{"vector"}`,
/// with `"model_id"`), under its name; `index-import` reads it back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AttributeJson {
    model_id: String,
    #[serde(flatten)]
    value: AttributeValueJson,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum AttributeValueJson {
    Label { label: String, confidence: f32 },
    Number { value: f32 },
    Vector { vector: Vec<f32> },
}

impl AttributeJson {
    fn of(attribute: &FaceAttribute) -> Self {
        let value = match &attribute.value {
            AttributeValue::Label { label, confidence } => AttributeValueJson::Label {
                label: label.clone(),
                confidence: *confidence,
            },
            AttributeValue::Number(value) => AttributeValueJson::Number { value: *value },
            AttributeValue::Vector(vector) => AttributeValueJson::Vector { vector: vector.clone() },
        };
        Self {
            model_id: attribute.model_id.clone(),
            value,
        }
    }

    /// The attribute named `name`.
    pub(crate) fn into_attribute(self, name: String) -> FaceAttribute {
        FaceAttribute {
            name,
            model_id: self.model_id,
            value: match self.value {
                AttributeValueJson::Label { label, confidence } => AttributeValue::Label { label, confidence },
                AttributeValueJson::Number { value } => AttributeValue::Number(value),
                AttributeValueJson::Vector { vector } => AttributeValue::Vector(vector),
            },
        }
    }
}

/// A face's attributes as `{name: attribute}`.
pub(crate) fn attributes_json(attributes: &[FaceAttribute]) -> Value {
    let by_name: BTreeMap<&str, AttributeJson> = attributes
        .iter()
        .map(|attribute| (attribute.name.as_str(), AttributeJson::of(attribute)))
        .collect();
    json!(by_name)
}

/// A face's attributes in table cells: `age 31.2`, `gender male 0.97`.
pub(crate) fn attributes_cell(attributes: &[FaceAttribute]) -> Vec<String> {
    attributes
        .iter()
        .map(|attribute| match &attribute.value {
            AttributeValue::Label { label, confidence } => format!("{} {label} {confidence:.2}", attribute.name),
            AttributeValue::Number(number) => format!("{} {number:.1}", attribute.name),
            AttributeValue::Vector(values) => format!("{} [{} values]", attribute.name, values.len()),
        })
        .collect()
}

/// The human-readable form of one photo.
fn write_table(out: &mut impl Write, result: &PhotoResult) -> io::Result<()> {
    match &result.outcome {
        Err(error) => writeln!(
            out,
            "{}: error ({}): {}\n",
            result.name,
            failure_label(error),
            describe(error)
        ),
        Ok(photo) => {
            writeln!(
                out,
                "{}: {}x{}, {} face(s)",
                result.name,
                photo.width,
                photo.height,
                photo.faces.len()
            )?;
            if !photo.faces.is_empty() {
                writeln!(
                    out,
                    "  {:>3}  {:>5}  {:>28}  {:>14}  {:>7}  attributes",
                    "#", "score", "box x1,y1 - x2,y2", "eyes (l / r)", "quality"
                )?;
            }
            for (number, face) in photo.faces.iter().enumerate() {
                let d = &face.detection;
                writeln!(
                    out,
                    "  {:>3}  {:>5.3}  {:>28}  {:>14}  {:>7}  {}",
                    number + 1,
                    d.score,
                    format!("{:.0},{:.0} - {:.0},{:.0}", d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]),
                    format!(
                        "{:.0},{:.0} / {:.0},{:.0}",
                        d.landmarks[0][0], d.landmarks[0][1], d.landmarks[1][0], d.landmarks[1][1]
                    ),
                    face.quality
                        .map_or("-".to_owned(), |quality| format!("{:.2}", quality.score)),
                    attributes_cell(&face.attributes).join(", "),
                )?;
            }
            writeln!(out)
        }
    }
}

/// The failure kind's label; `run` stops before printing any error that has none.
fn failure_label(error: &PipelineError) -> &'static str {
    error.dead_letter_kind().map_or("internal", |kind| kind.label())
}
