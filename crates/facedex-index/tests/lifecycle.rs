//! Upsert, delete, vacuum, snapshot and restart: faces that were deleted never come back, a
//! replay changes nothing, a damaged newest snapshot falls back to the previous one, and a photo
//! replaced but not snapshotted before a crash comes back whole as it was; a face's traits
//! survive a restart and filter searches.

mod support;

use std::collections::HashSet;

use facedex_index::{
    AGE, AttributeValue, DeleteSelector, FaceAttribute, FaceFilter, FaceId, FaceIndex, FaceStore, FaceTraits, GENDER,
    IndexConfig, IndexError, SearchQuery, TraitFilter, UpsertOutcome,
};

fn config() -> IndexConfig {
    IndexConfig {
        expected_faces: 2_000,
        ..IndexConfig::default()
    }
}

fn top_ids(index: &FaceIndex, vector: &[f32], limit: usize, exact: bool) -> Vec<FaceId> {
    let query = SearchQuery {
        exact,
        ..SearchQuery::nearest(vector.to_vec(), limit)
    };
    index
        .search(&query)
        .expect("search")
        .into_iter()
        .map(|hit| hit.face_id)
        .collect()
}

/// Asserts that no deleted face is returned by graph or exact search for its own vector.
fn assert_forgotten(index: &FaceIndex, vectors: &facedex_index::synthetic::FaceLikeVectors, deleted: &HashSet<FaceId>) {
    for face_id in deleted {
        let vector = vectors.vector(face_id.0 as usize);
        for exact in [false, true] {
            let found = top_ids(index, vector, 20, exact);
            assert!(
                !found.iter().any(|id| deleted.contains(id)),
                "deleted face came back (exact={exact})"
            );
        }
        assert!(matches!(index.get(face_id, false), Err(IndexError::UnknownFace { .. })));
    }
}

#[test]
fn upsert_is_idempotent_on_face_id() {
    let vectors = support::vectors(100, 5, 1);
    let data_dir = tempfile::tempdir().expect("tempdir");
    let store = FaceStore::open(data_dir.path(), config()).expect("store");
    let index = store.index();
    let first = store.upsert(support::records(&vectors)).expect("first");
    assert_eq!(
        first,
        UpsertOutcome {
            inserted: 500,
            people: first.people,
            ..UpsertOutcome::default()
        }
    );
    // Every new face is placed once: 100 identities of 5 well-separated faces found one
    // person apiece (its founding face), the other faces joined or were recruited, and none
    // is left waiting.
    let placed = first.people;
    assert_eq!(placed.founded, 100, "{placed:?}");
    assert_eq!(placed.founded + placed.joined + placed.recruited, 500, "{placed:?}");
    assert_eq!(placed.waiting + placed.skipped, 0, "{placed:?}");
    let replay = store.upsert(support::records(&vectors)).expect("replay");
    assert_eq!(
        replay,
        UpsertOutcome {
            unchanged: 500,
            ..UpsertOutcome::default()
        }
    );
    assert_eq!(index.info().faces, 500);
    assert_eq!(index.info().tombstones, 0);

    let mut changed = support::record(&vectors, 0);
    changed.embedding = vectors.vector(1).to_vec();
    let replaced = store.upsert(vec![changed]).expect("replace");
    assert_eq!(replaced.replaced, 1);
    assert_eq!(index.info().faces, 500);
    assert_eq!(
        top_ids(index, vectors.vector(1), 2, true).len(),
        2,
        "old and new copy are both face 0 and 1"
    );
}

#[test]
fn duplicate_vectors_do_not_panic_and_are_all_found() {
    let vectors = support::vectors(1, 1, 2);
    let data_dir = tempfile::tempdir().expect("tempdir");
    let store = FaceStore::open(data_dir.path(), config()).expect("store");
    let index = store.index();
    let copies: Vec<_> = (0..300)
        .map(|copy| {
            let mut record = support::record(&vectors, 0);
            record.face_id = FaceId(copy);
            record
        })
        .collect();
    store.upsert(copies).expect("upsert duplicates");
    let hits = index
        .search(&SearchQuery::nearest(vectors.vector(0).to_vec(), 50))
        .expect("search");
    assert_eq!(hits.len(), 50);
    assert!(
        hits.iter().all(|hit| (hit.similarity - 1.0).abs() < 1e-5),
        "every copy is an exact match"
    );
    // A copy found in place of itself is found as far as any query can tell: duplicates are
    // not orphans (archives hold many duplicate photos; orphans cost every search).
    assert_eq!(index.info().unreachable_points, 0, "duplicates counted as unreachable");
    assert_eq!(store.audit_reachability(), 0);
}

#[test]
fn deleted_faces_never_come_back_after_vacuum_restart_or_replay() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let vectors = support::vectors(200, 10, 3);
    let mut deleted = HashSet::new();
    {
        let store = FaceStore::open(data_dir.path(), config()).expect("open");
        store.upsert(support::records(&vectors)).expect("upsert");
        store.snapshot().expect("first snapshot");
        // By id, by image, by prefix (every photo of identity 150: ids 1500..1510).
        let by_ids: Vec<FaceId> = (0..200).step_by(3).map(|id| FaceId(id as u128)).collect();
        deleted.extend(store.delete(&DeleteSelector::FaceIds(by_ids.clone())).expect("by ids"));
        assert_eq!(deleted.len(), by_ids.len());
        let uri = support::record(&vectors, 501).metadata.image_uri;
        assert_eq!(
            store.delete(&DeleteSelector::ImageUri(uri)).expect("by uri"),
            vec![FaceId(501)]
        );
        deleted.insert(FaceId(501));
        let by_prefix = store
            .delete(&DeleteSelector::ImageUriPrefix("test://identity-150/".into()))
            .expect("prefix");
        assert_eq!(by_prefix.len(), 10);
        deleted.extend(by_prefix);
        assert_forgotten(store.index(), &vectors, &deleted);
        // Not snapshotted: the journal must carry these deletions across the restart.
    }
    let store = FaceStore::open(data_dir.path(), config()).expect("reopen");
    assert_forgotten(store.index(), &vectors, &deleted);
    assert_eq!(store.index().info().faces, 2000 - deleted.len());

    // Cross the vacuum threshold (20 %) and vacuum.
    let more: Vec<FaceId> = (1000..1400).map(|id| FaceId(id as u128)).collect();
    deleted.extend(store.delete(&DeleteSelector::FaceIds(more)).expect("more"));
    assert!(store.index().needs_vacuum());
    let removed = store.vacuum_if_needed().expect("vacuum");
    assert_eq!(removed, deleted.len());
    assert_eq!(store.index().info().tombstones, 0);
    assert_forgotten(store.index(), &vectors, &deleted);

    // A replay of the whole archive (Kafka redelivery) must not resurrect anything.
    let replay = store.upsert(support::records(&vectors)).expect("replay");
    assert_eq!(replay.skipped_deleted, deleted.len());
    assert_eq!(replay.inserted, 0);
    assert_forgotten(store.index(), &vectors, &deleted);

    store.snapshot().expect("snapshot after vacuum");
    drop(store);
    let store = FaceStore::open(data_dir.path(), config()).expect("reopen after vacuum");
    assert_forgotten(store.index(), &vectors, &deleted);
    assert_eq!(store.index().info().faces, 2000 - deleted.len());
    let survivor = FaceId(1);
    assert_eq!(top_ids(store.index(), vectors.vector(1), 1, false), vec![survivor]);
}

#[test]
fn a_torn_or_corrupt_newest_snapshot_falls_back_to_the_previous_one() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let vectors = support::vectors(50, 10, 4);
    let records = support::records(&vectors);
    {
        let store = FaceStore::open(data_dir.path(), config()).expect("open");
        store.upsert(records[..300].to_vec()).expect("upsert");
        store.snapshot().expect("generation 1");
        store.upsert(records[300..].to_vec()).expect("upsert more");
        let second = store.snapshot().expect("generation 2");
        assert_eq!(second.faces, 500);
        // Damage generation 2's graph data: one flipped byte.
        let data_file = second.path.join("graph.hnsw.data");
        let mut bytes = std::fs::read(&data_file).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&data_file, bytes).expect("write");
    }
    let store = FaceStore::open(data_dir.path(), config()).expect("reopen with a corrupt newest snapshot");
    assert_eq!(store.last_snapshot().expect("loaded").generation, 1);
    assert_eq!(store.index().info().faces, 300);
    let third = store.snapshot().expect("generation 3");
    assert_eq!(third.generation, 3);
    // A torn generation 4: directory and files, but no manifest.
    let torn = third.path.with_file_name("gen-00000000000000000004");
    std::fs::create_dir_all(&torn).expect("torn dir");
    std::fs::write(torn.join("faces.postcard"), b"half").expect("torn file");
    drop(store);
    let store = FaceStore::open(data_dir.path(), config()).expect("reopen with a torn newest snapshot");
    assert_eq!(store.last_snapshot().expect("loaded").generation, 3);
    assert_eq!(store.index().info().faces, 300);
}

#[test]
fn a_second_process_cannot_open_the_same_data_dir_and_old_snapshots_are_pruned() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let store = FaceStore::open(data_dir.path(), config()).expect("open");
    assert!(matches!(
        FaceStore::open(data_dir.path(), config()),
        Err(IndexError::DataDirLocked { .. })
    ));
    for _ in 0..4 {
        store.snapshot().expect("snapshot");
    }
    let generations = std::fs::read_dir(data_dir.path().join("snapshots"))
        .expect("list")
        .count();
    assert_eq!(generations, config().snapshots_to_keep);
}

#[test]
fn filters_thresholds_and_bad_queries() {
    let vectors = support::vectors(100, 10, 5);
    let data_dir = tempfile::tempdir().expect("tempdir");
    let store = FaceStore::open(data_dir.path(), config()).expect("store");
    let index = store.index();
    store.upsert(support::records(&vectors)).expect("upsert");
    let query = vectors.vector(42).to_vec();

    let prefix = FaceFilter {
        image_uri_prefix: Some("test://identity-4/".into()),
        ..FaceFilter::default()
    };
    let hits = index
        .search(&SearchQuery {
            filter: prefix,
            ..SearchQuery::nearest(query.clone(), 20)
        })
        .expect("prefix");
    assert_eq!(hits.len(), 10, "only identity 4's ten photos pass");
    assert!(
        hits.iter()
            .all(|hit| hit.metadata.image_uri.starts_with("test://identity-4/"))
    );

    let exclude = FaceFilter {
        exclude_face_ids: [FaceId(42)].into(),
        ..FaceFilter::default()
    };
    let hits = index
        .search(&SearchQuery {
            filter: exclude,
            ..SearchQuery::nearest(query.clone(), 5)
        })
        .expect("exclude");
    assert!(hits.iter().all(|hit| hit.face_id != FaceId(42)));
    assert_eq!(hits.len(), 5);

    let include = FaceFilter {
        include_face_ids: Some([FaceId(7), FaceId(42)].into()),
        ..FaceFilter::default()
    };
    let hits = index
        .search(&SearchQuery {
            filter: include,
            ..SearchQuery::nearest(query.clone(), 5)
        })
        .expect("include");
    assert_eq!(
        hits.iter().map(|hit| hit.face_id).collect::<Vec<_>>(),
        vec![FaceId(42), FaceId(7)]
    );

    let floor = index
        .search(&SearchQuery {
            min_score: Some(0.4),
            ..SearchQuery::nearest(query.clone(), 100)
        })
        .expect("floor");
    assert!(
        !floor.is_empty() && floor.len() <= 10,
        "only the same identity clears 0.4: {}",
        floor.len()
    );
    assert!(floor.iter().all(|hit| hit.similarity >= 0.4));

    let bad_limit = index.search(&SearchQuery::nearest(query.clone(), 0));
    assert!(matches!(
        bad_limit,
        Err(IndexError::InvalidLimit { limit: 0, max: 1000 })
    ));
    assert!(matches!(
        index.search(&SearchQuery::nearest(query.clone(), 1001)),
        Err(IndexError::InvalidLimit { .. })
    ));
    // An ef that would size a 32 GB candidate list is refused before any work.
    for ef in [0, 4_000_000_000] {
        let error = index.search(&SearchQuery {
            ef: Some(ef),
            ..SearchQuery::nearest(query.clone(), 5)
        });
        assert!(
            matches!(error, Err(IndexError::InvalidEf { max: 10_000, .. })),
            "ef {ef}: {error:?}"
        );
    }
    // The maximum is the configuration's: a lower one refuses what the default allows.
    let strict = FaceIndex::new(IndexConfig {
        max_ef_search: 100,
        ..config()
    })
    .expect("index");
    let error = strict.search(&SearchQuery {
        ef: Some(101),
        ..SearchQuery::nearest(query.clone(), 5)
    });
    assert!(
        matches!(error, Err(IndexError::InvalidEf { ef: 101, max: 100 })),
        "{error:?}"
    );
    let mut not_unit = query.clone();
    not_unit[0] += 0.5;
    assert!(matches!(
        index.search(&SearchQuery::nearest(not_unit, 5)),
        Err(IndexError::NotUnitVector { .. })
    ));
    assert!(matches!(
        index.search(&SearchQuery::nearest(vec![0.1; 128], 5)),
        Err(IndexError::DimensionMismatch { .. })
    ));
    let other_model = FaceFilter {
        model_id: Some("another-model".into()),
        ..FaceFilter::default()
    };
    let mismatch = index.search(&SearchQuery {
        filter: other_model,
        ..SearchQuery::nearest(query, 5)
    });
    assert!(matches!(mismatch, Err(IndexError::ModelMismatch { .. })));

    let mut foreign = support::record(&vectors, 0);
    foreign.face_id = FaceId(99_999);
    foreign.metadata.model_id = "another-model".into();
    assert!(matches!(
        store.upsert(vec![foreign]),
        Err(IndexError::ModelMismatch { .. })
    ));
}

#[test]
fn searches_run_while_faces_are_inserted() {
    let vectors = support::vectors(300, 10, 6);
    let data_dir = tempfile::tempdir().expect("tempdir");
    let store = FaceStore::open(data_dir.path(), config()).expect("store");
    let index = store.index();
    let records = support::records(&vectors);
    store.upsert(records[..200].to_vec()).expect("seed");
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for chunk in records[200..].chunks(100) {
                store.upsert(chunk.to_vec()).expect("upsert");
            }
        });
        let mut searches = 0;
        while !writer.is_finished() || searches < 50 {
            let position = searches % 200;
            let hits = index
                .search(&SearchQuery::nearest(vectors.vector(position).to_vec(), 5))
                .expect("search");
            assert_eq!(hits.first().map(|hit| hit.face_id), Some(FaceId(position as u128)));
            searches += 1;
        }
    });
    assert_eq!(index.info().faces, 3000);
}

/// The faces of `image` in `store`, by id.
fn faces_of_image(store: &FaceStore, image: &str) -> Vec<FaceId> {
    let query = SearchQuery {
        exact: true,
        filter: FaceFilter {
            image_uri_prefix: Some(image.to_owned()),
            ..FaceFilter::default()
        },
        ..SearchQuery::nearest(vec![1.0 / (512f32).sqrt(); 512], 100)
    };
    let mut ids: Vec<FaceId> = store
        .index()
        .search(&query)
        .expect("search")
        .into_iter()
        .map(|hit| hit.face_id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_photo_replaced_and_not_snapshotted_before_a_crash_comes_back_whole_as_it_was() {
    use facedex_index::{ImageChange, ImageVersion};

    let vectors = support::vectors(10, 2, 4);
    let photo = "s3://archive/a.jpg";
    let version = |version: &str| ImageVersion {
        version: version.into(),
        size_bytes: 100,
    };
    let faces = |positions: std::ops::Range<usize>| -> Vec<facedex_index::FaceRecord> {
        positions
            .map(|position| {
                let mut record = support::record(&vectors, position);
                record.metadata.image_uri = photo.into();
                record
            })
            .collect()
    };
    let data_dir = tempfile::tempdir().expect("tempdir");
    {
        let store = FaceStore::open(data_dir.path(), config()).expect("store");
        store
            .apply_changes(vec![ImageChange::Indexed {
                image_uri: photo.into(),
                version: version("v1"),
                faces: faces(0..3),
            }])
            .expect("v1");
        store.snapshot().expect("snapshot v1");
        // The photo changes; its new faces replace the old ones, and the process dies before
        // the next snapshot.
        let outcome = store
            .apply_changes(vec![ImageChange::Indexed {
                image_uri: photo.into(),
                version: version("v2"),
                faces: faces(3..5),
            }])
            .expect("v2");
        assert_eq!((outcome.inserted, outcome.removed), (2, 3));
        assert_eq!(faces_of_image(&store, photo), vec![FaceId(3), FaceId(4)]);
    }
    let store = FaceStore::open(data_dir.path(), config()).expect("reopen");
    assert_eq!(
        faces_of_image(&store, photo),
        vec![FaceId(0), FaceId(1), FaceId(2)],
        "the old version, whole: neither lost nor mixed with the new one"
    );
    let entry = store.index().catalog_entry(photo).expect("cataloged");
    assert_eq!(entry.version, version("v1"), "so the next run redoes the photo");
    // The redo, snapshotted, survives a restart as the new version alone.
    store
        .apply_changes(vec![ImageChange::Indexed {
            image_uri: photo.into(),
            version: version("v2"),
            faces: faces(3..5),
        }])
        .expect("redo v2");
    store.snapshot().expect("snapshot v2");
    drop(store);
    let store = FaceStore::open(data_dir.path(), config()).expect("reopen");
    assert_eq!(faces_of_image(&store, photo), vec![FaceId(3), FaceId(4)]);
    assert_eq!(
        store.index().catalog_entry(photo).map(|entry| entry.version),
        Some(version("v2"))
    );
}

/// Face `position`'s traits in the trait test: ages 0 to 79 by position, genders alternating,
/// quality rising with the position.
fn traits_of(position: usize) -> FaceTraits {
    FaceTraits {
        quality: Some((position % 100) as f32 / 100.0),
        attributes: vec![
            FaceAttribute {
                name: AGE.into(),
                model_id: "age-test".into(),
                value: AttributeValue::Number((position % 80) as f32),
            },
            FaceAttribute {
                name: GENDER.into(),
                model_id: "gender-test".into(),
                value: AttributeValue::Label {
                    label: if position.is_multiple_of(2) { "female" } else { "male" }.into(),
                    confidence: 0.6 + 0.4 * ((position % 10) as f32 / 10.0),
                },
            },
        ],
    }
}

#[test]
fn traits_survive_a_restart_and_filter_graph_and_exact_searches() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let vectors = support::vectors(40, 10, 9);
    let records: Vec<_> = support::records(&vectors)
        .into_iter()
        .enumerate()
        .map(|(position, mut record)| {
            record.metadata.traits = traits_of(position);
            record
        })
        .collect();
    {
        let store = FaceStore::open(data_dir.path(), config()).expect("open");
        store.upsert(records.clone()).expect("upsert");
        store.snapshot().expect("snapshot");
    }
    let store = FaceStore::open(data_dir.path(), config()).expect("reopen");
    for (position, record) in records.iter().enumerate().step_by(37) {
        let view = store.index().get(&record.face_id, false).expect("stored");
        assert_eq!(
            view.metadata.traits,
            traits_of(position),
            "face {position} after the restart"
        );
    }
    let filter = TraitFilter {
        min_age: Some(20.0),
        max_age: Some(40.0),
        gender: Some("female".into()),
        min_gender_confidence: 0.8,
        min_quality: Some(0.3),
    };
    for exact in [false, true] {
        let query = SearchQuery {
            exact,
            filter: FaceFilter {
                traits: filter.clone(),
                ..FaceFilter::default()
            },
            ..SearchQuery::nearest(vectors.vector(0).to_vec(), 50)
        };
        let hits = store.index().search(&query).expect("search");
        assert!(hits.len() >= 10, "exact={exact}: {} hits", hits.len());
        for hit in &hits {
            assert!(
                filter.accepts(&hit.metadata.traits),
                "exact={exact}: {:?}",
                hit.metadata.traits
            );
            assert_eq!(hit.metadata.traits, traits_of(hit.face_id.0 as usize));
        }
    }
    let mut bad = records[0].clone();
    bad.metadata.traits.quality = Some(f32::NAN);
    assert!(matches!(store.upsert(vec![bad]), Err(IndexError::InvalidRecord { .. })));
}
