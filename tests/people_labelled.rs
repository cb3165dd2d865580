//! People on a small labelled set from the registries: the `face_recognition` sdist's test
//! images hold Barack Obama in three different photos (an official portrait, a speech to
//! Congress, the Blue Room), two cut-outs of the portrait and the speech again as a PNG, and Joe
//! Biden in one photo. `facedex index` groups them; the test checks the persons against who is
//! who and prints the similarities the README's thresholds rest on: the same man across
//! different photos, and two men.

mod support;

use facedex_index::quality::cluster_quality;
use facedex_proto::Face;
use facedex_proto::face_search_client::FaceSearchClient;
use facedex_server::DEFAULT_MIN_SCORE;
use support::people::{
    all_faces, clusters, embeddings, export_for_benchmark, file_name, index_archive, person_of, photos,
};
use support::serve::Server;
use support::{cosine, photo};

/// The photos of Obama, each with the original it was made from (cut-outs and a re-encoding
/// share their original's pixels, so only different originals say how far apart one man's
/// photos lie).
const OBAMA: [(&str, &str); 6] = [
    ("obama.jpg", "portrait"),
    ("obama_partial_face.jpg", "portrait"),
    ("obama_partial_face2.jpg", "portrait"),
    ("obama2.jpg", "speech"),
    ("32bit.png", "speech"),
    ("obama3.jpg", "blue room"),
];
const BIDEN: &str = "biden.jpg";

fn area(face: &Face) -> f32 {
    let b = face.bounding_box.expect("box");
    (b.x2 - b.x1) * (b.y2 - b.y1)
}

/// Who each face is: 0 for Obama, 1 for Biden (the largest face of their photos), and a
/// stranger of its own for any other face (people in the background).
fn identities(faces: &[Face]) -> Vec<u32> {
    let largest_of = |name: &str| {
        faces
            .iter()
            .enumerate()
            .filter(|(_, face)| file_name(face) == name)
            .max_by(|a, b| area(a.1).total_cmp(&area(b.1)))
            .map(|(position, _)| position)
    };
    let mut identity: Vec<Option<u32>> = vec![None; faces.len()];
    for (name, _) in OBAMA {
        if let Some(position) = largest_of(name) {
            identity[position] = Some(0);
        }
    }
    if let Some(position) = largest_of(BIDEN) {
        identity[position] = Some(1);
    }
    let mut strangers = 1;
    identity
        .into_iter()
        .map(|identity| {
            identity.unwrap_or_else(|| {
                strangers += 1;
                strangers
            })
        })
        .collect()
}

#[test]
fn obama_in_different_photos_is_one_person_and_biden_is_not_him() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let archive = workspace.path().join("archive");
    let data_dir = workspace.path().join("data");
    std::fs::create_dir(&archive).expect("archive dir");
    for name in OBAMA.iter().map(|(name, _)| *name).chain([BIDEN]) {
        std::fs::copy(photo(&format!("labelled/{name}")), archive.join(name)).expect("copy");
    }
    index_archive(&archive, &data_dir);

    let query = std::fs::read(photo("labelled/obama.jpg")).expect("obama.jpg");
    let mut server = Server::start(&data_dir, &[], &[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut search = FaceSearchClient::connect(server.url.clone()).await.expect("connect");
        let faces = all_faces(&mut search, &query).await;
        let identity_of = identities(&faces);
        let embeddings = embeddings(&mut search, &faces).await;
        let cluster_of = clusters(&faces);
        let photo_of = photos(&faces);
        export_for_benchmark("labelled", &embeddings, &identity_of, &photo_of, &cluster_of);

        let obama: Vec<usize> = (0..faces.len()).filter(|&face| identity_of[face] == 0).collect();
        let biden = (0..faces.len()).find(|&face| identity_of[face] == 1);
        assert!(
            obama.len() >= 4,
            "Obama is found in at least 4 of his 6 photos: {:?}",
            obama.iter().map(|&face| file_name(&faces[face])).collect::<Vec<_>>()
        );
        let biden = biden.expect("Biden is found");
        let original = |face: usize| {
            OBAMA
                .iter()
                .find(|(name, _)| *name == file_name(&faces[face]))
                .map(|(_, original)| *original)
                .expect("an Obama photo")
        };

        // The same man in different photos, and two men.
        let across_photos: Vec<f32> = obama
            .iter()
            .flat_map(|&a| obama.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| a < b && original(a) != original(b))
            .map(|(a, b)| cosine(&embeddings[a], &embeddings[b]))
            .collect();
        assert!(!across_photos.is_empty(), "Obama in at least two different photos");
        let lowest_same = across_photos.iter().copied().fold(f32::MAX, f32::min);
        let mean_same = across_photos.iter().sum::<f32>() / across_photos.len() as f32;
        let closest_other = obama
            .iter()
            .map(|&face| cosine(&embeddings[face], &embeddings[biden]))
            .fold(f32::MIN, f32::max);
        let quality = cluster_quality(&identity_of, &cluster_of, &photo_of);
        println!(
            "labelled set (face_recognition's test images): {} faces; Obama across different photos: \
             {} pairs, cosine {lowest_same:.3} at the lowest, {mean_same:.3} on average; Obama to Biden: \
             {closest_other:.3} at the highest; persons {}, BCubed precision {:.3} recall {:.3} F1 {:.3}",
            faces.len(),
            across_photos.len(),
            quality.clusters,
            quality.bcubed_precision,
            quality.bcubed_recall,
            quality.bcubed_f1
        );
        assert!(
            closest_other < DEFAULT_MIN_SCORE && DEFAULT_MIN_SCORE < lowest_same,
            "the default threshold separates the two men and keeps Obama's photos together"
        );

        // Obama's faces form one person, Biden is not in it.
        let obama_person = person_of(&faces[obama[0]]).expect("Obama is in a person");
        for &face in &obama {
            assert_eq!(
                person_of(&faces[face]).as_deref(),
                Some(obama_person.as_str()),
                "{} is Obama's",
                file_name(&faces[face])
            );
        }
        assert_ne!(person_of(&faces[biden]).as_deref(), Some(obama_person.as_str()));
        assert_eq!(quality.same_photo_violations, 0);
    });
    server.stop();
}
