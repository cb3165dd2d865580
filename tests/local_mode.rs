//! Local mode (`facedex index`): stopped by a signal, the photos done so far are indexed and
//! snapshotted, the exit status says it was interrupted, and running the command again
//! finishes the archive without duplicating a face. Run from any folder with no configuration,
//! it finds its assets and default data directory through its home (`FACEDEX_HOME`, then the
//! XDG data directory) and prints only its own summary. A folder, an S3 bucket (moto), a GCS
//! bucket (fake-gcs-server) and an Azure container (Azurite) holding the same photos index alike.
//! Re-runs over an archive that changes: an unchanged one processes nothing, a photo edited in
//! place has its faces replaced, a deleted one keeps its faces until `--prune` removes them.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use facedex_index::{FaceFilter, FaceStore, FaceView, ImageOutcome, IndexConfig, SearchQuery};
use support::cluster::{AzuriteServer, GcsServer, S3Server, free_port};
use support::{assets_dir, facedex_binary, facedex_command, photo, scrape_metrics};

/// Enough photos (~20 s on 2 cores) that the run is still going when the signal arrives.
const COPIES: usize = 40;

#[test]
fn sigint_snapshots_what_is_done_and_a_rerun_finishes() -> anyhow::Result<()> {
    let folder = tempfile::tempdir()?;
    for copy in 0..COPIES {
        for name in ["players.jpg", "t1.jpg"] {
            std::fs::copy(photo(name), folder.path().join(format!("{copy}-{name}")))?;
        }
    }
    let archive = folder.path().to_str().context("utf-8")?;
    let data_dir = tempfile::tempdir()?;
    let data = data_dir.path().to_str().context("utf-8")?;
    let args = ["index", archive, "--data-dir", data, "--max-in-flight", "2"];

    let metrics = format!("127.0.0.1:{}", free_port());
    let child = facedex_command()
        .args(["--metrics-addr", &metrics])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Interrupt once the index holds faces, read from the run's own metrics.
    let started = Instant::now();
    loop {
        let faces =
            scrape_metrics(&metrics).map_or(0.0, |scrape| scrape.get("facedex_index_faces").copied().unwrap_or(0.0));
        if faces > 0.0 {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(180),
            "no face indexed in 3 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status()?;
    ensure!(status.success());
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.code() == Some(130),
        "exit {:?} after {:?}: {stdout}{}",
        output.status,
        started.elapsed(),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(stdout.contains("interrupted"), "{stdout}");

    let (partial_faces, partial_images) = {
        let store = FaceStore::open(data_dir.path(), IndexConfig::default())?;
        ensure!(store.last_snapshot().is_some(), "the interrupted run wrote a snapshot");
        let info = store.index().info();
        (info.faces, info.images)
    };
    let photos = 2 * COPIES;
    ensure!(
        partial_images > 0 && partial_images < photos,
        "{partial_images} of {photos} photos indexed when interrupted: the signal must land mid-run"
    );

    let rerun = facedex_command().args(args).output()?;
    ensure!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    let store = FaceStore::open(data_dir.path(), IndexConfig::default())?;
    let info = store.index().info();
    ensure!(
        info.images == photos,
        "{} of {photos} photos after the rerun",
        info.images
    );
    // Every copy holds the faces `facedex detect` finds in its original, once.
    let detected = facedex_command()
        .args(["detect", "--json"])
        .args([photo("players.jpg"), photo("t1.jpg")])
        .output()?;
    let faces_per_copy: usize = String::from_utf8_lossy(&detected.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).map(|photo| photo["faces"].as_array().map_or(0, Vec::len))
        })
        .sum::<Result<_, _>>()?;
    ensure!(faces_per_copy > 22, "players.jpg alone has 22 faces");
    ensure!(
        info.faces == COPIES * faces_per_copy,
        "{} faces, expected {}",
        info.faces,
        COPIES * faces_per_copy
    );
    ensure!(info.faces > partial_faces);
    Ok(())
}

/// `facedex index DIR` started in an unrelated folder, with an environment holding nothing of
/// facedex's but `extra`.
fn index_elsewhere(
    archive: &std::path::Path,
    home: &std::path::Path,
    extra: &[(&str, &std::path::Path)],
) -> anyhow::Result<std::process::Output> {
    let elsewhere = tempfile::tempdir()?;
    let mut command = Command::new(facedex_binary());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .current_dir(elsewhere.path())
        .arg("index")
        .arg(archive);
    for (name, value) in extra {
        command.env(name, value);
    }
    Ok(command.output()?)
}

#[test]
fn runs_from_any_folder_through_its_home_and_prints_only_its_summary() -> anyhow::Result<()> {
    let archive = tempfile::tempdir()?;
    std::fs::copy(photo("t1.jpg"), archive.path().join("t1.jpg"))?;
    std::fs::write(archive.path().join("notes.txt"), b"not a photo")?;
    std::fs::write(archive.path().join("clip.mov"), b"not a photo either")?;
    let assets = std::fs::canonicalize(assets_dir())?;

    // Nothing installed: the error names every place looked in.
    let bare_home = tempfile::tempdir()?;
    let missing = index_elsewhere(archive.path(), bare_home.path(), &[])?;
    let stderr = String::from_utf8_lossy(&missing.stderr);
    ensure!(!missing.status.success(), "{stderr}");
    let xdg_assets = bare_home.path().join(".local/share/facedex/assets");
    ensure!(
        stderr.contains(&xdg_assets.display().to_string())
            && stderr.contains(".facedex/assets (the working directory)"),
        "{stderr}"
    );

    // Installed in the XDG data directory, as scripts/setup does: assets and data both there.
    std::fs::create_dir_all(xdg_assets.parent().context("parent")?)?;
    std::os::unix::fs::symlink(&assets, &xdg_assets)?;
    let installed = index_elsewhere(archive.path(), bare_home.path(), &[])?;
    let stdout = String::from_utf8_lossy(&installed.stdout);
    ensure!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    ensure!(
        lines.len() == 4
            && lines[0] == "1 photo: 0 unchanged, 0 changed, 1 new, 0 removed"
            && lines[1].starts_with("indexed 1 of 1 photos")
            // One photo: its faces are of different people, so none can found a person.
            && lines[2].starts_with("people: 0 persons; ")
            && lines[3] == "skipped 2 files: .mov 1, .txt 1",
        "standard output holds facedex's summary only, with what listing passed over: {stdout:?}"
    );
    let xdg_data = bare_home.path().join(".local/share/facedex/data");
    let store = FaceStore::open(&xdg_data, IndexConfig::default())?;
    ensure!(
        store.index().info().images == 1,
        "the default data directory is the home's"
    );

    // FACEDEX_HOME comes first.
    let explicit = tempfile::tempdir()?;
    std::os::unix::fs::symlink(&assets, explicit.path().join("assets"))?;
    let chosen = index_elsewhere(archive.path(), bare_home.path(), &[("FACEDEX_HOME", explicit.path())])?;
    ensure!(chosen.status.success(), "{}", String::from_utf8_lossy(&chosen.stderr));
    ensure!(
        explicit.path().join("data").is_dir(),
        "FACEDEX_HOME's data directory is used"
    );
    Ok(())
}

#[test]
fn file_s3_gcs_and_azure_archives_index_alike() -> anyhow::Result<()> {
    let names = ["t1.jpg", "yaoming.jpg", "Tom_Hanks_54745.png"];
    let files: Vec<_> = names.iter().map(|name| photo(name)).collect();
    let files: Vec<&std::path::Path> = files.iter().map(|path| path.as_path()).collect();
    let folder = tempfile::tempdir()?;
    for file in &files {
        std::fs::copy(file, folder.path().join(file.file_name().context("name")?))?;
    }
    let s3 = S3Server::start();
    s3.upload("archive", "photos", &files);
    let gcs = GcsServer::start("archive", "photos", &files);
    let azurite = AzuriteServer::start();
    azurite.upload("archive", "photos", &files);
    let archives = [
        (folder.path().to_str().context("utf-8")?.to_owned(), Vec::new()),
        ("s3://archive/photos".to_owned(), s3.env()),
        ("gs://archive/photos".to_owned(), gcs.env()),
        ("az://archive/photos".to_owned(), azurite.env()),
    ];
    let mut summaries = Vec::new();
    for (archive, env) in &archives {
        let data_dir = tempfile::tempdir()?;
        let output = facedex_command()
            .args(["index", archive, "--data-dir"])
            .arg(data_dir.path())
            .envs(env.iter().map(|(key, value)| (key, value)))
            .output()?;
        ensure!(
            output.status.success(),
            "{archive}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let store = FaceStore::open(data_dir.path(), IndexConfig::default())?;
        let info = store.index().info();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        summaries.push((archive.clone(), info.images, info.faces, stdout));
    }
    let (_, images, faces, _) = &summaries[0];
    ensure!(*images == names.len() && *faces == 8, "the folder: {summaries:?}");
    for (archive, store_images, store_faces, stdout) in &summaries {
        ensure!(
            (store_images, store_faces) == (images, faces),
            "{archive} indexed {store_images} photos and {store_faces} faces, the folder {images} and {faces}: {stdout}"
        );
    }
    Ok(())
}

/// Every face of the photo `uri`, with its embedding.
fn faces_of(store: &FaceStore, uri: &str) -> anyhow::Result<Vec<FaceView>> {
    let mut probe = vec![0.0; 512];
    probe[0] = 1.0;
    let query = SearchQuery {
        exact: true,
        filter: FaceFilter {
            image_uri_prefix: Some(uri.to_owned()),
            ..FaceFilter::default()
        },
        ..SearchQuery::nearest(probe, 100)
    };
    let hits = store.index().search(&query)?;
    hits.iter()
        .filter(|hit| hit.metadata.image_uri == uri)
        .map(|hit| Ok(store.index().get(&hit.face_id, true)?))
        .collect()
}

/// Runs `facedex index` with `extra` flags; returns its first line (the plan) and all of stdout.
fn index_run(archive: &str, data_dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<(String, String)> {
    let output = facedex_command()
        .args(["index", archive, "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((stdout.lines().next().unwrap_or_default().to_owned(), stdout))
}

#[test]
fn reruns_skip_unchanged_photos_replace_edited_ones_and_prune_deleted_ones() -> anyhow::Result<()> {
    let folder = tempfile::tempdir()?;
    for name in ["t1.jpg", "players.jpg", "yaoming.jpg", "gdp.jpg"] {
        std::fs::copy(photo(name), folder.path().join(name))?;
    }
    let players = std::fs::read(photo("players.jpg"))?;
    std::fs::write(folder.path().join("corrupt.jpg"), &players[..players.len() / 3])?;
    let root = format!("file://{}", std::fs::canonicalize(folder.path())?.display());
    let uri = |name: &str| format!("{root}/{name}");
    let archive = folder.path().to_str().context("utf-8")?;
    let data_dir = tempfile::tempdir()?;
    let open = || FaceStore::open(data_dir.path(), IndexConfig::default());

    let (plan, _) = index_run(archive, data_dir.path(), &[])?;
    ensure!(plan == "5 photos: 0 unchanged, 0 changed, 5 new, 0 removed", "{plan}");
    let (first_faces, first_generation, yaoming, gdp_faces, t1_faces) = {
        let store = open()?;
        let yaoming = faces_of(&store, &uri("yaoming.jpg"))?;
        ensure!(yaoming.len() == 1, "yaoming.jpg has one face: {yaoming:?}");
        let corrupt = store
            .index()
            .catalog_entry(&uri("corrupt.jpg"))
            .context("corrupt.jpg cataloged")?;
        ensure!(corrupt.outcome == ImageOutcome::Failed);
        (
            store.index().info().faces,
            store.last_snapshot().context("a snapshot")?.generation,
            yaoming[0].embedding.clone().context("embedding")?,
            faces_of(&store, &uri("gdp.jpg"))?.len(),
            faces_of(&store, &uri("t1.jpg"))?.len(),
        )
    };
    ensure!(
        gdp_faces > 0 && t1_faces == 6,
        "gdp.jpg {gdp_faces} faces, t1.jpg {t1_faces}"
    );

    // Nothing changed: nothing is processed, not even the photo that failed, and no snapshot
    // is written.
    let (plan, stdout) = index_run(archive, data_dir.path(), &[])?;
    ensure!(
        plan == "5 photos: 5 unchanged, 0 changed, 0 new, 0 removed; 1 of the unchanged failed before (--retry-failed redoes them)",
        "{plan}"
    );
    ensure!(stdout.contains("indexed 0 of 0 photos"), "{stdout}");
    ensure!(open()?.last_snapshot().map(|snapshot| snapshot.generation) == Some(first_generation));

    // t1.jpg is overwritten in place with another photo, gdp.jpg is deleted.
    std::fs::write(folder.path().join("t1.jpg"), std::fs::read(photo("yaoming.jpg"))?)?;
    std::fs::remove_file(folder.path().join("gdp.jpg"))?;
    let (plan, _) = index_run(archive, data_dir.path(), &[])?;
    ensure!(
        plan == "4 photos: 3 unchanged, 1 changed, 0 new, 0 removed; 1 of the unchanged failed before (--retry-failed redoes them); 1 no longer in the archive keep their faces (--prune removes them)",
        "{plan}"
    );
    {
        let store = open()?;
        let edited = faces_of(&store, &uri("t1.jpg"))?;
        ensure!(edited.len() == 1, "t1.jpg now holds yaoming's face only: {edited:?}");
        let similarity = support::cosine(edited[0].embedding.as_deref().context("embedding")?, &yaoming);
        ensure!(similarity > 0.99, "t1.jpg's face is yaoming's: {similarity}");
        let faces = store.index().info().faces;
        ensure!(
            faces == first_faces - t1_faces + 1,
            "{faces} faces after the edit, {first_faces} before"
        );
        ensure!(
            faces_of(&store, &uri("gdp.jpg"))?.len() == gdp_faces,
            "kept without --prune"
        );
    }

    let (plan, _) = index_run(archive, data_dir.path(), &["--prune"])?;
    ensure!(
        plan == "4 photos: 4 unchanged, 0 changed, 0 new, 1 removed; 1 of the unchanged failed before (--retry-failed redoes them)",
        "{plan}"
    );
    {
        let store = open()?;
        ensure!(
            faces_of(&store, &uri("gdp.jpg"))?.is_empty(),
            "gdp.jpg's faces are gone"
        );
        ensure!(store.index().catalog_entry(&uri("gdp.jpg")).is_none());
        ensure!(store.index().info().faces == first_faces - t1_faces + 1 - gdp_faces);
    }

    let (plan, stdout) = index_run(archive, data_dir.path(), &["--retry-failed"])?;
    ensure!(plan == "4 photos: 3 unchanged, 1 changed, 0 new, 0 removed", "{plan}");
    ensure!(
        stdout.contains("not indexed: ") && stdout.contains("corrupt.jpg [corrupt]"),
        "{stdout}"
    );
    Ok(())
}
