//! Reading the people: listings ordered by size, one person's faces, and a face's status.

use crate::error::{IndexError, Result};
use crate::index::{FaceIndex, FaceView, IndexState, StoredFace};
use crate::people::{PeopleConfig, Person, PersonId, SkipReason};
use crate::record::FaceId;

/// A person as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonSummary {
    /// Its id.
    pub person_id: PersonId,
    /// Its name, once a user gave one.
    pub name: Option<String>,
    /// Hidden by a user.
    pub hidden: bool,
    /// Its faces.
    pub face_count: usize,
    /// The face closest to the person's prototype: the one to show (always set while the
    /// people's invariants hold: a person has live faces).
    pub representative: Option<FaceView>,
}

/// A page of persons, the largest first.
#[derive(Debug, Clone, PartialEq)]
pub struct PeoplePage {
    /// The persons of the page.
    pub persons: Vec<PersonSummary>,
    /// Persons listed in all (hidden ones only when asked for).
    pub total: usize,
    /// Faces in no person (waiting or skipped).
    pub unassigned_faces: usize,
}

/// A person and a page of its faces.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonFaces {
    /// The person.
    pub summary: PersonSummary,
    /// Its faces in face id order, from the requested offset.
    pub faces: Vec<FaceView>,
    /// The distinct photos of the page's faces, in URI order.
    pub images: Vec<String>,
}

/// A person named in a search hit or a face.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonRef {
    /// Its id.
    pub person_id: PersonId,
    /// Its name, if any.
    pub name: Option<String>,
}

/// Where a face stands with the people.
#[derive(Debug, Clone, PartialEq)]
pub enum PersonStatus {
    /// In a person.
    Assigned(PersonRef),
    /// Judged, but no person agreed on it yet.
    Waiting,
    /// Not judged, and why.
    Skipped(SkipReason),
    /// People are switched off.
    Disabled,
}

impl FaceIndex {
    /// Persons, the most faces first (ties by id), `limit` from `offset`; hidden ones only when
    /// `include_hidden`.
    pub fn list_people(&self, offset: usize, limit: usize, include_hidden: bool) -> PeoplePage {
        let state = self.state.read();
        let mut listed: Vec<(&PersonId, &Person)> = state
            .people
            .persons()
            .filter(|(_, person)| include_hidden || !person.hidden)
            .collect();
        listed.sort_by(|a, b| b.1.faces.len().cmp(&a.1.faces.len()).then(a.0.cmp(b.0)));
        PeoplePage {
            total: listed.len(),
            persons: listed
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|(person_id, person)| summary(&state, &self.config.people, *person_id, person))
                .collect(),
            unassigned_faces: state.ids.live_faces() - state.people.assigned_faces(),
        }
    }

    /// One person, with `limit` of its faces from `offset`.
    pub fn person(&self, person_id: &PersonId, offset: usize, limit: usize) -> Result<PersonFaces> {
        let state = self.state.read();
        let person = state.people.get(person_id).ok_or_else(|| IndexError::UnknownPerson {
            person_id: person_id.to_string(),
        })?;
        let faces: Vec<FaceView> = person
            .faces
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|face_id| view(&state, &self.config.people, face_id))
            .collect();
        let mut images: Vec<String> = faces.iter().map(|face| face.metadata.image_uri.clone()).collect();
        images.sort();
        images.dedup();
        Ok(PersonFaces {
            summary: summary(&state, &self.config.people, *person_id, person),
            faces,
            images,
        })
    }

    /// A person as listings show it.
    pub fn person_summary(&self, person_id: &PersonId) -> Result<PersonSummary> {
        let state = self.state.read();
        let person = state.people.get(person_id).ok_or_else(|| IndexError::UnknownPerson {
            person_id: person_id.to_string(),
        })?;
        Ok(summary(&state, &self.config.people, *person_id, person))
    }

    /// Where the face stands with the people.
    pub fn person_status(&self, face_id: &FaceId) -> Result<PersonStatus> {
        let state = self.state.read();
        let (_, face) = state
            .ids
            .live_face_by_id(face_id)
            .ok_or_else(|| IndexError::UnknownFace {
                face_id: face_id.to_string(),
            })?;
        Ok(status(&state, &self.config.people, face))
    }

    /// Persons in the index.
    pub fn people_count(&self) -> usize {
        self.state.read().people.len()
    }
}

/// The person of a face, as a search hit names it.
fn person_ref(state: &IndexState, face_id: &FaceId) -> Option<PersonRef> {
    let person_id = state.people.person_of(face_id)?;
    Some(PersonRef {
        person_id,
        name: state.people.get(&person_id)?.name.clone(),
    })
}

/// Where a live face stands with the people.
pub(crate) fn status(state: &IndexState, config: &PeopleConfig, face: &StoredFace) -> PersonStatus {
    if let Some(person) = person_ref(state, &face.face_id) {
        return PersonStatus::Assigned(person);
    }
    if !config.enabled {
        return PersonStatus::Disabled;
    }
    match config.skip_reason(&face.metadata) {
        Some(reason) => PersonStatus::Skipped(reason),
        None => PersonStatus::Waiting,
    }
}

fn view(state: &IndexState, config: &PeopleConfig, face_id: &FaceId) -> Option<FaceView> {
    let (_, face) = state.ids.live_face_by_id(face_id)?;
    Some(FaceView {
        face_id: face.face_id,
        metadata: face.metadata.clone(),
        embedding: None,
        person: status(state, config, face),
    })
}

fn summary(state: &IndexState, config: &PeopleConfig, person_id: PersonId, person: &Person) -> PersonSummary {
    debug_assert!(!person.faces.is_empty(), "a person without faces is gone");
    let representative = person
        .faces
        .iter()
        .filter_map(|face_id| {
            let vector = state.vector(state.ids.internal_id(face_id)?)?;
            Some((person.prototype_similarity(&vector), *face_id))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, face_id)| face_id)
        .or_else(|| person.faces.first().copied())
        .and_then(|face_id| view(state, config, &face_id));
    PersonSummary {
        person_id,
        name: person.name.clone(),
        hidden: person.hidden,
        face_count: person.faces.len(),
        representative,
    }
}
