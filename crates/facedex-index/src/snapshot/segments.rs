//! The sealed segments in a snapshot (format 5 on): per segment its links
//! (`segment-N.links`, postcard) and its vectors (`segment-N.vectors`, a hard link to the
//! segment's own file: sealed vectors never change, so a snapshot does not copy gigabytes),
//! and in `segments.postcard` where each one starts and where the growing segment begins.
//!
//! Loading checks that the segments tile the face slots in order before trusting any count.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{ManifestFile, read_postcard, write_postcard};
use crate::error::{IndexError, Result};
use crate::flat::{FlatGraph, SegmentLinks};
use crate::index::IndexState;
use crate::segments::SealedSegment;
use crate::vector_file::SealedVectors;

pub(super) const SEGMENTS_FILE: &str = "segments.postcard";

/// Where the segments start.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct SegmentsFile {
    /// The growing segment's first id: the end of the last sealed one.
    pub(super) growing_base: usize,
    /// Each sealed segment's size, in id order from 0.
    sealed_points: Vec<usize>,
}

fn links_name(position: usize) -> String {
    format!("segment-{position}.links")
}

fn vectors_name(position: usize) -> String {
    format!("segment-{position}.vectors")
}

/// Writes the sealed segments of `state` into `dir`. Returns the names of the files written
/// (to be fsynced and checksummed) and the manifest entries of the vector files, whose sizes
/// and checksums are known from sealing.
pub(super) fn write(dir: &Path, state: &IndexState) -> Result<(Vec<String>, Vec<ManifestFile>)> {
    let mut written = vec![SEGMENTS_FILE.to_owned()];
    let mut linked = Vec::with_capacity(state.sealed.len());
    for (position, segment) in state.sealed.iter().enumerate() {
        let name = links_name(position);
        write_postcard(&dir.join(&name), &segment.flat.links())?;
        written.push(name);
        let name = vectors_name(position);
        let vectors = segment
            .flat
            .sealed_vectors()
            .ok_or_else(|| IndexError::corrupt(dir, format!("sealed segment {position} has no vector store")))?;
        let (bytes, crc32) = vectors.persist_at(&dir.join(&name))?;
        linked.push(ManifestFile { name, bytes, crc32 });
    }
    let segments = SegmentsFile {
        growing_base: state.growing_base,
        sealed_points: state.sealed.iter().map(|segment| segment.flat.len()).collect(),
    };
    write_postcard(&dir.join(SEGMENTS_FILE), &segments)?;
    Ok((written, linked))
}

/// The sealed segments of the snapshot in `dir` (already checked against `manifest`), for a
/// snapshot of `slots` face slots of `dimension`, and the growing segment's first id.
pub(super) fn load(
    dir: &Path,
    manifest: &[ManifestFile],
    dimension: usize,
    slots: usize,
) -> Result<(Vec<SealedSegment>, usize)> {
    let segments: SegmentsFile = read_postcard(dir, SEGMENTS_FILE)?;
    let corrupt = |reason: String| IndexError::corrupt(dir, reason);
    let ends = segments
        .sealed_points
        .iter()
        .try_fold(0usize, |base, points| base.checked_add(*points));
    if ends != Some(segments.growing_base) || segments.growing_base > slots {
        return Err(corrupt(format!(
            "sealed segments of {:?} faces do not end at the growing segment's first id {} within {slots} slots",
            segments.sealed_points, segments.growing_base
        )));
    }
    let mut sealed = Vec::with_capacity(segments.sealed_points.len());
    let mut base = 0;
    for (position, &points) in segments.sealed_points.iter().enumerate() {
        let links: SegmentLinks = read_postcard(dir, &links_name(position))?;
        if links.points as usize != points {
            return Err(corrupt(format!(
                "{} holds {} points, {SEGMENTS_FILE} says {points}",
                links_name(position),
                links.points
            )));
        }
        let name = vectors_name(position);
        let crc32 = manifest
            .iter()
            .find(|file| file.name == name)
            .map(|file| file.crc32)
            .ok_or_else(|| corrupt(format!("the manifest does not list {name}")))?;
        let vectors = SealedVectors::open(&dir.join(&name), dimension, points, links.missing.clone(), crc32)?;
        let flat = FlatGraph::from_links(links, vectors, dimension)
            .map_err(|reason| corrupt(format!("{}: {reason}", links_name(position))))?;
        sealed.push(SealedSegment {
            base,
            flat: Arc::new(flat),
        });
        base += points;
    }
    Ok((sealed, segments.growing_base))
}
