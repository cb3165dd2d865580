//! Helpers of the people tests: index a folder with `facedex index`, read every face of a server
//! with its person and embedding, and hand the faces to the people benchmark.

use std::path::Path;

use facedex_proto::face_search_client::FaceSearchClient;
use facedex_proto::{Face, GetFaceRequest, GetIndexInfoRequest, SearchRequest, face_person, search_request};
use tonic::transport::Channel;

use super::facedex_command;

/// Runs `facedex index ARCHIVE --data-dir DATA` and returns the people count it printed.
pub fn index_archive(archive: &Path, data_dir: &Path) -> u64 {
    let index = facedex_command()
        .arg("index")
        .arg(archive)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("facedex index runs");
    let stdout = String::from_utf8_lossy(&index.stdout);
    assert!(
        index.status.success(),
        "index failed: {}",
        String::from_utf8_lossy(&index.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("people: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("facedex index says how many people it found: {stdout}"))
}

/// A search by photo for `limit` hits.
pub fn image_search(bytes: Vec<u8>, limit: u32, exact: bool) -> SearchRequest {
    SearchRequest {
        query: Some(search_request::Query::Image(bytes)),
        limit: Some(limit),
        exact,
        ..SearchRequest::default()
    }
}

/// The same search with every hit, whatever its similarity.
pub fn every_hit(request: SearchRequest) -> SearchRequest {
    SearchRequest {
        min_score: Some(-1.0),
        ..request
    }
}

/// Every face of the index with its person: one exact search by `query` (a photo with a face)
/// asking for all of them.
pub async fn all_faces(client: &mut FaceSearchClient<Channel>, query: &[u8]) -> Vec<Face> {
    let total = client
        .get_index_info(GetIndexInfoRequest {})
        .await
        .expect("info")
        .into_inner()
        .faces;
    let response = client
        .search(every_hit(image_search(query.to_vec(), 1000, true)))
        .await
        .expect("search")
        .into_inner();
    let faces: Vec<Face> = response.results[0]
        .hits
        .iter()
        .map(|hit| hit.face.clone().expect("face"))
        .collect();
    assert_eq!(faces.len() as u64, total, "the exact search returns every face");
    faces
}

/// The stored embedding of each face.
pub async fn embeddings(client: &mut FaceSearchClient<Channel>, faces: &[Face]) -> Vec<Vec<f32>> {
    let mut embeddings = Vec::with_capacity(faces.len());
    for face in faces {
        let stored = client
            .get_face(GetFaceRequest {
                face_id: face.face_id.clone(),
                with_embedding: true,
            })
            .await
            .expect("get face")
            .into_inner();
        embeddings.push(stored.embedding.expect("embedding").values);
    }
    embeddings
}

/// The file name of the face's photo.
pub fn file_name(face: &Face) -> &str {
    face.image_uri.rsplit('/').next().expect("a file name")
}

/// The face's person id, if it is in one.
pub fn person_of(face: &Face) -> Option<String> {
    let person = face.person.clone().expect("every face says where it stands");
    (person.state() == face_person::State::Assigned).then_some(person.person_id)
}

/// Each face's person as a number (its id read as hexadecimal), for the quality scores.
pub fn clusters(faces: &[Face]) -> Vec<Option<u64>> {
    faces
        .iter()
        .map(|face| person_of(face).map(|id| u64::from_str_radix(&id, 16).expect("hex id")))
        .collect()
}

/// Each face's photo as a number (the first face of that photo's position).
pub fn photos(faces: &[Face]) -> Vec<u32> {
    faces
        .iter()
        .map(|face| {
            faces
                .iter()
                .position(|other| other.image_uri == face.image_uri)
                .expect("itself") as u32
        })
        .collect()
}

/// With `FACEDEX_PEOPLE_EXPORT=DIR` set, writes the faces into `DIR/NAME` the way the people
/// benchmark's example does (`embeddings.f32`, `identities.u32`, `photos.u32`, and facedex's
/// persons as `facedex.clusters`), for `scripts/bench-people-photos` to run Immich's rule on
/// the same embeddings.
pub fn export_for_benchmark(
    name: &str,
    embeddings: &[Vec<f32>],
    identities: &[u32],
    photos: &[u32],
    clusters: &[Option<u64>],
) {
    let Some(root) = std::env::var_os("FACEDEX_PEOPLE_EXPORT") else {
        return;
    };
    let dir = Path::new(&root).join(name);
    std::fs::create_dir_all(&dir).expect("export folder");
    let write = |file: &str, bytes: Vec<u8>| std::fs::write(dir.join(file), bytes).expect("export");
    write(
        "embeddings.f32",
        embeddings
            .iter()
            .flatten()
            .flat_map(|value| value.to_le_bytes())
            .collect(),
    );
    write(
        "identities.u32",
        identities.iter().flat_map(|value| value.to_le_bytes()).collect(),
    );
    write(
        "photos.u32",
        photos.iter().flat_map(|value| value.to_le_bytes()).collect(),
    );
    write(
        "facedex.clusters",
        clusters
            .iter()
            .flat_map(|cluster| cluster.map_or(-1, |id| (id >> 1) as i64).to_le_bytes())
            .collect(),
    );
    eprintln!("exported {} faces to {}", identities.len(), dir.display());
}
