//! Helpers of the people tests: index a folder with `facedex index`, read every face of a server
//! with its person and embedding, and hand the faces to the people benchmark.

use std::collections::HashMap;
use std::path::Path;

use image::DynamicImage;
use image::imageops::FilterType;

use facedex_proto::face_search_client::FaceSearchClient;
use facedex_proto::{Face, GetFaceRequest, GetIndexInfoRequest, SearchRequest, face_person, search_request};
use tonic::transport::Channel;

use super::{facedex_command, photo};

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

/// InsightFace's best match for yaoming.jpg among the players (player 13, see tests/parity.rs).
pub const PLAYER_13_BOX: [f32; 4] = [720.8068, 142.0237, 764.8746, 192.0418];

/// How a copy of players.jpg was made, to map its faces back onto the original's.
#[derive(Debug, Clone, Copy)]
pub enum Augment {
    /// The original, or the same pixels brightened and re-encoded.
    Same,
    /// Mirrored left to right; the photo's width.
    Flipped { width: f32 },
    /// Resized by this factor.
    Scaled(f32),
    /// Cut from this top-left corner.
    Cropped { x: f32, y: f32 },
}

impl Augment {
    /// A point of the copy in the original's pixels.
    pub fn to_original(self, [x, y]: [f32; 2]) -> [f32; 2] {
        match self {
            Augment::Same => [x, y],
            Augment::Flipped { width } => [width - x, y],
            Augment::Scaled(factor) => [x / factor, y / factor],
            Augment::Cropped { x: left, y: top } => [x + left, y + top],
        }
    }
}

pub fn save_jpeg(image: &DynamicImage, path: &Path, quality: u8) {
    let file = std::fs::File::create(path).expect("create");
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), quality);
    image.to_rgb8().write_with_encoder(encoder).expect("encode");
}

/// Writes the archive: five copies of players.jpg (22 players) and three other sample photos
/// whose faces are strangers to them. Returns each players copy's name and augmentation.
pub fn write_archive(folder: &Path) -> HashMap<String, Augment> {
    let players = image::open(photo("players.jpg")).expect("players.jpg");
    let (width, height) = (players.width(), players.height());
    let (left, top) = (width / 16, height / 20);
    let copies = [
        ("players.jpg", players.clone(), Augment::Same, 95),
        (
            "players-flipped.jpg",
            players.fliph(),
            Augment::Flipped { width: width as f32 },
            90,
        ),
        (
            "players-small.jpg",
            players.resize(width * 7 / 10, height * 7 / 10, FilterType::Lanczos3),
            Augment::Scaled(0.7),
            90,
        ),
        (
            "players-cropped.jpg",
            players.crop_imm(left, top, width - left, height - top),
            Augment::Cropped {
                x: left as f32,
                y: top as f32,
            },
            90,
        ),
        ("players-bright.jpg", players.brighten(30), Augment::Same, 45),
    ];
    let mut augments = HashMap::new();
    for (name, image, augment, quality) in copies {
        save_jpeg(&image, &folder.join(name), quality);
        augments.insert(name.to_owned(), augment);
    }
    for name in ["t1.jpg", "gdp.jpg", "Tom_Hanks_54745.png"] {
        std::fs::copy(photo(name), folder.join(name)).expect("copy");
    }
    augments
}
