//! Durable session records in an embedded redb database under `--state-dir`.

use std::path::Path;

use pico_wire::SessionStatus;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

const SESSIONS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("sessions");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store: {0}")]
    Db(#[source] Box<redb::Error>),
    #[error("session store record: {0}")]
    Encoding(#[from] serde_json::Error),
}

macro_rules! db_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(err: $t) -> Self {
                Self::Db(Box::new(err.into()))
            }
        }
    )*};
}
db_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Everything the server must remember about a session across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: Uuid,
    pub owner: String,
    pub status: SessionStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_activity_at: OffsetDateTime,
    pub metadata: Map<String, Value>,
    pub image: Option<String>,
    pub ttl: u64,
    pub idle_timeout: u64,
    pub username: String,
    /// OpenSSH public form of the sandbox's host key.
    pub host_public_key: String,
    /// The one public key allowed to log in.
    pub authorized_key: String,
}

pub struct Store {
    db: Database,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(SESSIONS)?;
        txn.commit()?;
        Ok(Self { db })
    }

    pub fn put(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.put_many(std::slice::from_ref(record))
    }

    /// Writes several records in one transaction (one fsync).
    pub fn put_many(&self, records: &[SessionRecord]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SESSIONS)?;
            for record in records {
                let bytes = serde_json::to_vec(record)?;
                table.insert(record.id.as_bytes(), bytes.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn remove(&self, id: Uuid) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SESSIONS)?;
            table.remove(id.as_bytes())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn load_all(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        let mut records = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            match serde_json::from_slice::<SessionRecord>(value.value()) {
                Ok(record) => records.push(record),
                // One damaged record must not keep the server from starting.
                Err(err) => tracing::error!(error = %err, "skipping unreadable session record"),
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(owner: &str) -> SessionRecord {
        let now = OffsetDateTime::now_utc();
        SessionRecord {
            id: Uuid::new_v4(),
            owner: owner.into(),
            status: SessionStatus::Running,
            created_at: now,
            expires_at: now,
            last_activity_at: now,
            metadata: Map::new(),
            image: None,
            ttl: 60,
            idle_timeout: 0,
            username: "sandbox".into(),
            host_public_key: "ssh-ed25519 AAAA".into(),
            authorized_key: "ssh-ed25519 BBBB".into(),
        }
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pico.redb");
        let (a, b) = (record("alice"), record("bob"));
        {
            let store = Store::open(&path).expect("open");
            store.put_many(&[a.clone(), b.clone()]).expect("put");
            store.remove(a.id).expect("remove");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.load_all().expect("load"), vec![b]);
    }
}
