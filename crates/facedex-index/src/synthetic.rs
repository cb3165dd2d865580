//! Face-like synthetic embeddings for tests and benchmarks (feature `synthetic`).
//!
//! Uniform random unit vectors are a poor stand-in for faces: in 512 dimensions they are all
//! nearly orthogonal and any graph finds "neighbours" that are no closer than the rest. Real
//! embeddings come in identities: several photos of one person sit at cosine 0.5–0.8 from each
//! other and near 0 from everyone else. Here each identity has a random unit centre and a
//! per-identity spread, and each sample is `normalise(a·centre + √(1−a²)·noise)` with `a²`
//! drawn from [0.5, 0.8], so two samples of one identity have cosine ≈ `a²`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;

use crate::record::{BoundingBox, FaceId, FaceMetadata, FaceRecord};

/// The model id of [`FaceLikeVectors::record`]s.
pub const SYNTHETIC_MODEL_ID: &str = "synthetic";

/// Unit vectors grouped by identity, stored row-major.
pub struct FaceLikeVectors {
    /// Components per vector.
    pub dimension: usize,
    /// `len() * dimension` floats.
    pub data: Vec<f32>,
    /// The identity of each vector.
    pub identity_of: Vec<u32>,
}

impl FaceLikeVectors {
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.identity_of.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.identity_of.is_empty()
    }

    /// Vector `index`.
    pub fn vector(&self, index: usize) -> &[f32] {
        &self.data[index * self.dimension..(index + 1) * self.dimension]
    }

    /// Vector `position` as a face record: id `position`, image `synthetic://{position}`,
    /// model `synthetic`, a placeholder box and landmarks.
    pub fn record(&self, position: usize) -> FaceRecord {
        FaceRecord {
            face_id: FaceId(position as u128),
            metadata: FaceMetadata {
                image_uri: format!("synthetic://{position}"),
                bounding_box: BoundingBox {
                    x1: 0.0,
                    y1: 0.0,
                    x2: 1.0,
                    y2: 1.0,
                },
                landmarks: [[0.0; 2]; 5],
                detection_score: 1.0,
                model_id: SYNTHETIC_MODEL_ID.into(),
                traits: Default::default(),
            },
            embedding: self.vector(position).to_vec(),
        }
    }

    /// Writes the vectors in the `.fvecs` format of the ANN benchmarks (per vector: the
    /// dimension as a little-endian i32, then the floats), for the Python peers to read.
    pub fn write_fvecs(&self, path: &Path) -> std::io::Result<()> {
        let mut out = BufWriter::new(File::create(path)?);
        let dimension = i32::try_from(self.dimension).map_err(std::io::Error::other)?;
        for index in 0..self.len() {
            out.write_all(&dimension.to_le_bytes())?;
            for value in self.vector(index) {
                out.write_all(&value.to_le_bytes())?;
            }
        }
        out.flush()
    }
}

/// A generator of identities and their samples, deterministic for a seed.
pub struct FaceLikeGenerator {
    dimension: usize,
    centres: Vec<Vec<f32>>,
    centre_weights: Vec<f32>,
    rng: StdRng,
}

impl FaceLikeGenerator {
    /// `identities` random identities in `dimension` dimensions.
    pub fn new(identities: usize, dimension: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres = (0..identities).map(|_| random_unit(&mut rng, dimension)).collect();
        let centre_weights = (0..identities).map(|_| rng.random_range(0.5f32..0.8).sqrt()).collect();
        Self {
            dimension,
            centres,
            centre_weights,
            rng,
        }
    }

    /// A fresh sample ("another photo") of `identity`.
    pub fn sample(&mut self, identity: usize) -> Vec<f32> {
        let noise = random_unit(&mut self.rng, self.dimension);
        let weight = self.centre_weights[identity];
        let noise_weight = (1.0 - weight * weight).sqrt();
        let mixed: Vec<f32> = self.centres[identity]
            .iter()
            .zip(&noise)
            .map(|(centre, noise)| weight * centre + noise_weight * noise)
            .collect();
        normalise(mixed)
    }

    /// `samples_per_identity` samples of every identity, identity by identity.
    pub fn dataset(&mut self, samples_per_identity: usize) -> FaceLikeVectors {
        let count = self.centres.len() * samples_per_identity;
        self.samples(count, |position, _| position / samples_per_identity)
    }

    /// `count` queries: new samples of identities drawn at random.
    pub fn queries(&mut self, count: usize) -> FaceLikeVectors {
        let identities = self.centres.len();
        self.samples(count, |_, rng| rng.random_range(0..identities))
    }

    /// `count` samples, the identity of sample `position` chosen by `identity_for`.
    fn samples(&mut self, count: usize, mut identity_for: impl FnMut(usize, &mut StdRng) -> usize) -> FaceLikeVectors {
        let mut data = Vec::with_capacity(count * self.dimension);
        let mut identity_of = Vec::with_capacity(count);
        for position in 0..count {
            let identity = identity_for(position, &mut self.rng);
            data.extend(self.sample(identity));
            identity_of.push(identity as u32);
        }
        FaceLikeVectors {
            dimension: self.dimension,
            data,
            identity_of,
        }
    }
}

/// How close a look-alike identity is to the earlier identity it resembles: a cosine drawn from
/// 0.4-0.6, measured between the two identities' centres or between their faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookAlikes {
    /// The centres are at that cosine; a face of one and a face of the other then sit at about
    /// that times the two identities' own spreads (about 0.2-0.5), below where either rule links them.
    Centres,
    /// The faces are at that cosine, as close as two faces of one identity can be (siblings,
    /// twins): the centres are pulled together until a face of one and a face of the other sit
    /// at the drawn cosine on average. This is the set that provokes chaining.
    Faces,
}

/// The highest cosine between a look-alike's centre and its original's (the two identities stay
/// distinct even where the faces' target cannot be reached).
const MAX_LOOK_ALIKE_CENTRE_COSINE: f32 = 0.95;

/// A synthetic archive for people clustering, with what makes clustering hard: identity sizes
/// drawn from a long-tailed (Pareto) law, a share of identities made look-alikes of an earlier
/// one (at cosine 0.4-0.6, like siblings; see [`LookAlikes`]), and faces grouped into photos of
/// one to four distinct identities (so cannot-link matters).
pub struct PeopleArchive {
    /// The faces' embeddings and identities, in photo order.
    pub vectors: FaceLikeVectors,
    /// The photo of each face.
    pub photo_of: Vec<u32>,
}

/// The share of identities that are look-alikes of an earlier one.
const LOOK_ALIKE_SHARE: f64 = 0.3;
/// Faces per identity: at least this many, Pareto-tailed above.
const MIN_FACES_PER_IDENTITY: f64 = 2.0;
/// The Pareto law's exponent (smaller: heavier tail).
const IDENTITY_SIZE_EXPONENT: f64 = 1.3;
/// No identity has more faces than this.
const MAX_FACES_PER_IDENTITY: usize = 500;

impl PeopleArchive {
    /// Exactly `faces` faces in `dimension` dimensions, deterministic for `seed`. The two kinds
    /// of [`LookAlikes`] draw the same identities, sizes and photos for one seed.
    pub fn generate(faces: usize, dimension: usize, seed: u64, look_alikes: LookAlikes) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        // Per identity: a random direction, and for a look-alike the one it resembles and how much.
        let mut centres: Vec<Vec<f32>> = Vec::new();
        let mut resembles: Vec<Option<(usize, f32)>> = Vec::new();
        let mut identity_of_face = Vec::with_capacity(faces);
        while identity_of_face.len() < faces {
            let identity = centres.len();
            let like = (identity > 0 && rng.random_bool(LOOK_ALIKE_SHARE))
                .then(|| (rng.random_range(0..identity), rng.random_range(0.4f32..0.6)));
            centres.push(random_unit(&mut rng, dimension));
            resembles.push(like);
            let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
            let size = (MIN_FACES_PER_IDENTITY / uniform.powf(1.0 / IDENTITY_SIZE_EXPONENT)) as usize;
            let size = size.min(MAX_FACES_PER_IDENTITY).min(faces - identity_of_face.len());
            identity_of_face.extend(std::iter::repeat_n(identity, size));
        }
        // Shuffle (Fisher-Yates), then cut into photos without repeating an identity in one.
        for position in (1..identity_of_face.len()).rev() {
            let other = rng.random_range(0..=position);
            identity_of_face.swap(position, other);
        }
        let centre_weights: Vec<f32> = (0..centres.len())
            .map(|_| rng.random_range(0.5f32..0.8).sqrt())
            .collect();
        // Identity order: a look-alike's original is final before the look-alike is made.
        for identity in 0..centres.len() {
            let Some((like, cosine)) = resembles[identity] else {
                continue;
            };
            let centre_cosine = match look_alikes {
                LookAlikes::Centres => cosine,
                LookAlikes::Faces => {
                    (cosine / (centre_weights[like] * centre_weights[identity])).min(MAX_LOOK_ALIKE_CENTRE_COSINE)
                }
            };
            let sine = (1.0 - centre_cosine * centre_cosine).sqrt();
            let mixed = centres[like]
                .iter()
                .zip(&centres[identity])
                .map(|(original, own)| centre_cosine * original + sine * own)
                .collect();
            centres[identity] = normalise(mixed);
        }
        let mut generator = FaceLikeGenerator {
            dimension,
            centres,
            centre_weights,
            rng,
        };
        let mut photo_of = Vec::with_capacity(faces);
        let mut photo = 0u32;
        let mut in_photo: Vec<usize> = Vec::new();
        let mut photo_size = generator.rng.random_range(1..=4usize);
        for identity in &identity_of_face {
            if in_photo.len() >= photo_size || in_photo.contains(identity) {
                photo += 1;
                in_photo.clear();
                photo_size = generator.rng.random_range(1..=4usize);
            }
            in_photo.push(*identity);
            photo_of.push(photo);
        }
        let vectors = generator.samples(faces, |position, _| identity_of_face[position]);
        Self { vectors, photo_of }
    }

    /// Face `position` as a record: id `position`, photo `synthetic://photo/{photo}`, a
    /// 100-px box (distinct per face of a photo) with detection score 0.9.
    pub fn record(&self, position: usize) -> FaceRecord {
        let mut record = self.vectors.record(position);
        record.metadata.image_uri = format!("synthetic://photo/{}", self.photo_of[position]);
        let x1 = position as f32 % 1000.0;
        record.metadata.bounding_box = BoundingBox {
            x1,
            y1: 0.0,
            x2: x1 + 100.0,
            y2: 100.0,
        };
        record.metadata.detection_score = 0.9;
        record
    }
}

fn random_unit(rng: &mut StdRng, dimension: usize) -> Vec<f32> {
    normalise((0..dimension).map(|_| rng.sample::<f32, _>(StandardNormal)).collect())
}

fn normalise(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
    vector.iter_mut().for_each(|value| *value /= norm);
    vector
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dot;

    #[test]
    fn samples_of_one_identity_are_close_and_of_two_identities_are_not() {
        let mut generator = FaceLikeGenerator::new(50, 512, 7);
        let data = generator.dataset(2);
        let mut same = Vec::new();
        let mut different = Vec::new();
        for identity in 0..50 {
            same.push(dot(data.vector(2 * identity), data.vector(2 * identity + 1)));
            different.push(dot(data.vector(2 * identity), data.vector((2 * identity + 2) % 100)));
        }
        let mean = |values: &[f32]| values.iter().sum::<f32>() / values.len() as f32;
        assert!(
            (0.5..0.8).contains(&mean(&same)),
            "same identity mean cosine {}",
            mean(&same)
        );
        assert!(same.iter().all(|cosine| (0.35..0.95).contains(cosine)), "{same:?}");
        assert!(
            mean(&different).abs() < 0.05,
            "different identities mean cosine {}",
            mean(&different)
        );
    }
}
