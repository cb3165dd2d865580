//! Photo archives through `object_store`: a local folder (`file://` or a plain path, confined
//! to its root), `s3://`, `gs://` and `az://` buckets. [`Archive::list`] finds the photos to
//! enqueue; [`Archive::fetch`] reads one back in an ingest worker, refusing oversize objects
//! before reading them.

use std::collections::HashMap;
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

/// An opened archive root.
pub struct Archive {
    root: String,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
}

/// What listing found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListSummary {
    /// Objects listed as photos.
    pub photos: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects skipped for their extension or size.
    pub skipped: u64,
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
            });
        }
        let options = store_options(config);
        let (store, prefix) =
            object_store::parse_url_opts(&url, options).map_err(|error| invalid(error.to_string()))?;
        Ok(Self {
            root: url.as_str().trim_end_matches('/').to_owned(),
            store: Arc::from(store),
            prefix,
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
        let mut objects = self.store.list(Some(&self.prefix));
        while let Some(object) = objects.try_next().await.map_err(|error| PipelineError::Listing {
            archive: self.root.clone(),
            source: error,
        })? {
            let Some(key) = self.key_of(&object.location) else {
                continue;
            };
            let size_selected =
                object.size >= config.list_min_bytes && config.list_max_bytes.is_none_or(|max| object.size <= max);
            if !has_photo_extension(&key, &config.extensions) || !size_selected {
                summary.skipped += 1;
                continue;
            }
            summary.photos += 1;
            summary.bytes += object.size;
            on_photo(ImageRef {
                uri: format!("{}/{}", self.root, key),
                archive: self.root.clone(),
                key,
                size_bytes: object.size,
                version: object.e_tag.or(object.version).unwrap_or_default(),
                enqueued_at_unix_ms: now_unix_ms(),
            })
            .await?;
        }
        Ok(summary)
    }

    /// Reads a photo's bytes; refuses objects over `max_bytes` before reading their body.
    pub async fn fetch(&self, image: &ImageRef, max_bytes: u64) -> Result<Bytes> {
        let path = self.path_of(image)?;
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

    fn key_of(&self, location: &StorePath) -> Option<String> {
        let parts: Vec<String> = location
            .prefix_match(&self.prefix)?
            .map(|part| part.as_ref().to_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }
}

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
        self.opened.lock().insert(image.archive.clone(), archive.clone());
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

fn has_photo_extension(key: &str, extensions: &[String]) -> bool {
    let Some((_, extension)) = key.rsplit_once('.') else {
        return false;
    };
    extensions.iter().any(|wanted| wanted.eq_ignore_ascii_case(extension))
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

    #[tokio::test]
    async fn lists_photos_by_extension_and_fetches_them_back() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("a.JPG"), b"one")?;
        std::fs::write(dir.path().join("sub/b.png"), b"two!")?;
        std::fs::write(dir.path().join("notes.txt"), b"skip")?;
        let archive = Archive::open(dir.path().to_str().unwrap_or_default(), &config())?;
        let mut found = Vec::new();
        let summary = archive
            .list(&config(), async |image| {
                found.push(image);
                Ok::<(), PipelineError>(())
            })
            .await?;
        assert_eq!((summary.photos, summary.bytes, summary.skipped), (2, 7, 1));
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
        assert_eq!((summary.photos, summary.skipped), (1, 2), "b.png is over 3 bytes");
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
}
