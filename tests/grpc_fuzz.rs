//! A gRPC-level fuzzer against a live `facedex serve` over real photos: thousands of generated
//! requests, random and boundary values in every field of every FaceSearch and People RPC, huge repeated
//! fields, oversize photos and garbage photo bytes, raw bytes of the wrong message type sent
//! to each method, and hand-built truncated or malformed gRPC frames. The server must answer
//! every one with a status (never drop the connection), keep serving, and keep its peak memory
//! bounded. Prints the request count, the answers by code and the server's peak resident
//! memory.

mod support;

use std::collections::BTreeMap;

use bytes::{Buf, BufMut};
use facedex_proto::face_search_client::FaceSearchClient;
use facedex_proto::people_client::PeopleClient;
use facedex_proto::{
    AppliedOffset, DeleteRequest, Embedding, FaceIds, GetFaceRequest, GetIndexInfoRequest, GetPersonRequest,
    HidePersonRequest, ListPeopleRequest, MergePeopleRequest, MoveFacesRequest, ReclusterRequest, RenamePersonRequest,
    SearchBatchRequest, SearchFilter, SearchRequest, delete_request, search_request,
};
use support::cluster::Role;
use support::{facedex_command, photo};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Requests sent.
const REQUESTS: usize = 3_000;
/// The server's peak resident memory may not pass this (the models take ~300 MiB of it).
const MAX_PEAK_RSS_BYTES: u64 = 2 << 30;

/// xorshift64*: a seeded generator, so a failure replays exactly.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len())]
    }

    fn bytes(&mut self, length: usize) -> Vec<u8> {
        (0..length).map(|_| self.next() as u8).collect()
    }

    fn text(&mut self) -> String {
        match self.below(5) {
            0 => String::new(),
            1 => format!("{:032x}", u128::from(self.next()) << 64 | u128::from(self.next())),
            2 => "ffffffffffffffffffffffffffffffffff".into(),
            3 => "\u{0}\u{fffd}/../../etc/passwd".into(),
            _ => {
                let length = self.below(64);
                String::from_utf8_lossy(&self.bytes(length)).into_owned()
            }
        }
    }

    fn optional_u32(&mut self) -> Option<u32> {
        match self.below(8) {
            0 => None,
            1 => Some(0),
            2 => Some(u32::MAX),
            3 => Some(1),
            4 => Some(1_000),
            5 => Some(1_001),
            6 => Some(10_001),
            _ => Some(self.next() as u32),
        }
    }

    /// A person id: well-formed but unknown, or not one at all.
    fn person_id(&mut self) -> String {
        match self.below(3) {
            0 => format!("{:016x}", self.next()),
            _ => self.text(),
        }
    }

    fn float(&mut self) -> f32 {
        self.pick(&[0.0, 1.0, -1.0, f32::NAN, f32::INFINITY, f32::MIN, 1e-30, 0.0442])
    }
}

/// A People call with random and boundary values; edits name unknown persons and faces, so
/// they change nothing.
async fn people_call(random: &mut Random, client: &mut PeopleClient<Channel>) -> Result<(), Status> {
    let offset = random.pick(&[0, 1, 10_000_000, 10_000_001, u64::MAX]);
    let limit = random.optional_u32().unwrap_or(0);
    match random.below(7) {
        0 => {
            let include_hidden = random.below(2) == 0;
            let request = ListPeopleRequest {
                offset,
                limit,
                include_hidden,
            };
            client.list_people(request).await.map(|_| ())
        }
        1 => {
            let request = GetPersonRequest {
                person_id: random.person_id(),
                offset,
                limit,
            };
            client.get_person(request).await.map(|_| ())
        }
        2 => {
            let name = match random.below(3) {
                0 => "x".repeat(random.pick(&[0, 200, 201, 100_000])),
                _ => random.text(),
            };
            let request = RenamePersonRequest {
                person_id: random.person_id(),
                name,
            };
            client.rename_person(request).await.map(|_| ())
        }
        3 => {
            let request = HidePersonRequest {
                person_id: random.person_id(),
                hidden: true,
            };
            client.hide_person(request).await.map(|_| ())
        }
        4 => {
            let count = random.pick(&[0, 1, 100, 101, 10_000]);
            let request = MergePeopleRequest {
                into_person_id: random.person_id(),
                from_person_ids: (0..count).map(|_| random.person_id()).collect(),
            };
            client.merge_people(request).await.map(|_| ())
        }
        5 => {
            let count = random.pick(&[0, 1, 10_000, 10_001]);
            let request = MoveFacesRequest {
                face_ids: (0..count).map(|_| random.text()).collect(),
                to_person_id: random.person_id(),
            };
            client.move_faces(request).await.map(|_| ())
        }
        _ => {
            // The index is small: a re-cluster in range finishes at once whatever its budget.
            let request = ReclusterRequest {
                budget_ms: random.pick(&[0, 1, 600_000, 600_001, u32::MAX]),
                restart: random.below(2) == 0,
            };
            client.recluster(request).await.map(|_| ())
        }
    }
}

fn search(random: &mut Random, photos: &[Vec<u8>]) -> SearchRequest {
    let query = match random.below(4) {
        0 => None,
        1 => {
            let length = random.pick(&[0, 1, 511, 512, 512, 512, 513, 100_000]);
            let values = (0..length)
                .map(|_| if random.below(4) == 0 { random.float() } else { 0.0442 })
                .collect();
            Some(search_request::Query::Embedding(Embedding { values }))
        }
        2 => Some(search_request::Query::Image(match random.below(6) {
            0 => Vec::new(),
            1 => {
                let length = random.below(4096);
                random.bytes(length)
            }
            2 => {
                let photo = &photos[random.below(photos.len())];
                photo[..random.below(photo.len())].to_vec()
            }
            3 => {
                let mut photo = photos[random.below(photos.len())].clone();
                for _ in 0..8 {
                    let at = random.below(photo.len());
                    photo[at] = random.next() as u8;
                }
                photo
            }
            4 => vec![0xff; 21 * 1024 * 1024],
            _ => photos[random.below(photos.len())].clone(),
        })),
        _ => Some(search_request::Query::FaceId(random.text())),
    };
    let ids = |random: &mut Random| {
        let count = random.pick(&[0, 1, 3, 10_000, 10_001]);
        (0..count).map(|_| random.text()).collect()
    };
    SearchRequest {
        query,
        limit: random.optional_u32(),
        min_score: (random.below(2) == 0).then(|| random.float()),
        ef: random.optional_u32(),
        exact: random.below(10) == 0,
        filter: (random.below(2) == 0).then(|| SearchFilter {
            image_uri_prefix: random.text(),
            include_face_ids: ids(random),
            exclude_face_ids: ids(random),
            model_id: random.text(),
            person_ids: ids(random),
            min_age: (random.below(2) == 0).then(|| random.float()),
            max_age: (random.below(2) == 0).then(|| random.float()),
            gender: random.text(),
            min_gender_confidence: random.float(),
            min_quality: (random.below(2) == 0).then(|| random.float()),
        }),
        group_by_person: random.below(2) == 0,
        with_query_embeddings: random.below(2) == 0,
        // Only positions refused before any wait: a valid one would wait out the time limit.
        after: match random.below(8) {
            0 => vec![
                AppliedOffset {
                    topic: random.text(),
                    partition: -1,
                    next_offset: 0,
                };
                random.pick(&[1, 4097])
            ],
            1 => vec![AppliedOffset::default(); 4097],
            _ => Vec::new(),
        },
    }
}

/// A codec that sends raw bytes as the request message: the wrong type, or no message at all.
#[derive(Default, Clone)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buffer: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buffer.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = buffer.chunk().to_vec();
        buffer.advance(bytes.len());
        Ok(Some(bytes))
    }
}

async fn raw_call(channel: Channel, method: &'static str, body: Vec<u8>) -> Result<(), Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|error| Status::unknown(format!("not ready: {error}")))?;
    let path = http::uri::PathAndQuery::from_static(method);
    client
        .unary(tonic::Request::new(body), path, RawBytes)
        .await
        .map(|_| ())
}

/// Sends `frame` as the whole request body of `method` and returns the status it gets,
/// from the headers (an answer before any message) or the trailers.
async fn raw_frame(mut channel: Channel, method: &'static str, frame: Vec<u8>) -> Code {
    use http_body_util::BodyExt;
    use tower::Service;
    std::future::poll_fn(|context| channel.poll_ready(context))
        .await
        .expect("channel ready");
    let request = http::Request::builder()
        .method("POST")
        .uri(method)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(
            frame,
        ))))
        .expect("request");
    let response = channel
        .call(request)
        .await
        .expect("the server answers on an intact connection");
    if let Some(status) = response.headers().get("grpc-status") {
        return Code::from_bytes(status.as_bytes());
    }
    let body = response.into_body().collect().await.expect("the answer's body");
    let trailers = body.trailers().cloned().expect("the answer's trailers");
    Code::from_bytes(trailers.get("grpc-status").expect("grpc-status").as_bytes())
}

/// Peak resident memory of process `pid` (`VmHWM`), in bytes.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[test]
fn a_live_server_answers_thousands_of_hostile_requests_with_a_status_and_keeps_serving() {
    let photos: Vec<Vec<u8>> = ["yaoming.jpg", "t1.jpg", "Tom_Hanks_54745.png"]
        .iter()
        .map(|name| std::fs::read(photo(name)).expect("photo"))
        .collect();
    let archive = tempfile::tempdir().expect("tempdir");
    for name in ["players.jpg", "gdp.jpg", "t1.jpg"] {
        std::fs::copy(photo(name), archive.path().join(name)).expect("copy");
    }
    let data_dir = tempfile::tempdir().expect("tempdir");
    let data = data_dir.path().to_str().expect("utf-8");
    let indexed = facedex_command()
        .args(["index", archive.path().to_str().expect("utf-8"), "--data-dir", data])
        .output()
        .expect("index runs");
    assert!(indexed.status.success(), "{}", String::from_utf8_lossy(&indexed.stderr));
    let (server, url) = Role::start_server(
        &["serve", "--data-dir", data, "--listen", "127.0.0.1:0"],
        &[],
        "facedex: serving FaceSearch on ",
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let codes = runtime.block_on(async {
        let channel = Channel::from_shared(url)
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut client = FaceSearchClient::new(channel.clone()).max_decoding_message_size(64 << 20);
        let mut people = PeopleClient::new(channel.clone()).max_decoding_message_size(64 << 20);
        let mut random = Random(0x5eed_f00d);
        let mut codes = BTreeMap::<String, usize>::new();
        for number in 0..REQUESTS {
            let answer = match random.below(12) {
                0..=4 => client.search(search(&mut random, &photos)).await.map(|_| ()),
                5 => {
                    let count = random.pick(&[0, 1, 5, 64, 65]);
                    let searches = (0..count).map(|_| search(&mut random, &photos)).collect();
                    client.search_batch(SearchBatchRequest { searches }).await.map(|_| ())
                }
                6 => {
                    let request = GetFaceRequest {
                        face_id: random.text(),
                        with_embedding: random.below(2) == 0,
                    };
                    client.get_face(request).await.map(|_| ())
                }
                7 => {
                    let selector = match random.below(4) {
                        0 => None,
                        1 => Some(delete_request::Selector::FaceIds(FaceIds {
                            face_ids: (0..random.pick(&[0, 1, 10_001])).map(|_| random.text()).collect(),
                        })),
                        // Prefixes and URIs no indexed photo has: the index keeps its faces.
                        2 => Some(delete_request::Selector::ImageUri(format!("none://{}", random.text()))),
                        _ => Some(delete_request::Selector::ImageUriPrefix(String::new())),
                    };
                    client.delete(DeleteRequest { selector }).await.map(|_| ())
                }
                8 => client.get_index_info(GetIndexInfoRequest {}).await.map(|_| ()),
                9 | 10 => people_call(&mut random, &mut people).await,
                _ => {
                    let method = random.pick(&[
                        "/facedex.v1.FaceSearch/Search",
                        "/facedex.v1.FaceSearch/SearchBatch",
                        "/facedex.v1.FaceSearch/GetFace",
                        "/facedex.v1.FaceSearch/Delete",
                        "/facedex.v1.FaceSearch/NoSuchMethod",
                        "/facedex.v1.People/ListPeople",
                        "/facedex.v1.People/MergePeople",
                    ]);
                    let body = match random.below(3) {
                        0 => {
                            let length = random.below(256);
                            random.bytes(length)
                        }
                        // A valid message of another type.
                        1 => prost::Message::encode_to_vec(&GetFaceRequest {
                            face_id: random.text(),
                            with_embedding: true,
                        }),
                        _ => Vec::new(),
                    };
                    raw_call(channel.clone(), method, body).await
                }
            };
            let code = answer.err().map_or(Code::Ok, |status| {
                assert!(
                    !status.message().contains("transport error") && !status.message().contains("not ready"),
                    "request {number}: the connection broke: {status:?}"
                );
                assert_ne!(status.code(), Code::Internal, "request {number}: {status:?}");
                status.code()
            });
            *codes.entry(format!("{code:?}")).or_default() += 1;
        }
        // Hand-built gRPC frames, which no client library sends: a length prefix longer than
        // the body, a cut frame header, no message at all, a compressed flag without an
        // encoding, an invalid flag, a 4 GiB length, two messages for a unary call. Framing
        // errors are the protocol's, and the gRPC spec answers some of them INTERNAL: here only
        // an answer is required, and the connection must survive.
        let frames: [Vec<u8>; 7] = [
            vec![0, 0, 0, 0, 100, 1, 2, 3],
            vec![0, 0, 0],
            Vec::new(),
            vec![1, 0, 0, 0, 1, 0],
            vec![7, 0, 0, 0, 0],
            vec![0, 0xff, 0xff, 0xff, 0xff, 0],
            vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ];
        for frame in &frames {
            for method in ["/facedex.v1.FaceSearch/Search", "/facedex.v1.FaceSearch/Delete"] {
                let code = raw_frame(channel.clone(), method, frame.clone()).await;
                *codes.entry(format!("frame {code:?}")).or_default() += 1;
            }
        }

        // Still serving, with every face.
        let info = client
            .get_index_info(GetIndexInfoRequest {})
            .await
            .expect("still serving")
            .into_inner();
        assert!(info.faces > 0, "{info:?}");
        codes
    });
    let peak = peak_rss_bytes(server.id());
    let frames: usize = codes
        .iter()
        .filter(|(code, _)| code.starts_with("frame"))
        .map(|(_, count)| count)
        .sum();
    eprintln!(
        "grpc fuzz: {REQUESTS} requests and {frames} hand-built frames, answers by code {codes:?}, server peak RSS {:.0} MiB",
        peak as f64 / (1 << 20) as f64
    );
    assert!(codes.len() > 3, "the requests reach many outcomes: {codes:?}");
    assert!(peak < MAX_PEAK_RSS_BYTES, "peak RSS {peak} bytes");
    server.terminate();
}
