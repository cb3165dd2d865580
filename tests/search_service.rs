//! The search service end to end: the sample photos go through `facedex detect --embeddings`
//! and `facedex index-import`, `facedex serve` runs as its own process, and a real gRPC client
//! talks to it over TCP. Faces keep their age, gender and quality through the import, and
//! searches filter on them.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use facedex_index::AttributeValue;
use facedex_proto::face_search_client::FaceSearchClient;
use facedex_proto::{
    DeleteRequest, Embedding, GetFaceRequest, GetIndexInfoRequest, SearchBatchRequest, SearchFilter, SearchRequest,
    delete_request, face_attribute, search_request,
};
use support::serve::Server;
use support::{facedex_command, iou, photo};
use tonic::Code;
use tonic::transport::Channel;

/// InsightFace's best match for yaoming.jpg among the players (player 13, see tests/parity.rs).
const PLAYER_13_BOX: [f32; 4] = [720.8068, 142.0237, 764.8746, 192.0418];

/// The sample photos indexed: all but yaoming.jpg, the query (which would find itself first).
const INDEXED_PHOTOS: [&str; 8] = [
    "players.jpg",
    "gdp.jpg",
    "t1.jpg",
    "Tom_Hanks_54745.png",
    "mask_white.jpg",
    "mask_blue.jpg",
    "mask_black.jpg",
    "mask_green.jpg",
];

fn import_sample_photos(data_dir: &Path) -> usize {
    let mut detect = facedex_command();
    detect
        .args(["detect", "--json", "--embeddings"])
        .args(INDEXED_PHOTOS.iter().map(|name| photo(name)));
    let output = detect.output().expect("detect runs");
    assert!(
        output.status.success(),
        "detect failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let faces: usize = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("JSON")["faces"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    let detections = data_dir.with_extension("jsonl");
    std::fs::write(&detections, &output.stdout).expect("write detections");
    let import = facedex_command()
        .arg("index-import")
        .arg(&detections)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("import");
    assert!(
        import.status.success(),
        "index-import failed: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    faces
}

fn image_search(bytes: Vec<u8>) -> SearchRequest {
    SearchRequest {
        query: Some(search_request::Query::Image(bytes)),
        ..SearchRequest::default()
    }
}

fn vector_search(values: Vec<f32>, limit: u32) -> SearchRequest {
    SearchRequest {
        query: Some(search_request::Query::Embedding(Embedding { values })),
        limit: Some(limit),
        ..SearchRequest::default()
    }
}

async fn expect_status(client: &mut FaceSearchClient<Channel>, request: SearchRequest, code: Code, says: &str) {
    let status = client.search(request).await.expect_err("must be refused");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(says),
        "message {:?} should say {says:?}",
        status.message()
    );
}

#[test]
fn face_search_over_grpc_end_to_end() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let data_dir = workspace.path().join("data");
    let faces = import_sample_photos(&data_dir);
    let server = Server::start(&data_dir, &[], &[("FACEDEX__SERVER__MAX_IMAGE_BYTES", "1500000")]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (deleted, remaining) = runtime.block_on(async {
        let channel = Channel::from_shared(server.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let serving = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "facedex.v1.FaceSearch".into(),
            })
            .await
            .expect("health");
        assert_eq!(
            serving.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        let mut client = FaceSearchClient::new(channel);

        let info = client
            .get_index_info(GetIndexInfoRequest {})
            .await
            .expect("info")
            .into_inner();
        assert_eq!(info.faces as usize, faces);
        assert_eq!(info.dimension, 512);
        assert!(info.model_id.starts_with("w600k_mbf-"), "{}", info.model_id);
        assert_eq!(info.last_snapshot.expect("imported snapshot").faces as usize, faces);

        // yaoming.jpg finds player 13 of players.jpg first.
        let yaoming = std::fs::read(photo("yaoming.jpg")).expect("yaoming");
        let response = client
            .search(image_search(yaoming.clone()))
            .await
            .expect("image search")
            .into_inner();
        assert_eq!(response.results.len(), 1, "one face in yaoming.jpg");
        let hits = &response.results[0].hits;
        let best = hits[0].face.clone().expect("face");
        assert!(
            best.image_uri.starts_with("file://") && best.image_uri.ends_with("/players.jpg"),
            "{}",
            best.image_uri
        );
        let b = best.bounding_box.expect("box");
        assert!(
            iou(&[b.x1, b.y1, b.x2, b.y2], &PLAYER_13_BOX) > 0.9,
            "best hit is not player 13: {b:?}"
        );
        assert!(
            (hits[0].similarity - 0.633).abs() < 0.01,
            "similarity {}",
            hits[0].similarity
        );
        assert_eq!(best.landmarks.len(), 5);
        assert!(hits.windows(2).all(|pair| pair[0].similarity >= pair[1].similarity));

        // By face id: the face itself is left out; by its own vector it comes first at ~1.
        let by_id = SearchRequest {
            query: Some(search_request::Query::FaceId(best.face_id.clone())),
            ..SearchRequest::default()
        };
        let by_id = client.search(by_id).await.expect("face id search").into_inner();
        assert!(
            by_id.results[0]
                .hits
                .iter()
                .all(|hit| hit.face.as_ref().expect("face").face_id != best.face_id)
        );
        let stored = client
            .get_face(GetFaceRequest {
                face_id: best.face_id.clone(),
                with_embedding: true,
            })
            .await
            .expect("get face")
            .into_inner();
        let vector = stored.embedding.expect("embedding").values;
        assert_eq!(vector.len(), 512);
        let exact = SearchRequest {
            exact: true,
            ..vector_search(vector.clone(), 3)
        };
        let exact = client.search(exact).await.expect("exact").into_inner();
        assert_eq!(
            exact.results[0].hits[0].face.as_ref().expect("face").face_id,
            best.face_id
        );
        assert!(exact.results[0].hits[0].similarity > 0.9999);

        let batch = SearchBatchRequest {
            searches: vec![vector_search(vector.clone(), 2), image_search(yaoming.clone())],
        };
        assert_eq!(
            client
                .search_batch(batch)
                .await
                .expect("batch")
                .into_inner()
                .responses
                .len(),
            2
        );

        // Traits: every hit carries its age, gender and quality, and filters on them return
        // only faces that meet them (t1.jpg has three women, three men).
        assert!(best.quality.is_some_and(|quality| (0.0..=1.0).contains(&quality)));
        let named: Vec<&str> = best
            .attributes
            .iter()
            .map(|attribute| attribute.name.as_str())
            .collect();
        assert_eq!(named, ["age", "gender"], "attributes of {}", best.image_uri);
        let gender_of = |face: &facedex_proto::Face| {
            face.attributes.iter().find_map(|attribute| match &attribute.value {
                Some(face_attribute::Value::Label(label)) if attribute.name == "gender" => {
                    Some((label.label.clone(), label.confidence))
                }
                _ => None,
            })
        };
        let age_of = |face: &facedex_proto::Face| {
            face.attributes.iter().find_map(|attribute| match attribute.value {
                Some(face_attribute::Value::Number(age)) if attribute.name == "age" => Some(age),
                _ => None,
            })
        };
        for exact in [false, true] {
            let women = SearchRequest {
                exact,
                // Every face, however unlike the query (the default floor would keep only
                // the players).
                min_score: Some(-1.0),
                filter: Some(SearchFilter {
                    gender: "female".into(),
                    min_gender_confidence: 0.9,
                    min_age: Some(10.0),
                    max_age: Some(60.0),
                    min_quality: Some(0.3),
                    ..SearchFilter::default()
                }),
                ..vector_search(vector.clone(), 50)
            };
            let hits = client
                .search(women)
                .await
                .expect("filtered search")
                .into_inner()
                .results[0]
                .hits
                .clone();
            assert!(hits.len() >= 3, "exact={exact}: {} women", hits.len());
            assert!(hits.len() < faces, "the filter left nothing out");
            for hit in &hits {
                let face = hit.face.as_ref().expect("face");
                let (gender, confidence) = gender_of(face).expect("a gender");
                assert!(
                    gender == "female" && confidence >= 0.9,
                    "exact={exact}: {gender} {confidence}"
                );
                assert!(age_of(face).is_some_and(|age| (10.0..=60.0).contains(&age)));
                assert!(face.quality.is_some_and(|quality| quality >= 0.3));
            }
        }
        let inverted_ages = SearchRequest {
            filter: Some(SearchFilter {
                min_age: Some(50.0),
                max_age: Some(20.0),
                ..SearchFilter::default()
            }),
            ..vector_search(vector.clone(), 5)
        };
        expect_status(&mut client, inverted_ages, Code::InvalidArgument, "filter.max_age").await;
        let bad_quality = SearchRequest {
            filter: Some(SearchFilter {
                min_quality: Some(1.5),
                ..SearchFilter::default()
            }),
            ..vector_search(vector.clone(), 5)
        };
        expect_status(
            &mut client,
            bad_quality,
            Code::InvalidArgument,
            "filter.min_quality is 1.5",
        )
        .await;

        // Bad requests: the right code and a message that says what to fix.
        expect_status(
            &mut client,
            vector_search(vec![0.1; 128], 5),
            Code::InvalidArgument,
            "512",
        )
        .await;
        let mut nan = vector.clone();
        nan[3] = f32::NAN;
        expect_status(
            &mut client,
            vector_search(nan, 5),
            Code::InvalidArgument,
            "non-finite value",
        )
        .await;
        let doubled: Vec<f32> = vector.iter().map(|value| value * 2.0).collect();
        expect_status(
            &mut client,
            vector_search(doubled, 5),
            Code::InvalidArgument,
            "unit vectors",
        )
        .await;
        expect_status(
            &mut client,
            vector_search(vector.clone(), 0),
            Code::InvalidArgument,
            "limit must be between 1 and 1000",
        )
        .await;
        expect_status(
            &mut client,
            vector_search(vector.clone(), 1001),
            Code::InvalidArgument,
            "got 1001",
        )
        .await;
        expect_status(
            &mut client,
            SearchRequest::default(),
            Code::InvalidArgument,
            "query is required",
        )
        .await;
        expect_status(&mut client, image_search(Vec::new()), Code::InvalidArgument, "empty").await;
        expect_status(
            &mut client,
            image_search(vec![0xAB; 1_600_000]),
            Code::InvalidArgument,
            "max_image_bytes",
        )
        .await;
        let truncated = yaoming[..yaoming.len() / 2].to_vec();
        expect_status(
            &mut client,
            image_search(truncated),
            Code::InvalidArgument,
            "query image",
        )
        .await;
        let unknown = SearchRequest {
            query: Some(search_request::Query::FaceId("0123456789abcdef0123456789abcdef".into())),
            ..SearchRequest::default()
        };
        expect_status(&mut client, unknown, Code::NotFound, "no face with id").await;
        let malformed = SearchRequest {
            query: Some(search_request::Query::FaceId("player-13".into())),
            ..SearchRequest::default()
        };
        expect_status(&mut client, malformed, Code::InvalidArgument, "32 hexadecimal").await;
        // An ef that would size a 32 GB candidate list: refused, and the server stays up.
        let huge_ef = SearchRequest {
            ef: Some(4_000_000_000),
            ..vector_search(vector.clone(), 5)
        };
        expect_status(
            &mut client,
            huge_ef,
            Code::InvalidArgument,
            "ef must be between 1 and 10000",
        )
        .await;
        let other_model = SearchRequest {
            filter: Some(SearchFilter {
                model_id: "glint360k_r100".into(),
                ..SearchFilter::default()
            }),
            ..vector_search(vector.clone(), 5)
        };
        expect_status(&mut client, other_model, Code::FailedPrecondition, "cannot be compared").await;

        // Delete every face of players.jpg: they stop coming back at once.
        let delete = DeleteRequest {
            selector: Some(delete_request::Selector::ImageUri(best.image_uri.clone())),
        };
        let deleted = client
            .delete(delete)
            .await
            .expect("delete")
            .into_inner()
            .deleted_face_ids;
        assert_eq!(deleted.len(), 22);
        let after = client
            .search(image_search(yaoming))
            .await
            .expect("search after delete")
            .into_inner();
        assert!(
            after.results[0].hits.iter().all(|hit| !hit
                .face
                .as_ref()
                .expect("face")
                .image_uri
                .ends_with("/players.jpg"))
        );
        (deleted, faces - 22)
    });

    // The CLI client against the same server.
    let cli = facedex_command()
        .args(["search", "--server", &server.url, "--json", "--limit", "3", "--image"])
        .arg(photo("t1.jpg"))
        .output()
        .expect("facedex search");
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&cli.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 6, "t1.jpg has six faces");
    assert!(lines.iter().all(|line| {
        line["hits"][0]["image_uri"]
            .as_str()
            .is_some_and(|uri| uri.ends_with("/t1.jpg"))
    }));

    // SIGTERM: graceful stop with a final snapshot; the deletion survives the restart.
    server.terminate();
    let server = Server::start(&data_dir, &["--no-image-search"], &[]);
    runtime.block_on(async {
        let mut client = FaceSearchClient::connect(server.url.clone()).await.expect("reconnect");
        let info = client
            .get_index_info(GetIndexInfoRequest {})
            .await
            .expect("info")
            .into_inner();
        assert_eq!(info.faces as usize, remaining);
        assert_eq!(info.deleted_total as usize, deleted.len());
        assert_eq!(
            info.last_snapshot.expect("snapshot").generation,
            2,
            "the final snapshot on SIGTERM"
        );
        for face_id in &deleted {
            let status = client
                .get_face(GetFaceRequest {
                    face_id: face_id.clone(),
                    with_embedding: false,
                })
                .await
                .expect_err("deleted");
            assert_eq!(status.code(), Code::NotFound);
        }
        let image = client.search(image_search(vec![1, 2, 3])).await.expect_err("no models");
        assert_eq!(image.code(), Code::FailedPrecondition);
    });
}

#[test]
fn a_bearer_token_guards_face_search_but_not_health() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        data_dir.path(),
        &["--no-image-search"],
        &[("FACEDEX__SERVER__AUTH_TOKEN", "let-me-in")],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let channel = Channel::from_shared(server.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut client = FaceSearchClient::new(channel.clone());
        let refused = client
            .get_index_info(GetIndexInfoRequest {})
            .await
            .expect_err("no token");
        assert_eq!(refused.code(), Code::Unauthenticated);
        let mut request = tonic::Request::new(GetIndexInfoRequest {});
        request
            .metadata_mut()
            .insert("authorization", "Bearer let-me-in".parse().expect("header"));
        assert_eq!(
            client
                .get_index_info(request)
                .await
                .expect("with token")
                .into_inner()
                .faces,
            0
        );
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        health
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .expect("health is open");
    });
}

#[test]
fn tls_from_config_serves_verified_clients_only() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("cert");
    let cert_path = workspace.path().join("server.pem");
    let key_path = workspace.path().join("server.key");
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    let data_dir = workspace.path().join("data");
    let cert = cert_path.to_string_lossy().into_owned();
    let key = key_path.to_string_lossy().into_owned();
    let server = Server::start(
        &data_dir,
        &["--no-image-search", "--http-listen", "127.0.0.1:0"],
        &[
            ("FACEDEX__SERVER__TLS__CERT_PATH", &cert),
            ("FACEDEX__SERVER__TLS__KEY_PATH", &key),
        ],
    );
    let https = server.url.replace("http://", "https://");
    // The web console serves HTTPS with the same certificate, and nothing in plaintext.
    let console = server.console.clone().expect("the console's URL");
    assert!(console.starts_with("https://"), "{console}");
    let console_addr = console.trim_start_matches("https://").trim_end_matches('/').to_owned();
    let answer = https_get(&console_addr, "/api/info", &certified.cert.pem());
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"faces\":0"),
        "{answer}"
    );
    let plaintext = support::http_request(&console_addr, "GET", "/api/info", &[], &[]);
    assert!(
        !matches!(plaintext, Ok((200, _))),
        "a plaintext request to the HTTPS console gets no answer: {plaintext:?}"
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(certified.cert.pem()))
            .domain_name("localhost");
        let channel = Channel::from_shared(https.clone())
            .expect("url")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("TLS connect");
        let info = FaceSearchClient::new(channel)
            .get_index_info(GetIndexInfoRequest {})
            .await
            .expect("info over TLS");
        assert_eq!(info.into_inner().faces, 0);
        // A plaintext client gets nowhere.
        let plaintext = async {
            let channel = Channel::from_shared(server.url.clone()).expect("url").connect().await?;
            FaceSearchClient::new(channel)
                .get_index_info(GetIndexInfoRequest {})
                .await
                .map_err(anyhow_like)?;
            Ok::<(), Box<dyn std::error::Error>>(())
        };
        assert!(plaintext.await.is_err(), "a plaintext call to a TLS server must fail");
    });
    // The CLI client verifies the server with --ca-cert.
    let vector = serde_json::to_string(&vec![0.0f32; 511].into_iter().chain([1.0]).collect::<Vec<_>>()).expect("json");
    let vector_file = workspace.path().join("vector.json");
    std::fs::write(&vector_file, vector).expect("vector");
    let cli = facedex_command()
        .args(["search", "--server", &https, "--ca-cert", &cert, "--vector-file"])
        .arg(&vector_file)
        .output()
        .expect("facedex search");
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
}

fn anyhow_like(status: tonic::Status) -> Box<dyn std::error::Error> {
    Box::new(status)
}

/// Two photo queries sent at once share one detector run and one embedder run: the models sit
/// behind the batching front end, not a lock around one photo at a time. The batch window is
/// widened so the second query certainly arrives while the first waits; the server's own
/// model metrics then show both photos in one run of each model. The close-up pass is off:
/// yaoming.jpg's face spans 60 % of its shorter side, which would add a detector run of its own.
#[test]
fn concurrent_photo_searches_share_model_runs() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let metrics_addr = format!("127.0.0.1:{}", support::cluster::free_port());
    let server = Server::start(
        data_dir.path(),
        &["--metrics-addr", &metrics_addr],
        &[
            ("FACEDEX__MODELS__MAX_WAIT_MS", "1500"),
            ("FACEDEX__VISION__DETECTION__CLOSE_UP_PASS", "false"),
        ],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let face_counts = runtime.block_on(async {
        let channel = Channel::from_shared(server.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let searches = ["yaoming.jpg", "t1.jpg"].map(|name| {
            let mut client = FaceSearchClient::new(channel.clone());
            let bytes = std::fs::read(photo(name)).expect("photo");
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let response = client.search(image_search(bytes)).await.expect("search").into_inner();
                (response.results.len(), started.elapsed())
            })
        });
        let mut answers = Vec::new();
        for search in searches {
            answers.push(search.await.expect("join"));
        }
        answers
    });
    assert_eq!(face_counts[0].0, 1, "one face in yaoming.jpg");
    assert_eq!(face_counts[1].0, 6, "six faces in t1.jpg");
    let metrics = support::scrape_metrics(&metrics_addr).expect("metrics");
    let series = |name: &str, model: &str| {
        let label = format!("model=\"{model}\"");
        metrics
            .iter()
            .find(|(series, _)| series.starts_with(&format!("{name}{{")) && series.contains(&label))
            .map(|(_, value)| *value)
            .unwrap_or_else(|| panic!("{name} for {model} missing from {metrics:?}"))
    };
    assert_eq!(
        series("facedex_models_batch_size_count", "detector"),
        1.0,
        "one detector run"
    );
    assert_eq!(
        series("facedex_models_batch_size_sum", "detector"),
        2.0,
        "with both photos"
    );
    assert_eq!(
        series("facedex_models_batch_size_count", "embedder"),
        1.0,
        "one embedder run"
    );
    assert_eq!(
        series("facedex_models_batch_size_sum", "embedder"),
        7.0,
        "with all seven faces"
    );
}

#[test]
fn reads_past_the_time_limit_or_the_clients_deadline_or_waiting_for_kafka_are_cut_short_and_the_server_goes_on() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    // A photo query waits up to 1.5 s for other queries to batch with, far past the 300 ms limit.
    let server = Server::start(
        data_dir.path(),
        &[],
        &[
            ("FACEDEX__SERVER__REQUEST_TIMEOUT_MS", "300"),
            ("FACEDEX__MODELS__MAX_WAIT_MS", "1500"),
        ],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = FaceSearchClient::connect(server.url.clone()).await.expect("connect");
        let query = std::fs::read(photo("yaoming.jpg")).expect("photo");

        // The server's limit: DEADLINE_EXCEEDED naming the setting.
        expect_status(
            &mut client,
            image_search(query.clone()),
            Code::DeadlineExceeded,
            "within the server's limit of 300 ms (server.request_timeout_ms)",
        )
        .await;

        // The client's own deadline (grpc-timeout), shorter than the server's limit: refused
        // by the deadline, not by the server's limit.
        let mut request = tonic::Request::new(image_search(query));
        request.set_timeout(Duration::from_millis(50));
        let status = client.search(request).await.expect_err("past the client's deadline");
        assert!(
            matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{status:?}"
        );
        assert!(!status.message().contains("server.request_timeout_ms"), "{status:?}");

        // A search waiting for a Kafka position this index never applies (`after`) waits up
        // to the limit rather than answering without it; a negative position is refused.
        let mut unit = vec![0.0f32; 512];
        unit[0] = 1.0;
        let position = |partition, next_offset| facedex_proto::AppliedOffset {
            topic: "facedex.faces".into(),
            partition,
            next_offset,
        };
        let mut waiting = vector_search(unit.clone(), 3);
        waiting.after = vec![position(0, 1)];
        expect_status(
            &mut client,
            waiting,
            Code::DeadlineExceeded,
            "within the server's limit of 300 ms",
        )
        .await;
        let mut negative = vector_search(unit.clone(), 3);
        negative.after = vec![position(-1, 1)];
        expect_status(&mut client, negative, Code::InvalidArgument, "after").await;

        // The server keeps answering: a quick read goes through.
        let answer = client
            .search(vector_search(unit, 3))
            .await
            .expect("a fast search")
            .into_inner();
        assert_eq!(answer.results.len(), 1, "one query vector, one result");
    });
    server.terminate();
}

#[test]
fn a_read_token_reads_only_and_the_write_token_from_a_file_writes() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let token_file = data_dir.path().with_extension("write-token");
    std::fs::write(&token_file, "writer-secret\n").expect("token file");
    let token_path = token_file.to_str().expect("utf-8");
    let server = Server::start(
        data_dir.path(),
        &["--no-image-search"],
        &[
            ("FACEDEX__SERVER__READ_TOKEN", "reader-secret"),
            ("FACEDEX__SERVER__WRITE_TOKEN_FILE", token_path),
        ],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = FaceSearchClient::connect(server.url.clone()).await.expect("connect");
        fn with<T>(token: Option<&str>, message: T) -> tonic::Request<T> {
            let mut request = tonic::Request::new(message);
            if let Some(token) = token {
                let value = format!("Bearer {token}").parse().expect("header");
                request.metadata_mut().insert("authorization", value);
            }
            request
        }
        let delete = || DeleteRequest {
            selector: Some(delete_request::Selector::ImageUri("file:///nowhere.jpg".into())),
        };
        fn code<T>(result: Result<T, tonic::Status>) -> Option<Code> {
            result.err().map(|status| status.code())
        }
        // Reads: the read token, or the write token.
        assert_eq!(
            code(
                client
                    .get_index_info(with(Some("reader-secret"), GetIndexInfoRequest {}))
                    .await
            ),
            None
        );
        assert_eq!(
            code(
                client
                    .get_index_info(with(Some("writer-secret"), GetIndexInfoRequest {}))
                    .await
            ),
            None
        );
        assert_eq!(
            code(client.get_index_info(with(None, GetIndexInfoRequest {})).await),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            code(client.get_index_info(with(Some("guess"), GetIndexInfoRequest {})).await),
            Some(Code::Unauthenticated)
        );
        // Writes: the write token only; the read token is known but not enough.
        let refused = client
            .delete(with(Some("reader-secret"), delete()))
            .await
            .expect_err("read token");
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert!(refused.message().contains("server.write_token"), "{refused:?}");
        assert_eq!(
            code(client.delete(with(None, delete())).await),
            Some(Code::Unauthenticated)
        );
        assert_eq!(code(client.delete(with(Some("writer-secret"), delete())).await), None);
    });

    // The CLI takes its token from a file or FACEDEX_TOKEN, never from a flag.
    let mut unit = vec![0.0f32; 512];
    unit[0] = 1.0;
    let vector_file = data_dir.path().with_extension("vector.json");
    std::fs::write(&vector_file, serde_json::to_string(&unit).expect("json")).expect("vector file");
    let vector = vector_file.to_str().expect("utf-8");
    let on_the_command_line = facedex_command()
        .args([
            "search",
            "--server",
            &server.url,
            "--token",
            "reader-secret",
            "--vector-file",
            vector,
        ])
        .output()
        .expect("facedex search");
    assert!(!on_the_command_line.status.success(), "a --token flag is refused");
    let from_env = facedex_command()
        .args(["search", "--server", &server.url, "--vector-file", vector])
        .env("FACEDEX_TOKEN", "reader-secret")
        .output()
        .expect("facedex search");
    assert!(
        from_env.status.success(),
        "{}",
        String::from_utf8_lossy(&from_env.stderr)
    );
    server.terminate();
}

/// `facedex serve` on `data_dir` in a shell that caps the size of any file it writes at
/// `max_file_kib` (`ulimit -f`, with SIGXFSZ ignored so that a write past the cap fails with
/// EFBIG like one on a full disk): a disk that has no room for the next snapshot. Its stderr
/// goes to `stderr`.
fn serve_with_file_size_cap(data_dir: &Path, max_file_kib: u64, stderr: &Path) -> Server {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {max_file_kib}; exec \"$0\" \"$@\""))
        .arg(support::facedex_binary())
        .args(["serve", "--no-image-search", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .envs(
            facedex_command()
                .get_envs()
                .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned()))),
        )
        .env("FACEDEX__SERVER__SNAPSHOT_INTERVAL_SECS", "1")
        .stderr(std::fs::File::create(stderr).expect("stderr file"));
    Server::spawn(command)
}

#[test]
fn a_snapshot_that_finds_no_room_fails_clearly_and_the_server_serves_on_from_the_last_one() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let faces = import_sample_photos(data_dir.path()) as u64;
    let logs = tempfile::tempdir().expect("tempdir");
    let stderr = logs.path().join("serve.stderr");
    // Room for the deletion journal, not for a snapshot's vectors (2 KiB per face).
    let mut capped = serve_with_file_size_cap(data_dir.path(), 16, &stderr);
    let url = capped.url.clone();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let deleted = runtime.block_on(async {
        let mut client = FaceSearchClient::connect(url.clone()).await.expect("connect");
        // A photo's URI as the index has it: the best hit of one of its own faces.
        let detections = std::fs::read_to_string(data_dir.path().with_extension("jsonl")).expect("detections");
        let first: serde_json::Value = serde_json::from_str(detections.lines().next().expect("a line")).expect("json");
        let embedding: Vec<f32> = serde_json::from_value(first["faces"][0]["embedding"].clone()).expect("embedding");
        let hits = client
            .search(vector_search(embedding, 1))
            .await
            .expect("search")
            .into_inner();
        let image_uri = hits.results[0].hits[0].face.as_ref().expect("face").image_uri.clone();
        let delete = DeleteRequest {
            selector: Some(delete_request::Selector::ImageUri(image_uri)),
        };
        let deleted = client
            .delete(delete)
            .await
            .expect("the journal has room")
            .into_inner()
            .deleted_face_ids
            .len();
        assert!(deleted > 0, "gdp.jpg has faces");
        let refused = client
            .create_snapshot(facedex_proto::CreateSnapshotRequest {})
            .await
            .expect_err("no room for a snapshot");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused.message().contains("File too large"),
            "the OS error is named: {refused:?}"
        );
        // Searches go on, without the deleted faces.
        let info = client
            .get_index_info(GetIndexInfoRequest {})
            .await
            .expect("serving")
            .into_inner();
        assert_eq!(info.faces, faces - deleted as u64);
        deleted as u64
    });
    // The periodic snapshot keeps retrying (every second), failing with the same clear error.
    std::thread::sleep(Duration::from_millis(3500));
    // Its final snapshot finds no room either: it exits with that error.
    capped.stop();
    let log = std::fs::read_to_string(&stderr).expect("stderr");
    let retries = log.matches("periodic snapshot failed").count();
    assert!(retries >= 2, "the snapshot is retried: {log}");

    // With room again, the previous snapshot loads and the journal re-applies the deletion.
    let server = Server::start(data_dir.path(), &["--no-image-search"], &[]);
    let info = runtime.block_on(async {
        let mut client = FaceSearchClient::connect(server.url.clone()).await.expect("connect");
        client
            .get_index_info(GetIndexInfoRequest {})
            .await
            .expect("serving")
            .into_inner()
    });
    assert_eq!(info.faces, faces - deleted, "the last snapshot plus the journal");
    server.terminate();
}

#[test]
fn the_embedder_serves_tls_and_refuses_calls_without_its_token() {
    use facedex_server::{EmbedClientAuth, EmbedConfig};
    let workspace = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("cert");
    let (cert, key, token) = (
        workspace.path().join("embed.pem"),
        workspace.path().join("embed.key"),
        workspace.path().join("embed-token"),
    );
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    std::fs::write(&token, "embed-secret\n").expect("write token");
    let text = |path: &Path| path.to_str().expect("utf-8").to_owned();
    let env = [
        ("FACEDEX__EMBED__TOKEN_FILE".to_owned(), text(&token)),
        ("FACEDEX__EMBED__TLS__CERT_PATH".to_owned(), text(&cert)),
        ("FACEDEX__EMBED__TLS__KEY_PATH".to_owned(), text(&key)),
    ];
    let (embed, url) = support::cluster::Role::start_server(
        &["embed", "--listen", "127.0.0.1:0"],
        &env,
        "facedex: serving Embedder on ",
    );
    let https = url.replace("http://127.0.0.1", "https://localhost");
    let auth = |token: Option<&Path>| {
        EmbedClientAuth::from_config(&EmbedConfig {
            token_file: token.map(Path::to_path_buf),
            ca_cert_path: Some(cert.clone()),
            ..EmbedConfig::default()
        })
        .expect("client auth")
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        // What an ingest worker does: TLS verified with the CA, the token on every call.
        let models = facedex_server::RemoteModels::connect(std::slice::from_ref(&https), &auth(Some(&token)))
            .await
            .expect("token and CA");
        assert!(
            facedex_pipeline::FaceModels::info(&*models)
                .model_id
                .starts_with("w600k_mbf-")
        );
        // The worker runs the attribute models too: a photo analysed through it gets the
        // attributes and quality an in-process analysis gives.
        let names: Vec<&str> = facedex_pipeline::FaceModels::info(&*models)
            .attribute_models
            .iter()
            .map(|model| model.name.as_str())
            .collect();
        assert_eq!(names, ["age", "gender"]);
        let config = support::vision_config();
        let remote = facedex_pipeline::PhotoAnalyzer::new(models.clone(), 2, &config)
            .analyze(
                "t1.jpg",
                std::fs::read(photo("t1.jpg")).expect("t1.jpg"),
                facedex_pipeline::Wanted::ALL,
                &mut facedex_pipeline::StageTimings::default(),
            )
            .await
            .expect("analysed through the worker")
            .faces;
        let local = tokio::task::spawn_blocking(move || {
            support::analyze_photos(&["t1.jpg"], &config, facedex_pipeline::Wanted::ALL).remove(0)
        })
        .await
        .expect("local analysis");
        assert_eq!(remote.len(), local.len());
        for (remote, local) in remote.iter().zip(&local) {
            assert_eq!(remote.attributes.len(), 2);
            assert_eq!(remote.quality, local.quality);
            for (r, l) in remote.attributes.iter().zip(&local.attributes) {
                assert_eq!((&r.name, &r.model_id), (&l.name, &l.model_id));
                match (&r.value, &l.value) {
                    (AttributeValue::Number(r), AttributeValue::Number(l)) => assert!((r - l).abs() < 1e-3),
                    (
                        AttributeValue::Label {
                            label: r,
                            confidence: rc,
                        },
                        AttributeValue::Label {
                            label: l,
                            confidence: lc,
                        },
                    ) => assert!(r == l && (rc - lc).abs() < 1e-4),
                    other => panic!("different kinds: {other:?}"),
                }
            }
        }
        let refused = facedex_server::RemoteModels::connect(std::slice::from_ref(&https), &auth(None))
            .await
            .err()
            .expect("no token");
        assert!(refused.to_string().contains("authorization"), "{refused}");
        let plaintext = facedex_server::RemoteModels::connect(std::slice::from_ref(&url), &auth(Some(&token))).await;
        assert!(plaintext.is_err(), "a plaintext call to a TLS embed worker fails");
    });
    embed.terminate();
}

/// `GET PATH` over TLS from `addr`, trusting only `ca_pem`: the whole response as text.
fn https_get(addr: &str, path: &str, ca_pem: &str) -> String {
    use std::io::{Read, Write};
    use tokio_rustls::rustls;

    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).expect("PEM certificate");
    roots.add(der).expect("a trusted certificate");
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("TLS client");
    let socket = std::net::TcpStream::connect(addr).expect("connect");
    let mut stream = rustls::StreamOwned::new(connection, socket);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = Vec::new();
    // A peer closing without close_notify still leaves the answer read so far.
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}
