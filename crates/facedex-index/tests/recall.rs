//! Search quality on 100k face-like vectors (10k identities × 10 samples): recall@10 against
//! exact search, and every indexed vector finding itself first (`hnsw_rs` issue #37): at the
//! default ef, or for the few that are only hard to find there, at the reachability probe's ef.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use facedex_index::synthetic::FaceLikeGenerator;
use facedex_index::{FaceStore, IndexConfig, REACHABILITY_EF, SearchQuery};

const IDENTITIES: usize = 10_000;
const SAMPLES: usize = 10;
const QUERIES: usize = 500;
/// At most one vector in this many may miss itself at the default ef (and be found at the
/// reachability probe's): self-recall@1 ≥ 99.5 %. Measured: 100 of 100k (99.9 %); graphs built
/// in parallel differ from run to run, hence the margin.
const MAX_HARD_TO_FIND_ONE_IN: usize = 200;

#[test]
fn recall_at_10_and_self_retrieval_on_100k_face_like_vectors() {
    let mut generator = FaceLikeGenerator::new(IDENTITIES, 512, 11);
    let base = generator.dataset(SAMPLES);
    let queries = generator.queries(QUERIES);
    let data_dir = tempfile::tempdir().expect("tempdir");
    let config = IndexConfig {
        expected_faces: base.len(),
        ..IndexConfig::default()
    };
    let store = FaceStore::open(data_dir.path(), config).expect("store");
    let index = store.index();
    let records = support::records(&base);
    for chunk in records.chunks(10_000) {
        store.upsert(chunk.to_vec()).expect("upsert");
    }
    let info = index.info();
    assert_eq!(info.faces, 100_000);
    println!(
        "points the graph could not find again after insertion: {}",
        info.unreachable_points
    );

    // Recall@10 of the graph at the default ef against brute force.
    let mut found = 0;
    for q in 0..queries.len() {
        let vector = queries.vector(q).to_vec();
        let exact = index
            .search(&SearchQuery {
                exact: true,
                ..SearchQuery::nearest(vector.clone(), 10)
            })
            .expect("exact");
        let approximate = index.search(&SearchQuery::nearest(vector, 10)).expect("hnsw");
        assert_eq!(exact.len(), 10);
        found += approximate
            .iter()
            .filter(|hit| exact.iter().any(|truth| truth.face_id == hit.face_id))
            .count();
    }
    let recall = found as f64 / (10 * QUERIES) as f64;
    println!("recall@10 at the default ef over {QUERIES} queries: {recall:.4}");
    assert!(recall >= 0.95, "recall@10 {recall:.4} < 0.95");

    // Every vector finds itself as the first hit (two threads: 100k searches), after the
    // audit that a bulk load ends with: at the default ef, or for the few that are only hard
    // to find there, at the reachability probe's ef. A vector not found even then is cut off
    // from the graph (`hnsw_rs` #37), and the audit must have put it on the brute-force list.
    let audited = store.audit_reachability();
    println!("the reachability audit found {audited} more points the graph search misses");
    let hard_to_find = AtomicUsize::new(0);
    let lost = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let finds_itself = |position: usize, ef: Option<usize>| {
        let query = SearchQuery {
            ef,
            ..SearchQuery::nearest(base.vector(position).to_vec(), 1)
        };
        let hits = index.search(&query).expect("search");
        hits.first().map(|hit| hit.face_id.0) == Some(position as u128)
    };
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let position = next.fetch_add(1, Ordering::Relaxed);
                    if position >= base.len() {
                        break;
                    }
                    if !finds_itself(position, None) {
                        hard_to_find.fetch_add(1, Ordering::Relaxed);
                        if !finds_itself(position, Some(REACHABILITY_EF)) {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let hard_to_find = hard_to_find.load(Ordering::Relaxed);
    println!("vectors not first for themselves at the default ef: {hard_to_find}");
    assert_eq!(
        lost.load(Ordering::Relaxed),
        0,
        "vectors that did not find themselves first even at ef {REACHABILITY_EF}"
    );
    assert!(
        hard_to_find <= base.len() / MAX_HARD_TO_FIND_ONE_IN,
        "{hard_to_find} vectors are not first for themselves at the default ef"
    );
}
