//! The index's settings: HNSW shape, search defaults, vacuum and snapshot policy.

use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};
use crate::people::PeopleConfig;

/// The largest `limit` a search may ask for.
pub const MAX_SEARCH_LIMIT: usize = 1000;

/// The most `index.max_ef_search` may be set to. A graph walk keeps `ef` candidates, so the
/// request's `ef` sizes allocations and work; recall stops growing long before this.
pub const MAX_EF_SEARCH_CEILING: usize = 100_000;

/// Settings of the face index (`[index]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Embedding dimension (512 for ArcFace).
    pub dimension: usize,
    /// HNSW `M`: links per node on the upper layers (twice that on layer 0).
    pub max_connections: usize,
    /// HNSW `ef_construction`: candidate list size while inserting.
    pub ef_construction: usize,
    /// `ef` for searches that do not set one.
    pub default_ef_search: usize,
    /// The largest `ef` a search may ask for (at most [`MAX_EF_SEARCH_CEILING`]); a larger
    /// one is refused with INVALID_ARGUMENT before any work.
    pub max_ef_search: usize,
    /// Rebuild the graph without deleted faces once they exceed this share of it (Qdrant's
    /// vacuum rule).
    pub vacuum_deleted_ratio: f32,
    /// Complete snapshot generations kept on disk; older ones are deleted.
    pub snapshots_to_keep: usize,
    /// Expected number of faces: sizes the graph's first allocation, not a limit.
    pub expected_faces: usize,
    /// Seal the growing segment once it holds this many faces: its `hnsw_rs` graph is dropped
    /// for flat links, 8-bit codes and the f32 vectors in a file (a sixth of the memory per
    /// face; see BENCHMARKS.md), and new faces go to a new growing segment. Every search walks every
    /// segment, so fewer, larger segments search faster; this bounds the memory the growing
    /// one takes. The default, 1 GB of 512-d f32 vectors, is Milvus's sealed segment size.
    pub seal_segment_faces: usize,
    /// Grouping faces into persons (`[index.people]`).
    pub people: PeopleConfig,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            dimension: 512,
            max_connections: 16,
            ef_construction: 100,
            default_ef_search: 64,
            max_ef_search: 10_000,
            vacuum_deleted_ratio: 0.2,
            snapshots_to_keep: 2,
            expected_faces: 100_000,
            seal_segment_faces: 500_000,
            people: PeopleConfig::default(),
        }
    }
}

impl IndexConfig {
    /// Rejects settings the graph cannot be built with.
    pub fn validate(&self) -> Result<()> {
        let fail = |message: String| Err(IndexError::InvalidConfig(message));
        if self.dimension == 0 {
            return fail("index.dimension must be at least 1".into());
        }
        if !(2..=255).contains(&self.max_connections) {
            return fail(format!(
                "index.max_connections must be between 2 and 255, got {}",
                self.max_connections
            ));
        }
        if self.ef_construction < self.max_connections {
            return fail(format!(
                "index.ef_construction ({}) must be at least index.max_connections ({})",
                self.ef_construction, self.max_connections
            ));
        }
        if self.default_ef_search == 0 {
            return fail("index.default_ef_search must be at least 1".into());
        }
        if !(self.default_ef_search..=MAX_EF_SEARCH_CEILING).contains(&self.max_ef_search) {
            return fail(format!(
                "index.max_ef_search must be between index.default_ef_search ({}) and {MAX_EF_SEARCH_CEILING}, got {}",
                self.default_ef_search, self.max_ef_search
            ));
        }
        if !(self.vacuum_deleted_ratio > 0.0 && self.vacuum_deleted_ratio <= 1.0) {
            return fail(format!(
                "index.vacuum_deleted_ratio must be in (0, 1], got {}",
                self.vacuum_deleted_ratio
            ));
        }
        if self.seal_segment_faces == 0 {
            return fail("index.seal_segment_faces must be at least 1".into());
        }
        if self.snapshots_to_keep == 0 {
            return fail("index.snapshots_to_keep must be at least 1".into());
        }
        self.people.validate().map_err(IndexError::InvalidConfig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(IndexConfig::default().validate().is_ok());
        let bad = IndexConfig {
            ef_construction: 4,
            ..IndexConfig::default()
        };
        let message = bad.validate().expect_err("ef_construction < M").to_string();
        assert!(message.contains("index.ef_construction (4)"), "{message}");
        assert!(
            IndexConfig {
                vacuum_deleted_ratio: 0.0,
                ..IndexConfig::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn max_ef_search_lies_between_the_default_ef_and_the_ceiling() {
        for (max_ef_search, valid) in [(64, true), (100_000, true), (63, false), (100_001, false)] {
            let config = IndexConfig {
                max_ef_search,
                ..IndexConfig::default()
            };
            assert_eq!(config.validate().is_ok(), valid, "max_ef_search {max_ef_search}");
        }
        let message = IndexConfig {
            max_ef_search: 0,
            ..IndexConfig::default()
        }
        .validate()
        .expect_err("zero")
        .to_string();
        assert!(
            message.contains("index.max_ef_search") && message.contains("got 0"),
            "{message}"
        );
    }
}
