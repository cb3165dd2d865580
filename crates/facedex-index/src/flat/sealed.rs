//! The copy of a sealed segment's graph: the links and codes of its growing graph's last copy,
//! kept after that `hnsw_rs` graph is dropped, with the vectors in a store of their own
//! (`vector_file.rs`), and the links as a snapshot holds them ([`SegmentLinks`]).
//!
//! `hnsw_rs` keeps every link as an `Arc` to a heap node (40 B a link, more than 1 KiB per
//! point at `M` 16) and every vector on the heap; a sealed segment keeps 4 B a link, the
//! 8-bit codes, and no vector in memory. It takes no inserts: new faces go to the next
//! growing segment.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{FlatGraph, NO_LINK, PointVectors};
use crate::codes::VectorCodes;
use crate::vector_file::SealedVectors;

/// The longest layer-0 list a snapshot may hold: `hnsw_rs` caps lists at `2 M`, and
/// `index.max_connections` is at most 255.
const MAX_LAYER0_STRIDE: usize = 2 * 255;
/// `hnsw_rs`'s maximum number of layers, less layer 0.
const MAX_UPPER_LAYERS: usize = 15;

/// A sealed segment's links in a snapshot (postcard), beside its vectors file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SegmentLinks {
    /// Local ids `0..points`.
    pub(crate) points: u32,
    layer0_stride: u32,
    layer0: Vec<u32>,
    /// Layers 1 and up: each point there with its neighbours, by point.
    upper_layers: Vec<Vec<(u32, Vec<u32>)>>,
    entry_point: Option<u32>,
    /// Local ids without a vector, ascending.
    pub(crate) missing: Vec<u32>,
}

impl FlatGraph {
    /// This copy with its vectors in `vectors` from now on, so that the growing graph it was
    /// copied from (every point frozen into it) can be dropped.
    pub(crate) fn sealed(&self, vectors: SealedVectors) -> FlatGraph {
        debug_assert_eq!(vectors.len(), self.len(), "a vector slot for every point");
        FlatGraph {
            vectors: PointVectors::Sealed(vectors),
            layer0_stride: self.layer0_stride,
            layer0: self.layer0.clone(),
            upper_layers: self.upper_layers.clone(),
            entry_point: self.entry_point,
            upper_links: self.upper_links,
            codes: self.codes.clone(),
        }
    }

    /// The sealed segment's vector store (`None` for a growing graph's copy).
    pub(crate) fn sealed_vectors(&self) -> Option<&SealedVectors> {
        match &self.vectors {
            PointVectors::Sealed(vectors) => Some(vectors),
            PointVectors::Graph(_) => None,
        }
    }

    /// The same, to move its file (see [`SealedVectors::relink`]).
    pub(crate) fn sealed_vectors_mut(&mut self) -> Option<&mut SealedVectors> {
        match &mut self.vectors {
            PointVectors::Sealed(vectors) => Some(vectors),
            PointVectors::Graph(_) => None,
        }
    }

    /// The links as a snapshot stores them.
    pub(crate) fn links(&self) -> SegmentLinks {
        let mut upper_layers: Vec<Vec<(u32, Vec<u32>)>> = self
            .upper_layers
            .iter()
            .map(|layer| layer.iter().map(|(&point, links)| (point, links.to_vec())).collect())
            .collect();
        // Map order is arbitrary; a sorted file is the same file for the same graph.
        upper_layers.iter_mut().for_each(|layer| layer.sort_unstable());
        SegmentLinks {
            points: self.len() as u32,
            layer0_stride: self.layer0_stride as u32,
            layer0: self.layer0.clone(),
            upper_layers,
            entry_point: self.entry_point,
            missing: self
                .sealed_vectors()
                .map(|vectors| vectors.missing().to_vec())
                .unwrap_or_default(),
        }
    }

    /// A sealed copy from a snapshot's links and vectors, its codes made again from the
    /// vectors (one pass over them). Refuses links no graph has: a count that disagrees with
    /// another, a neighbour or entry point outside the segment, more layers or longer lists
    /// than `hnsw_rs` makes.
    pub(crate) fn from_links(links: SegmentLinks, vectors: SealedVectors, dimension: usize) -> Result<Self, String> {
        let points = links.points as usize;
        let stride = links.layer0_stride as usize;
        if vectors.len() != points {
            return Err(format!("{points} points but {} vectors", vectors.len()));
        }
        if links.missing != vectors.missing() {
            return Err("the missing vectors differ between the links and the vectors".into());
        }
        if stride > MAX_LAYER0_STRIDE {
            return Err(format!("layer-0 lists of {stride} slots (at most {MAX_LAYER0_STRIDE})"));
        }
        if Some(links.layer0.len()) != points.checked_mul(stride) {
            return Err(format!(
                "{} layer-0 slots for {points} points of {stride}",
                links.layer0.len()
            ));
        }
        let in_segment = |id: u32| (id as usize) < points;
        if let Some(bad) = links.layer0.iter().find(|&&id| id != NO_LINK && !in_segment(id)) {
            return Err(format!("a layer-0 neighbour {bad} outside the segment of {points}"));
        }
        if links.upper_layers.len() > MAX_UPPER_LAYERS {
            return Err(format!("{} upper layers", links.upper_layers.len()));
        }
        let mut upper_layers = Vec::with_capacity(links.upper_layers.len());
        let mut upper_links = 0;
        for layer in links.upper_layers {
            let mut lists = HashMap::with_capacity(layer.len());
            for (point, neighbours) in layer {
                if !in_segment(point)
                    || neighbours.len() > MAX_LAYER0_STRIDE
                    || !neighbours.iter().all(|&n| in_segment(n))
                {
                    return Err(format!("an upper-layer list of point {point} outside the segment"));
                }
                upper_links += neighbours.len();
                lists.insert(point, neighbours.into_boxed_slice());
            }
            upper_layers.push(lists);
        }
        match links.entry_point {
            Some(entry) if !in_segment(entry) => return Err(format!("entry point {entry} outside the segment")),
            None if points > 0 => return Err("no entry point".into()),
            _ => {}
        }
        let mut codes = VectorCodes::zeroed(dimension, points);
        let mut not_finite = None;
        vectors
            .for_each(|id, vector| {
                if vector.iter().all(|value| value.is_finite()) {
                    codes.set(id, vector);
                } else {
                    not_finite.get_or_insert(id);
                }
            })
            .map_err(|error| error.to_string())?;
        if let Some(id) = not_finite {
            return Err(format!("the vector of point {id} is not finite"));
        }
        Ok(FlatGraph {
            vectors: PointVectors::Sealed(vectors),
            layer0_stride: stride,
            layer0: links.layer0,
            upper_layers,
            entry_point: links.entry_point,
            upper_links,
            codes,
        })
    }
}

#[cfg(all(test, feature = "synthetic"))]
mod tests {
    use super::*;
    use crate::config::IndexConfig;
    use crate::graph::new_graph;
    use crate::synthetic::FaceLikeGenerator;

    const DIMENSION: usize = 24;

    fn growing_copy(points: usize) -> (FlatGraph, Vec<Vec<f32>>) {
        let vectors = FaceLikeGenerator::new(points.div_ceil(5), DIMENSION, 3).dataset(5);
        let vectors: Vec<Vec<f32>> = (0..points).map(|id| vectors.vector(id).to_vec()).collect();
        let config = IndexConfig {
            dimension: DIMENSION,
            ..IndexConfig::default()
        };
        let graph = new_graph(&config, points);
        for (id, vector) in vectors.iter().enumerate() {
            graph.insert_slice((vector, id));
        }
        (FlatGraph::copy_of(&graph), vectors)
    }

    fn store(flat: &FlatGraph, path: Option<&std::path::Path>) -> SealedVectors {
        SealedVectors::write(path, DIMENSION, flat.len(), |id| flat.vector(id)).expect("vectors")
    }

    #[test]
    fn a_sealed_copy_and_one_loaded_from_its_links_search_like_the_growing_copy() {
        let dir = tempfile::tempdir().expect("dir");
        let (growing, vectors) = growing_copy(600);
        let path = dir.path().join("segment.vectors");
        let sealed = growing.sealed(store(&growing, Some(&path)));
        let links = postcard::to_stdvec(&sealed.links()).expect("encode");
        let links: SegmentLinks = postcard::from_bytes(&links).expect("decode");
        assert_eq!(links, growing.links(), "sealing keeps the links");
        let crc32 = crc32fast::hash(&std::fs::read(&path).expect("read"));
        let reopened = SealedVectors::open(&path, DIMENSION, 600, links.missing.clone(), crc32).expect("open");
        let loaded = FlatGraph::from_links(links, reopened, DIMENSION).expect("links");
        let accept_all = |_: usize| true;
        for query in vectors.iter().step_by(37) {
            let expected = growing.search(query, 32, 5, &accept_all);
            assert_eq!(sealed.search(query, 32, 5, &accept_all), expected);
            assert_eq!(loaded.search(query, 32, 5, &accept_all), expected);
        }
        assert!(loaded.bytes() < growing.bytes(), "no point handles");
        assert_eq!(loaded.vector(7).as_deref(), Some(vectors[7].as_slice()));
    }

    #[test]
    fn links_that_no_graph_has_are_refused() {
        let (growing, _) = growing_copy(50);
        let links = growing.links();
        let mut cases: Vec<(&str, SegmentLinks)> = Vec::new();
        let mut bad = links.clone();
        bad.layer0[3] = 50;
        cases.push(("neighbour outside", bad));
        let mut bad = links.clone();
        bad.layer0.pop();
        cases.push(("short layer 0", bad));
        let mut bad = links.clone();
        bad.layer0_stride = u32::MAX;
        cases.push(("huge stride", bad));
        let mut bad = links.clone();
        bad.entry_point = Some(99);
        cases.push(("entry outside", bad));
        let mut bad = links.clone();
        bad.entry_point = None;
        cases.push(("no entry", bad));
        let mut bad = links.clone();
        bad.upper_layers = vec![vec![(60, vec![1])]];
        cases.push(("upper point outside", bad));
        let mut bad = links.clone();
        bad.upper_layers = vec![Vec::new(); 16];
        cases.push(("too many layers", bad));
        let mut bad = links.clone();
        bad.missing = vec![4];
        cases.push(("missing differs", bad));
        let not_finite = SealedVectors::write(None, DIMENSION, growing.len(), |id| {
            let mut vector = growing.vector(id)?.into_owned();
            vector[0] = if id == 9 { f32::NAN } else { vector[0] };
            Some(std::borrow::Cow::Owned(vector))
        })
        .expect("vectors");
        assert!(
            FlatGraph::from_links(links.clone(), not_finite, DIMENSION).is_err(),
            "a NaN vector"
        );
        for (what, links) in cases {
            let vectors = store(&growing, None);
            assert!(FlatGraph::from_links(links, vectors, DIMENSION).is_err(), "{what}");
        }
        assert!(FlatGraph::from_links(links, store(&growing, None), DIMENSION).is_ok());
    }
}
