//! The image catalog: which photos the index has seen, at which version, and what came of each
//! (its faces are in, or it could not be indexed). A re-run over an archive compares what it
//! lists with the catalog ([`CatalogEntry::is_same`]) to skip unchanged photos, process changed
//! ones again and prune the ones gone; [`ImageChange`] is how a photo's outcome enters the
//! index, replacing whatever the index held of that photo in one step.
//!
//! Photos with no faces and photos that failed for good are in the catalog too: they count as
//! seen, so an unchanged re-run does not redo them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::FaceRecord;

/// A photo's identity as its store lists it: what must match for a re-run to skip it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageVersion {
    /// The store's version of the object (ETag, object version, or a local file's inode,
    /// modification time and size); empty when the store gives none.
    pub version: String,
    /// The object's size.
    pub size_bytes: u64,
}

/// What came of a photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageOutcome {
    /// Its faces (possibly none) are in the index.
    Indexed {
        /// How many.
        faces: u32,
    },
    /// It could not be indexed, for a reason retrying the same bytes cannot fix.
    Failed,
}

/// The catalog's record of one photo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The version it was processed at.
    pub version: ImageVersion,
    /// What came of it.
    pub outcome: ImageOutcome,
}

impl CatalogEntry {
    /// Whether `listed` is the photo this entry was made from: same size and the same
    /// non-empty version. A photo whose store gives no version is never the same, so it is
    /// processed on every run rather than skipped on a guess.
    pub fn is_same(&self, listed: &ImageVersion) -> bool {
        !listed.version.is_empty() && self.version == *listed
    }
}

/// One photo's new state, applied atomically: afterwards the index holds exactly the faces
/// the change names for that photo (searches never see the old and new faces together).
#[derive(Debug, Clone)]
pub enum ImageChange {
    /// The photo was processed at `version` and these are all its faces (possibly none);
    /// every record must name `image_uri`.
    Indexed {
        /// The photo.
        image_uri: String,
        /// The version processed.
        version: ImageVersion,
        /// Its faces.
        faces: Vec<FaceRecord>,
    },
    /// The photo at `version` cannot be indexed; faces of an earlier version are removed.
    Failed {
        /// The photo.
        image_uri: String,
        /// The version that failed.
        version: ImageVersion,
    },
    /// The photo left the archive: its faces and its catalog entry are removed.
    Removed {
        /// The photo.
        image_uri: String,
    },
}

impl ImageChange {
    /// The photo it changes.
    pub fn image_uri(&self) -> &str {
        match self {
            Self::Indexed { image_uri, .. } | Self::Failed { image_uri, .. } | Self::Removed { image_uri } => image_uri,
        }
    }

    /// Faces it brings.
    pub fn faces(&self) -> usize {
        match self {
            Self::Indexed { faces, .. } => faces.len(),
            Self::Failed { .. } | Self::Removed { .. } => 0,
        }
    }

    /// The catalog entry it leaves, `None` for a removal.
    pub fn entry(&self) -> Option<CatalogEntry> {
        match self {
            Self::Indexed { version, faces, .. } => Some(CatalogEntry {
                version: version.clone(),
                outcome: ImageOutcome::Indexed {
                    faces: u32::try_from(faces.len()).unwrap_or(u32::MAX),
                },
            }),
            Self::Failed { version, .. } => Some(CatalogEntry {
                version: version.clone(),
                outcome: ImageOutcome::Failed,
            }),
            Self::Removed { .. } => None,
        }
    }
}

/// Photos by URI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageCatalog {
    entries: BTreeMap<String, CatalogEntry>,
}

impl ImageCatalog {
    /// The entry of `image_uri`.
    pub(crate) fn get(&self, image_uri: &str) -> Option<&CatalogEntry> {
        self.entries.get(image_uri)
    }

    /// Sets (`Some`) or removes (`None`) the entry of `image_uri`.
    pub(crate) fn set(&mut self, image_uri: &str, entry: Option<CatalogEntry>) {
        match entry {
            Some(entry) => {
                self.entries.insert(image_uri.to_owned(), entry);
            }
            None => {
                self.entries.remove(image_uri);
            }
        }
    }

    /// Entries whose URI starts with `prefix`, in URI order.
    pub(crate) fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a CatalogEntry)> + 'a {
        self.entries
            .range(prefix.to_owned()..)
            .take_while(move |(uri, _)| uri.starts_with(prefix))
    }

    /// Photos in the catalog.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Estimated bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(uri, entry)| uri.len() + entry.version.version.len() + 64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(version: &str, size_bytes: u64) -> ImageVersion {
        ImageVersion {
            version: version.into(),
            size_bytes,
        }
    }

    #[test]
    fn a_photo_is_the_same_only_with_the_same_non_empty_version_and_size() {
        let entry = CatalogEntry {
            version: version("etag-1", 100),
            outcome: ImageOutcome::Indexed { faces: 2 },
        };
        assert!(entry.is_same(&version("etag-1", 100)));
        assert!(!entry.is_same(&version("etag-2", 100)));
        assert!(!entry.is_same(&version("etag-1", 101)));
        let unversioned = CatalogEntry {
            version: version("", 100),
            outcome: ImageOutcome::Failed,
        };
        assert!(!unversioned.is_same(&version("", 100)), "no version: never skipped");
    }

    #[test]
    fn under_a_prefix_lists_only_that_prefix() {
        let mut catalog = ImageCatalog::default();
        for uri in ["s3://b/a/1.jpg", "s3://b/a/2.jpg", "s3://b/ab/3.jpg", "s3://b/b/4.jpg"] {
            catalog.set(
                uri,
                Some(CatalogEntry {
                    version: version("v", 1),
                    outcome: ImageOutcome::Failed,
                }),
            );
        }
        let listed: Vec<&String> = catalog.under("s3://b/a/").map(|(uri, _)| uri).collect();
        assert_eq!(listed, ["s3://b/a/1.jpg", "s3://b/a/2.jpg"]);
        catalog.set("s3://b/a/1.jpg", None);
        assert_eq!(catalog.len(), 3);
    }
}
