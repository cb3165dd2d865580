//! People: the index's faces grouped into persons, kept up to date as faces arrive and leave.
//!
//! The state ([`People`]) lives beside the id tracker in the index state and changes only under
//! the index's writer lock: the clusterer places new faces (`assign.rs`), users edit persons
//! (`edits.rs`), a re-cluster rebuilds the automatic part (`recluster.rs`), and readers list
//! persons and their faces (`view.rs`). Every face belongs to at most one person, a person has
//! at most one face per photo, and a person without faces is gone; persons are stored in the
//! snapshot with the faces and replayed from the same records, so they are as durable as the
//! faces are.

mod assign;
mod config;
mod edits;
mod recluster;
mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::distance::dot;
use crate::error::{IndexError, Result};
use crate::record::FaceId;

pub use assign::Placements;
pub use config::{PeopleConfig, SkipReason};
pub use edits::{MAX_EDIT_FACES, MAX_MERGE_PEOPLE, MAX_PERSON_NAME_BYTES, PeopleEdit, PersonAnchors};
pub use recluster::ReclusterProgress;
pub(crate) use view::status;
pub use view::{PeoplePage, PersonFaces, PersonRef, PersonStatus, PersonSummary};

/// A person's id, written as 16 lowercase hexadecimal characters. Derived from the face that
/// founded the person, so replaying the same records founds the same ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PersonId(pub u64);

impl PersonId {
    /// The id of a person founded by `face` (`how`: "cluster" or "split"), the `attempt`-th
    /// candidate (a later one when an earlier one is taken).
    fn derive(face: FaceId, how: &str, attempt: u32) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"facedex-person-id-v1\0");
        hasher.update(how.as_bytes());
        hasher.update(b"\0");
        hasher.update(face.0.to_be_bytes());
        hasher.update(attempt.to_be_bytes());
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Self(u64::from_be_bytes(first))
    }
}

impl fmt::Display for PersonId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:016x}", self.0)
    }
}

impl FromStr for PersonId {
    type Err = IndexError;

    fn from_str(input: &str) -> Result<Self> {
        let malformed = || IndexError::MalformedPersonId {
            input: input.to_owned(),
        };
        if input.len() != 16 || !input.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        u64::from_str_radix(input, 16).map(PersonId).map_err(|_| malformed())
    }
}

/// One person: its faces, what users said about it, and the sum of its faces' embeddings (the
/// direction of the sum is the person's prototype).
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub(crate) name: Option<String>,
    pub(crate) hidden: bool,
    /// A user edited it: it keeps its id, name and hand-placed faces through a re-cluster.
    pub(crate) kept: bool,
    pub(crate) faces: BTreeSet<FaceId>,
    sum: Vec<f32>,
}

impl Person {
    fn new(dimension: usize) -> Self {
        Self {
            name: None,
            hidden: false,
            kept: false,
            faces: BTreeSet::new(),
            sum: vec![0.0; dimension],
        }
    }

    /// Cosine similarity of `vector` to the person's prototype.
    pub(crate) fn prototype_similarity(&self, vector: &[f32]) -> f32 {
        let norm = dot(&self.sum, &self.sum).sqrt();
        if norm <= f32::EPSILON {
            return 0.0;
        }
        (dot(&self.sum, vector) / norm).clamp(-1.0, 1.0)
    }

    /// How close to the prototype a new face of this person can be expected to lie: the mean,
    /// over the members, of a member's similarity to the prototype of the others (each member
    /// left out of its own prototype, so a small person does not look tighter than it is).
    /// From the sum alone: for n unit vectors with sum S, that mean is about
    /// (|S|² − n) / (n·√(|S|²(1 − 2/n) + 1)). `None` below [`COHESION_MIN_FACES`] faces.
    pub(crate) fn expected_similarity(&self) -> Option<f32> {
        let count = self.faces.len();
        if count < COHESION_MIN_FACES {
            return None;
        }
        let count = count as f32;
        let squared = dot(&self.sum, &self.sum);
        let others = (squared * (1.0 - 2.0 / count) + 1.0).sqrt();
        (others > f32::EPSILON).then(|| ((squared - count) / (count * others)).clamp(-1.0, 1.0))
    }
}

/// Faces a person needs before its own cohesion sets how close a newcomer must be (fewer say
/// too little about its spread).
pub(crate) const COHESION_MIN_FACES: usize = 4;

/// Every person, and which face belongs to which. Fields are private: faces join and leave
/// through methods that keep the lookup, the face sets and the prototypes in step.
#[derive(Debug, Default)]
pub(crate) struct People {
    persons: BTreeMap<PersonId, Person>,
    person_of: HashMap<FaceId, PersonId>,
    /// Faces a user placed: the clusterer never moves them.
    pinned: HashSet<FaceId>,
    /// Persons a user took a face out of: the clusterer never puts it back into them.
    refused: HashMap<FaceId, BTreeSet<PersonId>>,
    /// Where a re-cluster in progress goes on (an internal id), if one is.
    recluster_cursor: Option<usize>,
}

impl People {
    pub(crate) fn person_of(&self, face_id: &FaceId) -> Option<PersonId> {
        self.person_of.get(face_id).copied()
    }

    pub(crate) fn get(&self, person_id: &PersonId) -> Option<&Person> {
        self.persons.get(person_id)
    }

    pub(crate) fn len(&self) -> usize {
        self.persons.len()
    }

    pub(crate) fn assigned_faces(&self) -> usize {
        self.person_of.len()
    }

    pub(crate) fn persons(&self) -> impl Iterator<Item = (&PersonId, &Person)> {
        self.persons.iter()
    }

    pub(crate) fn is_pinned(&self, face_id: &FaceId) -> bool {
        self.pinned.contains(face_id)
    }

    pub(crate) fn refuses(&self, face_id: &FaceId, person_id: &PersonId) -> bool {
        self.refused
            .get(face_id)
            .is_some_and(|refused| refused.contains(person_id))
    }

    /// A free id for a person founded by `face`.
    pub(crate) fn free_id(&self, face: FaceId, how: &str) -> PersonId {
        (0u32..)
            .map(|attempt| PersonId::derive(face, how, attempt))
            .find(|id| !self.persons.contains_key(id))
            .unwrap_or(PersonId(face.0 as u64))
    }

    /// Puts `face_id` (embedding `vector`) into `person_id`, creating the person if new.
    pub(crate) fn add(&mut self, face_id: FaceId, vector: &[f32], person_id: PersonId) {
        debug_assert!(!self.person_of.contains_key(&face_id), "face {face_id} has one person");
        let person = self
            .persons
            .entry(person_id)
            .or_insert_with(|| Person::new(vector.len()));
        person.faces.insert(face_id);
        person.sum.iter_mut().zip(vector).for_each(|(sum, value)| *sum += value);
        self.person_of.insert(face_id, person_id);
    }

    /// Takes `face_id` out of its person (removing a person left without faces); returns the
    /// person it was in.
    pub(crate) fn take(&mut self, face_id: &FaceId, vector: &[f32]) -> Option<PersonId> {
        let person_id = self.person_of.remove(face_id)?;
        if let Some(person) = self.persons.get_mut(&person_id) {
            person.faces.remove(face_id);
            person.sum.iter_mut().zip(vector).for_each(|(sum, value)| *sum -= value);
            if person.faces.is_empty() {
                self.persons.remove(&person_id);
                for refused in self.refused.values_mut() {
                    refused.remove(&person_id);
                }
            }
        }
        Some(person_id)
    }

    /// Forgets a face that left the index: its person, its pin and its refusals.
    pub(crate) fn face_gone(&mut self, face_id: &FaceId, vector: &[f32]) {
        self.take(face_id, vector);
        self.pinned.remove(face_id);
        self.refused.remove(face_id);
    }

    pub(crate) fn person_mut(&mut self, person_id: &PersonId) -> Option<&mut Person> {
        self.persons.get_mut(person_id)
    }

    pub(crate) fn pin(&mut self, face_id: FaceId) {
        self.pinned.insert(face_id);
    }

    pub(crate) fn refuse(&mut self, face_id: FaceId, person_id: PersonId) {
        self.refused.entry(face_id).or_default().insert(person_id);
    }

    /// Points refusals of `from` at `into` (after a merge).
    pub(crate) fn redirect_refusals(&mut self, from: PersonId, into: PersonId) {
        for refused in self.refused.values_mut() {
            if refused.remove(&from) {
                refused.insert(into);
            }
        }
    }

    /// Maps the re-cluster cursor to new internal ids (after a vacuum renumbered them).
    pub(crate) fn renumber_cursor(&mut self, renumber: impl FnOnce(usize) -> usize) {
        self.recluster_cursor = self.recluster_cursor.map(renumber);
    }

    /// Checks, in debug builds, that the lookup and the face sets agree and no person is empty.
    pub(crate) fn debug_assert_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let mut members = 0;
        for (person_id, person) in &self.persons {
            debug_assert!(!person.faces.is_empty(), "person {person_id} has faces");
            for face_id in &person.faces {
                debug_assert_eq!(self.person_of.get(face_id), Some(person_id), "face {face_id}");
            }
            members += person.faces.len();
        }
        debug_assert_eq!(members, self.person_of.len(), "every assigned face is in its person");
    }

    /// The snapshot's form of the persons (prototypes are rebuilt from the vectors on load).
    pub(crate) fn to_file(&self) -> PeopleFile {
        PeopleFile {
            persons: self
                .persons
                .iter()
                .map(|(person_id, person)| StoredPerson {
                    person_id: *person_id,
                    name: person.name.clone(),
                    hidden: person.hidden,
                    kept: person.kept,
                    faces: person.faces.iter().copied().collect(),
                })
                .collect(),
            pinned: self.pinned.iter().copied().collect(),
            refused: self
                .refused
                .iter()
                .map(|(face_id, persons)| (*face_id, persons.iter().copied().collect()))
                .collect(),
            recluster_cursor: self.recluster_cursor.map(|cursor| cursor as u64),
        }
    }

    /// Rebuilds the persons of a snapshot; `face` gives a live face's photo and vector. A face
    /// that is not live, in two persons, or sharing a photo with another face of its person
    /// makes the file corrupt: no index writes one.
    pub(crate) fn from_file<'a>(
        file: PeopleFile,
        dimension: usize,
        face: impl Fn(&FaceId) -> Option<(&'a str, std::borrow::Cow<'a, [f32]>)>,
    ) -> std::result::Result<Self, String> {
        let mut people = Self::default();
        for stored in file.persons {
            if stored.faces.is_empty() {
                return Err(format!("person {} has no faces", stored.person_id));
            }
            if stored
                .name
                .as_ref()
                .is_some_and(|name| name.len() > MAX_PERSON_NAME_BYTES)
            {
                return Err(format!(
                    "person {} has a name over {MAX_PERSON_NAME_BYTES} bytes",
                    stored.person_id
                ));
            }
            if people.persons.contains_key(&stored.person_id) {
                return Err(format!("person {} is stored twice", stored.person_id));
            }
            let mut photos = HashSet::new();
            for face_id in &stored.faces {
                let (photo, vector) = face(face_id)
                    .ok_or_else(|| format!("person {} lists face {face_id}, which is not live", stored.person_id))?;
                if people.person_of.contains_key(face_id) {
                    return Err(format!("face {face_id} is in two persons"));
                }
                if !photos.insert(photo) {
                    return Err(format!("person {} has two faces in {photo}", stored.person_id));
                }
                people.add(*face_id, &vector, stored.person_id);
            }
            let person = people.persons.get_mut(&stored.person_id).expect("added above");
            debug_assert_eq!(person.sum.len(), dimension);
            person.name = stored.name;
            person.hidden = stored.hidden;
            person.kept = stored.kept;
        }
        people.pinned = file
            .pinned
            .into_iter()
            .filter(|face_id| face(face_id).is_some())
            .collect();
        for (face_id, persons) in file.refused {
            if face(&face_id).is_some() {
                people.refused.insert(face_id, persons.into_iter().collect());
            }
        }
        people.recluster_cursor = file.recluster_cursor.and_then(|cursor| usize::try_from(cursor).ok());
        people.debug_assert_invariants();
        Ok(people)
    }
}

/// The persons in a snapshot.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PeopleFile {
    persons: Vec<StoredPerson>,
    pinned: Vec<FaceId>,
    refused: Vec<(FaceId, Vec<PersonId>)>,
    recluster_cursor: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredPerson {
    person_id: PersonId,
    name: Option<String>,
    hidden: bool,
    kept: bool,
    faces: Vec<FaceId>,
}

#[cfg(all(test, feature = "synthetic"))]
mod tests;
