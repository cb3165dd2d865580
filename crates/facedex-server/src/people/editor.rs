//! Where a People edit goes: straight into the store (journaled) for `facedex serve`, or
//! through the log every indexer applies (the Kafka people-edits topic) for `facedex indexer`.

use std::sync::Arc;

use facedex_index::{FaceStore, PeopleEdit, PersonId};

use crate::calls::run_blocking;
use crate::error::ServiceError;

/// Applies users' people edits and says which person each left in place.
#[tonic::async_trait]
pub trait PeopleEditor: Send + Sync + 'static {
    /// Applies `edit` durably; the caller then reads its own write.
    async fn apply(&self, edit: PeopleEdit) -> Result<PersonId, ServiceError>;
}

/// Edits applied to one store directly, journaled before they answer.
pub struct StoreEditor {
    store: Arc<FaceStore>,
}

impl StoreEditor {
    /// An editor of `store`.
    pub fn new(store: Arc<FaceStore>) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl PeopleEditor for StoreEditor {
    async fn apply(&self, edit: PeopleEdit) -> Result<PersonId, ServiceError> {
        let store = Arc::clone(&self.store);
        run_blocking(move || Ok(store.edit_people(&edit)?)).await
    }
}
