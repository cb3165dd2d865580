//! `facedex detect PHOTO...`: the faces of each photo as a table, or as JSON Lines with
//! `--json` (one object per photo, in input order). A photo that fails gets an error object and
//! the command exits with status 1 after finishing the others.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use facedex_vision::{AnalyzedPhoto, FaceAnalyzer, PhotoFile, PhotoResult, PipelineOptions, analyze_photos};
use serde_json::{Value, json};

use crate::config::FacedexConfig;

/// Arguments of `facedex detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Photos to analyse (JPEG, PNG or WebP).
    #[arg(required = true, value_name = "PHOTO")]
    photos: Vec<PathBuf>,
    /// Print JSON Lines, one object per photo, instead of a table.
    #[arg(long)]
    json: bool,
    /// Also compute each face's 512-d ArcFace embedding (printed with --json).
    #[arg(long)]
    embeddings: bool,
}

/// Runs the command; the exit code is 1 when any photo failed.
pub fn run(config: &FacedexConfig, args: DetectArgs) -> anyhow::Result<ExitCode> {
    let mut analyzer = FaceAnalyzer::load(&config.vision).context("cannot load the face models")?;
    let options = PipelineOptions::from_config(&config.vision, args.embeddings);
    let sources: Vec<PhotoFile> = args.photos.into_iter().map(PhotoFile).collect();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut failures = 0usize;
    let mut write_error: Option<io::Error> = None;
    // Results arrive in completion order; print them in input order.
    let mut waiting: BTreeMap<usize, PhotoResult> = BTreeMap::new();
    let mut next_index = 0;
    let model_id = args.embeddings.then(|| analyzer.model_id().to_owned());
    analyze_photos(&mut analyzer, sources, options, |result| {
        waiting.insert(result.index, result);
        while let Some(ready) = waiting.remove(&next_index) {
            next_index += 1;
            failures += usize::from(ready.outcome.is_err());
            let written = if args.json {
                writeln!(out, "{}", photo_json(&ready, model_id.as_deref()))
            } else {
                write_table(&mut out, &ready)
            };
            if let Err(error) = written {
                write_error.get_or_insert(error);
            }
        }
    })?;
    if let Some(error) = write_error {
        return Err(error).context("cannot write to standard output");
    }
    out.flush()?;
    if failures > 0 {
        eprintln!("facedex: {failures} photo(s) could not be processed");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
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
            "error": {"kind": error.kind(), "message": error.to_string()},
        }),
    }
}

/// The human-readable form of one photo.
fn write_table(out: &mut impl Write, result: &PhotoResult) -> io::Result<()> {
    match &result.outcome {
        Err(error) => writeln!(out, "{}: error ({}): {error}\n", result.name, error.kind()),
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
                    "  {:>3}  {:>5}  {:>28}  {:>14}",
                    "#", "score", "box x1,y1 - x2,y2", "eyes (l / r)"
                )?;
            }
            for (number, face) in photo.faces.iter().enumerate() {
                let d = &face.detection;
                writeln!(
                    out,
                    "  {:>3}  {:>5.3}  {:>28}  {:>6.0},{:<3.0} / {:.0},{:.0}",
                    number + 1,
                    d.score,
                    format!("{:.0},{:.0} - {:.0},{:.0}", d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]),
                    d.landmarks[0][0],
                    d.landmarks[0][1],
                    d.landmarks[1][0],
                    d.landmarks[1][1],
                )?;
            }
            writeln!(out)
        }
    }
}
