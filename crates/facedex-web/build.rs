//! Embeds the console's built files (`web/dist`, made by `scripts/web/build` with Vite and
//! committed) into the binary: writes `console_assets.rs`, a table of each file's path,
//! content type and bytes (`include_bytes!`), so nothing of Node is needed to build or run.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dist = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../web/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files)?;
    if !files.iter().any(|(path, _)| path == "index.html") {
        return Err(format!(
            "{} holds no index.html: run scripts/web/build to build the web console",
            dist.display()
        )
        .into());
    }
    files.sort();
    let mut table = String::from(
        "/// The console's files: path below the root, content type, bytes.\npub(crate) static FILES: &[(&str, &str, &[u8])] = &[\n",
    );
    for (path, absolute) in &files {
        println!("cargo:rerun-if-changed={}", absolute.display());
        table.push_str(&format!(
            "    ({path:?}, {:?}, include_bytes!({:?})),\n",
            content_type(path),
            absolute.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(
        PathBuf::from(std::env::var("OUT_DIR")?).join("console_assets.rs"),
        table,
    )?;
    Ok(())
}

/// Every file below `dir`, as (`/`-separated path below `root`, absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, files)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<String> = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            files.push((parts.join("/"), path.canonicalize()?));
        }
    }
    Ok(())
}

/// The content type a browser needs for what Vite writes.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}
