//! Sealed segments end to end: a store whose growing segment is sealed every few hundred
//! faces answers searches, exact searches, lookups and people like one that never seals,
//! keeps deletions and restarts, and holds its sealed vectors in files (one per segment,
//! linked by each snapshot) that it removes once no segment uses them.

mod support;

use std::collections::HashSet;
use std::path::Path;

use facedex_index::{DeleteSelector, FaceId, FaceIndex, FaceStore, IndexConfig, SearchQuery};

const SEAL_AT: usize = 300;
const BATCH: usize = 100;

fn config(seal_segment_faces: usize) -> IndexConfig {
    IndexConfig {
        dimension: 512,
        expected_faces: 1_000,
        seal_segment_faces,
        ..IndexConfig::default()
    }
}

fn hits(index: &FaceIndex, vector: &[f32], exact: bool) -> Vec<(FaceId, f32)> {
    let query = SearchQuery {
        exact,
        ef: Some(128),
        ..SearchQuery::nearest(vector.to_vec(), 10)
    };
    let found = index.search(&query).expect("search");
    found.into_iter().map(|hit| (hit.face_id, hit.similarity)).collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_store_that_seals_segments_answers_like_one_that_does_not_and_keeps_its_faces_across_restarts() {
    let vectors = support::vectors(200, 5, 21);
    let records = support::records(&vectors);
    let sealing_dir = tempfile::tempdir().expect("dir");
    let plain_dir = tempfile::tempdir().expect("dir");
    let sealing = FaceStore::open(sealing_dir.path(), config(SEAL_AT)).expect("store");
    let plain = FaceStore::open(plain_dir.path(), config(1_000_000)).expect("store");
    for batch in records.chunks(BATCH) {
        sealing.upsert(batch.to_vec()).expect("upsert");
        plain.upsert(batch.to_vec()).expect("upsert");
    }
    let segment_dir = sealing_dir.path().join("segments");
    assert_eq!(
        files_in(&segment_dir).len(),
        1_000 / SEAL_AT,
        "a vector file per sealed segment"
    );
    let (sealed_info, plain_info) = (sealing.index().info(), plain.index().info());
    assert_eq!(sealed_info.faces, 1_000);
    assert!(
        sealed_info.memory_bytes_estimate * 2 < plain_info.memory_bytes_estimate,
        "sealed faces cost less memory: {} vs {}",
        sealed_info.memory_bytes_estimate,
        plain_info.memory_bytes_estimate
    );
    assert!(sealed_info.people > 0, "faces in sealed segments are grouped too");

    // The same answers: exact search is exact, graph search finds what the unsealed one finds.
    let probes: Vec<usize> = (0..vectors.len()).step_by(37).collect();
    let mut graph_agreement = 0;
    for &position in &probes {
        let vector = vectors.vector(position);
        assert_eq!(hits(sealing.index(), vector, true), hits(plain.index(), vector, true));
        let sealed_hits = hits(sealing.index(), vector, false);
        assert_eq!(
            sealed_hits[0].0,
            FaceId(position as u128),
            "face {position} finds itself"
        );
        let plain_hits: HashSet<FaceId> = hits(plain.index(), vector, false)
            .into_iter()
            .map(|hit| hit.0)
            .collect();
        graph_agreement += sealed_hits.iter().filter(|hit| plain_hits.contains(&hit.0)).count();
    }
    assert!(
        graph_agreement * 100 >= probes.len() * 10 * 95,
        "top 10 agree: {graph_agreement} of {}",
        probes.len() * 10
    );
    let looked_up = sealing
        .index()
        .get(&FaceId(5), true)
        .expect("a face in the first sealed segment");
    assert_eq!(looked_up.embedding.as_deref(), Some(vectors.vector(5)));

    // A deletion in a sealed segment and one in the growing one, then a restart.
    let deleted = [FaceId(7), FaceId(950)];
    sealing
        .delete(&DeleteSelector::FaceIds(deleted.to_vec()))
        .expect("delete");
    let first = sealing.snapshot().expect("snapshot");
    // Two more: the first is pruned (two are kept), the files it linked stay in use.
    sealing.snapshot().expect("a second snapshot links the same files");
    sealing.snapshot().expect("a third");
    drop(sealing);
    let reopened = FaceStore::open(sealing_dir.path(), config(SEAL_AT)).expect("reopen");
    assert!(!first.path.exists(), "pruned: the files it linked live on elsewhere");
    assert_eq!(reopened.index().info().faces, 998);
    for face_id in deleted {
        let vector = vectors.vector(face_id.0 as usize);
        assert!(hits(reopened.index(), vector, false).iter().all(|hit| hit.0 != face_id));
        assert!(hits(reopened.index(), vector, true).iter().all(|hit| hit.0 != face_id));
    }
    for &position in probes.iter().filter(|&&position| position != 7 && position != 950) {
        assert_eq!(
            hits(reopened.index(), vectors.vector(position), false)[0].0,
            FaceId(position as u128),
            "face {position} after the restart"
        );
    }
    assert_eq!(
        files_in(&segment_dir).len(),
        1_000 / SEAL_AT,
        "the loaded segments' files, linked back into the segment directory"
    );

    // Inserts go on into the growing segment; a vacuum rebuilds everything into one segment,
    // which is sealed at once, and the replaced segments' files go at the next snapshot.
    let more = support::vectors(20, 5, 22);
    let extra: Vec<_> = (0..more.len())
        .map(|position| {
            let mut record = support::record(&more, position);
            record.face_id = FaceId(10_000 + position as u128);
            record
        })
        .collect();
    reopened.upsert(extra).expect("upsert after the restart");
    let doomed: Vec<FaceId> = (0..300u128).map(FaceId).collect();
    reopened.delete(&DeleteSelector::FaceIds(doomed)).expect("delete");
    assert!(reopened.vacuum_if_needed().expect("vacuum") >= 300);
    reopened.snapshot().expect("snapshot");
    assert_eq!(files_in(&segment_dir).len(), 1, "one segment after the vacuum");
    assert_eq!(reopened.index().info().faces, 998 + 100 - 299);
    assert_eq!(
        hits(reopened.index(), more.vector(3), false)[0].0,
        FaceId(10_003),
        "a face inserted after the restart"
    );
    assert_eq!(
        hits(reopened.index(), vectors.vector(600), false)[0].0,
        FaceId(600),
        "a face vacuumed into the new segment"
    );
}
