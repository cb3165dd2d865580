//! The index split into shards, end to end on a real Apache Kafka node: the sample photos go
//! through `facedex enqueue`, `embed` and `ingest` into a 4-partition faces topic; one unsharded
//! `facedex indexer` and two replicas of each of two shards (`--shard 0/2`, `--shard 1/2`) read
//! it, and `facedex router` serves FaceSearch over the shards. Every face's embedding, as a
//! query through the router, gets the same hits as from the unsharded indexer (graph and
//! exact); face-id queries, GetFace and GetIndexInfo agree too. Then one replica of each shard
//! is killed (-9) while searches run: none fails and none changes. A Delete through the router
//! reaches every replica through Kafka, the killed ones too once restarted from their
//! snapshots; a search waiting for the faces topic's end offsets (`after`) sees a photo just
//! indexed. With a shard's last replica gone, a search is UNAVAILABLE naming that shard.
//!
//! Photo queries (no Kafka needed): a router over two `facedex serve` shards answers a query
//! photo as one index holding both shards' faces does, with the photo's faces found by one
//! shard only (the shards' model metrics count one detection per query photo in all).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use facedex_proto::face_search_client::FaceSearchClient;
use facedex_proto::pipeline as wire;
use facedex_proto::pipeline_conversions::decode;
use facedex_proto::{
    AppliedOffset, DeleteRequest, Embedding, FaceIds, GetFaceRequest, GetIndexInfoRequest, SearchRequest,
    SearchResponse, delete_request, search_request,
};
use support::cluster::{KafkaBroker, Role, free_port, wait_for_stable_group};
use support::serve::Server;
use support::topics::{PARTITIONS, end_offsets, index_info, partition_end_offsets, read_topic, wait_until};
use support::{assets_dir, facedex_command, http_request, photo, scrape_metrics};
use tonic::Code;

/// Hits per query: more than most photos' faces, so the merge cuts across shards.
const LIMIT: u32 = 7;

/// How far two processes' embeddings of one face may lie apart, component by component, and
/// so the similarities they find.
const EMBEDDING_TOLERANCE: f32 = 1e-5;

#[test]
fn a_router_over_two_shards_of_two_replicas_answers_as_one_index_and_survives_a_replica_of_each_dying()
-> anyhow::Result<()> {
    let broker = KafkaBroker::start();
    let brokers = broker.bootstrap.as_str();
    let env: Vec<(String, String)> = vec![("FACEDEX__KAFKA__PARTITIONS".into(), PARTITIONS.to_string())];

    // The photos through the pipeline into the faces topic.
    let archive = tempfile::tempdir()?;
    let photos = assets_dir().join("photos");
    for folder in [photos.clone(), photos.join("labelled")] {
        for entry in std::fs::read_dir(folder)? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::copy(&path, archive.path().join(path.file_name().context("a name")?))?;
            }
        }
    }
    // One unsharded indexer and two replicas of each of two shards (the first creates the
    // topics), then the pipeline.
    let data = tempfile::tempdir()?;
    // Each on a port of its own, so that one restarted is where the router knows it.
    let indexer = |name: &str, shard: Option<&str>, port: u16| -> anyhow::Result<(Role, String)> {
        let dir = data.path().join(name);
        let dir = dir.to_str().context("utf-8")?;
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "indexer",
            "--brokers",
            brokers,
            "--data-dir",
            dir,
            "--listen",
            &listen,
            "--no-image-search",
        ];
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        Ok(Role::start_server(&args, &env, "facedex: serving FaceSearch on "))
    };
    let ports: [u16; 4] = std::array::from_fn(|_| free_port());
    let (whole, whole_url) = indexer("whole", None, free_port())?;
    let (shard0a, shard0a_url) = indexer("0a", Some("0/2"), ports[0])?;
    let (shard0b, shard0b_url) = indexer("0b", Some("0/2"), ports[1])?;
    let (shard1a, shard1a_url) = indexer("1a", Some("1/2"), ports[2])?;
    let (shard1b, shard1b_url) = indexer("1b", Some("1/2"), ports[3])?;
    let (embed, embed_url) = Role::start_server(
        &["embed", "--listen", "127.0.0.1:0"],
        &env,
        "facedex: serving Embedder on ",
    );
    let (ingest, _) = Role::start(
        &["ingest", "--brokers", brokers, "--embed", &embed_url],
        &env,
        "facedex: ingest worker in group",
    );
    wait_for_stable_group(brokers, "facedex-ingest", 1)?;
    let enqueue = || -> anyhow::Result<()> {
        let output = facedex_command()
            .args([
                "enqueue",
                archive.path().to_str().context("utf-8")?,
                "--brokers",
                brokers,
            ])
            .envs(env.iter().map(|(key, value)| (key, value)))
            .output()?;
        ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        Ok(())
    };
    enqueue()?;
    let photos = std::fs::read_dir(archive.path())?.count() as u64;
    wait_until("every photo is indexed or dead-lettered", || {
        Ok(end_offsets(brokers, "facedex.faces")? + end_offsets(brokers, "facedex.dead-letter")? >= photos)
    })?;
    let batches = read_topic(brokers, "facedex.faces")?
        .iter()
        .map(|payload| decode::<wire::FaceBatch>("FaceBatch", payload))
        .collect::<Result<Vec<_>, _>>()?;
    let yaoming = batches
        .iter()
        .find(|batch| {
            batch
                .image
                .as_ref()
                .is_some_and(|image| image.uri.ends_with("/yaoming.jpg"))
        })
        .and_then(|batch| batch.faces.first())
        .map(|face| face.embedding.clone())
        .context("yaoming.jpg has a face")?;
    let queries: Vec<Vec<f32>> = batches
        .into_iter()
        .flat_map(|batch| batch.faces.into_iter().map(|face| face.embedding))
        .collect();
    ensure!(queries.len() >= 20, "the sample photos hold faces: {}", queries.len());

    let faces_records = end_offsets(brokers, "facedex.faces")?;
    wait_until("every indexer applied its partitions", || {
        let applied = |url: &str| -> anyhow::Result<u64> { faces_applied(&index_info(url)?) };
        Ok(applied(&whole_url)? == faces_records
            && applied(&shard0a_url)? + applied(&shard1a_url)? == faces_records
            && applied(&shard0b_url)? + applied(&shard1b_url)? == faces_records)
    })?;
    let shard_faces = [index_info(&shard0a_url)?.faces, index_info(&shard1a_url)?.faces];
    ensure!(
        shard_faces.iter().all(|faces| *faces > 0),
        "both shards hold faces: {shard_faces:?}"
    );
    ensure!(
        index_info(&shard0b_url)?.faces == shard_faces[0],
        "the replicas of shard 0 converge"
    );
    ensure!(
        index_info(&shard1b_url)?.faces == shard_faces[1],
        "the replicas of shard 1 converge"
    );

    let (router, router_url) = Role::start_server(
        &[
            "router",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--shard",
            &format!("{shard0a_url},{shard0b_url}"),
            "--shard",
            &format!("{shard1a_url},{shard1b_url}"),
        ],
        &env,
        "facedex: serving FaceSearch on ",
    );
    let console = router.console_addr().context("the router serves the web console")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let whole_client = runtime.block_on(FaceSearchClient::connect(whole_url.clone()))?;
    let router_client = runtime.block_on(FaceSearchClient::connect(router_url.clone()))?;

    // The same hits through the router as from one index: by the graph and exact, by embedding
    // and by face id. `same_hits` returns one index's hits once the router gave the same.
    let same_hits = |what: &str, request: SearchRequest| -> anyhow::Result<Vec<(String, f32)>> {
        let want = hits(
            &runtime
                .block_on(whole_client.clone().search(request.clone()))?
                .into_inner(),
        );
        let got = hits(&runtime.block_on(router_client.clone().search(request))?.into_inner());
        ensure!(got == want, "{what}: the router gave {got:?}, one index {want:?}");
        Ok(want)
    };
    let mut expected = Vec::with_capacity(queries.len());
    let mut face_ids = Vec::new();
    for (query, vector) in queries.iter().enumerate() {
        same_hits(&format!("exact query {query}"), embedding_search(vector, true))?;
        let want = same_hits(&format!("query {query}"), embedding_search(vector, false))?;
        face_ids.extend(want.iter().map(|(face_id, _)| face_id.clone()));
        expected.push(want);
    }
    face_ids.sort();
    face_ids.dedup();

    // The web console over the router: the whole index's size, a face's thumbnail cut from its
    // photo (through the shards' GetFace), and no people, which live on the indexers.
    let console_get = |path: &str| -> anyhow::Result<(u16, Vec<u8>)> { http_request(&console, "GET", path, &[], &[]) };
    let (status, info) = console_get("/api/info")?;
    let info: serde_json::Value = serde_json::from_slice(&info)?;
    let whole_faces = index_info(&whole_url)?.faces;
    ensure!(
        status == 200 && info["faces"].as_u64() == Some(whole_faces),
        "console info over the router: {info}, the whole index {whole_faces}"
    );
    let (status, people) = console_get("/api/people")?;
    ensure!(
        status == 501 && String::from_utf8_lossy(&people).contains("indexer"),
        "people on a router: {status} {}",
        String::from_utf8_lossy(&people)
    );
    let (status, thumbnail) = console_get(&format!("/api/faces/{}/thumbnail", face_ids[0]))?;
    ensure!(
        status == 200,
        "thumbnail over the router: {}",
        String::from_utf8_lossy(&thumbnail)
    );
    ensure!(image::load_from_memory(&thumbnail)?.width() == 250);

    // The same through a router that finds each shard's replicas by DNS (`dns:HOST:PORT`, as
    // a headless Service names a shard's pods).
    let dns = |port: u16| format!("dns:localhost:{port}");
    let (dns_router, dns_router_url) = Role::start_server(
        &[
            "router",
            "--listen",
            "127.0.0.1:0",
            "--shard",
            &format!("{},{}", dns(ports[0]), dns(ports[1])),
            "--shard",
            &format!("{},{}", dns(ports[2]), dns(ports[3])),
        ],
        &env,
        "facedex: serving FaceSearch on ",
    );
    // The first queries through the router at `url` get the hits one index gave them.
    let answers_as_one_index = |url: String, what: &str| -> anyhow::Result<()> {
        let client = runtime.block_on(FaceSearchClient::connect(url))?;
        for (query, vector) in queries.iter().enumerate().take(6) {
            let got = hits(
                &runtime
                    .block_on(client.clone().search(embedding_search(vector, false)))?
                    .into_inner(),
            );
            ensure!(got == expected[query], "query {query} {what}: {got:?}");
        }
        Ok(())
    };
    answers_as_one_index(dns_router_url, "through DNS-found replicas")?;
    dns_router.terminate();

    // Indexers name their shard on every answer: a router that lists one under the wrong shard
    // passes it over. Here shard 0 also lists a replica of shard 1 (and an unsharded indexer):
    // the answers stay one index's. With the two shards' lists swapped, no replica serves
    // either: UNAVAILABLE, saying which shard each serves.
    let misplaced = |shard0: String, shard1: String| {
        Role::start_server(
            &[
                "router",
                "--listen",
                "127.0.0.1:0",
                "--shard",
                &shard0,
                "--shard",
                &shard1,
            ],
            &env,
            "facedex: serving FaceSearch on ",
        )
    };
    let (mixed_router, mixed_url) = misplaced(
        format!("{shard1a_url},{whole_url},{shard0a_url}"),
        format!("{shard1b_url},{shard0b_url}"),
    );
    answers_as_one_index(mixed_url, "through a router listing replicas under the wrong shard")?;
    mixed_router.terminate();
    let (swapped_router, swapped_url) = misplaced(
        format!("{shard1a_url},{shard1b_url}"),
        format!("{shard0a_url},{shard0b_url}"),
    );
    let swapped = runtime.block_on(async {
        let mut client = FaceSearchClient::connect(swapped_url).await?;
        anyhow::Ok(client.search(embedding_search(&queries[0], false)).await)
    })?;
    let Err(swapped) = swapped else {
        anyhow::bail!("a router with swapped shard lists answered a search");
    };
    ensure!(
        // Whichever shard fails first names its replicas' real shard.
        swapped.code() == Code::Unavailable
            && (swapped
                .message()
                .contains("it serves shard 1/2, and the router lists it under shard 0/2")
                || swapped
                    .message()
                    .contains("it serves shard 0/2, and the router lists it under shard 1/2")),
        "swapped shard lists: {swapped:?}"
    );
    swapped_router.terminate();

    // Discovered instead of listed: a router given a pool of indexers sorts them into its 2
    // shards by the shard each serves, leaving out the unsharded one (0/1).
    let pool = format!("{whole_url},{shard1b_url},{shard0a_url},{shard1a_url},{shard0b_url}");
    let (found_router, found_url) = Role::start_server(
        &[
            "router",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--discover",
            &pool,
        ],
        &env,
        "facedex: serving FaceSearch on ",
    );
    answers_as_one_index(found_url.clone(), "through discovered shards")?;
    let found = index_info(&found_url)?;
    ensure!(
        found.shards.len() == 2 && found.faces == shard_faces.iter().sum::<u64>(),
        "the discovered shards hold every face once: {} shards, {} faces",
        found.shards.len(),
        found.faces
    );
    found_router.terminate();
    for face_id in face_ids.iter().take(10) {
        let request = SearchRequest {
            query: Some(search_request::Query::FaceId(face_id.clone())),
            limit: Some(LIMIT),
            min_score: Some(-1.0),
            ..SearchRequest::default()
        };
        let got = same_hits(&format!("face-id query {face_id}"), request)?;
        ensure!(
            got.iter().all(|(hit, _)| hit != face_id),
            "the query face is left out of its hits"
        );
        let face = runtime
            .block_on(router_client.clone().get_face(GetFaceRequest {
                face_id: face_id.clone(),
                with_embedding: true,
            }))?
            .into_inner();
        ensure!(
            face.face.map(|face| face.face_id).as_ref() == Some(face_id) && face.embedding.is_some(),
            "GetFace through the router finds {face_id}"
        );
    }
    let info = runtime
        .block_on(router_client.clone().get_index_info(GetIndexInfoRequest {}))?
        .into_inner();
    ensure!(
        info.faces == index_info(&whole_url)?.faces && info.faces == shard_faces.iter().sum::<u64>(),
        "GetIndexInfo sums the shards: {} faces, one index {}",
        info.faces,
        index_info(&whole_url)?.faces
    );
    let listed: Vec<(u32, u64)> = info
        .shards
        .iter()
        .map(|shard| (shard.shard, shard.info.as_ref().map_or(0, |info| info.faces)))
        .collect();
    ensure!(listed == [(0, shard_faces[0]), (1, shard_faces[1])], "{listed:?}");
    ensure!(
        faces_applied(&info)? == faces_records,
        "every shard's applied offsets are listed"
    );

    // What a router refuses, before any fan-out or because it holds no index.
    let status =
        |result: Result<tonic::Response<SearchResponse>, tonic::Status>| result.err().map(|status| status.code());
    let mut zero_limit = embedding_search(&queries[0], false);
    zero_limit.limit = Some(0);
    ensure!(
        status(runtime.block_on(router_client.clone().search(zero_limit))) == Some(Code::InvalidArgument),
        "a limit of 0 is INVALID_ARGUMENT"
    );
    let unknown = runtime.block_on(router_client.clone().get_face(GetFaceRequest {
        face_id: "0".repeat(32),
        with_embedding: false,
    }));
    ensure!(
        unknown.err().map(|status| status.code()) == Some(Code::NotFound),
        "a face no shard holds is NOT_FOUND"
    );

    // One replica of each shard killed while searches run: none fails, none changes.
    let stop = Arc::new(AtomicBool::new(false));
    let searching = {
        let (stop, client, queries, expected) =
            (stop.clone(), router_client.clone(), queries.clone(), expected.clone());
        let handle = runtime.handle().clone();
        std::thread::spawn(move || -> anyhow::Result<usize> {
            let mut searches = 0;
            while !stop.load(Ordering::Relaxed) {
                let query = searches % queries.len();
                let answer = handle
                    .block_on(client.clone().search(embedding_search(&queries[query], false)))
                    .with_context(|| format!("search {searches} failed"))?
                    .into_inner();
                ensure!(hits(&answer) == expected[query], "search {searches} changed its hits");
                searches += 1;
            }
            Ok(searches)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    shard0a.kill();
    std::thread::sleep(Duration::from_millis(300));
    shard1b.kill();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let searches = searching.join().expect("the search thread")?;
    ensure!(searches >= 20, "searches kept going through the kills: {searches}");

    // A Delete through the router while a replica of each shard is down: the live replicas
    // apply it at once; the others, restarted, catch up from their snapshots and Kafka, the
    // deletion included.
    let deleted_face = face_ids[0].clone();
    let deletion = runtime
        .block_on(router_client.clone().delete(DeleteRequest {
            selector: Some(delete_request::Selector::FaceIds(FaceIds {
                face_ids: vec![deleted_face.clone()],
            })),
        }))?
        .into_inner();
    ensure!(deletion.deleted_face_ids == [deleted_face.clone()], "{deletion:?}");
    ensure!(
        deletion.written.len() == PARTITIONS as usize,
        "each shard wrote the deletion to each of its partitions: {:?}",
        deletion.written
    );
    let (shard0a, _) = indexer("0a", Some("0/2"), ports[0])?;
    let (shard1b, _) = indexer("1b", Some("1/2"), ports[3])?;
    let everyone = [&whole_url, &shard0a_url, &shard0b_url, &shard1a_url, &shard1b_url];
    wait_until("every indexer applied the faces topic and the deletion", || {
        let applied = everyone
            .iter()
            .map(|url| faces_applied(&index_info(url)?))
            .collect::<anyhow::Result<Vec<u64>>>()?;
        let faces_records = end_offsets(brokers, "facedex.faces")?;
        Ok(applied[0] == faces_records
            && applied[1] + applied[3] == faces_records
            && applied[2] + applied[4] == faces_records)
    })?;
    for url in everyone {
        let mut client = runtime.block_on(FaceSearchClient::connect(url.clone()))?;
        let gone = runtime.block_on(client.get_face(GetFaceRequest {
            face_id: deleted_face.clone(),
            with_embedding: false,
        }));
        ensure!(
            gone.err().map(|status| status.code()) == Some(Code::NotFound),
            "{url} deleted {deleted_face}"
        );
    }
    for (query, vector) in queries.iter().enumerate() {
        let got = same_hits(
            &format!("query {query} after the deletion"),
            embedding_search(vector, false),
        )?;
        ensure!(
            got.iter().all(|(face_id, _)| *face_id != deleted_face),
            "{deleted_face} is gone"
        );
    }

    // Read your writes: a photo added to the archive is found through the router as soon as
    // its faces are on the topic, by waiting for the topic's end offsets.
    std::fs::copy(
        assets_dir().join("photos/yaoming.jpg"),
        archive.path().join("zz-yaoming-again.jpg"),
    )?;
    let faces_before = end_offsets(brokers, "facedex.faces")?;
    enqueue()?;
    wait_until("the new photo's faces are on the topic", || {
        Ok(end_offsets(brokers, "facedex.faces")? > faces_before)
    })?;
    let mut request = embedding_search(&yaoming, false);
    request.after = partition_end_offsets(brokers, "facedex.faces")?
        .into_iter()
        .map(|(partition, next_offset)| AppliedOffset {
            topic: "facedex.faces".into(),
            partition,
            next_offset,
        })
        .collect();
    let answer = runtime.block_on(router_client.clone().search(request))?.into_inner();
    ensure!(
        answer.results.iter().flat_map(|result| &result.hits).any(|hit| hit
            .face
            .as_ref()
            .is_some_and(|face| face.image_uri.ends_with("zz-yaoming-again.jpg"))),
        "a search after the topic's end sees the photo just indexed: {answer:?}"
    );

    // No replica of shard 1 left: UNAVAILABLE, naming the shard and each replica.
    shard1a.kill();
    shard1b.kill();
    let started = Instant::now();
    let outage = runtime
        .block_on(router_client.clone().search(embedding_search(&queries[0], false)))
        .err()
        .context("a search with shard 1 down fails")?;
    ensure!(outage.code() == Code::Unavailable, "{outage:?}");
    for named in [
        "shard 1",
        shard1a_url.trim_start_matches("http://"),
        shard1b_url.trim_start_matches("http://"),
    ] {
        ensure!(
            outage.message().contains(named),
            "the outage names {named}: {}",
            outage.message()
        );
    }
    ensure!(
        started.elapsed() < Duration::from_secs(30),
        "the outage is reported, not waited out"
    );

    drop((whole_client, router_client));
    for role in [router, whole, shard0a, shard0b, ingest, embed] {
        role.terminate();
    }
    Ok(())
}

#[test]
fn a_photo_query_through_the_router_is_analysed_by_one_shard_and_answers_as_one_index() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    // The sample photos' faces, split into two shards by photo, and all of them in one index.
    let shards: [&[&str]; 2] = [
        &["players.jpg", "gdp.jpg"],
        &["t1.jpg", "Tom_Hanks_54745.png", "yaoming.jpg"],
    ];
    let mut dirs = Vec::new();
    for (name, photos) in [
        ("shard0", shards[0]),
        ("shard1", shards[1]),
        ("whole", &[shards[0], shards[1]].concat()[..]),
    ] {
        let dir = data.path().join(name);
        import_photos(&dir, photos)?;
        dirs.push(dir);
    }
    // No close-up pass: it would add detector runs of its own for photos whose face fills them.
    let env = [("FACEDEX__VISION__DETECTION__CLOSE_UP_PASS", "false")];
    let metrics: [String; 2] = std::array::from_fn(|_| format!("127.0.0.1:{}", free_port()));
    let shard0 = Server::start(&dirs[0], &["--metrics-addr", &metrics[0]], &env);
    let shard1 = Server::start(&dirs[1], &["--metrics-addr", &metrics[1]], &env);
    let whole = Server::start(&dirs[2], &[], &env);
    // Small batches to the shards: a photo of many faces takes several.
    let router_env = vec![("FACEDEX__SERVER__MAX_BATCH_SEARCHES".to_owned(), "4".to_owned())];
    let (_router, router_url) = Role::start_server(
        &[
            "router",
            "--listen",
            "127.0.0.1:0",
            "--shard",
            &shard0.url,
            "--shard",
            &shard1.url,
        ],
        &router_env,
        "facedex: serving FaceSearch on ",
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let whole_client = runtime.block_on(FaceSearchClient::connect(whole.url.clone()))?;
    let router_client = runtime.block_on(FaceSearchClient::connect(router_url))?;
    let queries = ["yaoming.jpg", "t1.jpg", "players.jpg", "gdp.jpg"];
    let mut query_faces = 0;
    for (turn, name) in queries.iter().enumerate() {
        // Every other query asks for the query faces' embeddings too.
        let with_query_embeddings = turn % 2 == 1;
        let request = SearchRequest {
            query: Some(search_request::Query::Image(std::fs::read(photo(name))?)),
            limit: Some(LIMIT),
            min_score: Some(-1.0),
            exact: true,
            with_query_embeddings,
            ..SearchRequest::default()
        };
        let want = runtime
            .block_on(whole_client.clone().search(request.clone()))?
            .into_inner();
        let got = runtime.block_on(router_client.clone().search(request))?.into_inner();
        ensure!(!want.results.is_empty(), "{name} has faces");
        ensure!(
            got.results.len() == want.results.len(),
            "{name}: the router found {} faces, one index {}",
            got.results.len(),
            want.results.len()
        );
        for (face, (got, want)) in got.results.iter().zip(&want.results).enumerate() {
            ensure!(
                got.query_face == want.query_face,
                "{name}, face {face}: the query faces differ"
            );
            let values = |result: &facedex_proto::QueryResult| {
                result
                    .query_embedding
                    .as_ref()
                    .map(|embedding| embedding.values.clone())
                    .unwrap_or_default()
            };
            let largest_difference = values(got)
                .iter()
                .zip(values(want))
                .map(|(got, want)| (got - want).abs())
                .fold(0.0_f32, f32::max);
            ensure!(
                values(got).len() == values(want).len() && largest_difference <= EMBEDDING_TOLERANCE,
                "{name}, face {face}: the query embeddings differ (by up to {largest_difference})"
            );
            ensure!(
                got.query_embedding.is_some() == with_query_embeddings,
                "{name}, face {face}: query embedding returned: {}, asked for: {with_query_embeddings}",
                got.query_embedding.is_some()
            );
        }
        let (got_hits, want_hits) = (hits(&got), hits(&want));
        ensure!(
            got_hits.len() == want_hits.len()
                && got_hits
                    .iter()
                    .zip(&want_hits)
                    .all(|((got_face, got_similarity), (want_face, want_similarity))| {
                        got_face == want_face && (got_similarity - want_similarity).abs() <= EMBEDDING_TOLERANCE
                    }),
            "{name}: the router gave {got_hits:?}, one index {want_hits:?}"
        );
        query_faces += want.results.len();
    }
    // Each query photo was decoded, detected and embedded by one shard, the shards taking turns.
    let model_runs = |model: &str, what: &str| -> anyhow::Result<[f64; 2]> {
        let mut per_shard = [0.0; 2];
        for (shard, addr) in metrics.iter().enumerate() {
            let label = format!("model=\"{model}\"");
            per_shard[shard] = scrape_metrics(addr)?
                .iter()
                .filter(|(series, _)| {
                    series.starts_with(&format!("facedex_models_batch_size_{what}{{")) && series.contains(&label)
                })
                .map(|(_, value)| *value)
                .sum();
        }
        Ok(per_shard)
    };
    let photos_detected = model_runs("detector", "sum")?;
    ensure!(
        photos_detected.iter().sum::<f64>() == queries.len() as f64
            && photos_detected.iter().all(|photos| *photos > 0.0),
        "{} query photos, detected by the shards {photos_detected:?}",
        queries.len()
    );
    let faces_embedded = model_runs("embedder", "sum")?;
    ensure!(
        faces_embedded.iter().sum::<f64>() == query_faces as f64,
        "{query_faces} query faces, embedded by the shards {faces_embedded:?}"
    );
    Ok(())
}

/// Indexes the faces of the sample photos `names` into a new data directory `dir` (detect, then
/// index-import: no Kafka).
fn import_photos(dir: &std::path::Path, names: &[&str]) -> anyhow::Result<()> {
    let detect = facedex_command()
        .args(["detect", "--json", "--embeddings"])
        .args(names.iter().map(|name| photo(name)))
        .env("FACEDEX__VISION__DETECTION__CLOSE_UP_PASS", "false")
        .output()?;
    ensure!(
        detect.status.success(),
        "detect: {}",
        String::from_utf8_lossy(&detect.stderr)
    );
    let detections = dir.with_extension("jsonl");
    std::fs::write(&detections, &detect.stdout)?;
    let import = facedex_command()
        .arg("index-import")
        .arg(&detections)
        .arg("--data-dir")
        .arg(dir)
        .output()?;
    ensure!(
        import.status.success(),
        "index-import: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    Ok(())
}

fn embedding_search(vector: &[f32], exact: bool) -> SearchRequest {
    SearchRequest {
        query: Some(search_request::Query::Embedding(Embedding {
            values: vector.to_vec(),
        })),
        limit: Some(LIMIT),
        min_score: Some(-1.0),
        exact,
        ..SearchRequest::default()
    }
}

/// The hits of a one-query answer: face ids and similarities.
fn hits(response: &SearchResponse) -> Vec<(String, f32)> {
    response
        .results
        .iter()
        .flat_map(|result| &result.hits)
        .map(|hit| {
            let face_id = hit.face.as_ref().map(|face| face.face_id.clone()).unwrap_or_default();
            (face_id, hit.similarity)
        })
        .collect()
}

/// The faces-topic records an index (or a router's shards together) applied.
fn faces_applied(info: &facedex_proto::IndexInfo) -> anyhow::Result<u64> {
    Ok(info
        .applied_offsets
        .iter()
        .filter(|offset| offset.topic == "facedex.faces")
        .map(|offset| u64::try_from(offset.next_offset))
        .sum::<Result<u64, _>>()?)
}
