//! `facedex search`: a FaceSearch client — query by photo, face id or vector, print the hits.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};
use facedex_proto::trait_conversions::attributes_from_proto;
use facedex_proto::{AppliedOffset, Embedding, QueryResult, SearchFilter, SearchRequest, search_request};
use serde_json::json;

use crate::commands::client::ServerFlags;
use crate::config::FacedexConfig;

/// A Kafka position written TOPIC:PARTITION:NEXT_OFFSET (the topic may hold colons).
fn parse_position(text: &str) -> Result<AppliedOffset, String> {
    let malformed = || format!("{text:?} is not TOPIC:PARTITION:NEXT_OFFSET, e.g. facedex.faces:3:1200");
    let (rest, next_offset) = text.rsplit_once(':').ok_or_else(malformed)?;
    let (topic, partition) = rest.rsplit_once(':').ok_or_else(malformed)?;
    if topic.is_empty() {
        return Err(malformed());
    }
    Ok(AppliedOffset {
        topic: topic.to_owned(),
        partition: partition.parse().map_err(|_| malformed())?,
        next_offset: next_offset.parse().map_err(|_| malformed())?,
    })
}

/// Arguments of `facedex search`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("query").required(true).args(["image", "face_id", "vector_file"])))]
pub struct SearchArgs {
    #[command(flatten)]
    server: ServerFlags,
    /// Search with every face in this photo.
    #[arg(long, value_name = "PHOTO")]
    image: Option<PathBuf>,
    /// Search with an indexed face (it is left out of its own hits).
    #[arg(long, value_name = "ID")]
    face_id: Option<String>,
    /// Search with an embedding: a JSON array of 512 floats.
    #[arg(long, value_name = "FILE")]
    vector_file: Option<PathBuf>,
    /// Hits per query face (1–1000).
    #[arg(long, default_value_t = 10)]
    limit: u32,
    /// Leave out hits below this cosine similarity (the server's `default_min_score`, 0.38
    /// unless configured, when unset).
    #[arg(long, value_name = "SIMILARITY", conflicts_with = "all")]
    min_score: Option<f32>,
    /// Show every hit, also those below the server's `default_min_score`.
    #[arg(long)]
    all: bool,
    /// HNSW candidate list size (the server's default when unset).
    #[arg(long)]
    ef: Option<u32>,
    /// Brute-force search (exact, slow).
    #[arg(long)]
    exact: bool,
    /// Only faces of images whose URI starts with this.
    #[arg(long, value_name = "URI_PREFIX")]
    image_uri_prefix: Option<String>,
    /// Only faces of this person (16 hexadecimal characters; repeat for several).
    #[arg(long = "person", value_name = "PERSON_ID")]
    person_ids: Vec<String>,
    /// Only faces at least this old (years, the `age` attribute).
    #[arg(long, value_name = "YEARS")]
    min_age: Option<f32>,
    /// Only faces at most this old.
    #[arg(long, value_name = "YEARS")]
    max_age: Option<f32>,
    /// Only faces given this gender label (`female`, `male`)…
    #[arg(long, value_name = "LABEL")]
    gender: Option<String>,
    /// …with at least this confidence (0–1).
    #[arg(long, value_name = "CONFIDENCE", default_value_t = 0.0, requires = "gender")]
    min_gender_confidence: f32,
    /// Only faces of at least this quality (0–1).
    #[arg(long, value_name = "QUALITY")]
    min_quality: Option<f32>,
    /// At most one hit per person: its most similar face.
    #[arg(long)]
    group_by_person: bool,
    /// Search only once the index has applied this Kafka position, TOPIC:PARTITION:NEXT_OFFSET
    /// (a Delete's `written`, or a topic's end offset); repeat for several.
    #[arg(long, value_name = "TOPIC:PARTITION:NEXT_OFFSET", value_parser = parse_position)]
    after: Vec<AppliedOffset>,
    /// Print one JSON object per query face instead of a table.
    #[arg(long)]
    json: bool,
}

/// Sends one search and prints the results.
pub fn run(_config: FacedexConfig, args: SearchArgs) -> anyhow::Result<ExitCode> {
    let query = if let Some(path) = &args.image {
        search_request::Query::Image(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
    } else if let Some(face_id) = &args.face_id {
        search_request::Query::FaceId(face_id.clone())
    } else if let Some(path) = &args.vector_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let values: Vec<f32> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON array of numbers", path.display()))?;
        search_request::Query::Embedding(Embedding { values })
    } else {
        bail!("give --image, --face-id or --vector-file");
    };
    let request = SearchRequest {
        query: Some(query),
        limit: Some(args.limit),
        min_score: if args.all { Some(-1.0) } else { args.min_score },
        ef: args.ef,
        exact: args.exact,
        filter: Some(SearchFilter {
            image_uri_prefix: args.image_uri_prefix.clone().unwrap_or_default(),
            person_ids: args.person_ids.clone(),
            min_age: args.min_age,
            max_age: args.max_age,
            gender: args.gender.clone().unwrap_or_default(),
            min_gender_confidence: args.min_gender_confidence,
            min_quality: args.min_quality,
            ..SearchFilter::default()
        }),
        group_by_person: args.group_by_person,
        after: args.after.clone(),
        with_query_embeddings: false,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let response = runtime.block_on(send(&args, request))?;
    if args.json {
        for (position, result) in response.results.iter().enumerate() {
            println!("{}", result_json(position, result, &response.model_id));
        }
    } else {
        print_table(&response.results);
    }
    Ok(ExitCode::SUCCESS)
}

async fn send(args: &SearchArgs, request: SearchRequest) -> anyhow::Result<facedex_proto::SearchResponse> {
    let mut client = args.server.connect().await?;
    let response = client
        .search(request)
        .await
        .map_err(|status| anyhow::anyhow!("{}: {}", status.code(), status.message()))?;
    Ok(response.into_inner())
}

fn result_json(position: usize, result: &QueryResult, model_id: &str) -> serde_json::Value {
    let hits: Vec<_> = result
        .hits
        .iter()
        .map(|hit| {
            let face = hit.face.clone().unwrap_or_default();
            let bounding_box = face.bounding_box.unwrap_or_default();
            let person = face.person.clone().unwrap_or_default();
            json!({
                "face_id": face.face_id,
                "similarity": hit.similarity,
                "image_uri": face.image_uri,
                "bbox": [bounding_box.x1, bounding_box.y1, bounding_box.x2, bounding_box.y2],
                "landmarks": face.landmarks.iter().map(|point| [point.x, point.y]).collect::<Vec<_>>(),
                "detection_score": face.detection_score,
                "model_id": face.model_id,
                "person_id": person.person_id,
                "person_name": person.person_name,
                "quality": face.quality,
                "attributes": attributes_json(&face.attributes),
            })
        })
        .collect();
    let mut object = json!({"query_face": position, "model_id": model_id, "hits": hits});
    if let Some(query_face) = &result.query_face {
        let bounding_box = query_face.bounding_box.unwrap_or_default();
        object["query_bbox"] = json!([bounding_box.x1, bounding_box.y1, bounding_box.x2, bounding_box.y2]);
    }
    object
}

fn print_table(results: &[QueryResult]) {
    if results.is_empty() {
        println!("no face in the query photo");
    }
    for (position, result) in results.iter().enumerate() {
        match result.query_face.as_ref().and_then(|face| face.bounding_box) {
            Some(b) => println!(
                "query face {} at ({:.0},{:.0})-({:.0},{:.0}):",
                position + 1,
                b.x1,
                b.y1,
                b.x2,
                b.y2
            ),
            None => println!("hits:"),
        }
        if result.hits.is_empty() {
            println!("  (no hits)");
        }
        for (rank, hit) in result.hits.iter().enumerate() {
            let face = hit.face.clone().unwrap_or_default();
            let b = face.bounding_box.unwrap_or_default();
            let person = face.person.clone().unwrap_or_default();
            let person = match (person.person_name.is_empty(), person.person_id.is_empty()) {
                (false, _) => format!("  person {} ({})", person.person_name, person.person_id),
                (true, false) => format!("  person {}", person.person_id),
                (true, true) => String::new(),
            };
            let traits = traits_cell(&face);
            println!(
                "  {:>3}. {:.4}  {}  {}  ({:.0},{:.0})-({:.0},{:.0}){traits}{person}",
                rank + 1,
                hit.similarity,
                face.face_id,
                face.image_uri,
                b.x1,
                b.y1,
                b.x2,
                b.y2
            );
        }
    }
}

/// A hit's attributes as `{name: attribute}`, as `detect --json` writes them.
fn attributes_json(attributes: &[facedex_proto::FaceAttribute]) -> serde_json::Value {
    let attributes = attributes_from_proto(attributes.to_vec()).unwrap_or_default();
    crate::commands::detect::attributes_json(&attributes)
}

/// A hit's quality and attributes in a table row: `  quality 0.87, age 26.2, gender male 1.00`.
fn traits_cell(face: &facedex_proto::Face) -> String {
    let attributes = attributes_from_proto(face.attributes.clone()).unwrap_or_default();
    let cells: Vec<String> = face
        .quality
        .map(|quality| format!("quality {quality:.2}"))
        .into_iter()
        .chain(crate::commands::detect::attributes_cell(&attributes))
        .collect();
    match cells.is_empty() {
        true => String::new(),
        false => format!("  {}", cells.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_topic_partition_and_next_offset() {
        let position = parse_position("facedex.faces:3:1200").expect("a position");
        assert_eq!(
            (position.topic.as_str(), position.partition, position.next_offset),
            ("facedex.faces", 3, 1200)
        );
        for bad in ["facedex.faces:3", ":3:1", "facedex.faces:x:1", "facedex.faces:1:y"] {
            assert!(parse_position(bad).is_err(), "{bad}");
        }
    }
}
