//! Typed settings of the archive and ingest stages (`[archive]` and `[ingest]` in the config
//! file, `FACEDEX__ARCHIVE__…` / `FACEDEX__INGEST__…` in the environment).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where photos come from and which objects count as photos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// File extensions (case-insensitive, without the dot) that are listed as photos.
    pub extensions: Vec<String>,
    /// Photos larger than this are dead-lettered as `too_large` without being read.
    pub max_image_bytes: u64,
    /// Listing skips objects smaller than this (a selection filter; 0 lists empty files, which
    /// are then dead-lettered as `empty`).
    pub list_min_bytes: u64,
    /// Listing skips objects larger than this (a selection filter; unset lists every size, and
    /// photos over `max_image_bytes` are dead-lettered).
    pub list_max_bytes: Option<u64>,
    /// Object-store options (`aws_endpoint`, `aws_allow_http`, `aws_region`,
    /// `google_service_account`, `azure_storage_account_name`, …), on top of the `AWS_*`,
    /// `GOOGLE_*` and `AZURE_*` environment variables, which are read as object_store reads them.
    pub options: BTreeMap<String, String>,
    /// Archive roots an ingest worker may open: a record's root must equal one of these or
    /// lie below one (`s3://photos` allows `s3://photos/2024`; a plain absolute path stands
    /// for its `file://` URL). Empty allows every root, which suits a worker whose credentials
    /// reach only the archives it should read. A record naming another root is dead-lettered
    /// as `root_not_allowed` without being opened. Local mode reads only the archive it is
    /// given and ignores this.
    pub allowed_roots: Vec<String>,
}

impl ArchiveConfig {
    /// Whether `root` (a canonical archive root URL, as records carry it) may be opened.
    pub fn allows_root(&self, root: &str) -> bool {
        self.allowed_roots.is_empty()
            || self.allowed_roots.iter().any(|allowed| {
                let allowed = match url::Url::from_directory_path(allowed) {
                    Ok(url) if allowed.starts_with('/') => url.to_string(),
                    _ => allowed.clone(),
                };
                let allowed = allowed.trim_end_matches('/');
                root == allowed || root.strip_prefix(allowed).is_some_and(|below| below.starts_with('/'))
            })
    }
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            extensions: [
                "jpg", "jpeg", "jpe", "jfif", "png", "apng", "webp", "tif", "tiff", "gif", "bmp", "jxl", "heic",
                "heif", "hif", "avif", "dng", "cr2", "nef", "arw",
            ]
            .map(String::from)
            .to_vec(),
            max_image_bytes: 50 * 1024 * 1024,
            list_min_bytes: 0,
            list_max_bytes: None,
            options: BTreeMap::new(),
            allowed_roots: Vec::new(),
        }
    }
}

/// How an ingest worker (or local mode) processes photos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Photos in flight at once per worker (fetching, decoding or waiting for the models).
    pub max_in_flight: usize,
    /// Attempts at a transient failure (object store, model service) before a photo is
    /// dead-lettered as `fetch_failed`; model-service outages are retried without limit.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_initial_backoff_ms: u64,
    /// Longest retry delay.
    pub retry_max_backoff_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 16,
            max_attempts: 5,
            retry_initial_backoff_ms: 200,
            retry_max_backoff_ms: 10_000,
        }
    }
}

impl IngestConfig {
    /// The delay before retry number `attempt` (1-based): exponential, capped.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        std::time::Duration::from_millis(
            self.retry_initial_backoff_ms
                .saturating_mul(factor)
                .min(self.retry_max_backoff_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = IngestConfig::default();
        assert_eq!(config.backoff(1).as_millis(), 200);
        assert_eq!(config.backoff(2).as_millis(), 400);
        assert_eq!(config.backoff(10).as_millis(), 10_000);
        assert_eq!(config.backoff(u32::MAX).as_millis(), 10_000);
    }
}
