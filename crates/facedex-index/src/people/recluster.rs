//! Re-clustering: rebuilds the automatic part of the people from the graph, keeping what users
//! decided (kept persons and their pinned faces). Runs in steps of bounded time and resumes
//! where it stopped, also after a restart: the cursor is saved in the snapshot.

use std::time::{Duration, Instant};

use crate::index::FaceIndex;
use crate::people::Placements;
use crate::people::assign::face_and_vector;

/// Faces placed between checks of the time budget.
const STEP_FACES: usize = 2048;

/// How far a re-cluster got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReclusterProgress {
    /// Whether every face has been visited.
    pub finished: bool,
    /// Slots visited so far (of `slots`).
    pub visited: usize,
    /// Slots in the index (live faces and tombstones).
    pub slots: usize,
    /// What this call placed.
    pub placements: Placements,
    /// Persons now.
    pub people: usize,
}

impl FaceIndex {
    /// Re-clusters for at most about `budget`: starts over when `restart` or when none is in
    /// progress (taking every face a user did not place out of its person), then places the
    /// faces from the cursor on. The caller holds the writer lock.
    pub(crate) fn recluster_locked(&self, budget: Duration, restart: bool) -> ReclusterProgress {
        let started = Instant::now();
        let mut cursor = {
            let mut state = self.state.write();
            match state.people.recluster_cursor {
                Some(cursor) if !restart => cursor,
                _ => {
                    let unpinned: Vec<usize> = state
                        .ids
                        .slots_iter()
                        .filter_map(|(internal_id, face)| {
                            let face = face?;
                            (state.people.person_of(&face.face_id).is_some() && !state.people.is_pinned(&face.face_id))
                                .then_some(internal_id)
                        })
                        .collect();
                    for internal_id in unpinned {
                        if let Some((face_id, vector)) = face_and_vector(&state, internal_id) {
                            state.people.take(&face_id, &vector);
                        }
                    }
                    state.people.recluster_cursor = Some(0);
                    0
                }
            }
        };
        let mut placements = Placements::default();
        loop {
            let slots = self.state.read().ids.slots();
            if cursor >= slots {
                let mut state = self.state.write();
                state.people.recluster_cursor = None;
                return ReclusterProgress {
                    finished: true,
                    visited: slots,
                    slots,
                    placements,
                    people: state.people.len(),
                };
            }
            let step_end = (cursor + STEP_FACES).min(slots);
            let step: Vec<usize> = (cursor..step_end).collect();
            placements.add(self.place_faces_locked(&step));
            cursor = step_end;
            let mut state = self.state.write();
            state.people.recluster_cursor = Some(cursor);
            if started.elapsed() >= budget {
                return ReclusterProgress {
                    finished: false,
                    visited: cursor,
                    slots,
                    placements,
                    people: state.people.len(),
                };
            }
        }
    }
}
