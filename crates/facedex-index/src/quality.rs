//! How well a clustering matches known identities, for tests and benchmarks: pairwise precision and
//! recall and BCubed precision, recall and F1 (Amigó et al. 2009), faces in no cluster counted
//! as clusters of one, plus the pairs of one photo put into one cluster.

use std::collections::HashMap;

/// Quality figures of a clustering.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterQuality {
    /// Of the pairs put together, the share that are one identity.
    pub pairwise_precision: f64,
    /// Of the pairs of one identity, the share put together.
    pub pairwise_recall: f64,
    /// Mean over faces of the share of its cluster that is its identity.
    pub bcubed_precision: f64,
    /// Mean over faces of the share of its identity that is in its cluster.
    pub bcubed_recall: f64,
    /// Harmonic mean of the two BCubed figures.
    pub bcubed_f1: f64,
    /// Faces in a cluster.
    pub assigned_share: f64,
    /// Clusters given (unassigned faces are not counted).
    pub clusters: usize,
    /// Pairs of faces of one photo in one cluster.
    pub same_photo_violations: usize,
}

/// Scores `cluster_of` (per face, `None` when unassigned) against `identity_of`; `photo_of`
/// counts cannot-link violations.
pub fn cluster_quality(identity_of: &[u32], cluster_of: &[Option<u64>], photo_of: &[u32]) -> ClusterQuality {
    assert_eq!(identity_of.len(), cluster_of.len(), "one cluster entry per face");
    let faces = identity_of.len();
    // Unassigned faces are singletons: give them keys no cluster has.
    let cluster_key = |face: usize| match cluster_of[face] {
        Some(cluster) => (0u8, cluster),
        None => (1u8, face as u64),
    };
    let mut cluster_size: HashMap<(u8, u64), usize> = HashMap::new();
    let mut identity_size: HashMap<u32, usize> = HashMap::new();
    let mut cell: HashMap<((u8, u64), u32), usize> = HashMap::new();
    let mut photo_cell: HashMap<((u8, u64), u32), usize> = HashMap::new();
    for face in 0..faces {
        let key = cluster_key(face);
        *cluster_size.entry(key).or_default() += 1;
        *identity_size.entry(identity_of[face]).or_default() += 1;
        *cell.entry((key, identity_of[face])).or_default() += 1;
        if key.0 == 0 {
            *photo_cell.entry((key, photo_of[face])).or_default() += 1;
        }
    }
    let pairs = |n: usize| (n * n.saturating_sub(1) / 2) as f64;
    let together: f64 = cluster_size.values().map(|n| pairs(*n)).sum();
    let same_identity: f64 = identity_size.values().map(|n| pairs(*n)).sum();
    let both: f64 = cell.values().map(|n| pairs(*n)).sum();
    let mut precision_sum = 0.0;
    let mut recall_sum = 0.0;
    for ((key, identity), n) in &cell {
        let n = *n as f64;
        precision_sum += n * n / cluster_size[key] as f64;
        recall_sum += n * n / identity_size[identity] as f64;
    }
    let bcubed_precision = precision_sum / faces as f64;
    let bcubed_recall = recall_sum / faces as f64;
    ClusterQuality {
        pairwise_precision: if together > 0.0 { both / together } else { 1.0 },
        pairwise_recall: if same_identity > 0.0 { both / same_identity } else { 1.0 },
        bcubed_precision,
        bcubed_recall,
        bcubed_f1: 2.0 * bcubed_precision * bcubed_recall / (bcubed_precision + bcubed_recall),
        assigned_share: cluster_of.iter().filter(|cluster| cluster.is_some()).count() as f64 / faces as f64,
        clusters: cluster_size.keys().filter(|key| key.0 == 0).count(),
        same_photo_violations: photo_cell.values().map(|n| pairs(*n) as usize).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_clustering_scores_one_and_singletons_lose_recall() {
        let identities = [0, 0, 1, 1];
        let photos = [0, 1, 2, 3];
        let perfect = cluster_quality(&identities, &[Some(7), Some(7), Some(9), Some(9)], &photos);
        assert_eq!(
            (perfect.bcubed_f1, perfect.pairwise_precision, perfect.pairwise_recall),
            (1.0, 1.0, 1.0)
        );
        let none = cluster_quality(&identities, &[None; 4], &photos);
        assert_eq!(
            (none.bcubed_precision, none.bcubed_recall, none.pairwise_recall),
            (1.0, 0.5, 0.0)
        );
        let merged = cluster_quality(&identities, &[Some(1); 4], &[0, 0, 1, 2]);
        assert_eq!((merged.bcubed_precision, merged.pairwise_precision), (0.5, 2.0 / 6.0));
        assert_eq!(merged.same_photo_violations, 1);
    }
}
