//! The People handlers: check and convert the request, run the index on the blocking pool,
//! convert the answer. Edits go to the server's [`PeopleEditor`], durable before they answer.

use std::sync::Arc;
use std::time::Duration;

use facedex_index::{FaceStore, PeopleEdit};
use facedex_proto::people_conversions::{Page, parse_person_id, recluster_budget};
use facedex_proto::people_server::People;
use facedex_proto::{
    GetPersonRequest, GetPersonResponse, HidePersonRequest, ListPeopleRequest, ListPeopleResponse, MergePeopleRequest,
    MoveFacesRequest, Person, ReclusterRequest, ReclusterResponse, RenamePersonRequest,
};
use tonic::{Request, Response, Status};

use crate::access::{Access, AccessTokens};
use crate::calls::{run_blocking, within_time_limit};
use crate::error::ServiceError;
use crate::metrics::observed;
use crate::people::editor::PeopleEditor;

/// The `service` label of this service's request metrics.
const SERVICE: &str = "People";

/// The People service over one face store.
#[derive(Clone)]
pub struct PeopleService {
    store: Arc<FaceStore>,
    /// Where edits go.
    editor: Arc<dyn PeopleEditor>,
    /// `server.request_timeout_ms` for the reads, when set.
    read_time_limit: Option<Duration>,
    /// Who may read and who may write.
    tokens: AccessTokens,
}

impl PeopleService {
    /// A service over `store` whose edits go to `editor`, its reads ending after
    /// `read_time_limit`, its calls checked against `tokens`.
    pub fn new(
        store: Arc<FaceStore>,
        editor: Arc<dyn PeopleEditor>,
        read_time_limit: Option<Duration>,
        tokens: AccessTokens,
    ) -> Self {
        Self {
            store,
            editor,
            read_time_limit,
            tokens,
        }
    }

    /// Authorizes a write, converts its request into an edit, applies it and answers with the
    /// person it leaves in place.
    async fn edit<R>(
        &self,
        method: &'static str,
        request: Request<R>,
        edit: impl FnOnce(R) -> Result<PeopleEdit, facedex_proto::RequestError>,
    ) -> Result<Response<Person>, Status> {
        observed(SERVICE, method, async move {
            self.tokens.authorize(request.metadata(), Access::Write, method)?;
            let edit = edit(request.into_inner()).map_err(ServiceError::from)?;
            let person_id = self.editor.apply(edit).await?;
            let store = Arc::clone(&self.store);
            let person = run_blocking(move || Ok(store.index().person_summary(&person_id)?)).await?;
            tracing::info!(method, person = %person.person_id, "people edited");
            Ok(Response::new(Person::from(&person)))
        })
        .await
    }
}

#[tonic::async_trait]
impl People for PeopleService {
    async fn list_people(&self, request: Request<ListPeopleRequest>) -> Result<Response<ListPeopleResponse>, Status> {
        observed(
            SERVICE,
            "ListPeople",
            within_time_limit(self.read_time_limit, "ListPeople", async move {
                self.tokens.authorize(request.metadata(), Access::Read, "ListPeople")?;
                let request = request.into_inner();
                let page = Page::checked(request.offset, request.limit).map_err(ServiceError::from)?;
                let store = Arc::clone(&self.store);
                let listed = run_blocking(move || {
                    Ok(store
                        .index()
                        .list_people(page.offset, page.limit, request.include_hidden))
                })
                .await?;
                Ok(Response::new(ListPeopleResponse::from(&listed)))
            }),
        )
        .await
    }

    async fn get_person(&self, request: Request<GetPersonRequest>) -> Result<Response<GetPersonResponse>, Status> {
        observed(
            SERVICE,
            "GetPerson",
            within_time_limit(self.read_time_limit, "GetPerson", async move {
                self.tokens.authorize(request.metadata(), Access::Read, "GetPerson")?;
                let request = request.into_inner();
                let person_id = parse_person_id("person_id", &request.person_id).map_err(ServiceError::from)?;
                let page = Page::checked(request.offset, request.limit).map_err(ServiceError::from)?;
                let store = Arc::clone(&self.store);
                let person =
                    run_blocking(move || Ok(store.index().person(&person_id, page.offset, page.limit)?)).await?;
                Ok(Response::new(GetPersonResponse::from(&person)))
            }),
        )
        .await
    }

    async fn rename_person(&self, request: Request<RenamePersonRequest>) -> Result<Response<Person>, Status> {
        self.edit("RenamePerson", request, PeopleEdit::try_from).await
    }

    async fn hide_person(&self, request: Request<HidePersonRequest>) -> Result<Response<Person>, Status> {
        self.edit("HidePerson", request, PeopleEdit::try_from).await
    }

    async fn merge_people(&self, request: Request<MergePeopleRequest>) -> Result<Response<Person>, Status> {
        self.edit("MergePeople", request, PeopleEdit::try_from).await
    }

    async fn move_faces(&self, request: Request<MoveFacesRequest>) -> Result<Response<Person>, Status> {
        self.edit("MoveFaces", request, PeopleEdit::try_from).await
    }

    async fn recluster(&self, request: Request<ReclusterRequest>) -> Result<Response<ReclusterResponse>, Status> {
        observed(SERVICE, "Recluster", async move {
            self.tokens.authorize(request.metadata(), Access::Write, "Recluster")?;
            let (budget, restart) = recluster_budget(request.get_ref()).map_err(ServiceError::from)?;
            let store = Arc::clone(&self.store);
            let progress = run_blocking(move || Ok(store.recluster(budget, restart))).await?;
            tracing::info!(
                finished = progress.finished,
                visited = progress.visited,
                people = progress.people,
                "re-clustered"
            );
            Ok(Response::new(ReclusterResponse::from(&progress)))
        })
        .await
    }
}
