//! Where the service keeps its session records: the embedded redb store (local runtime) or
//! the cluster itself (Kubernetes runtime, where every replica shares one truth).

use std::sync::Arc;

use uuid::Uuid;

use crate::store::{SessionRecord, Store, StoreError};

#[async_trait::async_trait]
pub trait Records: Send + Sync + 'static {
    /// Writes a whole record: create, status change, TTL extension. A store that keeps records
    /// on the sandbox itself may ignore a record whose sandbox does not exist yet.
    async fn put(&self, record: &SessionRecord) -> Result<(), StoreError>;

    /// Records activity (`lastActivityAt`); called on every reaper pass, with the sessions
    /// whose activity changed (maybe none). A shared store may coalesce these.
    async fn touch(&self, records: &[SessionRecord]) -> Result<(), StoreError>;

    /// How late activity recorded by another replica may show here.
    fn activity_lag(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    async fn remove(&self, id: Uuid) -> Result<(), StoreError>;

    /// Every record, at start-up.
    async fn load_all(&self) -> Result<Vec<SessionRecord>, StoreError>;

    /// For a store that other replicas write too: its current view, from a watch-fed cache
    /// (no API call). `None` for a store only this server writes, whose in-memory map is then
    /// the whole truth.
    fn shared(&self) -> Option<&dyn SharedView> {
        None
    }
}

/// A cached view of records that other servers also change.
pub trait SharedView: Send + Sync {
    fn get(&self, id: Uuid) -> Option<SessionRecord>;
    fn all(&self) -> Vec<SessionRecord>;
    /// Whether pending session `id` is a create nobody finished (only that can be abandoned),
    /// rather than a running session whose sandbox is restarting.
    fn create_unfinished(&self, _id: Uuid) -> bool {
        true
    }
}

/// The local store; its calls are short redb transactions.
pub struct LocalRecords(pub Arc<Store>);

#[async_trait::async_trait]
impl Records for LocalRecords {
    async fn put(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.0.put(record)
    }

    async fn touch(&self, records: &[SessionRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.0.put_many(records)
    }

    async fn remove(&self, id: Uuid) -> Result<(), StoreError> {
        self.0.remove(id)
    }

    async fn load_all(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.0.load_all()
    }
}
