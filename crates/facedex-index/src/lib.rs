//! The face index: nearest-neighbour search over unit face embeddings with `hnsw_rs`, plus what
//! a face search service needs around the graph — stable face ids, metadata and traits
//! (attributes, quality), filters, deletion
//! that really forgets (tombstones, a permanent deleted-id set, vacuum), an image catalog that
//! lets a re-run skip unchanged photos and replace changed ones atomically, exact search for
//! checks, crash-safe snapshots that carry the applied Kafka offsets, and the faces grouped
//! into people.
//!
//! Knows nothing of gRPC or Kafka: `facedex-proto` converts, `facedex-server` serves.

mod catalog;
mod changes;
mod codes;
mod config;
mod distance;
mod error;
mod flat;
mod graph;
mod graph_file;
mod id_tracker;
mod index;
mod maintenance;
pub mod metrics;
mod people;
pub mod quality;
mod ranked;
mod record;
mod search;
mod segments;
mod snapshot;
mod store;
#[cfg(feature = "synthetic")]
pub mod synthetic;
mod traits;
mod vector_file;

pub use catalog::{CatalogEntry, ImageChange, ImageOutcome, ImageVersion};
pub use config::{IndexConfig, MAX_EF_SEARCH_CEILING, MAX_SEARCH_LIMIT};
pub use distance::{UNIT_NORM_TOLERANCE, UnitCosineDistance, check_embedding, dot};
pub use error::{IndexError, Result};
pub use flat::REACHABILITY_EF;
pub use index::{AppliedOffsets, DeleteSelector, FaceIndex, FaceView, IndexInfo, UpsertOutcome};
pub use people::{
    MAX_EDIT_FACES, MAX_MERGE_PEOPLE, MAX_PERSON_NAME_BYTES, PeopleConfig, PeopleEdit, PeoplePage, PersonAnchors,
    PersonFaces, PersonId, PersonRef, PersonStatus, PersonSummary, Placements, ReclusterProgress, SkipReason,
};
pub use record::{BoundingBox, FaceId, FaceMetadata, FaceRecord};
pub use search::{FaceFilter, SearchHit, SearchQuery};
pub use snapshot::SnapshotInfo;
pub use store::FaceStore;
pub use traits::{
    AGE, AttributeValue, FaceAttribute, FaceTraits, GENDER, MAX_ATTRIBUTE_TEXT_BYTES, MAX_ATTRIBUTE_VECTOR,
    MAX_ATTRIBUTES, TraitFilter,
};
