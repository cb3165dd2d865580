//! `facedex index-import`: loads the JSON Lines of `facedex detect --json --embeddings` into a
//! data directory and snapshots it, so the search service is usable without the pipeline.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use facedex_index::{BoundingBox, FaceId, FaceMetadata, FaceRecord, FaceStore, FaceTraits};
use serde::Deserialize;

use crate::commands::detect::AttributeJson;
use crate::config::FacedexConfig;

/// Faces per upsert call.
const BATCH_FACES: usize = 1000;

/// Arguments of `facedex index-import`.
#[derive(Debug, Args)]
pub struct IndexImportArgs {
    /// JSON Lines files written by `facedex detect --json --embeddings` (`-` for stdin).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The index's data directory [config: data_dir].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// One line of `detect --json`.
#[derive(Debug, Deserialize)]
struct PhotoLine {
    path: String,
    #[serde(default)]
    faces: Vec<FaceLine>,
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct FaceLine {
    bbox: [f32; 4],
    score: f32,
    landmarks: [[f32; 2]; 5],
    #[serde(default)]
    embedding: Vec<f32>,
    #[serde(default)]
    quality: Option<QualityLine>,
    #[serde(default)]
    attributes: BTreeMap<String, AttributeJson>,
}

/// The part of a face's `quality` object the index keeps.
#[derive(Debug, Deserialize)]
struct QualityLine {
    score: f32,
}

/// Imports every file, then writes one snapshot.
pub fn run(mut config: FacedexConfig, args: IndexImportArgs) -> anyhow::Result<ExitCode> {
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    let store = FaceStore::open(&config.data_dir, config.index.clone())
        .with_context(|| format!("cannot open the index in {}", config.data_dir.display()))?;
    let mut totals = Totals::default();
    for file in &args.files {
        import_file(&store, file, &mut totals).with_context(|| format!("cannot import {}", file.display()))?;
    }
    store.audit_reachability();
    let snapshot = store.snapshot().context("cannot write the snapshot")?;
    println!(
        "imported {} faces from {} photos ({} new, {} already indexed, {} deleted earlier and not re-added; {} photos with errors skipped); the index holds {} faces in snapshot {} of {}",
        totals.faces,
        totals.photos,
        totals.inserted,
        totals.unchanged,
        totals.skipped_deleted,
        totals.photo_errors,
        store.index().info().faces,
        snapshot.generation,
        config.data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct Totals {
    photos: usize,
    photo_errors: usize,
    faces: usize,
    inserted: usize,
    unchanged: usize,
    skipped_deleted: usize,
}

fn import_file(store: &FaceStore, file: &Path, totals: &mut Totals) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = match file.to_str() {
        Some("-") => Box::new(BufReader::new(std::io::stdin())),
        _ => Box::new(BufReader::new(File::open(file)?)),
    };
    let mut batch = Vec::with_capacity(BATCH_FACES);
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let photo: PhotoLine = serde_json::from_str(&line)
            .with_context(|| format!("line {} is not a `facedex detect --json` record", number + 1))?;
        if photo.error.is_some() {
            totals.photo_errors += 1;
            continue;
        }
        totals.photos += 1;
        if photo.faces.is_empty() {
            continue;
        }
        let Some(model_id) = photo.model_id.as_deref() else {
            bail!(
                "line {} ({}) has faces but no model_id: run `facedex detect --json --embeddings`",
                number + 1,
                photo.path
            );
        };
        let image_uri = image_uri(&photo.path);
        for face in photo.faces {
            if face.embedding.is_empty() {
                bail!(
                    "line {} ({}) has a face without an embedding: run `facedex detect --json --embeddings`",
                    number + 1,
                    photo.path
                );
            }
            let [x1, y1, x2, y2] = face.bbox;
            let bounding_box = BoundingBox { x1, y1, x2, y2 };
            batch.push(FaceRecord {
                face_id: FaceId::derive(&image_uri, &bounding_box, model_id),
                metadata: FaceMetadata {
                    image_uri: image_uri.clone(),
                    bounding_box,
                    landmarks: face.landmarks,
                    detection_score: face.score,
                    model_id: model_id.to_owned(),
                    traits: FaceTraits {
                        quality: face.quality.map(|quality| quality.score),
                        attributes: face
                            .attributes
                            .into_iter()
                            .map(|(name, attribute)| attribute.into_attribute(name))
                            .collect(),
                    },
                },
                embedding: face.embedding,
            });
            if batch.len() >= BATCH_FACES {
                upsert(store, &mut batch, totals)?;
            }
        }
    }
    upsert(store, &mut batch, totals)
}

fn upsert(store: &FaceStore, batch: &mut Vec<FaceRecord>, totals: &mut Totals) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    totals.faces += batch.len();
    let outcome = store.upsert(std::mem::take(batch))?;
    totals.inserted += outcome.inserted + outcome.replaced;
    totals.unchanged += outcome.unchanged;
    totals.skipped_deleted += outcome.skipped_deleted;
    Ok(())
}

/// `file://` and the absolute path for a local file (the URI the pipeline gives it too);
/// anything else (already a URI, or a file that is gone) as written.
fn image_uri(path: &str) -> String {
    if path.contains("://") {
        return path.to_owned();
    }
    match std::fs::canonicalize(path) {
        Ok(absolute) => format!("file://{}", absolute.display()),
        Err(_) => path.to_owned(),
    }
}
