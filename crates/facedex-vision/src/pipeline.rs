//! A streaming front end for [`FaceAnalyzer`]: photos are read and decoded on worker threads
//! while the calling thread runs the models, connected by a bounded channel so decoding stays at
//! most a couple of batches ahead. Each photo's result, or its typed error, is handed to a
//! callback with the photo's position in the input, so a bad photo never stops the others.

use std::thread;

use crossbeam_channel::bounded;
use image::RgbImage;

use crate::analyzer::{Face, FaceAnalyzer};
use crate::config::VisionConfig;
use crate::decode::decode_photo;
use crate::error::{Result, VisionError};

/// Something that can produce a photo's bytes: a file, an object-store object, a buffer.
pub trait PhotoSource: Send {
    /// The name errors and results use for this photo (a path or URI).
    fn name(&self) -> &str;
    /// The photo's encoded bytes.
    fn read(&self) -> Result<Vec<u8>>;
}

/// A photo on the local file system.
pub struct PhotoFile(pub std::path::PathBuf);

impl PhotoSource for PhotoFile {
    fn name(&self) -> &str {
        self.0.to_str().unwrap_or("<non-UTF-8 path>")
    }

    fn read(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.0).map_err(|error| VisionError::Unreadable {
            input: self.0.display().to_string(),
            reason: error.to_string(),
        })
    }
}

/// What became of one photo.
#[derive(Debug)]
pub struct PhotoResult {
    /// The photo's position in the input.
    pub index: usize,
    /// The photo's name.
    pub name: String,
    /// Its size and faces, or why it could not be processed.
    pub outcome: Result<AnalyzedPhoto>,
}

/// A successfully analysed photo.
#[derive(Debug)]
pub struct AnalyzedPhoto {
    /// Width of the EXIF-oriented photo in pixels.
    pub width: u32,
    /// Height of the EXIF-oriented photo in pixels.
    pub height: u32,
    /// Faces, best detection score first.
    pub faces: Vec<Face>,
}

/// Settings of [`analyze_photos`].
#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    /// Threads reading and decoding photos.
    pub decode_threads: usize,
    /// Refuse photos declaring more pixels than this.
    pub max_image_pixels: u64,
    /// Compute embeddings, not just detections.
    pub with_embeddings: bool,
}

impl PipelineOptions {
    /// The options `config` describes; `decode_threads = 0` becomes half the cores (the other
    /// half run the models), at least one.
    pub fn from_config(config: &VisionConfig, with_embeddings: bool) -> Self {
        let decode_threads = match config.decode_threads {
            0 => thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1)),
            configured => configured,
        };
        Self {
            decode_threads,
            max_image_pixels: config.max_image_pixels,
            with_embeddings,
        }
    }
}

/// Runs every source through decode → detect → (embed), calling `on_result` once per photo,
/// in completion order. Returns an error only when the models themselves fail; a bad photo is
/// reported through `on_result` and the run goes on.
pub fn analyze_photos<S, F>(
    analyzer: &mut FaceAnalyzer,
    sources: Vec<S>,
    options: PipelineOptions,
    mut on_result: F,
) -> Result<()>
where
    S: PhotoSource,
    F: FnMut(PhotoResult),
{
    let batch_size = analyzer.detect_batch_size();
    let (job_sender, job_receiver) = bounded::<(usize, S)>(batch_size * 2);
    let (decoded_sender, decoded_receiver) = bounded::<(usize, String, Result<RgbImage>)>(batch_size * 2);
    thread::scope(|scope| {
        // Owned by this closure so that an early return (a model failure) drops it: decoders
        // blocked on a full channel then see it closed and exit, and the scope can join them.
        let decoded_receiver = decoded_receiver;
        scope.spawn(move || {
            for job in sources.into_iter().enumerate() {
                if job_sender.send(job).is_err() {
                    break; // the run stopped early
                }
            }
        });
        for _ in 0..options.decode_threads.max(1) {
            let jobs = job_receiver.clone();
            let decoded = decoded_sender.clone();
            scope.spawn(move || {
                for (index, source) in jobs {
                    let name = source.name().to_owned();
                    let image = source
                        .read()
                        .and_then(|bytes| decode_photo(&name, &bytes, options.max_image_pixels));
                    if decoded.send((index, name, image)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(decoded_sender);
        drop(job_receiver);

        // Dynamic batching: block for one photo, then take whatever else is already decoded.
        let mut batch: Vec<(usize, String, RgbImage)> = Vec::with_capacity(batch_size);
        while let Ok(first) = decoded_receiver.recv() {
            let mut pending = vec![first];
            while pending.len() < batch_size {
                match decoded_receiver.try_recv() {
                    Ok(more) => pending.push(more),
                    Err(_) => break,
                }
            }
            for (index, name, image) in pending {
                match image {
                    Ok(image) => batch.push((index, name, image)),
                    Err(error) => on_result(PhotoResult {
                        index,
                        name,
                        outcome: Err(error),
                    }),
                }
            }
            if batch.is_empty() {
                continue;
            }
            let photos: Vec<&RgbImage> = batch.iter().map(|(_, _, image)| image).collect();
            let faces = analyzer.analyze(&photos, options.with_embeddings)?;
            for ((index, name, image), faces) in batch.drain(..).zip(faces) {
                on_result(PhotoResult {
                    index,
                    name,
                    outcome: Ok(AnalyzedPhoto {
                        width: image.width(),
                        height: image.height(),
                        faces,
                    }),
                });
            }
        }
        Ok(())
    })
}
