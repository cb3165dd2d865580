//! Rendered thumbnails on disk, bounded in bytes: one file per thumbnail, named by the hash of
//! everything it was made from (face, photo, box, size, margin, quality), so a changed photo
//! or setting never gets a stale picture. Over the cap, the least recently written files go
//! until a tenth of the cap is free. Files are written whole and renamed into place, so a
//! reader never sees half a picture. Blocking I/O: call it from the blocking pool.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// The extension of cached thumbnails: nothing else in the folder is touched.
const EXTENSION: &str = "jpg";

/// A folder of cached thumbnails.
pub(crate) struct ThumbnailCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes of the cached files, as this process knows them.
    total_bytes: Mutex<u64>,
}

impl ThumbnailCache {
    /// Opens (creating) `dir`, counting what it already holds.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let total = cached_files(dir)?.iter().map(|file| file.bytes).sum();
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            total_bytes: Mutex::new(total),
        })
    }

    /// The key of a thumbnail made from `parts`.
    pub(crate) fn key(parts: &[&str]) -> String {
        let mut hash = Sha256::new();
        for part in parts {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        hash.finalize()[..16].iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The thumbnail stored under `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(key)).ok()
    }

    /// Whether a thumbnail is stored under `key`.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.path(key).is_file()
    }

    /// Stores `bytes` under `key`, then evicts if the cache is over its cap.
    pub(crate) fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(key);
        let partial = self.dir.join(format!(".{key}.partial"));
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, &path)?;
        let over = {
            let mut total = self.total_bytes.lock();
            *total += bytes.len() as u64;
            *total > self.max_bytes
        };
        if over {
            self.evict()?;
        }
        Ok(())
    }

    /// Bytes held, as counted.
    #[cfg(test)]
    pub(crate) fn total_bytes(&self) -> u64 {
        *self.total_bytes.lock()
    }

    /// Removes the oldest files until a tenth of the cap is free; recounts from the folder.
    fn evict(&self) -> io::Result<()> {
        let mut total = self.total_bytes.lock();
        let mut files = cached_files(&self.dir)?;
        files.sort_by_key(|file| file.written);
        let mut held: u64 = files.iter().map(|file| file.bytes).sum();
        let target = self.max_bytes - self.max_bytes / 10;
        for file in files {
            if held <= target {
                break;
            }
            match std::fs::remove_file(&file.path) {
                Ok(()) => held -= file.bytes,
                Err(error) if error.kind() == io::ErrorKind::NotFound => held -= file.bytes,
                Err(error) => return Err(error),
            }
        }
        *total = held;
        Ok(())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.{EXTENSION}"))
    }
}

/// A cached file.
struct CachedFile {
    path: PathBuf,
    bytes: u64,
    written: SystemTime,
}

/// The cached thumbnails in `dir`.
fn cached_files(dir: &Path) -> io::Result<Vec<CachedFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().and_then(|extension| extension.to_str()) != Some(EXTENSION) {
            continue;
        }
        let metadata = entry.metadata()?;
        if metadata.is_file() {
            files.push(CachedFile {
                path,
                bytes: metadata.len(),
                written: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_under_its_cap_keeping_the_newest() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("notes.txt"), "not ours").expect("write");
        let cache = ThumbnailCache::open(dir.path(), 10_000).expect("open");
        let keys: Vec<String> = (0..8).map(|n| ThumbnailCache::key(&["face", &n.to_string()])).collect();
        for key in &keys {
            cache.put(key, &[7u8; 2_000]).expect("put");
            // Distinct modification times, whatever the file system's resolution.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(cache.total_bytes() <= 10_000, "{}", cache.total_bytes());
        assert_eq!(
            cache.get(&keys[7]).as_deref(),
            Some(&[7u8; 2_000][..]),
            "the newest stays"
        );
        assert!(cache.get(&keys[0]).is_none(), "the oldest went");
        assert!(dir.path().join("notes.txt").exists(), "other files are left alone");
        let reopened = ThumbnailCache::open(dir.path(), 10_000).expect("reopen");
        assert_eq!(reopened.total_bytes(), cache.total_bytes());
        assert_ne!(ThumbnailCache::key(&["ab", "c"]), ThumbnailCache::key(&["a", "bc"]));
    }
}
