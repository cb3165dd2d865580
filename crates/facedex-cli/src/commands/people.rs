//! `facedex people`: a People client — list the persons of a running server, show one, and
//! rename, hide, merge, split or re-cluster them (edits need the write token).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use facedex_proto::{
    Face, GetPersonRequest, HidePersonRequest, ListPeopleRequest, MergePeopleRequest, MoveFacesRequest, Person,
    ReclusterRequest, RenamePersonRequest,
};
use serde_json::json;

use crate::commands::client::{PeopleClient, ServerFlags};
use crate::config::FacedexConfig;

/// Arguments of `facedex people`.
#[derive(Debug, Args)]
pub struct PeopleArgs {
    #[command(flatten)]
    server: ServerFlags,
    /// One JSON object per line instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: PeopleCommand,
}

#[derive(Debug, Subcommand)]
enum PeopleCommand {
    /// The persons, the largest first.
    List {
        /// Persons to skip.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Persons to print (1–1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// List hidden persons too.
        #[arg(long)]
        hidden: bool,
    },
    /// One person and its faces.
    Show {
        /// The person (16 hexadecimal characters).
        person_id: String,
        /// Faces to skip.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Faces to print (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Name a person; an empty NAME clears the name.
    Rename {
        /// The person.
        person_id: String,
        /// Its name (at most 200 bytes).
        name: String,
    },
    /// Hide a person from listings (its faces stay searchable).
    Hide {
        /// The person.
        person_id: String,
        /// Show it again instead.
        #[arg(long)]
        unhide: bool,
    },
    /// Move every face of the FROM persons into INTO.
    Merge {
        /// The person that stays.
        into: String,
        /// The persons merged into it.
        #[arg(required = true)]
        from: Vec<String>,
    },
    /// Move faces into a new person, or into `--to` an existing one.
    Split {
        /// The faces (32 hexadecimal characters each).
        #[arg(required = true)]
        face_ids: Vec<String>,
        /// The person they go to (a new one when unset).
        #[arg(long, value_name = "PERSON_ID")]
        to: Option<String>,
    },
    /// Rebuild the assignment from the graph, keeping what users decided.
    Recluster {
        /// How long each call to the server may work.
        #[arg(long, default_value_t = 10_000)]
        budget_ms: u32,
        /// Start over instead of going on where the last re-cluster stopped.
        #[arg(long)]
        restart: bool,
        /// Make one call only, instead of calling until every face is visited.
        #[arg(long)]
        once: bool,
    },
}

/// Sends the people request and prints the answer.
pub fn run(_config: FacedexConfig, args: PeopleArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut client = args.server.connect_people().await?;
        send(&mut client, args.command, args.json).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A failed call as the user reads it: its code and message.
fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", status.code(), status.message())
}

async fn send(client: &mut PeopleClient, command: PeopleCommand, json: bool) -> anyhow::Result<()> {
    let person = match command {
        PeopleCommand::List { offset, limit, hidden } => {
            let listed = client
                .list_people(ListPeopleRequest {
                    offset,
                    limit,
                    include_hidden: hidden,
                })
                .await
                .map_err(refused)?
                .into_inner();
            if json {
                for person in &listed.persons {
                    println!("{}", person_json(person));
                }
            } else {
                println!(
                    "{} persons; {} faces in no person yet",
                    listed.total, listed.unassigned_faces
                );
                for person in &listed.persons {
                    println!("  {}", person_line(person));
                }
            }
            return Ok(());
        }
        PeopleCommand::Show {
            person_id,
            offset,
            limit,
        } => {
            let shown = client
                .get_person(GetPersonRequest {
                    person_id,
                    offset,
                    limit,
                })
                .await
                .map_err(refused)?
                .into_inner();
            let person = shown.person.unwrap_or_default();
            if json {
                let mut object = person_json(&person);
                object["faces"] = shown.faces.iter().map(face_json).collect();
                println!("{object}");
            } else {
                println!("{}", person_line(&person));
                for face in &shown.faces {
                    println!("  {}  {}", face.face_id, face.image_uri);
                }
            }
            return Ok(());
        }
        PeopleCommand::Rename { person_id, name } => {
            client.rename_person(RenamePersonRequest { person_id, name }).await
        }
        PeopleCommand::Hide { person_id, unhide } => {
            client
                .hide_person(HidePersonRequest {
                    person_id,
                    hidden: !unhide,
                })
                .await
        }
        PeopleCommand::Merge { into, from } => {
            client
                .merge_people(MergePeopleRequest {
                    into_person_id: into,
                    from_person_ids: from,
                })
                .await
        }
        PeopleCommand::Split { face_ids, to } => {
            client
                .move_faces(MoveFacesRequest {
                    face_ids,
                    to_person_id: to.unwrap_or_default(),
                })
                .await
        }
        PeopleCommand::Recluster {
            budget_ms,
            restart,
            once,
        } => return recluster(client, budget_ms, restart, once, json).await,
    };
    let person = person.map_err(refused)?.into_inner();
    if json {
        println!("{}", person_json(&person));
    } else {
        println!("{}", person_line(&person));
    }
    Ok(())
}

/// Calls Recluster until every face is visited (or once), printing each call's progress.
async fn recluster(
    client: &mut PeopleClient,
    budget_ms: u32,
    restart: bool,
    once: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut restart = restart;
    loop {
        let progress = client
            .recluster(ReclusterRequest { budget_ms, restart })
            .await
            .map_err(refused)?
            .into_inner();
        restart = false;
        if json {
            println!(
                "{}",
                json!({
                    "finished": progress.finished,
                    "visited": progress.visited,
                    "slots": progress.slots,
                    "people": progress.people,
                })
            );
        } else {
            println!(
                "re-cluster: {} of {} faces visited, {} persons{}",
                progress.visited,
                progress.slots,
                progress.people,
                if progress.finished { "; done" } else { "" }
            );
        }
        if progress.finished || once {
            return Ok(());
        }
    }
}

/// A person in one table line: id, face count, name, and where its representative face is.
fn person_line(person: &Person) -> String {
    let name = match person.name.is_empty() {
        true => "(no name)",
        false => person.name.as_str(),
    };
    let hidden = if person.hidden { "  hidden" } else { "" };
    let shown = person
        .representative
        .as_ref()
        .map(|face| format!("  e.g. {}", face.image_uri))
        .unwrap_or_default();
    format!(
        "{}  {:>5} faces  {name}{hidden}{shown}",
        person.person_id, person.face_count
    )
}

fn person_json(person: &Person) -> serde_json::Value {
    json!({
        "person_id": person.person_id,
        "name": person.name,
        "hidden": person.hidden,
        "face_count": person.face_count,
        "representative": person.representative.as_ref().map(face_json),
    })
}

fn face_json(face: &Face) -> serde_json::Value {
    let bounding_box = face.bounding_box.unwrap_or_default();
    json!({
        "face_id": face.face_id,
        "image_uri": face.image_uri,
        "bbox": [bounding_box.x1, bounding_box.y1, bounding_box.x2, bounding_box.y2],
        "detection_score": face.detection_score,
    })
}
