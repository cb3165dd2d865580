//! Where a Delete goes: straight into the store (journaled) for `facedex serve`, or through
//! the faces topic every replica of the shard applies for `facedex indexer`.

use std::sync::Arc;

use facedex_index::{DeleteSelector, FaceId, FaceStore};
use facedex_proto::AppliedOffset;

use crate::calls::run_blocking;
use crate::error::ServiceError;

/// What a deletion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// The faces it removed from this index.
    pub face_ids: Vec<FaceId>,
    /// Where its records were written (one past each), when it went through a log.
    pub written: Vec<AppliedOffset>,
}

/// Deletes faces for good and says which.
#[tonic::async_trait]
pub trait FaceDeleter: Send + Sync + 'static {
    /// Deletes what `selector` names, durably; the caller then reads its own write.
    async fn delete(&self, selector: DeleteSelector) -> Result<Deleted, ServiceError>;
}

/// Deletions applied to one store directly, journaled before they answer.
pub struct StoreDeleter {
    store: Arc<FaceStore>,
}

impl StoreDeleter {
    /// A deleter of `store`.
    pub fn new(store: Arc<FaceStore>) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl FaceDeleter for StoreDeleter {
    async fn delete(&self, selector: DeleteSelector) -> Result<Deleted, ServiceError> {
        let store = Arc::clone(&self.store);
        let face_ids = run_blocking(move || Ok(store.delete(&selector)?)).await?;
        Ok(Deleted {
            face_ids,
            written: Vec::new(),
        })
    }
}
