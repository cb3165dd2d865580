//! Photo archives through `object_store`: a local folder (`file://` or a plain path, confined
//! to its root: links out of it are neither listed nor read), `s3://`, `gs://` and `az://`
//! buckets. [`Archive::list`] finds the photos to enqueue and counts what it passes over by
//! [`SkipReason`]; [`Archive::fetch`] reads one back in an ingest worker, refusing oversize
//! objects before reading them. [`ArchiveRegistry`] opens only the roots
//! `archive.allowed_roots` allows.

mod local_walk;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use parking_lot::Mutex;
use url::Url;

use crate::config::ArchiveConfig;
use crate::error::{PipelineError, Result};
use crate::messages::{ImageRef, now_unix_ms};
use local_walk::{Found, LocalWalk, ResolveError, resolve_inside};

/// An opened archive root.
pub struct Archive {
    root: String,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    /// The canonical folder of a local archive, which listing and fetching stay inside.
    local_root: Option<PathBuf>,
}

/// Why listing passed over an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// Its extension (lower-cased, empty for none) is not in `archive.extensions`.
    Extension(String),
    /// Its size is outside `archive.list_min_bytes..=list_max_bytes`.
    Size,
    /// A link out of a local archive's root.
    LinkOutsideRoot,
    /// A link to nothing.
    BrokenLink,
    /// Not a regular file: a FIFO, socket or device.
    NotAFile,
    /// A file or folder that could not be read (permissions, I/O errors).
    Unreadable,
    /// A name that is not UTF-8 or not a valid object key.
    BadName,
}

impl SkipReason {
    /// The reason's class as a metric label (a closed set: extensions are not labels).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Extension(_) => "extension",
            Self::Size => "size",
            Self::LinkOutsideRoot => "link_outside_root",
            Self::BrokenLink => "broken_link",
            Self::NotAFile => "not_a_file",
            Self::Unreadable => "unreadable",
            Self::BadName => "bad_name",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Extension(extension) if extension.is_empty() => f.write_str("no extension"),
            Self::Extension(extension) => write!(f, ".{extension}"),
            Self::Size => f.write_str("outside the size selection"),
            Self::LinkOutsideRoot => f.write_str("links out of the archive"),
            Self::BrokenLink => f.write_str("broken links"),
            Self::NotAFile => f.write_str("not regular files"),
            Self::Unreadable => f.write_str("unreadable"),
            Self::BadName => f.write_str("unusable names"),
        }
    }
}

/// What listing found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListSummary {
    /// Objects listed as photos.
    pub photos: u64,
    /// Their bytes.
    pub bytes: u64,
    /// What was passed over, by reason.
    pub skipped: BTreeMap<SkipReason, u64>,
}

impl ListSummary {
    /// Everything passed over.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// `skipped 412 files: .mov 400, .txt 12` (the eight commonest reasons, then the rest
    /// counted together); empty when nothing was skipped.
    pub fn describe_skipped(&self) -> String {
        const SHOWN: usize = 8;
        if self.skipped.is_empty() {
            return String::new();
        }
        let mut reasons: Vec<(&SkipReason, u64)> =
            self.skipped.iter().map(|(reason, count)| (reason, *count)).collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut parts: Vec<String> = reasons
            .iter()
            .take(SHOWN)
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect();
        if reasons.len() > SHOWN {
            let rest: u64 = reasons[SHOWN..].iter().map(|(_, count)| count).sum();
            parts.push(format!("{} other reasons {rest}", reasons.len() - SHOWN));
        }
        let total = self.skipped_total();
        let files = if total == 1 { "file" } else { "files" };
        format!("skipped {total} {files}: {}", parts.join(", "))
    }

    fn skip(&mut self, reason: SkipReason) {
        crate::metrics::record_skipped(&reason);
        *self.skipped.entry(reason).or_default() += 1;
    }
}

/// One object as listed, before the photo selection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    /// Its key: the path below the root, `/`-separated.
    key: String,
    /// Its size.
    size_bytes: u64,
    /// Its version as the store gives it (ETag, or a local file's inode, mtime and size).
    version: String,
}

impl Archive {
    /// Opens `location`: a URL (`file:///photos`, `s3://bucket/prefix`, `gs://…`, `az://…`) or a
    /// local path, which becomes a `file://` root.
    pub fn open(location: &str, config: &ArchiveConfig) -> Result<Self> {
        let invalid = |reason: String| PipelineError::InvalidArchive {
            url: location.to_owned(),
            reason,
        };
        let url = match Url::parse(location) {
            Ok(url) if url.scheme().len() > 1 => url,
            // Not a URL, or a Windows drive letter: a local path.
            _ => {
                let path = std::fs::canonicalize(location).map_err(|error| invalid(error.to_string()))?;
                Url::from_directory_path(&path).map_err(|()| invalid("not an absolute directory path".into()))?
            }
        };
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|()| invalid("not a local path".into()))?;
            let path = std::fs::canonicalize(&path).map_err(|error| invalid(error.to_string()))?;
            if !path.is_dir() {
                return Err(invalid("not a directory".into()));
            }
            let store = LocalFileSystem::new_with_prefix(&path).map_err(|error| invalid(error.to_string()))?;
            let root = Url::from_directory_path(&path)
                .map_err(|()| invalid("not an absolute directory path".into()))?
                .to_string();
            return Ok(Self {
                root: root.trim_end_matches('/').to_owned(),
                store: Arc::new(store),
                prefix: StorePath::default(),
                local_root: Some(path),
            });
        }
        let options = store_options(config);
        let (store, prefix) =
            object_store::parse_url_opts(&url, options).map_err(|error| invalid(error.to_string()))?;
        Ok(Self {
            root: url.as_str().trim_end_matches('/').to_owned(),
            store: Arc::from(store),
            prefix,
            local_root: None,
        })
    }

    /// The root URL, without a trailing slash: every photo's URI starts with it.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Lists every photo under the root (by extension and size), calling `on_photo` for each as it is
    /// found, so enqueueing starts before a large listing ends. The first error `on_photo`
    /// returns stops the listing and is returned as it is.
    pub async fn list<F, E>(&self, config: &ArchiveConfig, mut on_photo: F) -> Result<ListSummary, E>
    where
        F: AsyncFnMut(ImageRef) -> Result<(), E>,
        E: From<PipelineError>,
    {
        let mut summary = ListSummary::default();
        let mut select = async |listed: Listed, summary: &mut ListSummary| -> Result<(), E> {
            let Listed {
                key,
                size_bytes,
                version,
            } = listed;
            let extension = extension_of(&key);
            if !is_photo_extension(&extension, &config.extensions) {
                summary.skip(SkipReason::Extension(extension));
                return Ok(());
            }
            if size_bytes < config.list_min_bytes || config.list_max_bytes.is_some_and(|max| size_bytes > max) {
                summary.skip(SkipReason::Size);
                return Ok(());
            }
            summary.photos += 1;
            summary.bytes += size_bytes;
            on_photo(ImageRef {
                uri: format!("{}/{}", self.root, key),
                archive: self.root.clone(),
                key,
                size_bytes,
                version,
                enqueued_at_unix_ms: now_unix_ms(),
            })
            .await
        };
        if let Some(root) = &self.local_root {
            // The walk does blocking file-system calls: on the blocking pool, a bounded
            // channel away, and stopped by dropping the receiver.
            let (sender, mut receiver) = tokio::sync::mpsc::channel(1024);
            let walk = LocalWalk::new(root.clone());
            let _walker = tokio::task::spawn_blocking(move || {
                for found in walk {
                    if sender.blocking_send(found).is_err() {
                        break;
                    }
                }
            });
            while let Some(found) = receiver.recv().await {
                match found {
                    Found::File(listed) => select(listed, &mut summary).await?,
                    Found::Skipped(reason) => summary.skip(reason),
                }
            }
            return Ok(summary);
        }
        let mut objects = self.store.list(Some(&self.prefix));
        while let Some(object) = objects.try_next().await.map_err(|error| PipelineError::Listing {
            archive: self.root.clone(),
            source: error,
        })? {
            let Some(key) = self.key_of(&object.location) else {
                continue;
            };
            let listed = Listed {
                key,
                size_bytes: object.size,
                version: object.e_tag.or(object.version).unwrap_or_default(),
            };
            select(listed, &mut summary).await?;
        }
        Ok(summary)
    }

    /// Reads a photo's bytes; refuses objects over `max_bytes` before reading their body.
    pub async fn fetch(&self, image: &ImageRef, max_bytes: u64) -> Result<Bytes> {
        let path = self.path_of(image)?;
        if let Some(root) = &self.local_root {
            self.check_inside(root, image).await?;
        }
        let fetched = self.store.get(&path).await.map_err(|error| fetch_error(image, error))?;
        if fetched.meta.size > max_bytes {
            return Err(PipelineError::TooLarge {
                uri: image.uri.clone(),
                size_bytes: fetched.meta.size,
                limit_bytes: max_bytes,
            });
        }
        fetched.bytes().await.map_err(|error| fetch_error(image, error))
    }

    /// The object path of a reference, after checking that it lies inside this archive.
    fn path_of(&self, image: &ImageRef) -> Result<StorePath> {
        let invalid = |reason: &str| PipelineError::InvalidReference {
            uri: image.uri.clone(),
            reason: reason.to_owned(),
        };
        if image.archive != self.root || image.uri != format!("{}/{}", self.root, image.key) {
            return Err(invalid("its URI is not its archive root followed by its key"));
        }
        // `Path::parse` refuses `..`, `.` and empty segments, so no key leaves the root.
        let key = StorePath::parse(&image.key).map_err(|error| invalid(&error.to_string()))?;
        if key.as_ref().is_empty() {
            return Err(invalid("the key is empty"));
        }
        Ok(self.prefix.parts().chain(key.parts()).collect())
    }

    /// Refuses a local key that resolves (through links) outside the root. A link swapped in
    /// between this check and the read is not caught: the check is for archives as they lie,
    /// not against a writer racing the worker.
    async fn check_inside(&self, root: &std::path::Path, image: &ImageRef) -> Result<()> {
        let (root, key) = (root.to_owned(), image.key.clone());
        let resolved = tokio::task::spawn_blocking(move || resolve_inside(&root, &key))
            .await
            .map_err(|source| PipelineError::TaskFailed {
                task: "resolve a local photo",
                source,
            })?;
        match resolved {
            Ok(_) => Ok(()),
            Err(ResolveError::Outside(target)) => Err(PipelineError::InvalidReference {
                uri: image.uri.clone(),
                reason: format!("it is a link to {}, outside the archive root", target.display()),
            }),
            // Missing or unreadable: the read that follows reports it as it would anyway.
            Err(ResolveError::Unresolved) => Ok(()),
        }
    }

    fn key_of(&self, location: &StorePath) -> Option<String> {
        let parts: Vec<String> = location
            .prefix_match(&self.prefix)?
            .map(|part| part.as_ref().to_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }
}

/// The most archives a registry keeps open.
const MAX_OPEN_ARCHIVES: usize = 1024;

/// Archives opened by ingest workers, one per root, shared by every photo of that root.
#[derive(Default)]
pub struct ArchiveRegistry {
    config: ArchiveConfig,
    opened: Mutex<HashMap<String, Arc<Archive>>>,
}

impl ArchiveRegistry {
    /// A registry opening archives with `config`'s options.
    pub fn new(config: ArchiveConfig) -> Self {
        Self {
            config,
            opened: Mutex::default(),
        }
    }

    /// The settings archives are opened with.
    pub fn config(&self) -> &ArchiveConfig {
        &self.config
    }

    /// The archive `image` was listed from, opened on first use.
    pub fn archive_of(&self, image: &ImageRef) -> Result<Arc<Archive>> {
        if let Some(archive) = self.opened.lock().get(&image.archive) {
            return Ok(archive.clone());
        }
        if !self.config.allows_root(&image.archive) {
            return Err(PipelineError::RootNotAllowed {
                uri: image.uri.clone(),
                archive: image.archive.clone(),
            });
        }
        let archive =
            Arc::new(
                Archive::open(&image.archive, &self.config).map_err(|error| PipelineError::InvalidReference {
                    uri: image.uri.clone(),
                    reason: error.to_string(),
                })?,
            );
        if archive.root() != image.archive {
            return Err(PipelineError::InvalidReference {
                uri: image.uri.clone(),
                reason: format!(
                    "archive {:?} is not a canonical root (it opens as {:?})",
                    image.archive,
                    archive.root()
                ),
            });
        }
        let mut opened = self.opened.lock();
        // Readers that open one archive per folder (the web console) would otherwise keep
        // every folder they ever read.
        if opened.len() >= MAX_OPEN_ARCHIVES {
            opened.clear();
        }
        opened.insert(image.archive.clone(), archive.clone());
        Ok(archive)
    }

    /// Reads `image`'s bytes from its archive.
    pub async fn fetch(&self, image: &ImageRef) -> Result<Bytes> {
        self.archive_of(image)?.fetch(image, self.config.max_image_bytes).await
    }
}

fn fetch_error(image: &ImageRef, error: object_store::Error) -> PipelineError {
    match error {
        object_store::Error::NotFound { .. } => PipelineError::NotFound { uri: image.uri.clone() },
        other => PipelineError::Fetch {
            uri: image.uri.clone(),
            source: other,
        },
    }
}

/// The extension of `key`'s last segment, lower-cased; empty for none.
fn extension_of(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether `extension` (as [`extension_of`] gives it) is one of `archive.extensions`.
fn is_photo_extension(extension: &str, extensions: &[String]) -> bool {
    !extension.is_empty() && extensions.iter().any(|wanted| wanted.eq_ignore_ascii_case(extension))
}

/// The config's options over the cloud SDK environment variables (`AWS_ENDPOINT` becomes
/// `aws_endpoint`); object_store ignores keys its builder does not know.
fn store_options(config: &ArchiveConfig) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = std::env::vars()
        .filter(|(key, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|prefix| key.starts_with(prefix))
        })
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .collect();
    options.extend(config.options.iter().map(|(key, value)| (key.clone(), value.clone())));
    options
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::PhotoFailureKind;

    fn config() -> ArchiveConfig {
        ArchiveConfig::default()
    }

    /// Every photo `archive` lists with the default selection, and the summary.
    async fn list_all(archive: &Archive) -> Result<(Vec<ImageRef>, ListSummary)> {
        let mut found = Vec::new();
        let summary = archive
            .list(&config(), async |image| {
                found.push(image);
                Ok::<(), PipelineError>(())
            })
            .await?;
        Ok((found, summary))
    }

    #[tokio::test]
    async fn lists_photos_by_extension_and_fetches_them_back() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("a.JPG"), b"one")?;
        std::fs::write(dir.path().join("sub/b.png"), b"two!")?;
        std::fs::write(dir.path().join("notes.txt"), b"skip")?;
        let archive = Archive::open(dir.path().to_str().unwrap_or_default(), &config())?;
        let (mut found, summary) = list_all(&archive).await?;
        assert_eq!((summary.photos, summary.bytes, summary.skipped_total()), (2, 7, 1));
        assert_eq!(summary.describe_skipped(), "skipped 1 file: .txt 1");
        found.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(found[0].key, "a.JPG");
        assert_eq!(found[1].key, "sub/b.png");
        assert!(found[1].uri.starts_with("file:///") && found[1].uri.ends_with("/sub/b.png"));
        assert_eq!(archive.fetch(&found[1], 100).await?.as_ref(), b"two!");
        let small_only = ArchiveConfig {
            list_max_bytes: Some(3),
            ..config()
        };
        let summary = archive.list(&small_only, async |_| Ok::<(), PipelineError>(())).await?;
        assert_eq!(
            (summary.photos, summary.skipped_total()),
            (1, 2),
            "b.png is over 3 bytes"
        );
        let too_small_limit = archive.fetch(&found[1], 3).await;
        assert!(matches!(
            too_small_limit,
            Err(PipelineError::TooLarge { size_bytes: 4, .. })
        ));
        Ok(())
    }

    #[tokio::test]
    async fn references_cannot_escape_the_root_and_missing_objects_are_not_found() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("root"))?;
        std::fs::write(dir.path().join("secret.jpg"), b"no")?;
        let registry = ArchiveRegistry::new(config());
        let root = Archive::open(dir.path().join("root").to_str().unwrap_or_default(), &config())?;
        let escape = ImageRef {
            uri: format!("{}/../secret.jpg", root.root()),
            archive: root.root().to_owned(),
            key: "../secret.jpg".into(),
            ..ImageRef::default()
        };
        let error = registry.fetch(&escape).await.err();
        assert!(
            matches!(error, Some(PipelineError::InvalidReference { .. })),
            "{error:?}"
        );
        let mismatched = ImageRef {
            key: "x.jpg".into(),
            ..escape.clone()
        };
        assert!(matches!(
            registry.fetch(&mismatched).await,
            Err(PipelineError::InvalidReference { .. })
        ));
        let missing = ImageRef {
            uri: format!("{}/gone.jpg", root.root()),
            key: "gone.jpg".into(),
            ..escape
        };
        let error = registry.fetch(&missing).await.err();
        assert!(matches!(error, Some(PipelineError::NotFound { .. })), "{error:?}");
        assert_eq!(
            error.and_then(|e| e.dead_letter_kind()).map(PhotoFailureKind::label),
            Some("not_found")
        );
        Ok(())
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_local_archive_neither_lists_nor_reads_links_out_of_its_root() -> anyhow::Result<()> {
        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("secret.jpg"), b"secret")?;
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("in"))?;
        std::fs::write(dir.path().join("in/a.jpg"), b"a")?;
        std::fs::write(dir.path().join("clip.mov"), b"m")?;
        std::fs::write(dir.path().join("README"), b"r")?;
        std::os::unix::fs::symlink(dir.path().join("in/a.jpg"), dir.path().join("inside.jpg"))?;
        std::os::unix::fs::symlink(outside.path().join("secret.jpg"), dir.path().join("out.jpg"))?;
        let archive = Archive::open(dir.path().to_str().unwrap_or_default(), &config())?;
        let (found, summary) = list_all(&archive).await?;
        let keys: Vec<&str> = found.iter().map(|image| image.key.as_str()).collect();
        assert_eq!(keys, ["inside.jpg", "in/a.jpg"], "a folder's files, then its folders");
        assert_eq!(
            summary.describe_skipped(),
            "skipped 3 files: no extension 1, .mov 1, links out of the archive 1"
        );
        assert_eq!(
            archive.fetch(&found[1], 100).await?.as_ref(),
            b"a",
            "a link inside is read"
        );

        // A reference to the link out, as a forged record would name it, is refused unread.
        let forged = ImageRef {
            uri: format!("{}/out.jpg", archive.root()),
            key: "out.jpg".into(),
            ..found[0].clone()
        };
        let error = archive.fetch(&forged, 100).await.err();
        assert!(
            matches!(&error, Some(PipelineError::InvalidReference { reason, .. }) if reason.contains("outside the archive root")),
            "{error:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn workers_open_only_the_allowed_roots() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a.jpg"), b"a")?;
        let archive = Archive::open(dir.path().to_str().unwrap_or_default(), &config())?;
        let image = ImageRef {
            uri: format!("{}/a.jpg", archive.root()),
            archive: archive.root().to_owned(),
            key: "a.jpg".into(),
            ..ImageRef::default()
        };
        let elsewhere = ArchiveRegistry::new(ArchiveConfig {
            allowed_roots: vec!["s3://photos".into(), "/srv/photos".into()],
            ..config()
        });
        let error = elsewhere.fetch(&image).await.err();
        assert_eq!(
            error
                .as_ref()
                .and_then(PipelineError::dead_letter_kind)
                .map(PhotoFailureKind::label),
            Some("root_not_allowed"),
            "{error:?}"
        );
        let parent = dir
            .path()
            .parent()
            .and_then(|parent| parent.to_str())
            .unwrap_or_default();
        let allowed = ArchiveRegistry::new(ArchiveConfig {
            allowed_roots: vec![std::fs::canonicalize(parent)?.to_string_lossy().into_owned()],
            ..config()
        });
        assert_eq!(
            allowed.fetch(&image).await?.as_ref(),
            b"a",
            "a root below an allowed one"
        );
        Ok(())
    }

    #[test]
    fn allowed_roots_match_whole_segments() {
        let config = ArchiveConfig {
            allowed_roots: vec!["s3://photos/".into(), "/srv/archive".into()],
            ..config()
        };
        assert!(config.allows_root("s3://photos"));
        assert!(config.allows_root("s3://photos/2024"));
        assert!(!config.allows_root("s3://photos-private"));
        assert!(config.allows_root("file:///srv/archive/family"));
        assert!(!config.allows_root("file:///srv/archive-old"));
        assert!(!config.allows_root("gs://photos"));
        assert!(
            ArchiveConfig::default().allows_root("gs://anything"),
            "empty allows every root"
        );
    }
}
