//! `facedex index PATH_OR_URL`: local mode, the embedded default. Lists the archive, compares
//! it with what the data directory holds of it (unchanged photos are skipped, changed ones
//! redone, gone ones removed with `--prune`), runs the ingest stage with the models in this
//! process and writes the index into the data directory, with a progress bar; `facedex serve`
//! and `facedex search` then use it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use facedex_index::FaceStore;
use facedex_pipeline::archive::Archive;
use facedex_pipeline::local::{LocalEvent, index_planned, plan_archive};
use facedex_pipeline::plan::PlanOptions;
use facedex_pipeline::{ArchiveConfig, ArchiveRegistry, Ingestor};
use facedex_server::ApiServices;
use facedex_web::{ConsoleHandlers, IndexedPhoto, RunProgress};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::config::FacedexConfig;
use crate::console::{self, ConsoleFlags};
use crate::shared::{cancel_on_signal, local_analyzer};

/// Arguments of `facedex index`.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// The archive: a folder, or a file://, s3://, gs:// or az:// URL.
    #[arg(value_name = "PATH_OR_URL")]
    archive: String,
    /// The index's data directory [config: data_dir].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Photos in flight at once [config: ingest.max_in_flight].
    #[arg(long, value_name = "N")]
    max_in_flight: Option<usize>,
    #[command(flatten)]
    plan: PlanFlags,
    /// Follow the run (and search what is indexed so far) in the web console.
    #[command(flatten)]
    console: ConsoleFlags,
}

/// How a re-run treats what the index already holds of the archive (`index` and `enqueue`).
#[derive(Debug, Args)]
pub struct PlanFlags {
    /// Remove the faces of photos the index holds under this archive that it no longer lists.
    #[arg(long)]
    prune: bool,
    /// Redo photos that failed for good before even when unchanged (after an upgrade that
    /// reads more formats, or a raised size limit).
    #[arg(long)]
    retry_failed: bool,
}

impl PlanFlags {
    /// The plan's options.
    pub fn options(&self) -> PlanOptions {
        PlanOptions {
            prune: self.prune,
            retry_failed: self.retry_failed,
        }
    }
}

/// Indexes the archive, then prints what was done; exit code 0 even when some photos were
/// dead-lettered (they are listed), 130 when SIGINT/SIGTERM stopped it (what was done is
/// snapshotted), 2 when the run itself failed.
pub fn run(mut config: FacedexConfig, args: IndexArgs) -> anyhow::Result<ExitCode> {
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    if let Some(max_in_flight) = args.max_in_flight {
        config.ingest.max_in_flight = max_in_flight;
    }
    args.console.apply(&mut config);
    let archive = Archive::open(&args.archive, &config.archive)?;
    let store = Arc::new(
        FaceStore::open(&config.data_dir, config.index.clone())
            .with_context(|| format!("cannot open the index in {}", config.data_dir.display()))?,
    );
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let options = args.plan.options();
    let summary = runtime.block_on(async {
        let run = Arc::new(RunProgress::new(archive.root()));
        let planned = plan_archive(&archive, &config.archive, &store, options).await?;
        // An unchanged archive needs no models: they load only when there is a photo to process.
        let analyzer = match planned.images.is_empty() {
            true => None,
            false => Some(local_analyzer(&config)?),
        };
        // The console searches with the run's models, batched with its photos.
        let console_shutdown = CancellationToken::new();
        let console = match config.web.listen_addr {
            Some(_) => {
                let services = ApiServices::new(store.clone(), analyzer.clone(), &config.server, None, None)?;
                let handlers = ConsoleHandlers::from(&services);
                console::start(&config, handlers, Some(run.clone()), None, console_shutdown.clone()).await?
            }
            None => None,
        };
        let ingestor = analyzer.map(|analyzer| {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            Arc::new(Ingestor::new(
                // Local mode reads the one archive it was given, whatever the workers allow.
                ArchiveRegistry::new(ArchiveConfig {
                    allowed_roots: vec![archive.root().to_owned()],
                    ..config.archive.clone()
                }),
                analyzer,
                config.ingest.clone(),
                shutdown,
            ))
        });
        let progress = ProgressBar::new_spinner();
        progress.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} photos · {msg} · {per_sec} · ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        progress.set_message(format!("listing {}", archive.root()));
        let (mut faces, mut errors) = (0u64, 0u64);
        let thumbnails = console
            .as_ref()
            .filter(|_| config.web.thumbnails_during_indexing)
            .map(|console| console.thumbnails.clone());
        let summary = index_planned(planned, ingestor, store.clone(), config.ingest.max_in_flight, |event| {
            match event {
                LocalEvent::Listed(plan) => {
                    progress.set_length(plan.to_process());
                    run.planned(plan.to_process());
                }
                LocalEvent::Indexed {
                    image_uri,
                    faces: found,
                } => {
                    faces += found.len() as u64;
                    progress.inc(1);
                    run.indexed(found.len() as u64);
                    if let Some(queue) = &thumbnails {
                        // A full queue skips the photo: its thumbnails are made when asked for.
                        queue.offer(IndexedPhoto {
                            image_uri: image_uri.to_owned(),
                            faces: found.iter().map(|(id, corners)| (id.to_string(), *corners)).collect(),
                        });
                    }
                }
                LocalEvent::DeadLettered(letter) => {
                    errors += 1;
                    run.dead_lettered(letter.error_kind.label());
                    progress.inc(1);
                    progress.println(format!(
                        "skipped {}: {} ({})",
                        letter.image.uri, letter.message, letter.error_kind
                    ));
                }
            }
            progress.set_message(format!("{faces} faces · {errors} errors"));
        })
        .await;
        progress.finish_and_clear();
        // The last photos' thumbnails are rendered before the console ends.
        drop(thumbnails);
        run.ended(summary.as_ref().is_ok_and(|summary| summary.interrupted));
        console_shutdown.cancel();
        if let Some(console) = console {
            console.finish().await?;
        }
        anyhow::Ok(summary?)
    })?;
    let seconds = summary.elapsed.as_secs_f64().max(f64::EPSILON);
    if summary.interrupted {
        println!(
            "interrupted: the photos done so far are indexed and snapshotted; run the same command again to finish"
        );
    }
    println!("{}", summary.plan);
    println!(
        "indexed {} of {} photos ({} faces) in {:.1} s ({:.2} photos/s); {} photos could not be indexed; the index in {} holds {} faces (snapshot {})",
        summary.indexed_photos,
        summary.photos,
        summary.faces,
        seconds,
        (summary.indexed_photos + summary.dead_letters.len() as u64) as f64 / seconds,
        summary.dead_letters.len(),
        config.data_dir.display(),
        store.index().info().faces,
        store.last_snapshot().map_or(0, |snapshot| snapshot.generation),
    );
    let people = store.index().list_people(0, 0, true);
    println!(
        "people: {} persons; {} faces in no person yet (waiting for agreement, or too small or unsure to judge)",
        people.total, people.unassigned_faces
    );
    if !summary.listing.skipped.is_empty() {
        println!("{}", summary.listing.describe_skipped());
    }
    for letter in &summary.dead_letters {
        println!(
            "  not indexed: {} [{}] {}",
            letter.image.uri, letter.error_kind, letter.message
        );
    }
    // 130: stopped by a signal, as shells report SIGINT.
    Ok(if summary.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}
