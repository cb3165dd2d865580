//! The f32 vectors of a sealed segment (see `segment.rs`), off the heap: in a file of their
//! own, read one vector at a time with positioned reads (`pread`) when a search rescores its
//! best candidates, and front to back in large reads for exact search, vacuum and loading.
//!
//! A sealed segment's walk scores 8-bit codes kept in memory; only the few candidates it keeps
//! read their f32 vectors, so the vectors (2 KiB per face at 512 dimensions, most of a face's
//! size) need not be resident: the kernel's page cache keeps the ones read often, and gives the
//! memory back under pressure. An index without a data directory (tests, tools) keeps them in
//! memory instead, behind the same interface.
//!
//! The file is the vectors of local ids 0, 1, … in order, each `dimension` little-endian f32;
//! an id the segment has no vector for holds zeros and is listed as missing.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
#[cfg(unix)]
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{IndexError, Result};

/// How many bytes a front-to-back pass reads at a time.
const STREAM_BUFFER_BYTES: usize = 1 << 20;

/// A sealed segment's vectors, by local id.
pub(crate) struct SealedVectors {
    dimension: usize,
    points: usize,
    /// Local ids without a vector, ascending (usually none).
    missing: Vec<u32>,
    backing: Backing,
}

enum Backing {
    Memory(Vec<f32>),
    File {
        file: File,
        /// Where the file is linked now: a snapshot links it again from here.
        path: PathBuf,
        crc32: u32,
    },
}

impl SealedVectors {
    /// Stores the vectors of local ids `0..points` (`vector_of` gives each, `None` for an id
    /// without one): in a new file at `path`, written and fsynced before this returns, or in
    /// memory when `path` is `None`.
    pub(crate) fn write<'a>(
        path: Option<&Path>,
        dimension: usize,
        points: usize,
        vector_of: impl Fn(usize) -> Option<Cow<'a, [f32]>>,
    ) -> Result<Self> {
        let mut missing = Vec::new();
        let zeros = vec![0.0f32; dimension];
        let Some(path) = path else {
            let mut values = Vec::with_capacity(points * dimension);
            for id in 0..points {
                match vector_of(id).filter(|vector| vector.len() == dimension) {
                    Some(vector) => values.extend_from_slice(&vector),
                    None => {
                        missing.push(id as u32);
                        values.extend_from_slice(&zeros);
                    }
                }
            }
            return Ok(Self {
                dimension,
                points,
                missing,
                backing: Backing::Memory(values),
            });
        };
        let failed = |action: &'static str| move |error| IndexError::io(action, path, error);
        let file = File::create(path).map_err(failed("create"))?;
        let mut writer = BufWriter::with_capacity(STREAM_BUFFER_BYTES, file);
        let mut hasher = crc32fast::Hasher::new();
        let mut bytes = Vec::with_capacity(dimension * 4);
        for id in 0..points {
            let vector = vector_of(id).filter(|vector| vector.len() == dimension);
            if vector.is_none() {
                missing.push(id as u32);
            }
            bytes.clear();
            for value in vector.as_deref().unwrap_or(&zeros) {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
            hasher.update(&bytes);
            writer.write_all(&bytes).map_err(failed("write"))?;
        }
        let file = writer
            .into_inner()
            .map_err(|error| IndexError::io("write", path, error.into_error()))?;
        file.sync_all().map_err(failed("fsync"))?;
        drop(file);
        let file = File::open(path).map_err(failed("reopen"))?;
        Ok(Self::in_file(dimension, points, missing, file, path, hasher.finalize()))
    }

    fn in_file(dimension: usize, points: usize, missing: Vec<u32>, file: File, path: &Path, crc32: u32) -> Self {
        Self {
            dimension,
            points,
            missing,
            backing: Backing::File {
                file,
                path: path.to_path_buf(),
                crc32,
            },
        }
    }

    /// Opens a file [`Self::write`] wrote (its CRC already checked against a manifest) for
    /// `points` vectors of `dimension`, `missing` of them absent. Refuses a file of any other size.
    pub(crate) fn open(path: &Path, dimension: usize, points: usize, missing: Vec<u32>, crc32: u32) -> Result<Self> {
        let file = File::open(path).map_err(|error| IndexError::io("open", path, error))?;
        let bytes = file
            .metadata()
            .map_err(|error| IndexError::io("inspect", path, error))?
            .len();
        let expected = (points as u64) * (dimension as u64) * 4;
        if bytes != expected {
            return Err(IndexError::corrupt(
                path,
                format!("{bytes} bytes where {points} vectors of {dimension} need {expected}"),
            ));
        }
        if missing.windows(2).any(|pair| pair[0] >= pair[1]) || missing.last().is_some_and(|&id| id as usize >= points)
        {
            return Err(IndexError::corrupt(
                path,
                "the list of missing vectors is not ascending within the segment",
            ));
        }
        Ok(Self::in_file(dimension, points, missing, file, path, crc32))
    }

    /// How many local ids the segment covers.
    pub(crate) fn len(&self) -> usize {
        self.points
    }

    /// Local ids without a vector.
    pub(crate) fn missing(&self) -> &[u32] {
        &self.missing
    }

    fn is_missing(&self, id: usize) -> bool {
        self.missing.binary_search(&(id as u32)).is_ok()
    }

    /// The vector of local id `id`. A read that fails is logged and the point treated as
    /// having no vector: a search then ranks it last instead of failing as a whole.
    pub(crate) fn vector(&self, id: usize) -> Option<Cow<'_, [f32]>> {
        if id >= self.points || self.is_missing(id) {
            return None;
        }
        match &self.backing {
            Backing::Memory(values) => Some(Cow::Borrowed(&values[id * self.dimension..(id + 1) * self.dimension])),
            Backing::File { file, path, .. } => {
                let mut bytes = vec![0u8; self.dimension * 4];
                let offset = (id * self.dimension * 4) as u64;
                match read_at(file, &mut bytes, offset) {
                    Ok(()) => {
                        let mut vector = vec![0.0; self.dimension];
                        decode_into(&bytes, &mut vector);
                        Some(Cow::Owned(vector))
                    }
                    Err(error) => {
                        tracing::error!(path = %path.display(), id, %error, "cannot read a sealed vector");
                        None
                    }
                }
            }
        }
    }

    /// Calls `visit(local_id, vector)` for every id with a vector, in id order, reading the file
    /// front to back.
    pub(crate) fn for_each(&self, mut visit: impl FnMut(usize, &[f32])) -> Result<()> {
        let dimension = self.dimension.max(1);
        let mut missing = self.missing.iter().peekable();
        let mut visit_unless_missing = |id: usize, vector: &[f32]| {
            if missing.next_if(|&&next| next as usize == id).is_none() {
                visit(id, vector);
            }
        };
        match &self.backing {
            Backing::Memory(values) => {
                for (id, vector) in values.chunks_exact(dimension).enumerate() {
                    visit_unless_missing(id, vector);
                }
            }
            Backing::File { file, path, .. } => {
                // Positioned reads of many vectors at a time: no shared cursor, so concurrent
                // passes (two exact searches) do not disturb each other.
                let vector_bytes = dimension * 4;
                let per_read = (STREAM_BUFFER_BYTES / vector_bytes).max(1);
                let mut bytes = vec![0u8; per_read * vector_bytes];
                let mut vector = vec![0.0f32; dimension];
                let mut id = 0;
                while id < self.points {
                    let count = per_read.min(self.points - id);
                    let chunk = &mut bytes[..count * vector_bytes];
                    read_at(file, chunk, (id * vector_bytes) as u64)
                        .map_err(|error| IndexError::io("read", path, error))?;
                    for encoded in chunk.chunks_exact(vector_bytes) {
                        decode_into(encoded, &mut vector);
                        visit_unless_missing(id, &vector);
                        id += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Puts the vectors at `destination` (a hard link to the file when there is one, else a
    /// copy or a new file) and returns its size and CRC-32, known from the write so that a
    /// snapshot does not read gigabytes back to checksum them.
    pub(crate) fn persist_at(&self, destination: &Path) -> Result<(u64, u32)> {
        let bytes = (self.points * self.dimension * 4) as u64;
        match &self.backing {
            Backing::File { path, crc32, .. } => {
                if std::fs::hard_link(path, destination).is_err() {
                    std::fs::copy(path, destination).map_err(|error| IndexError::io("copy", destination, error))?;
                    File::open(destination)
                        .and_then(|copy| copy.sync_all())
                        .map_err(|error| IndexError::io("fsync", destination, error))?;
                }
                Ok((bytes, *crc32))
            }
            Backing::Memory(_) => {
                let written = Self::write(Some(destination), self.dimension, self.points, |id| self.vector(id))?;
                match written.backing {
                    Backing::File { crc32, .. } => Ok((bytes, crc32)),
                    Backing::Memory(_) => unreachable!("written with a path"),
                }
            }
        }
    }

    /// Links the file (when there is one) at `destination` too and reads it from there from now
    /// on, so that the place it was opened from (an old snapshot generation) may be deleted.
    pub(crate) fn relink(&mut self, destination: &Path) -> Result<()> {
        if let Backing::File { path, .. } = &mut self.backing
            && path != destination
        {
            if !destination.exists() {
                std::fs::hard_link(&*path, destination)
                    .or_else(|_| std::fs::copy(&*path, destination).map(|_| ()))
                    .map_err(|error| IndexError::io("link", destination, error))?;
            }
            *path = destination.to_path_buf();
        }
        Ok(())
    }

    /// The file's path, when the vectors are in one.
    pub(crate) fn path(&self) -> Option<&Path> {
        match &self.backing {
            Backing::File { path, .. } => Some(path),
            Backing::Memory(_) => None,
        }
    }

    /// Bytes the vectors take in this process's memory (none when they are in a file).
    pub(crate) fn resident_bytes(&self) -> usize {
        let values = match &self.backing {
            Backing::Memory(values) => values.len() * 4,
            Backing::File { .. } => 0,
        };
        values + self.missing.len() * 4
    }
}

#[cfg(unix)]
fn read_at(file: &File, bytes: &mut [u8], offset: u64) -> std::io::Result<()> {
    file.read_exact_at(bytes, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut bytes: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !bytes.is_empty() {
        match file.seek_read(bytes, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            read => {
                bytes = &mut bytes[read..];
                offset += read as u64;
            }
        }
    }
    Ok(())
}

/// Decodes little-endian f32s from `bytes` into `values` (as many as both hold).
fn decode_into(bytes: &[u8], values: &mut [f32]) {
    for (value, word) in values.iter_mut().zip(bytes.chunks_exact(4)) {
        *value = f32::from_le_bytes([word[0], word[1], word[2], word[3]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> Vec<Vec<f32>> {
        (0..5).map(|id| vec![id as f32, 0.5, -(id as f32)]).collect()
    }

    fn read_all(stored: &SealedVectors) -> Vec<(usize, Vec<f32>)> {
        let mut seen = Vec::new();
        stored
            .for_each(|id, vector| seen.push((id, vector.to_vec())))
            .expect("read");
        seen
    }

    #[test]
    fn in_a_file_and_in_memory_the_same_vectors_come_back_and_missing_ones_do_not() {
        let dir = tempfile::tempdir().expect("dir");
        let source = vectors();
        let vector_of = |id: usize| (id != 2).then(|| Cow::Borrowed(source[id].as_slice()));
        let path = dir.path().join("a.vectors");
        let on_disk = SealedVectors::write(Some(&path), 3, 5, vector_of).expect("write");
        let in_memory = SealedVectors::write(None, 3, 5, vector_of).expect("write");
        for stored in [&on_disk, &in_memory] {
            assert_eq!(stored.missing(), &[2]);
            for id in 0..5 {
                assert_eq!(stored.vector(id).as_deref(), vector_of(id).as_deref(), "id {id}");
            }
            assert!(stored.vector(5).is_none(), "beyond the segment");
            let expected: Vec<(usize, Vec<f32>)> = (0..5)
                .filter(|&id| id != 2)
                .map(|id| (id, source[id].clone()))
                .collect();
            assert_eq!(read_all(stored), expected);
        }
        assert_eq!(in_memory.resident_bytes(), 5 * 3 * 4 + 4);
        assert_eq!(on_disk.resident_bytes(), 4, "only the missing list");

        // Persisted from either, the file reopens with the CRC the manifest would hold.
        for (name, stored) in [("b", &on_disk), ("c", &in_memory)] {
            let destination = dir.path().join(format!("{name}.vectors"));
            let (bytes, crc32) = stored.persist_at(&destination).expect("persist");
            assert_eq!(bytes, std::fs::metadata(&destination).expect("size").len());
            assert_eq!(crc32, crc32fast::hash(&std::fs::read(&destination).expect("read")));
            let reopened = SealedVectors::open(&destination, 3, 5, vec![2], crc32).expect("open");
            assert_eq!(read_all(&reopened), read_all(stored));
        }
    }

    #[test]
    fn a_file_of_the_wrong_size_or_a_bad_missing_list_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.vectors");
        std::fs::write(&path, [0u8; 4 * 3 * 5 - 1]).expect("write");
        assert!(matches!(
            SealedVectors::open(&path, 3, 5, Vec::new(), 0),
            Err(IndexError::CorruptSnapshot { .. })
        ));
        std::fs::write(&path, [0u8; 4 * 3 * 5]).expect("write");
        assert!(SealedVectors::open(&path, 3, 5, vec![1, 4], 0).is_ok());
        for missing in [vec![4, 1], vec![5], vec![1, 1]] {
            assert!(
                SealedVectors::open(&path, 3, 5, missing.clone(), 0).is_err(),
                "{missing:?}"
            );
        }
    }

    #[test]
    fn a_relinked_file_outlives_the_place_it_was_opened_from() {
        let dir = tempfile::tempdir().expect("dir");
        let source = vectors();
        let old = dir.path().join("old.vectors");
        let mut stored =
            SealedVectors::write(Some(&old), 3, 5, |id| Some(Cow::Borrowed(source[id].as_slice()))).expect("write");
        let new = dir.path().join("new.vectors");
        stored.relink(&new).expect("relink");
        std::fs::remove_file(&old).expect("remove");
        assert_eq!(stored.path(), Some(new.as_path()));
        let copy = dir.path().join("copy.vectors");
        stored.persist_at(&copy).expect("persist from the new place");
        assert!(copy.exists());
        assert_eq!(stored.vector(3).as_deref(), Some(source[3].as_slice()));
    }
}
