//! People end to end: an archive of the sample photos in augmented copies (flipped, scaled,
//! cropped, brightened and re-encoded) goes through `facedex index`; `facedex serve` runs over
//! it; a real gRPC client lists the persons, scores them against the players' identities,
//! and a user names, splits, merges, hides and re-clusters them over gRPC and the CLI.

mod support;

use std::collections::{BTreeSet, HashMap};

use facedex_index::quality::cluster_quality;
use facedex_proto::face_search_client::FaceSearchClient;
use facedex_proto::people_client::PeopleClient;
use facedex_proto::{
    Face, GetPersonRequest, HidePersonRequest, ListPeopleRequest, MergePeopleRequest, MoveFacesRequest,
};
use facedex_server::DEFAULT_MIN_SCORE;
use support::people::{
    Augment, PLAYER_13_BOX, all_faces, clusters, embeddings, export_for_benchmark, file_name, image_search,
    index_archive, person_of, photos, write_archive,
};
use support::serve::Server;
use support::{facedex_command, iou, photo};
use tonic::Code;

fn corners(face: &Face) -> [f32; 4] {
    let b = face.bounding_box.expect("box");
    [b.x1, b.y1, b.x2, b.y2]
}

/// Each face's identity: a players copy's face is the original player whose box its centre
/// maps into; any other face is a stranger of its own.
fn identities(faces: &[Face], augments: &HashMap<String, Augment>) -> Vec<u32> {
    let originals: Vec<[f32; 4]> = faces
        .iter()
        .filter(|face| file_name(face) == "players.jpg")
        .map(corners)
        .collect();
    assert!(
        originals.len() >= 20,
        "players.jpg has its 22 players: {}",
        originals.len()
    );
    let mut strangers = originals.len() as u32;
    faces
        .iter()
        .map(|face| {
            let [x1, y1, x2, y2] = corners(face);
            let player = augments.get(file_name(face)).and_then(|augment| {
                let [x, y] = augment.to_original([(x1 + x2) / 2.0, (y1 + y2) / 2.0]);
                originals
                    .iter()
                    .position(|[a1, b1, a2, b2]| (*a1..*a2).contains(&x) && (*b1..*b2).contains(&y))
            });
            player.map_or_else(
                || {
                    strangers += 1;
                    strangers
                },
                |player| player as u32,
            )
        })
        .collect()
}

fn people_cli(url: &str, args: &[&str]) -> String {
    let output = facedex_command()
        .args(["people", "--server", url])
        .args(args)
        .output()
        .expect("facedex people runs");
    assert!(
        output.status.success(),
        "facedex people {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn people_of_an_augmented_archive_over_grpc_and_the_cli() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let archive = workspace.path().join("archive");
    let data_dir = workspace.path().join("data");
    std::fs::create_dir(&archive).expect("archive dir");
    let augments = write_archive(&archive);

    let said_people = index_archive(&archive, &data_dir);

    let yaoming = std::fs::read(photo("yaoming.jpg")).expect("yaoming.jpg");
    let server = Server::start(&data_dir, &[], &[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let yao = runtime.block_on(async {
        let mut search = FaceSearchClient::connect(server.url.clone()).await.expect("connect");
        let mut people = PeopleClient::connect(server.url.clone()).await.expect("connect");

        // Quality against the players' identities, on every face of the index.
        let faces = all_faces(&mut search, &yaoming).await;
        let identity_of = identities(&faces, &augments);
        let persons: Vec<Option<String>> = faces.iter().map(person_of).collect();
        let cluster_of = clusters(&faces);
        let photo_of = photos(&faces);
        let embeddings = embeddings(&mut search, &faces).await;
        export_for_benchmark("augmented", &embeddings, &identity_of, &photo_of, &cluster_of);
        let quality = cluster_quality(&identity_of, &cluster_of, &photo_of);
        println!(
            "augmented sample archive: {} faces, {} persons; pairwise precision {:.3} recall {:.3}; \
             BCubed precision {:.3} recall {:.3} F1 {:.3}; {:.1} % of faces assigned; {} same-photo pairs",
            faces.len(),
            quality.clusters,
            quality.pairwise_precision,
            quality.pairwise_recall,
            quality.bcubed_precision,
            quality.bcubed_recall,
            quality.bcubed_f1,
            quality.assigned_share * 100.0,
            quality.same_photo_violations
        );
        assert_eq!(
            quality.same_photo_violations, 0,
            "a person appears at most once per photo"
        );
        assert!(quality.pairwise_precision >= 0.95, "{quality:?}");
        assert!(quality.pairwise_recall >= 0.6, "{quality:?}");
        assert_eq!(
            quality.clusters as u64, said_people,
            "facedex index printed the persons it made"
        );

        // The listing: every person, the largest first, each with a representative face.
        let listed = people
            .list_people(ListPeopleRequest {
                limit: 1000,
                ..ListPeopleRequest::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert_eq!(listed.total, said_people);
        assert_eq!(listed.persons.len() as u64, listed.total);
        assert!(
            listed
                .persons
                .windows(2)
                .all(|pair| pair[0].face_count >= pair[1].face_count)
        );
        let assigned = persons.iter().flatten().count() as u64;
        assert_eq!(
            listed.persons.iter().map(|person| person.face_count).sum::<u64>(),
            assigned
        );
        assert_eq!(listed.unassigned_faces, faces.len() as u64 - assigned);
        for person in &listed.persons {
            let representative = person.representative.as_ref().expect("a representative face");
            assert_eq!(person_of(representative).as_deref(), Some(person.person_id.as_str()));
        }

        // Player 13 of players.jpg is in a person, and yaoming.jpg's best hit is one of its faces.
        let player_13 = faces
            .iter()
            .find(|face| file_name(face) == "players.jpg" && iou(&corners(face), &PLAYER_13_BOX) > 0.9)
            .expect("player 13 indexed");
        let yao = person_of(player_13).expect("player 13 is in a person");
        let best = search
            .search(image_search(yaoming.clone(), 1, false))
            .await
            .expect("search")
            .into_inner();
        let best = best.results[0].hits[0].face.clone().expect("face");
        assert_eq!(person_of(&best).as_deref(), Some(yao.as_str()));

        // The default threshold: strangers among the photos stay below it, Yao Ming in
        // another photo is above it, and a search that sets none sees only him.
        let originals: Vec<usize> = (0..faces.len())
            .filter(|&face| !file_name(&faces[face]).starts_with("players-"))
            .collect();
        let closest_strangers = originals
            .iter()
            .flat_map(|&a| originals.iter().map(move |&b| (a, b)))
            .filter(|(a, b)| a < b && identity_of[*a] != identity_of[*b])
            .map(|(a, b)| support::cosine(&embeddings[a], &embeddings[b]))
            .fold(f32::MIN, f32::max);
        let default_search = search
            .search(image_search(yaoming.clone(), 100, false))
            .await
            .expect("search")
            .into_inner();
        let hits = &default_search.results[0].hits;
        let yao_ming_elsewhere = hits.first().map_or(0.0, |hit| hit.similarity);
        println!(
            "threshold evidence: closest strangers of the sample photos at cosine {closest_strangers:.3}; \
             yaoming.jpg's best hit (player 13, in players.jpg or a copy) at {yao_ming_elsewhere:.3}; default min_score {DEFAULT_MIN_SCORE}"
        );
        assert!(closest_strangers < DEFAULT_MIN_SCORE && DEFAULT_MIN_SCORE < yao_ming_elsewhere);
        let player_13_identity = identity_of[faces.iter().position(|face| face == player_13).expect("indexed")];
        assert!(!hits.is_empty());
        for hit in hits {
            assert!(hit.similarity >= DEFAULT_MIN_SCORE);
            let face = hit.face.as_ref().expect("face");
            let position = faces
                .iter()
                .position(|other| other.face_id == face.face_id)
                .expect("indexed");
            assert_eq!(
                identity_of[position], player_13_identity,
                "only Yao Ming passes the default: {hit:?}"
            );
        }

        // Refused requests say what to fix.
        let status = people
            .list_people(ListPeopleRequest {
                limit: 5000,
                ..ListPeopleRequest::default()
            })
            .await
            .expect_err("limit over 1000");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("limit is 5000"), "{}", status.message());
        let status = people.get_person(get_person("Yao")).await.expect_err("not an id");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("person_id: "), "{}", status.message());
        let status = people
            .get_person(get_person("0123456789abcdef"))
            .await
            .expect_err("unknown");
        assert_eq!(status.code(), Code::NotFound, "{}", status.message());
        yao
    });

    // A user names the person with the CLI; search hits carry the name.
    let renamed = people_cli(&server.url, &["rename", &yao, "Yao Ming"]);
    assert!(renamed.contains(&yao) && renamed.contains("Yao Ming"), "{renamed}");
    runtime.block_on(async {
        let mut search = FaceSearchClient::connect(server.url.clone()).await.expect("connect");
        let mut people = PeopleClient::connect(server.url.clone()).await.expect("connect");
        let best = search
            .search(image_search(yaoming.clone(), 1, false))
            .await
            .expect("search")
            .into_inner();
        let person = best.results[0].hits[0]
            .face
            .clone()
            .expect("face")
            .person
            .expect("person");
        assert_eq!(person.person_name, "Yao Ming");
        assert_eq!(person.person_id, yao);

        // Split one face off into a new person, then merge it back.
        let shown = people.get_person(get_person(&yao)).await.expect("get").into_inner();
        let before = shown.person.expect("person").face_count;
        assert_eq!(shown.faces.len() as u64, before);
        let photos: BTreeSet<&str> = shown.faces.iter().map(|face| face.image_uri.as_str()).collect();
        assert_eq!(photos.len(), shown.faces.len(), "one face per photo");
        assert_eq!(shown.image_uris.len(), shown.faces.len());
        let moved = shown.faces.last().expect("a face").face_id.clone();
        let split = people
            .move_faces(MoveFacesRequest {
                face_ids: vec![moved.clone()],
                to_person_id: String::new(),
            })
            .await
            .expect("split")
            .into_inner();
        assert_eq!(split.face_count, 1);
        assert_ne!(split.person_id, yao);
        let merged = people
            .merge_people(MergePeopleRequest {
                into_person_id: yao.clone(),
                from_person_ids: vec![split.person_id.clone()],
            })
            .await
            .expect("merge")
            .into_inner();
        assert_eq!((merged.face_count, merged.name.as_str()), (before, "Yao Ming"));
        let status = people
            .get_person(get_person(&split.person_id))
            .await
            .expect_err("merged away");
        assert_eq!(status.code(), Code::NotFound);

        // A hidden person leaves the listing until asked for.
        let listed = people
            .list_people(ListPeopleRequest::default())
            .await
            .expect("list")
            .into_inner();
        let other = listed
            .persons
            .iter()
            .find(|person| person.person_id != yao)
            .expect("another person")
            .person_id
            .clone();
        people
            .hide_person(HidePersonRequest {
                person_id: other.clone(),
                hidden: true,
            })
            .await
            .expect("hide");
        let shown = people
            .list_people(ListPeopleRequest::default())
            .await
            .expect("list")
            .into_inner();
        assert_eq!(shown.total, listed.total - 1);
        assert!(shown.persons.iter().all(|person| person.person_id != other));
        let all = people
            .list_people(ListPeopleRequest {
                include_hidden: true,
                ..ListPeopleRequest::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert!(
            all.persons
                .iter()
                .any(|person| person.person_id == other && person.hidden)
        );
    });

    // A full re-cluster keeps what the user decided.
    let reclustered = people_cli(&server.url, &["recluster", "--restart"]);
    assert!(reclustered.trim_end().ends_with("; done"), "{reclustered}");

    // After a restart (final snapshot, then load), the name, the merge and the hiding hold.
    server.terminate();
    let server = Server::start(&data_dir, &["--no-image-search"], &[]);
    let listing = people_cli(&server.url, &["list", "--hidden"]);
    let line = listing
        .lines()
        .find(|line| line.contains(&yao))
        .unwrap_or_else(|| panic!("Yao Ming is listed: {listing}"));
    assert!(line.contains("Yao Ming"), "{line}");
    assert!(listing.contains("hidden"), "{listing}");
    let shown = people_cli(&server.url, &["--json", "show", &yao]);
    let shown: serde_json::Value = serde_json::from_str(shown.trim()).expect("JSON");
    assert_eq!(shown["name"], "Yao Ming");
    assert_eq!(
        shown["faces"].as_array().expect("faces").len() as u64,
        shown["face_count"].as_u64().expect("a count")
    );
    server.terminate();
}

fn get_person(person_id: &str) -> GetPersonRequest {
    GetPersonRequest {
        person_id: person_id.into(),
        ..GetPersonRequest::default()
    }
}
