//! The clustering rule and the edits, on synthetic identities.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::config::IndexConfig;
use crate::index::{DeleteSelector, FaceIndex};
use crate::people::{PeopleConfig, PeopleEdit, PersonId, PersonStatus, SkipReason};
use crate::quality::cluster_quality;
use crate::record::{FaceId, FaceRecord};
use crate::store::FaceStore;
use crate::synthetic::{FaceLikeGenerator, LookAlikes, PeopleArchive};

fn config() -> IndexConfig {
    IndexConfig {
        expected_faces: 4_000,
        ..IndexConfig::default()
    }
}

fn upsert_all(index: &FaceIndex, records: Vec<FaceRecord>) {
    for batch in records.chunks(64) {
        index.upsert(batch.to_vec()).expect("upsert");
    }
}

fn archive_records(archive: &PeopleArchive) -> Vec<FaceRecord> {
    (0..archive.vectors.len())
        .map(|position| archive.record(position))
        .collect()
}

fn person_of(index: &FaceIndex, face: u128) -> Option<PersonId> {
    match index.get(&FaceId(face), false).expect("live face").person {
        PersonStatus::Assigned(person) => Some(person.person_id),
        _ => None,
    }
}

fn clusters(index: &FaceIndex, faces: usize) -> Vec<Option<u64>> {
    (0..faces as u128)
        .map(|face| person_of(index, face).map(|person| person.0))
        .collect()
}

#[test]
fn look_alike_identities_are_kept_apart_and_one_photo_never_holds_a_person_twice() {
    let archive = PeopleArchive::generate(3_000, 512, 11, LookAlikes::Centres);
    let index = FaceIndex::new(config()).expect("index");
    upsert_all(&index, archive_records(&archive));
    let quality = cluster_quality(
        &archive.vectors.identity_of,
        &clusters(&index, archive.vectors.len()),
        &archive.photo_of,
    );
    println!("{quality:?}");
    assert_eq!(quality.same_photo_violations, 0);
    assert!(quality.bcubed_precision >= 0.95, "{quality:?}");
    assert!(quality.bcubed_f1 >= 0.8, "{quality:?}");
    assert_eq!(index.people_count(), quality.clusters);
}

#[test]
fn a_persons_cohesion_keeps_out_siblings_its_prototype_alone_would_take() {
    // Look-alikes whose faces are as close to each other as an identity's own: the hard set.
    let archive = PeopleArchive::generate(3_000, 512, 11, LookAlikes::Faces);
    let quality_with = |cohesion_margin: f32| {
        let mut config = config();
        config.people.cohesion_margin = cohesion_margin;
        let index = FaceIndex::new(config).expect("index");
        upsert_all(&index, archive_records(&archive));
        cluster_quality(
            &archive.vectors.identity_of,
            &clusters(&index, archive.vectors.len()),
            &archive.photo_of,
        )
    };
    let with = quality_with(PeopleConfig::default().cohesion_margin);
    let without = quality_with(2.0);
    println!("cohesion margin on: {with:?}\noff: {without:?}");
    assert_eq!(with.same_photo_violations, 0);
    assert!(
        with.bcubed_precision > without.bcubed_precision,
        "the margin keeps look-alikes apart: {with:?} vs {without:?}"
    );
    assert!(with.bcubed_f1 >= 0.85, "{with:?}");
}

#[test]
fn expected_similarity_is_the_members_mean_similarity_to_the_prototype_of_the_others() {
    let mut generator = FaceLikeGenerator::new(1, 512, 21);
    let faces: Vec<Vec<f32>> = (0..12).map(|_| generator.sample(0)).collect();
    let mut person = super::Person::new(512);
    for (number, face) in faces.iter().enumerate() {
        person.faces.insert(FaceId(number as u128));
        person.sum.iter_mut().zip(face).for_each(|(sum, value)| *sum += value);
        let count = number + 1;
        let expected = person.expected_similarity();
        if count < super::COHESION_MIN_FACES {
            assert_eq!(expected, None, "{count} faces say too little");
            continue;
        }
        let leave_one_out = faces[..count]
            .iter()
            .map(|member| {
                let others: Vec<f32> = person.sum.iter().zip(member).map(|(sum, value)| sum - value).collect();
                crate::dot(member, &others) / crate::dot(&others, &others).sqrt()
            })
            .sum::<f32>()
            / count as f32;
        let expected = expected.expect("enough faces");
        assert!(
            (expected - leave_one_out).abs() < 0.01,
            "{count} faces: {expected} vs {leave_one_out}"
        );
    }
}

/// Five faces of one identity, faces `first..first + 5`, photo `photo-{k}` each unless given.
fn identity_records(
    generator: &mut FaceLikeGenerator,
    identity: usize,
    first: u128,
    photos: &[&str],
) -> Vec<FaceRecord> {
    photos
        .iter()
        .enumerate()
        .map(|(k, photo)| {
            let mut record = crate::synthetic::FaceLikeVectors {
                dimension: 512,
                data: generator.sample(identity),
                identity_of: vec![identity as u32],
            }
            .record(0);
            record.face_id = FaceId(first + k as u128);
            record.metadata.image_uri = format!("synthetic://{photo}");
            record.metadata.bounding_box.x2 = 100.0 + k as f32;
            record.metadata.bounding_box.y2 = 100.0;
            record.metadata.detection_score = 0.9;
            record
        })
        .collect()
}

#[test]
fn two_faces_of_one_identity_in_one_photo_go_to_different_persons_or_none() {
    let mut generator = FaceLikeGenerator::new(1, 512, 3);
    let index = FaceIndex::new(config()).expect("index");
    // A mirror or a photo of a photo: the same person twice in "both".
    let records = identity_records(&mut generator, 0, 0, &["a", "b", "c", "d", "both", "both"]);
    upsert_all(&index, records);
    let first = person_of(&index, 4);
    let second = person_of(&index, 5);
    assert!(first.is_some() || second.is_some(), "the identity became a person");
    assert_ne!(first, second, "one photo, one face per person");
    assert_eq!(index.people_count(), 1);
}

#[test]
fn faces_too_small_too_unsure_or_too_poor_are_skipped_and_say_why() {
    let mut generator = FaceLikeGenerator::new(1, 512, 5);
    let index = FaceIndex::new(config()).expect("index");
    let mut records = identity_records(&mut generator, 0, 0, &["a", "b", "c", "d", "e", "f", "g"]);
    records[3].metadata.bounding_box.x2 = 10.0;
    records[4].metadata.detection_score = 0.3;
    records[5].metadata.traits.quality = Some(0.1);
    records[6].metadata.traits.quality = Some(0.9);
    upsert_all(&index, records);
    assert!(person_of(&index, 0).is_some());
    let status = |face: u128| index.get(&FaceId(face), false).expect("face").person;
    assert!(
        matches!(status(3), PersonStatus::Skipped(SkipReason::TooSmall { .. })),
        "{:?}",
        status(3)
    );
    assert!(
        matches!(status(4), PersonStatus::Skipped(SkipReason::LowScore { .. })),
        "{:?}",
        status(4)
    );
    assert!(
        matches!(status(5), PersonStatus::Skipped(SkipReason::LowQuality { .. })),
        "{:?}",
        status(5)
    );
    assert!(!matches!(status(6), PersonStatus::Skipped(_)), "a good face is judged");
    let PersonStatus::Skipped(reason) = status(3) else {
        unreachable!()
    };
    assert!(reason.to_string().contains("too small"), "{reason}");
    let PersonStatus::Skipped(reason) = status(5) else {
        unreachable!()
    };
    assert!(reason.to_string().contains("quality 0.10"), "{reason}");
}

#[test]
fn a_person_whose_faces_are_all_deleted_is_gone() {
    let mut generator = FaceLikeGenerator::new(2, 512, 8);
    let index = FaceIndex::new(config()).expect("index");
    let mut records = identity_records(&mut generator, 0, 0, &["a", "b", "c", "d"]);
    records.extend(identity_records(&mut generator, 1, 100, &["a", "b", "c", "d"]));
    upsert_all(&index, records);
    assert_eq!(index.people_count(), 2);
    let gone = person_of(&index, 0).expect("person");
    index
        .delete(&DeleteSelector::FaceIds((0..3).map(FaceId).collect()))
        .expect("delete");
    assert_eq!(index.people_count(), 2, "one face is left");
    index.delete(&DeleteSelector::FaceIds(vec![FaceId(3)])).expect("delete");
    assert_eq!(index.people_count(), 1);
    assert!(index.person(&gone, 0, 10).is_err());
}

fn people_store(dir: &std::path::Path) -> FaceStore {
    FaceStore::open(dir, config()).expect("open")
}

#[test]
fn edits_are_kept_through_a_recluster_a_snapshot_and_the_journal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut generator = FaceLikeGenerator::new(3, 512, 21);
    let photos = ["a", "b", "c", "d", "e", "f"];
    let mut records = identity_records(&mut generator, 0, 0, &photos);
    records.extend(identity_records(&mut generator, 1, 100, &photos));
    records.extend(identity_records(&mut generator, 2, 200, &photos));
    let (named, split_off, merged_into);
    {
        let store = people_store(dir.path());
        store.upsert(records.clone()).expect("upsert");
        assert_eq!(store.index().people_count(), 3);
        named = person_of(store.index(), 0).expect("person");
        store
            .edit_people(&PeopleEdit::Rename {
                person: named,
                name: Some("  Ada ".into()),
            })
            .expect("rename");
        // Person 2's faces 200 and 201 are moved out by hand: a split.
        split_off = store
            .edit_people(&PeopleEdit::MoveFaces {
                faces: vec![FaceId(200), FaceId(201)],
                to: None,
            })
            .expect("split");
        store.snapshot().expect("snapshot");
        // After the snapshot, only in the journal: a deletion, a move, and a refused merge.
        store
            .delete(&DeleteSelector::FaceIds(vec![FaceId(205)]))
            .expect("delete");
        store
            .edit_people(&PeopleEdit::MoveFaces {
                faces: vec![FaceId(204)],
                to: Some(split_off),
            })
            .expect("move");
        merged_into = store
            .edit_people(&PeopleEdit::Merge {
                into: named,
                from: vec![person_of(store.index(), 100).expect("person")],
            })
            .err();
    }
    // Persons 0 and 1 share photos a-f: the merge was refused, and said why.
    let refusal = merged_into
        .expect("merging two persons of the same photos is refused")
        .to_string();
    assert!(refusal.contains("at most once per photo"), "{refusal}");

    let store = people_store(dir.path());
    let index = store.index();
    let names = |index: &FaceIndex| {
        index
            .list_people(0, 10, true)
            .persons
            .into_iter()
            .map(|person| (person.person_id, person.name))
            .collect::<HashMap<_, _>>()
    };
    assert_eq!(names(index).get(&named), Some(&Some("Ada".to_owned())));
    assert_eq!(person_of(index, 200), Some(split_off));
    assert_eq!(person_of(index, 204), Some(split_off), "the journaled move is replayed");
    assert!(
        index.get(&FaceId(205), false).is_err(),
        "the journaled deletion is replayed"
    );
    assert_ne!(person_of(index, 202), Some(split_off));
    let progress = store.recluster(Duration::from_secs(60), true);
    assert!(progress.finished, "{progress:?}");
    assert_eq!(
        names(store.index()).get(&named),
        Some(&Some("Ada".to_owned())),
        "named person survives"
    );
    for face in 0..6 {
        assert_eq!(person_of(store.index(), face), Some(named), "face {face}");
    }
    assert_eq!(person_of(store.index(), 200), Some(split_off), "split survives");
    assert_eq!(person_of(store.index(), 201), Some(split_off));
    let rest: HashSet<Option<PersonId>> = (202..204).map(|face| person_of(store.index(), face)).collect();
    assert!(
        !rest.contains(&Some(split_off)),
        "moved-out faces' old person is not refilled: {rest:?}"
    );
}

#[test]
fn a_recluster_stopped_by_its_budget_goes_on_where_it_stopped() {
    let archive = PeopleArchive::generate(5_000, 512, 4, LookAlikes::Centres);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = people_store(dir.path());
    for batch in archive_records(&archive).chunks(256) {
        store.upsert(batch.to_vec()).expect("upsert");
    }
    let incremental = store.index().people_count();
    let first = store.recluster(Duration::ZERO, true);
    assert!(!first.finished && first.visited < first.slots, "{first:?}");
    store.snapshot().expect("snapshot");
    drop(store);
    let store = people_store(dir.path());
    let mut calls = 1;
    while !store.recluster(Duration::ZERO, false).finished {
        calls += 1;
    }
    assert!(calls >= 2, "resumed in steps");
    let reclustered = store.index().people_count();
    let quality = cluster_quality(
        &archive.vectors.identity_of,
        &clusters(store.index(), archive.vectors.len()),
        &archive.photo_of,
    );
    println!("incremental {incremental} people, reclustered {reclustered}: {quality:?}");
    assert_eq!(quality.same_photo_violations, 0);
    assert!(quality.bcubed_f1 >= 0.8, "{quality:?}");
}
