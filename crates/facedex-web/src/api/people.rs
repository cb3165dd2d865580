//! The people pages' calls: list, show, rename, hide, merge, and move faces (a split when
//! they go to a new person), each through the People handler.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use facedex_proto::people_server::People;
use facedex_proto::{
    GetPersonRequest, HidePersonRequest, ListPeopleRequest, MergePeopleRequest, MoveFacesRequest, RenamePersonRequest,
};
use serde::{Deserialize, Serialize};

use super::{State, bad_json, bad_query, call};
use crate::error::WebError;
use crate::json::{FaceJson, PersonJson};
use crate::server::ConsoleState;

/// The People handler, or why there is none.
fn people(state: &ConsoleState) -> Result<&dyn People, WebError> {
    state.handlers.people.as_deref().ok_or_else(|| {
        WebError::from(tonic::Status::unimplemented(
            "this server keeps no people (a router serves FaceSearch only): open an indexer's console to see and edit them",
        ))
    })
}

/// A page of a listing.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PageParams {
    offset: u64,
    limit: u32,
    include_hidden: bool,
}

/// `GET /api/people`.
#[derive(Debug, Serialize)]
pub(crate) struct PeopleAnswer {
    total: u64,
    unassigned_faces: u64,
    persons: Vec<PersonJson>,
}

/// Persons, the largest first.
pub(crate) async fn list(
    state: State,
    headers: HeaderMap,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<PeopleAnswer>, WebError> {
    let Query(params) = params.map_err(bad_query)?;
    let request = ListPeopleRequest {
        offset: params.offset,
        limit: params.limit,
        include_hidden: params.include_hidden,
    };
    let listed = people(&state)?.list_people(call(&headers, request)).await?.into_inner();
    Ok(Json(PeopleAnswer {
        total: listed.total,
        unassigned_faces: listed.unassigned_faces,
        persons: listed.persons.iter().map(PersonJson::from).collect(),
    }))
}

/// `GET /api/people/{id}`.
#[derive(Debug, Serialize)]
pub(crate) struct PersonAnswer {
    person: Option<PersonJson>,
    faces: Vec<FaceJson>,
}

/// A person and a page of its faces.
pub(crate) async fn show(
    state: State,
    headers: HeaderMap,
    Path(person_id): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<PersonAnswer>, WebError> {
    let Query(params) = params.map_err(bad_query)?;
    let request = GetPersonRequest {
        person_id,
        offset: params.offset,
        limit: params.limit,
    };
    let person = people(&state)?.get_person(call(&headers, request)).await?.into_inner();
    Ok(Json(PersonAnswer {
        person: person.person.as_ref().map(PersonJson::from),
        faces: person.faces.iter().map(FaceJson::from).collect(),
    }))
}

/// `PUT /api/people/{id}/name`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rename {
    name: String,
}

/// Names a person (an empty name clears it).
pub(crate) async fn rename(
    state: State,
    headers: HeaderMap,
    Path(person_id): Path<String>,
    body: Result<Json<Rename>, JsonRejection>,
) -> Result<Json<PersonJson>, WebError> {
    let Json(Rename { name }) = body.map_err(bad_json)?;
    let request = RenamePersonRequest { person_id, name };
    let person = people(&state)?.rename_person(call(&headers, request)).await?;
    Ok(Json(PersonJson::from(person.get_ref())))
}

/// `PUT /api/people/{id}/hidden`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Hide {
    hidden: bool,
}

/// Hides a person from the listing, or shows it again.
pub(crate) async fn hide(
    state: State,
    headers: HeaderMap,
    Path(person_id): Path<String>,
    body: Result<Json<Hide>, JsonRejection>,
) -> Result<Json<PersonJson>, WebError> {
    let Json(Hide { hidden }) = body.map_err(bad_json)?;
    let request = HidePersonRequest { person_id, hidden };
    let person = people(&state)?.hide_person(call(&headers, request)).await?;
    Ok(Json(PersonJson::from(person.get_ref())))
}

/// `POST /api/people/{id}/merge`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Merge {
    /// The persons whose faces join this one.
    from_person_ids: Vec<String>,
}

/// Merges other persons into this one.
pub(crate) async fn merge(
    state: State,
    headers: HeaderMap,
    Path(into_person_id): Path<String>,
    body: Result<Json<Merge>, JsonRejection>,
) -> Result<Json<PersonJson>, WebError> {
    let Json(Merge { from_person_ids }) = body.map_err(bad_json)?;
    let request = MergePeopleRequest {
        into_person_id,
        from_person_ids,
    };
    let person = people(&state)?.merge_people(call(&headers, request)).await?;
    Ok(Json(PersonJson::from(person.get_ref())))
}

/// `POST /api/faces/move`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Move {
    face_ids: Vec<String>,
    /// Where they go; unset or empty makes a new person of them.
    #[serde(default)]
    to_person_id: String,
}

/// Moves faces to another person, or splits them off into a new one.
pub(crate) async fn move_faces(
    state: State,
    headers: HeaderMap,
    body: Result<Json<Move>, JsonRejection>,
) -> Result<Json<PersonJson>, WebError> {
    let Json(Move { face_ids, to_person_id }) = body.map_err(bad_json)?;
    let request = MoveFacesRequest { face_ids, to_person_id };
    let person = people(&state)?.move_faces(call(&headers, request)).await?;
    Ok(Json(PersonJson::from(person.get_ref())))
}
