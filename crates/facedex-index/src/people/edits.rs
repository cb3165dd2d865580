//! What users decide about persons: rename, hide, merge, and move faces (a split moves them to a
//! new person). Each edit is checked in full before anything changes, and makes the persons it
//! touches kept: they and their faces (pinned) survive a re-cluster as the user left them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};
use crate::index::IndexState;
use crate::people::PersonId;
use crate::people::assign::face_and_vector;
use crate::record::FaceId;

/// The longest person name, in bytes.
pub const MAX_PERSON_NAME_BYTES: usize = 200;
/// The most persons one merge takes.
pub const MAX_MERGE_PEOPLE: usize = 100;
/// The most faces one move takes.
pub const MAX_EDIT_FACES: usize = 10_000;

/// A change a user makes to the people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Externally tagged: face ids are u128, which serde cannot buffer for an internal tag.
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PeopleEdit {
    /// Names a person (`None` clears the name).
    Rename {
        /// The person.
        person: PersonId,
        /// The new name.
        name: Option<String>,
    },
    /// Hides a person from listings (or shows it again); its faces stay searchable.
    Hide {
        /// The person.
        person: PersonId,
        /// Hidden or not.
        hidden: bool,
    },
    /// Moves every face of `from` into `into`; the persons of `from` are gone.
    Merge {
        /// The person that stays.
        into: PersonId,
        /// The persons merged into it.
        from: Vec<PersonId>,
    },
    /// Moves faces into `to`, or into a new person when `to` is `None` (a split).
    MoveFaces {
        /// The faces.
        faces: Vec<FaceId>,
        /// Where they go.
        to: Option<PersonId>,
    },
}

impl PeopleEdit {
    /// Checks the edit's own bounds (before the index is looked at).
    pub fn check_bounds(&self) -> Result<()> {
        let invalid = |reason: String| Err(IndexError::InvalidPeopleEdit { reason });
        match self {
            Self::Rename { name: Some(name), .. } if name.trim().is_empty() => {
                invalid("a name must not be blank; clear it instead".into())
            }
            Self::Rename { name: Some(name), .. }
                if name.len() > MAX_PERSON_NAME_BYTES || name.chars().any(char::is_control) =>
            {
                invalid(format!(
                    "a name is at most {MAX_PERSON_NAME_BYTES} bytes without control characters, got {} bytes",
                    name.len()
                ))
            }
            Self::Merge { from, .. } if from.is_empty() || from.len() > MAX_MERGE_PEOPLE => invalid(format!(
                "a merge takes 1 to {MAX_MERGE_PEOPLE} persons, got {}",
                from.len()
            )),
            Self::Merge { into, from } if from.contains(into) => {
                invalid(format!("person {into} cannot be merged into itself"))
            }
            Self::MoveFaces { faces, .. } if faces.is_empty() || faces.len() > MAX_EDIT_FACES => {
                invalid(format!("a move takes 1 to {MAX_EDIT_FACES} faces, got {}", faces.len()))
            }
            _ => Ok(()),
        }
    }
}

/// For each person an edit names, one of its faces (the smallest id): written with an edit that
/// goes through a log, so an indexer whose persons got other ids (its faces arrived in another
/// order) finds the same persons by their faces.
pub type PersonAnchors = BTreeMap<PersonId, FaceId>;

impl PeopleEdit {
    /// The persons the edit names.
    pub fn named_persons(&self) -> Vec<PersonId> {
        match self {
            Self::Rename { person, .. } | Self::Hide { person, .. } => vec![*person],
            Self::Merge { into, from } => std::iter::once(*into).chain(from.iter().copied()).collect(),
            Self::MoveFaces { to, .. } => to.iter().copied().collect(),
        }
    }

    /// The edit with every person it names replaced by `map`'s answer.
    fn map_persons(&self, map: impl Fn(PersonId) -> PersonId) -> Self {
        match self {
            Self::Rename { person, name } => Self::Rename {
                person: map(*person),
                name: name.clone(),
            },
            Self::Hide { person, hidden } => Self::Hide {
                person: map(*person),
                hidden: *hidden,
            },
            Self::Merge { into, from } => Self::Merge {
                into: map(*into),
                from: from.iter().map(|person| map(*person)).collect(),
            },
            Self::MoveFaces { faces, to } => Self::MoveFaces {
                faces: faces.clone(),
                to: to.map(map),
            },
        }
    }
}

/// The anchors of the persons `edit` names, as the state has them.
pub(crate) fn anchors(state: &IndexState, edit: &PeopleEdit) -> PersonAnchors {
    edit.named_persons()
        .into_iter()
        .filter_map(|person_id| Some((person_id, *state.people.get(&person_id)?.faces.first()?)))
        .collect()
}

/// `edit` with each person it names found by its anchor: the named person while it still holds
/// the anchor face, else the person that does (the same person under another id).
pub(crate) fn resolve_anchors(state: &IndexState, edit: &PeopleEdit, anchors: &PersonAnchors) -> PeopleEdit {
    edit.map_persons(|person_id| {
        let Some(anchor) = anchors.get(&person_id) else {
            return person_id;
        };
        let holds_anchor = state
            .people
            .get(&person_id)
            .is_some_and(|person| person.faces.contains(anchor));
        match holds_anchor {
            true => person_id,
            false => state.people.person_of(anchor).unwrap_or(person_id),
        }
    })
}

/// Checks `edit` against the state: every person and face it names exists, and it would not
/// put two faces of one photo into one person.
pub(crate) fn check(state: &IndexState, edit: &PeopleEdit) -> Result<()> {
    edit.check_bounds()?;
    match edit {
        PeopleEdit::Rename { person, .. } | PeopleEdit::Hide { person, .. } => faces_of(state, *person).map(drop),
        PeopleEdit::Merge { into, from } => {
            faces_of(state, *into)?;
            let mut faces = Vec::new();
            for person_id in from {
                faces.extend(faces_of(state, *person_id)?);
            }
            check_one_face_per_photo(state, Some(*into), &faces)
        }
        PeopleEdit::MoveFaces { faces, to } => {
            for face_id in faces {
                if state.ids.internal_id(face_id).is_none() {
                    return Err(IndexError::UnknownFace {
                        face_id: face_id.to_string(),
                    });
                }
            }
            if let Some(to) = to {
                faces_of(state, *to)?;
            }
            check_one_face_per_photo(state, *to, &distinct(faces))
        }
    }
}

/// Applies a [`check`]ed edit; returns the person it leaves in place (the renamed, hidden,
/// merged-into or receiving person).
pub(crate) fn apply(state: &mut IndexState, edit: &PeopleEdit) -> PersonId {
    debug_assert!(check(state, edit).is_ok(), "edits are checked first");
    match edit {
        PeopleEdit::Rename { person, name } => {
            if let Some(kept) = keep(state, *person) {
                kept.name = name.as_ref().map(|name| name.trim().to_owned());
            }
            *person
        }
        PeopleEdit::Hide { person, hidden } => {
            if let Some(kept) = keep(state, *person) {
                kept.hidden = *hidden;
            }
            *person
        }
        PeopleEdit::Merge { into, from } => {
            for person_id in from {
                let faces = faces_of(state, *person_id).unwrap_or_default();
                move_faces(state, &faces, *into);
                state.people.redirect_refusals(*person_id, *into);
            }
            *into
        }
        PeopleEdit::MoveFaces { faces, to } => {
            let faces = distinct(faces);
            let target = match (to, faces.first()) {
                (Some(to), _) => *to,
                (None, Some(first)) => state.people.free_id(*first, "split"),
                (None, None) => return PersonId(0),
            };
            let mut sources = BTreeSet::new();
            for face_id in &faces {
                if let Some(from) = state.people.person_of(face_id).filter(|from| *from != target) {
                    state.people.refuse(*face_id, from);
                    sources.insert(from);
                }
            }
            move_faces(state, &faces, target);
            // What stayed behind was reviewed too: it stays apart from the moved faces.
            for source in sources {
                for face_id in faces_of(state, source).unwrap_or_default() {
                    state.people.refuse(face_id, target);
                }
                keep(state, source);
            }
            target
        }
    }
}

fn distinct(faces: &[FaceId]) -> Vec<FaceId> {
    faces.iter().copied().collect::<BTreeSet<_>>().into_iter().collect()
}

/// The faces of a person, or `UnknownPerson`.
fn faces_of(state: &IndexState, person_id: PersonId) -> Result<Vec<FaceId>> {
    state
        .people
        .get(&person_id)
        .map(|person| person.faces.iter().copied().collect())
        .ok_or_else(|| IndexError::UnknownPerson {
            person_id: person_id.to_string(),
        })
}

/// Marks a person kept and pins its faces; returns it for the edit.
fn keep(state: &mut IndexState, person_id: PersonId) -> Option<&mut crate::people::Person> {
    for face_id in faces_of(state, person_id).ok()? {
        state.people.pin(face_id);
    }
    let person = state.people.person_mut(&person_id)?;
    person.kept = true;
    Some(person)
}

/// Refuses a move that would put two faces of one photo into one person: among the moved
/// faces, or between one of them and a face `target` keeps.
fn check_one_face_per_photo(state: &IndexState, target: Option<PersonId>, moving: &[FaceId]) -> Result<()> {
    let moving_set: BTreeSet<&FaceId> = moving.iter().collect();
    let mut photos: HashMap<&str, FaceId> = HashMap::new();
    let staying = target
        .and_then(|target| state.people.get(&target))
        .map(|person| {
            person
                .faces
                .iter()
                .filter(|face| !moving_set.contains(face))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for face_id in staying.into_iter().chain(moving) {
        let Some((_, face)) = state.ids.live_face_by_id(face_id) else {
            continue;
        };
        if let Some(other) = photos.insert(face.metadata.image_uri.as_str(), *face_id) {
            return Err(IndexError::PeopleEditConflict {
                reason: format!(
                    "faces {other} and {face_id} are both in {}: a person appears at most once per photo",
                    face.metadata.image_uri
                ),
            });
        }
    }
    Ok(())
}

/// Moves checked faces into `target`, pins them, and keeps the target.
fn move_faces(state: &mut IndexState, faces: &[FaceId], target: PersonId) {
    for face_id in faces {
        let Some((face_id, vector)) = state.ids.internal_id(face_id).and_then(|id| face_and_vector(state, id)) else {
            continue;
        };
        if state.people.person_of(&face_id) != Some(target) {
            state.people.take(&face_id, &vector);
            state.people.add(face_id, &vector, target);
        }
        state.people.pin(face_id);
    }
    keep(state, target);
    state.people.debug_assert_invariants();
}

impl crate::index::FaceIndex {
    /// Checks `edit` against the people as they are now, changing nothing, and returns the
    /// anchors to write with it: what an edit that goes through a log is checked with before
    /// it is written there.
    pub fn check_people_edit(&self, edit: &PeopleEdit) -> Result<PersonAnchors> {
        let state = self.state.read();
        check(&state, edit)?;
        Ok(anchors(&state, edit))
    }

    /// `edit` with its persons found by `anchors` (see [`PersonAnchors`]).
    pub(crate) fn resolve_people_anchors(&self, edit: &PeopleEdit, anchors: &PersonAnchors) -> PeopleEdit {
        resolve_anchors(&self.state.read(), edit, anchors)
    }

    /// Checks `edit`, calls `make_durable` (the store journals the edit there), then applies
    /// it. The caller holds the writer lock, so nothing changes between the check and the
    /// apply.
    pub(crate) fn edit_people_locked(
        &self,
        edit: &PeopleEdit,
        make_durable: impl FnOnce() -> Result<()>,
    ) -> Result<PersonId> {
        check(&self.state.read(), edit)?;
        make_durable()?;
        let mut state = self.state.write();
        let person_id = apply(&mut state, edit);
        state.debug_assert_invariants();
        Ok(person_id)
    }
}
