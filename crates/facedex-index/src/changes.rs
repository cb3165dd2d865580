//! Applying [`ImageChange`]s: a group of photos' new states in one writer step, and the
//! catalog reads a re-run plans with.

use std::collections::{BTreeMap, HashMap};

use crate::catalog::{CatalogEntry, ImageChange};
use crate::error::{IndexError, Result};
use crate::index::{FaceIndex, UpsertOutcome};
use crate::record::FaceRecord;

impl FaceIndex {
    /// Applies `changes` in order as one step: a photo named twice ends in its last state.
    /// Every record is checked first (and must name its change's photo), so a bad one rejects
    /// the whole group and changes nothing. The caller holds the writer lock.
    pub(crate) fn apply_changes_locked(&self, changes: Vec<ImageChange>) -> Result<UpsertOutcome> {
        let mut last_of_image: HashMap<String, usize> = HashMap::with_capacity(changes.len());
        for (position, change) in changes.iter().enumerate() {
            if let ImageChange::Indexed { image_uri, faces, .. } = change
                && let Some(stray) = faces.iter().find(|face| face.metadata.image_uri != *image_uri)
            {
                return Err(IndexError::InvalidRecord {
                    image_uri: stray.metadata.image_uri.clone(),
                    reason: format!("the face {} is given as a face of {image_uri}", stray.face_id),
                });
            }
            last_of_image.insert(change.image_uri().to_owned(), position);
        }
        let mut records: Vec<FaceRecord> = Vec::new();
        let mut replacing: Vec<(String, Option<CatalogEntry>)> = Vec::with_capacity(last_of_image.len());
        for (position, change) in changes.into_iter().enumerate() {
            if last_of_image.get(change.image_uri()) != Some(&position) {
                continue;
            }
            let entry = change.entry();
            match change {
                ImageChange::Indexed { image_uri, faces, .. } => {
                    records.extend(faces);
                    replacing.push((image_uri, entry));
                }
                ImageChange::Failed { image_uri, .. } | ImageChange::Removed { image_uri } => {
                    replacing.push((image_uri, entry));
                }
            }
        }
        self.upsert_locked(records, &replacing)
    }

    /// The catalog entry of `image_uri`.
    pub fn catalog_entry(&self, image_uri: &str) -> Option<CatalogEntry> {
        self.state.read().catalog.get(image_uri).cloned()
    }

    /// Every photo the index knows under `prefix`: its catalog entry, or `None` for a photo
    /// whose faces are in but which was never cataloged (faces imported, or indexed before
    /// the catalog existed). What a re-run compares its listing with.
    pub fn images_under(&self, prefix: &str) -> BTreeMap<String, Option<CatalogEntry>> {
        let state = self.state.read();
        let mut images: BTreeMap<String, Option<CatalogEntry>> = state
            .catalog
            .under(prefix)
            .map(|(uri, entry)| (uri.clone(), Some(entry.clone())))
            .collect();
        for internal_id in state.ids.with_image_prefix(prefix) {
            if let Some(face) = state.ids.live_face(internal_id) {
                images.entry(face.metadata.image_uri.clone()).or_insert(None);
            }
        }
        images
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::{ImageOutcome, ImageVersion};
    use crate::config::IndexConfig;
    use crate::record::{BoundingBox, FaceId, FaceMetadata};
    use crate::search::SearchQuery;

    use super::*;

    fn index() -> FaceIndex {
        FaceIndex::new(IndexConfig {
            dimension: 4,
            ..IndexConfig::default()
        })
        .expect("index")
    }

    fn face(image: &str, x: f32, axis: usize) -> FaceRecord {
        let bounding_box = BoundingBox {
            x1: x,
            y1: 0.0,
            x2: x + 10.0,
            y2: 10.0,
        };
        let mut embedding = vec![0.0; 4];
        embedding[axis] = 1.0;
        FaceRecord {
            face_id: FaceId::derive(image, &bounding_box, "m"),
            metadata: FaceMetadata {
                image_uri: image.into(),
                bounding_box,
                landmarks: [[x + 5.0, 5.0]; 5],
                detection_score: 0.9,
                model_id: "m".into(),
                traits: Default::default(),
            },
            embedding,
        }
    }

    fn indexed(image: &str, version: &str, faces: Vec<FaceRecord>) -> ImageChange {
        ImageChange::Indexed {
            image_uri: image.into(),
            version: ImageVersion {
                version: version.into(),
                size_bytes: 10,
            },
            faces,
        }
    }

    fn apply(index: &FaceIndex, changes: Vec<ImageChange>) -> UpsertOutcome {
        let _writer = index.lock_writer();
        index.apply_changes_locked(changes).expect("apply")
    }

    fn faces_of(index: &FaceIndex, image: &str) -> Vec<FaceId> {
        let state = index.state.read();
        let mut ids: Vec<FaceId> = state
            .ids
            .of_image(image)
            .iter()
            .filter_map(|id| state.ids.live_face(*id).map(|face| face.face_id))
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_new_version_replaces_the_faces_of_the_old_one() {
        let index = index();
        let old = [face("a.jpg", 0.0, 0), face("a.jpg", 20.0, 1)];
        apply(&index, vec![indexed("a.jpg", "v1", old.to_vec())]);
        apply(&index, vec![indexed("b.jpg", "v1", vec![face("b.jpg", 0.0, 3)])]);
        // The edit moved one face and kept the other where it was, with a new embedding.
        let new = [face("a.jpg", 0.0, 2), face("a.jpg", 40.0, 1)];
        let outcome = apply(&index, vec![indexed("a.jpg", "v2", new.to_vec())]);
        assert_eq!((outcome.inserted, outcome.replaced, outcome.removed), (1, 1, 1));
        let mut expected = vec![new[0].face_id, new[1].face_id];
        expected.sort();
        assert_eq!(faces_of(&index, "a.jpg"), expected);
        assert_eq!(faces_of(&index, "b.jpg").len(), 1, "other photos untouched");
        let entry = index.catalog_entry("a.jpg").expect("cataloged");
        assert_eq!(entry.version.version, "v2");
        assert_eq!(entry.outcome, ImageOutcome::Indexed { faces: 2 });
        let hits = index
            .search(&SearchQuery::nearest(vec![1.0, 0.0, 0.0, 0.0], 5))
            .expect("search");
        assert!(
            hits.iter()
                .all(|hit| hit.face_id != old[0].face_id || hit.similarity < 0.5),
            "the old vector of a replaced face is not found: {hits:?}"
        );
    }

    #[test]
    fn a_failure_or_a_removal_takes_the_photos_faces_and_a_removal_its_entry() {
        let index = index();
        apply(
            &index,
            vec![
                indexed("a.jpg", "v1", vec![face("a.jpg", 0.0, 0)]),
                indexed("b.jpg", "v1", vec![face("b.jpg", 0.0, 1)]),
            ],
        );
        let outcome = apply(
            &index,
            vec![
                ImageChange::Failed {
                    image_uri: "a.jpg".into(),
                    version: ImageVersion::default(),
                },
                ImageChange::Removed {
                    image_uri: "b.jpg".into(),
                },
            ],
        );
        assert_eq!(outcome.removed, 2);
        assert_eq!(index.info().faces, 0);
        assert_eq!(
            index.catalog_entry("a.jpg").map(|entry| entry.outcome),
            Some(ImageOutcome::Failed)
        );
        assert_eq!(index.catalog_entry("b.jpg"), None);
        assert!(
            index.state.read().ids.deleted().is_empty(),
            "removal is not a permanent deletion"
        );
        // The photo comes back: its faces are indexed again.
        let outcome = apply(&index, vec![indexed("b.jpg", "v1", vec![face("b.jpg", 0.0, 1)])]);
        assert_eq!(outcome.inserted, 1);
    }

    #[test]
    fn within_one_group_the_last_change_of_a_photo_wins() {
        let index = index();
        let outcome = apply(
            &index,
            vec![
                indexed("a.jpg", "v1", vec![face("a.jpg", 0.0, 0), face("a.jpg", 20.0, 1)]),
                ImageChange::Removed {
                    image_uri: "a.jpg".into(),
                },
                indexed("a.jpg", "v2", vec![face("a.jpg", 40.0, 2)]),
            ],
        );
        assert_eq!((outcome.inserted, outcome.removed), (1, 0));
        assert_eq!(faces_of(&index, "a.jpg"), vec![face("a.jpg", 40.0, 2).face_id]);
    }

    #[test]
    fn a_face_given_under_another_photo_rejects_the_group() {
        let index = index();
        let _writer = index.lock_writer();
        let error = index
            .apply_changes_locked(vec![
                indexed("b.jpg", "v1", vec![face("b.jpg", 0.0, 1)]),
                indexed("a.jpg", "v1", vec![face("elsewhere.jpg", 0.0, 0)]),
            ])
            .expect_err("a stray face");
        assert!(matches!(error, IndexError::InvalidRecord { .. }), "{error:?}");
        assert_eq!(index.info().faces, 0, "nothing applied");
    }

    #[test]
    fn images_under_a_prefix_include_faces_that_were_never_cataloged() {
        let index = index();
        index.upsert(vec![face("s3://b/x/old.jpg", 0.0, 0)]).expect("upsert");
        apply(&index, vec![indexed("s3://b/x/new.jpg", "v1", Vec::new())]);
        apply(&index, vec![indexed("s3://b/y/other.jpg", "v1", Vec::new())]);
        let images = index.images_under("s3://b/x/");
        assert_eq!(images.len(), 2);
        assert_eq!(images["s3://b/x/old.jpg"], None);
        assert!(images["s3://b/x/new.jpg"].is_some());
    }
}
