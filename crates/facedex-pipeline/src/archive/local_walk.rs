//! Listing a local archive root ourselves rather than through `object_store`, which follows
//! every symlink (also out of the root), drops FIFOs, sockets and broken links without a word,
//! and ends the whole listing at the first unreadable folder. This walk stays inside the root
//! (a link is followed only when its target is inside it too, and each folder is entered once,
//! so link loops end), and says why it passed over anything that is not a regular file.

use std::collections::{HashSet, VecDeque};
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use object_store::path::Path as StorePath;

use super::{Listed, SkipReason};

/// One thing the walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A regular file inside the root; its version is its inode, modification time and size,
    /// as `object_store`'s local ETag.
    File(Listed),
    /// Something passed over.
    Skipped(SkipReason),
}

/// A depth-first walk below a canonical root: a folder's files in name order, then its
/// subfolders in name order.
pub(crate) struct LocalWalk {
    root: PathBuf,
    /// Folders still to read: (path on disk, key prefix, canonical path).
    folders: Vec<(PathBuf, String, PathBuf)>,
    /// Canonical paths of the folders read, so a folder reached twice (a link loop, a link to
    /// a folder inside the root) is read once, under the key of the first way in.
    entered: HashSet<PathBuf>,
    found: VecDeque<Found>,
}

impl LocalWalk {
    /// Walks below `root`, which must be canonical (no links, absolute).
    pub(crate) fn new(root: PathBuf) -> Self {
        debug_assert!(root.is_absolute(), "{root:?} is not canonical");
        Self {
            folders: vec![(root.clone(), String::new(), root.clone())],
            entered: HashSet::new(),
            root,
            found: VecDeque::new(),
        }
    }

    fn read_folder(&mut self, folder: &Path, prefix: &str) {
        let Ok(entries) = std::fs::read_dir(folder) else {
            self.found.push_back(Found::Skipped(SkipReason::Unreadable));
            return;
        };
        let mut entries: Vec<_> = entries.collect();
        entries.sort_by_key(|entry| entry.as_ref().map(std::fs::DirEntry::file_name).ok());
        let mut subfolders = Vec::new();
        for entry in entries {
            let Ok(entry) = entry else {
                self.found.push_back(Found::Skipped(SkipReason::Unreadable));
                continue;
            };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                self.found.push_back(Found::Skipped(SkipReason::BadName));
                continue;
            };
            let key = format!("{prefix}{name}");
            if StorePath::parse(&key).is_err() {
                self.found.push_back(Found::Skipped(SkipReason::BadName));
                continue;
            }
            match self.classify(&entry.path()) {
                Ok(Kind::Folder(canonical)) => {
                    if !self.entered.contains(&canonical) {
                        subfolders.push((entry.path(), format!("{key}/"), canonical));
                    }
                }
                Ok(Kind::File(metadata)) => self.found.push_back(Found::File(Listed {
                    key,
                    size_bytes: metadata.len(),
                    version: local_version(&metadata),
                })),
                Err(reason) => self.found.push_back(Found::Skipped(reason)),
            }
        }
        // Depth first, in name order: the stack pops the first subfolder next.
        self.folders.extend(subfolders.into_iter().rev());
    }

    /// What `path` is, following a link only when it stays inside the root.
    fn classify(&self, path: &Path) -> Result<Kind, SkipReason> {
        let own = std::fs::symlink_metadata(path).map_err(|_| SkipReason::Unreadable)?;
        let (metadata, canonical) = if own.file_type().is_symlink() {
            let target = std::fs::canonicalize(path).map_err(|_| SkipReason::BrokenLink)?;
            if !target.starts_with(&self.root) {
                return Err(SkipReason::LinkOutsideRoot);
            }
            (std::fs::metadata(&target).map_err(|_| SkipReason::Unreadable)?, target)
        } else {
            (own, path.to_owned())
        };
        if metadata.is_dir() {
            // A folder reached through a linked parent has a path that is not its own: the
            // set of entered folders holds real paths, one syscall per folder.
            let canonical = if canonical == path {
                std::fs::canonicalize(path).map_err(|_| SkipReason::Unreadable)?
            } else {
                canonical
            };
            Ok(Kind::Folder(canonical))
        } else if metadata.is_file() {
            Ok(Kind::File(metadata))
        } else {
            Err(SkipReason::NotAFile)
        }
    }
}

enum Kind {
    Folder(PathBuf),
    File(Metadata),
}

impl Iterator for LocalWalk {
    type Item = Found;

    fn next(&mut self) -> Option<Found> {
        loop {
            if let Some(found) = self.found.pop_front() {
                return Some(found);
            }
            let (folder, prefix, canonical) = self.folders.pop()?;
            if self.entered.insert(canonical) {
                self.read_folder(&folder, &prefix);
            }
        }
    }
}

/// `object_store`'s ETag of a local file: inode, modification time (µs) and size in hex.
fn local_version(metadata: &Metadata) -> String {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    #[cfg(not(unix))]
    let inode = 0u64;
    let mtime = metadata
        .modified()
        .ok()
        .and_then(|mtime| mtime.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("{inode:x}-{mtime:x}-{:x}", metadata.len())
}

/// Checks that `key` below the canonical `root` resolves to a path inside it (links included);
/// returns the resolved path.
pub(crate) fn resolve_inside(root: &Path, key: &str) -> Result<PathBuf, ResolveError> {
    let target = std::fs::canonicalize(root.join(key)).map_err(|_| ResolveError::Unresolved)?;
    if target.starts_with(root) {
        Ok(target)
    } else {
        Err(ResolveError::Outside(target))
    }
}

/// Why [`resolve_inside`] refused a key.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// The path does not resolve (missing, a broken link, unreadable).
    Unresolved,
    /// It resolves outside the root, to this.
    Outside(PathBuf),
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn stays_inside_the_root_and_says_what_it_passed_over() -> anyhow::Result<()> {
        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("secret.jpg"), b"secret")?;
        let dir = tempfile::tempdir()?;
        let root = std::fs::canonicalize(dir.path())?;
        std::fs::create_dir_all(root.join("b/inner"))?;
        std::fs::write(root.join("a.jpg"), b"a")?;
        std::fs::write(root.join("b/inner/c.jpg"), b"cc")?;
        symlink(root.join("a.jpg"), root.join("link-in.jpg"))?;
        symlink(outside.path().join("secret.jpg"), root.join("link-out.jpg"))?;
        symlink(outside.path(), root.join("folder-out"))?;
        symlink(root.join("gone.jpg"), root.join("broken.jpg"))?;
        symlink(&root, root.join("b/loop"))?;
        // b/inner reached again through a link: listed once, by its own path (read first).
        symlink(root.join("b/inner"), root.join("c-inner"))?;
        let fifo = root.join("pipe.jpg");
        std::process::Command::new("mkfifo").arg(&fifo).status()?;

        let found: Vec<Found> = LocalWalk::new(root.clone()).collect();
        let files: Vec<&str> = found
            .iter()
            .filter_map(|found| match found {
                Found::File(listed) => Some(listed.key.as_str()),
                Found::Skipped(_) => None,
            })
            .collect();
        assert_eq!(files, ["a.jpg", "link-in.jpg", "b/inner/c.jpg"], "{found:?}");
        let mut skipped: Vec<SkipReason> = found
            .into_iter()
            .filter_map(|found| match found {
                Found::Skipped(reason) => Some(reason),
                Found::File(_) => None,
            })
            .collect();
        skipped.sort();
        assert_eq!(
            skipped,
            [
                SkipReason::LinkOutsideRoot,
                SkipReason::LinkOutsideRoot,
                SkipReason::BrokenLink,
                SkipReason::NotAFile,
            ],
            "b/loop leads back to the root, entered already"
        );

        assert!(resolve_inside(&root, "link-in.jpg").is_ok());
        assert!(matches!(
            resolve_inside(&root, "link-out.jpg"),
            Err(ResolveError::Outside(_))
        ));
        assert!(matches!(
            resolve_inside(&root, "gone.jpg"),
            Err(ResolveError::Unresolved)
        ));
        Ok(())
    }
}
