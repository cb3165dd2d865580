//! [`IdTracker`]: which internal id (the graph's data id) holds which face, the lookups by
//! face id and by image, tombstones and the permanent set of deleted ids. Its fields are
//! private: every change goes through a method that keeps the lookups, the liveness bytes and
//! the counters in step, and [`IdTracker::debug_assert_invariants`] checks them in debug
//! builds (qdrant's `IdTracker` beside its vector storage and graph).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::index::StoredFace;
use crate::record::{FaceId, FaceMetadata};

/// Faces by internal id, and the lookups and counts that describe them.
#[derive(Default)]
pub(crate) struct IdTracker {
    /// By internal id; `None` is a tombstone.
    faces: Vec<Option<StoredFace>>,
    /// By internal id: whether `faces` holds it. A byte per face that stays in cache, for the
    /// liveness test a graph search makes on every candidate.
    live: Vec<bool>,
    by_face_id: HashMap<FaceId, usize>,
    by_image: BTreeMap<String, Vec<usize>>,
    tombstones: usize,
    deleted: HashSet<FaceId>,
    metadata_bytes: usize,
}

impl IdTracker {
    /// Appends `face` (or a tombstone) at internal id [`IdTracker::slots`] and indexes it.
    pub(crate) fn push(&mut self, face: Option<StoredFace>) -> usize {
        let internal_id = self.faces.len();
        match &face {
            Some(face) => {
                self.by_face_id.insert(face.face_id, internal_id);
                self.by_image
                    .entry(face.metadata.image_uri.clone())
                    .or_default()
                    .push(internal_id);
                self.metadata_bytes += metadata_bytes(&face.metadata);
            }
            None => self.tombstones += 1,
        }
        self.live.push(face.is_some());
        self.faces.push(face);
        internal_id
    }

    /// Turns the face at `internal_id` into a tombstone (its vector stays in the graph until
    /// the next vacuum). Nothing happens for a slot that is already one.
    pub(crate) fn tombstone(&mut self, internal_id: usize) {
        let Some(face) = self.faces.get_mut(internal_id).and_then(Option::take) else {
            return;
        };
        self.live[internal_id] = false;
        self.by_face_id.remove(&face.face_id);
        if let Some(ids) = self.by_image.get_mut(&face.metadata.image_uri) {
            ids.retain(|id| *id != internal_id);
            if ids.is_empty() {
                self.by_image.remove(&face.metadata.image_uri);
            }
        }
        self.metadata_bytes -= metadata_bytes(&face.metadata);
        self.tombstones += 1;
    }

    /// Deletes `face_id` for good: tombstoned if present, and refused from now on.
    pub(crate) fn forget(&mut self, face_id: FaceId) {
        if let Some(internal_id) = self.by_face_id.get(&face_id).copied() {
            self.tombstone(internal_id);
        }
        self.deleted.insert(face_id);
    }

    /// Replaces the metadata of the live face at `internal_id` by `metadata` of the same image
    /// (a replay refreshing a face it already holds).
    pub(crate) fn refresh_metadata(&mut self, internal_id: usize, metadata: FaceMetadata) {
        if let Some(Some(face)) = self.faces.get_mut(internal_id) {
            debug_assert_eq!(face.metadata.image_uri, metadata.image_uri, "a refresh keeps the image");
            self.metadata_bytes =
                self.metadata_bytes - self::metadata_bytes(&face.metadata) + self::metadata_bytes(&metadata);
            face.metadata = metadata;
        }
    }

    /// Marks `deleted` as deleted for good (restoring a snapshot's set).
    pub(crate) fn restore_deleted(&mut self, deleted: impl IntoIterator<Item = FaceId>) {
        self.deleted.extend(deleted);
    }

    /// Slots, live or not: the next internal id.
    pub(crate) fn slots(&self) -> usize {
        self.faces.len()
    }

    /// Every slot, in internal id order (for snapshots).
    pub(crate) fn slots_iter(&self) -> impl Iterator<Item = (usize, Option<&StoredFace>)> {
        self.faces.iter().map(Option::as_ref).enumerate()
    }

    /// Live faces.
    pub(crate) fn live_faces(&self) -> usize {
        self.by_face_id.len()
    }

    /// Distinct images with a live face.
    pub(crate) fn images(&self) -> usize {
        self.by_image.len()
    }

    /// Slots that are tombstones.
    pub(crate) fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// Ids deleted for good.
    pub(crate) fn deleted(&self) -> &HashSet<FaceId> {
        &self.deleted
    }

    /// Estimated bytes of the metadata kept.
    pub(crate) fn metadata_bytes(&self) -> usize {
        self.metadata_bytes
    }

    /// Whether `internal_id` holds a live face.
    #[inline]
    pub(crate) fn is_live(&self, internal_id: usize) -> bool {
        self.live.get(internal_id).copied().unwrap_or(false)
    }

    /// The live face at `internal_id`.
    #[inline]
    pub(crate) fn live_face(&self, internal_id: usize) -> Option<&StoredFace> {
        self.faces.get(internal_id).and_then(Option::as_ref)
    }

    /// The live face with this id, and its internal id.
    pub(crate) fn live_face_by_id(&self, face_id: &FaceId) -> Option<(usize, &StoredFace)> {
        let internal_id = self.internal_id(face_id)?;
        Some((internal_id, self.live_face(internal_id)?))
    }

    /// The internal id of live face `face_id`.
    pub(crate) fn internal_id(&self, face_id: &FaceId) -> Option<usize> {
        self.by_face_id.get(face_id).copied()
    }

    /// The internal ids of `image_uri`'s live faces.
    pub(crate) fn of_image(&self, image_uri: &str) -> &[usize] {
        self.by_image.get(image_uri).map_or(&[], Vec::as_slice)
    }

    /// The internal ids of the live faces of every image whose URI starts with `prefix`.
    pub(crate) fn with_image_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.by_image
            .range(prefix.to_owned()..)
            .take_while(move |(uri, _)| uri.starts_with(prefix))
            .flat_map(|(_, ids)| ids.iter().copied())
    }

    /// Checks, in debug builds, that `faces`, `live`, the two lookups and the counters describe
    /// the same faces and that no deleted id is live. A no-op in release builds.
    pub(crate) fn debug_assert_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        debug_assert_eq!(self.live.len(), self.faces.len(), "one liveness byte per slot");
        let mut live_faces = 0;
        let mut metadata_bytes = 0;
        for (internal_id, face) in self.faces.iter().enumerate() {
            debug_assert_eq!(self.live[internal_id], face.is_some(), "liveness of slot {internal_id}");
            if let Some(face) = face {
                live_faces += 1;
                metadata_bytes += self::metadata_bytes(&face.metadata);
                debug_assert_eq!(
                    self.by_face_id.get(&face.face_id),
                    Some(&internal_id),
                    "id lookup of slot {internal_id}"
                );
                debug_assert!(
                    !self.deleted.contains(&face.face_id),
                    "slot {internal_id} holds a deleted face"
                );
            }
        }
        debug_assert_eq!(self.by_face_id.len(), live_faces, "one id lookup per live face");
        debug_assert_eq!(self.tombstones, self.faces.len() - live_faces, "tombstone count");
        debug_assert_eq!(self.metadata_bytes, metadata_bytes, "metadata size");
        let by_image: usize = self.by_image.values().map(Vec::len).sum();
        debug_assert_eq!(by_image, live_faces, "one image lookup per live face");
        for (uri, ids) in &self.by_image {
            debug_assert!(!ids.is_empty(), "no empty image entry ({uri})");
            for id in ids {
                debug_assert!(
                    self.live_face(*id).is_some_and(|face| face.metadata.image_uri == *uri),
                    "image lookup {uri} -> {id}"
                );
            }
        }
    }
}

fn metadata_bytes(metadata: &FaceMetadata) -> usize {
    std::mem::size_of::<Option<StoredFace>>() + metadata.image_uri.len() + metadata.model_id.len() + 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BoundingBox;

    fn face(id: u128, image: &str) -> StoredFace {
        StoredFace {
            face_id: FaceId(id),
            metadata: FaceMetadata {
                image_uri: image.into(),
                bounding_box: BoundingBox {
                    x1: 0.0,
                    y1: 0.0,
                    x2: 1.0,
                    y2: 1.0,
                },
                landmarks: [[0.5, 0.5]; 5],
                detection_score: 0.9,
                model_id: "m".into(),
                traits: Default::default(),
            },
        }
    }

    #[test]
    fn lookups_follow_pushes_tombstones_and_deletions() {
        let mut ids = IdTracker::default();
        assert_eq!(ids.push(Some(face(1, "a/1.jpg"))), 0);
        assert_eq!(ids.push(Some(face(2, "a/1.jpg"))), 1);
        assert_eq!(ids.push(Some(face(3, "b/2.jpg"))), 2);
        assert_eq!(ids.push(None), 3);
        ids.debug_assert_invariants();
        assert_eq!((ids.live_faces(), ids.images(), ids.tombstones()), (3, 2, 1));
        assert_eq!(ids.with_image_prefix("a/").collect::<Vec<_>>(), vec![0, 1]);
        ids.tombstone(0);
        ids.forget(FaceId(2));
        ids.forget(FaceId(9));
        ids.debug_assert_invariants();
        assert_eq!(ids.of_image("a/1.jpg"), &[] as &[usize]);
        assert_eq!((ids.live_faces(), ids.images(), ids.tombstones()), (1, 1, 3));
        assert!(ids.deleted().contains(&FaceId(2)) && ids.deleted().contains(&FaceId(9)));
        assert_eq!(ids.internal_id(&FaceId(3)), Some(2));
        assert!(!ids.is_live(0) && ids.is_live(2) && !ids.is_live(99));
    }
}
