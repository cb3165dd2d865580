//! The clustering rule's settings (`[index.people]`) and which faces it leaves out.

use serde::{Deserialize, Serialize};

use crate::people::Person;
use crate::record::FaceMetadata;

/// Settings of the people clustering (`[index.people]` in the config file). The README's
/// "People" section gives the evidence behind the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeopleConfig {
    /// Group faces into persons as they are indexed.
    pub enabled: bool,
    /// Faces whose box is narrower or shorter than this (pixels) are not judged.
    pub min_face_side_px: f32,
    /// Faces the detector is less sure of than this are not judged (Immich: 0.7).
    pub min_detection_score: f32,
    /// Faces of lower quality than this (blurred, turned away, tiny) are not judged; faces
    /// indexed without a quality score are judged by the two rules above alone.
    pub min_quality: f32,
    /// Nearest faces looked at for each face (an HNSW search).
    pub neighbours: usize,
    /// Two faces closer than this cosine similarity count as neighbours.
    pub link_similarity: f32,
    /// Faces that must agree, pairwise within `link_similarity` and from different photos,
    /// before they found a new person.
    pub seed_faces: usize,
    /// Neighbours of one person a face needs (or all of the person's faces, if it has fewer)
    /// before it may join that person.
    pub agreeing_members: usize,
    /// And the face's cosine similarity to the person's prototype (the mean of its faces) it
    /// needs.
    pub prototype_similarity: f32,
    /// And, once the person has a few faces, it may lie at most this far below the similarity
    /// the person's own faces have to its prototype: a tight person does not take in a face
    /// that merely resembles it (a sibling), a loose one keeps its spread.
    pub cohesion_margin: f32,
}

impl Default for PeopleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_face_side_px: 24.0,
            min_detection_score: 0.7,
            min_quality: 0.3,
            neighbours: 24,
            link_similarity: 0.45,
            seed_faces: 3,
            agreeing_members: 2,
            prototype_similarity: 0.55,
            cohesion_margin: 0.12,
        }
    }
}

impl PeopleConfig {
    /// Whether a face at `similarity` to `person`'s prototype is close enough to join it.
    pub(crate) fn fits(&self, person: &Person, similarity: f32) -> bool {
        similarity >= self.prototype_similarity
            && person
                .expected_similarity()
                .is_none_or(|expected| similarity >= expected - self.cohesion_margin)
    }

    /// Rejects settings the rule cannot work with.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let similarity = |name: &str, value: f32| match (-1.0..=1.0).contains(&value) {
            true => Ok(()),
            false => Err(format!(
                "index.people.{name} must be a cosine similarity in [-1, 1], got {value}"
            )),
        };
        similarity("link_similarity", self.link_similarity)?;
        similarity("prototype_similarity", self.prototype_similarity)?;
        if !(0.0..=2.0).contains(&self.cohesion_margin) {
            return Err(format!(
                "index.people.cohesion_margin must be a cosine difference in [0, 2], got {}",
                self.cohesion_margin
            ));
        }
        if !(self.min_face_side_px.is_finite() && self.min_face_side_px >= 0.0) {
            return Err(format!(
                "index.people.min_face_side_px must be a size in pixels, got {}",
                self.min_face_side_px
            ));
        }
        if !self.min_detection_score.is_finite() {
            return Err("index.people.min_detection_score must be a number".into());
        }
        if !(0.0..=1.0).contains(&self.min_quality) {
            return Err(format!(
                "index.people.min_quality must be a quality in [0, 1], got {}",
                self.min_quality
            ));
        }
        if !(1..=256).contains(&self.neighbours) {
            return Err(format!(
                "index.people.neighbours must be between 1 and 256, got {}",
                self.neighbours
            ));
        }
        if !(2..=self.neighbours + 1).contains(&self.seed_faces) {
            return Err(format!(
                "index.people.seed_faces must be between 2 and neighbours + 1 ({}), got {}",
                self.neighbours + 1,
                self.seed_faces
            ));
        }
        if !(1..=self.neighbours).contains(&self.agreeing_members) {
            return Err(format!(
                "index.people.agreeing_members must be between 1 and neighbours ({}), got {}",
                self.neighbours, self.agreeing_members
            ));
        }
        Ok(())
    }

    /// Why the clusterer does not judge a face, if it does not.
    pub fn skip_reason(&self, metadata: &FaceMetadata) -> Option<SkipReason> {
        let side_px = (metadata.bounding_box.x2 - metadata.bounding_box.x1)
            .min(metadata.bounding_box.y2 - metadata.bounding_box.y1);
        if side_px < self.min_face_side_px {
            return Some(SkipReason::TooSmall {
                side_px,
                min_side_px: self.min_face_side_px,
            });
        }
        if metadata.detection_score < self.min_detection_score {
            return Some(SkipReason::LowScore {
                score: metadata.detection_score,
                min_score: self.min_detection_score,
            });
        }
        if let Some(quality) = metadata.traits.quality
            && quality < self.min_quality
        {
            return Some(SkipReason::LowQuality {
                quality,
                min_quality: self.min_quality,
            });
        }
        None
    }
}

/// Why a face is left out of the people.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SkipReason {
    /// Its box is too small to judge.
    TooSmall {
        /// The box's shorter side.
        side_px: f32,
        /// `index.people.min_face_side_px`.
        min_side_px: f32,
    },
    /// The detector is too unsure it is a face.
    LowScore {
        /// The detection score.
        score: f32,
        /// `index.people.min_detection_score`.
        min_score: f32,
    },
    /// The face is blurred, turned away or tiny: its quality is too low to judge.
    LowQuality {
        /// The face's quality.
        quality: f32,
        /// `index.people.min_quality`.
        min_quality: f32,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooSmall { side_px, min_side_px } => {
                write!(
                    formatter,
                    "too small to judge ({side_px:.0} px, people need {min_side_px:.0})"
                )
            }
            Self::LowScore { score, min_score } => {
                write!(
                    formatter,
                    "too unsure to judge (detection score {score:.2}, people need {min_score:.2})"
                )
            }
            Self::LowQuality { quality, min_quality } => {
                write!(
                    formatter,
                    "too poor to judge (quality {quality:.2}, people need {min_quality:.2})"
                )
            }
        }
    }
}
