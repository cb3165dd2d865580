//! Placing faces into persons, one face at a time, as they arrive (and, for a re-cluster, in
//! internal-id order). The rule, made to resist what goes wrong in Immich's single linkage:
//!
//! - a face's neighbours come from the HNSW graph (`neighbours` nearest, those within
//!   `link_similarity` counted), never from a scan;
//! - it **joins** the person that the most of its neighbours belong to, provided at least
//!   `agreeing_members` of them do (or all of a smaller person's faces) **and** the face lies
//!   within `prototype_similarity` of that person's prototype, and not more than
//!   `cohesion_margin` below where the person's own faces lie from it: one look-alike
//!   neighbour cannot pull a face into a person, a chain of look-alikes drifts away from the
//!   prototype, and a sibling who resembles a tight person is still further from it than its
//!   members are;
//! - otherwise it **founds** a person with unassigned neighbours that all lie within
//!   `link_similarity` of each other (complete linkage), `seed_faces` of them at least;
//! - otherwise it **waits**, unassigned, until a later face founds a person with it or
//!   recruits it: after joining or founding, the face's unassigned neighbours that lie within
//!   the prototype threshold join too;
//! - two faces of one photo never share a person (cannot-link), a face never goes back to a
//!   person a user took it out of, and faces too small or unsure to judge are left out.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::distance::dot;
use crate::index::{FaceIndex, IndexState};
use crate::people::{PeopleConfig, PersonId};
use crate::record::FaceId;

/// What placing faces did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placements {
    /// Faces that joined an existing person.
    pub joined: usize,
    /// Persons founded.
    pub founded: usize,
    /// Faces that went into a person with one of the faces above (founding members and
    /// recruited waiting faces).
    pub recruited: usize,
    /// Faces left waiting for agreement.
    pub waiting: usize,
    /// Faces too small or unsure to judge.
    pub skipped: usize,
}

impl Placements {
    pub(crate) fn add(&mut self, other: Placements) {
        self.joined += other.joined;
        self.founded += other.founded;
        self.recruited += other.recruited;
        self.waiting += other.waiting;
        self.skipped += other.skipped;
    }
}

/// A face near the one being placed.
struct Neighbour {
    internal_id: usize,
    face_id: FaceId,
    similarity: f32,
}

/// What the graph says about one face to place.
enum Neighbourhood {
    Skipped,
    Judged(Vec<Neighbour>),
}

impl FaceIndex {
    /// Places the live faces at `internal_ids` that are in no person yet. Neighbours are looked
    /// up in parallel under the read lock, then faces are placed in order under the write lock
    /// (so faces of one batch see each other). The caller holds the writer lock.
    pub(crate) fn place_faces_locked(&self, internal_ids: &[usize]) -> Placements {
        let config = &self.config.people;
        let mut placements = Placements::default();
        if !config.enabled || internal_ids.is_empty() {
            return placements;
        }
        // The nearest few are all a placement looks at: a wider search finds the same ones.
        let ef = config.neighbours + 1;
        let neighbourhoods: Vec<(usize, Neighbourhood)> = {
            let state = self.state.read();
            internal_ids
                .par_iter()
                .filter_map(|&internal_id| {
                    let face = state.ids.live_face(internal_id)?;
                    if state.people.person_of(&face.face_id).is_some() {
                        return None;
                    }
                    if config.skip_reason(&face.metadata).is_some() {
                        return Some((internal_id, Neighbourhood::Skipped));
                    }
                    let vector = state.vector(internal_id)?;
                    let found = neighbours_of(&state, config, internal_id, &vector, ef);
                    Some((internal_id, Neighbourhood::Judged(found)))
                })
                .collect()
        };
        let mut state = self.state.write();
        for (internal_id, neighbourhood) in neighbourhoods {
            match neighbourhood {
                Neighbourhood::Skipped => placements.skipped += 1,
                Neighbourhood::Judged(neighbours) => {
                    placements.add(place_one(&mut state, config, internal_id, &neighbours));
                }
            }
        }
        state.people.debug_assert_invariants();
        placements
    }
}

/// The face's judged neighbours within the link threshold, nearest first.
fn neighbours_of(
    state: &IndexState,
    config: &PeopleConfig,
    internal_id: usize,
    vector: &[f32],
    ef: usize,
) -> Vec<Neighbour> {
    state
        .nearest(vector, config.neighbours + 1, ef)
        .into_iter()
        .filter(|(other, similarity)| *other != internal_id && *similarity >= config.link_similarity)
        .filter_map(|(other, similarity)| {
            let face = state.ids.live_face(other)?;
            config.skip_reason(&face.metadata).is_none().then_some(Neighbour {
                internal_id: other,
                face_id: face.face_id,
                similarity,
            })
        })
        .collect()
}

/// Places one face (still unassigned and live: checked again, the state may have moved since
/// its neighbours were found).
fn place_one(
    state: &mut IndexState,
    config: &PeopleConfig,
    internal_id: usize,
    neighbours: &[Neighbour],
) -> Placements {
    let mut placements = Placements::default();
    let Some((face_id, vector)) = face_and_vector(state, internal_id) else {
        return placements;
    };
    if state.people.person_of(&face_id).is_some() {
        return placements;
    }
    let person_id = match person_to_join(state, config, internal_id, &vector, neighbours) {
        Some(person_id) => {
            state.people.add(face_id, &vector, person_id);
            placements.joined += 1;
            person_id
        }
        None => {
            let members = founding_members(state, config, internal_id, &vector, neighbours);
            if members.len() < config.seed_faces {
                placements.waiting += 1;
                return placements;
            }
            let person_id = state.people.free_id(face_id, "cluster");
            for member in &members {
                if let Some((member_face, member_vector)) = face_and_vector(state, *member) {
                    state.people.add(member_face, &member_vector, person_id);
                }
            }
            placements.founded += 1;
            placements.recruited += members.len() - 1;
            person_id
        }
    };
    for neighbour in neighbours {
        if may_join(state, config, neighbour.internal_id, person_id)
            && let Some((face, neighbour_vector)) = face_and_vector(state, neighbour.internal_id)
        {
            state.people.add(face, &neighbour_vector, person_id);
            placements.recruited += 1;
        }
    }
    placements
}

/// The person the face should join: the one most of its neighbours are in, with enough of
/// them agreeing and the prototype close enough; ties go to the closer prototype.
fn person_to_join(
    state: &IndexState,
    config: &PeopleConfig,
    internal_id: usize,
    vector: &[f32],
    neighbours: &[Neighbour],
) -> Option<PersonId> {
    let mut votes: BTreeMap<PersonId, usize> = BTreeMap::new();
    for neighbour in neighbours {
        if let Some(person_id) = state.people.person_of(&neighbour.face_id) {
            *votes.entry(person_id).or_default() += 1;
        }
    }
    let face_id = state.ids.live_face(internal_id)?.face_id;
    votes
        .into_iter()
        .filter_map(|(person_id, count)| {
            let person = state.people.get(&person_id)?;
            let needed = config.agreeing_members.min(person.faces.len());
            let similarity = person.prototype_similarity(vector);
            (count >= needed
                && config.fits(person, similarity)
                && !state.people.refuses(&face_id, &person_id)
                && !person_has_face_in_photo_of(state, person_id, internal_id))
            .then_some((count, similarity, person_id))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map(|(_, _, person_id)| person_id)
}

/// The face and those of its unassigned neighbours (nearest first) that are within the link
/// threshold of every member taken so far, one per photo.
fn founding_members(
    state: &IndexState,
    config: &PeopleConfig,
    internal_id: usize,
    vector: &[f32],
    neighbours: &[Neighbour],
) -> Vec<usize> {
    let mut members = vec![internal_id];
    let mut member_vectors: Vec<Cow<'_, [f32]>> = vec![Cow::Borrowed(vector)];
    let mut photos: Vec<&str> = photo_of(state, internal_id).into_iter().collect();
    for neighbour in neighbours {
        if state.people.person_of(&neighbour.face_id).is_some() || state.people.is_pinned(&neighbour.face_id) {
            continue;
        }
        let (Some(photo), Some(other)) = (
            photo_of(state, neighbour.internal_id),
            state.vector(neighbour.internal_id),
        ) else {
            continue;
        };
        if photos.contains(&photo) {
            continue;
        }
        if member_vectors
            .iter()
            .skip(1)
            .all(|member| dot(member, &other) >= config.link_similarity)
        {
            debug_assert!(neighbour.similarity >= config.link_similarity);
            members.push(neighbour.internal_id);
            member_vectors.push(other);
            photos.push(photo);
        }
    }
    members
}

/// Whether the unassigned face at `internal_id` may be recruited into `person_id`.
fn may_join(state: &IndexState, config: &PeopleConfig, internal_id: usize, person_id: PersonId) -> bool {
    let (Some(face), Some(vector), Some(person)) = (
        state.ids.live_face(internal_id),
        state.vector(internal_id),
        state.people.get(&person_id),
    ) else {
        return false;
    };
    state.people.person_of(&face.face_id).is_none()
        && !state.people.refuses(&face.face_id, &person_id)
        && config.fits(person, person.prototype_similarity(&vector))
        && !person_has_face_in_photo_of(state, person_id, internal_id)
}

/// Whether `person_id` already holds another face of the photo of the face at `internal_id`.
pub(crate) fn person_has_face_in_photo_of(state: &IndexState, person_id: PersonId, internal_id: usize) -> bool {
    let Some(photo) = photo_of(state, internal_id) else {
        return false;
    };
    state.ids.of_image(photo).iter().any(|other| {
        *other != internal_id
            && state
                .ids
                .live_face(*other)
                .is_some_and(|face| state.people.person_of(&face.face_id) == Some(person_id))
    })
}

fn photo_of(state: &IndexState, internal_id: usize) -> Option<&str> {
    state
        .ids
        .live_face(internal_id)
        .map(|face| face.metadata.image_uri.as_str())
}

/// The face id and a copy of the vector of a live face.
pub(crate) fn face_and_vector(state: &IndexState, internal_id: usize) -> Option<(FaceId, Vec<f32>)> {
    let face = state.ids.live_face(internal_id)?;
    Some((face.face_id, state.vector(internal_id)?.into_owned()))
}
