//! Durable session records in an embedded redb database under `--state-dir`.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use pico_wire::SessionStatus;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

const SESSIONS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("sessions");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store")]
    Db(#[source] Box<redb::Error>),
    #[error("session store is closed after an I/O error")]
    Closed,
    /// redb's file lock is held: another server runs on the same `--state-dir`.
    #[error(
        "another pico-apiserver{} is using this --state-dir; stop it, or give this server \
         another --state-dir",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    InUse { holder: Option<u32> },
    #[error("session store record")]
    Encoding(#[from] serde_json::Error),
    /// The cluster, where the Kubernetes runtime keeps its records.
    #[error("session records in the cluster: {context}")]
    Remote {
        context: String,
        #[source]
        source: crate::runtime::Cause,
    },
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
    /// What the idle timeout does (records from before pause existed: delete).
    #[serde(default)]
    pub idle_action: pico_wire::IdleAction,
    /// When the session was paused; `None` unless it is.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub paused_at: Option<OffsetDateTime>,
}

pub struct Store {
    path: PathBuf,
    /// `None` only between closing a failed database and opening it again.
    db: RwLock<Option<Database>>,
}

/// Where the server holding the store's lock writes its pid, for the "in use" message.
fn holder_file(db: &Path) -> PathBuf {
    db.with_extension("pid")
}

/// The pid of the server holding the lock on `db`, when it wrote one and still runs.
fn lock_holder(db: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(holder_file(db))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            path: path.to_path_buf(),
            db: RwLock::new(Some(Self::open_db(path)?)),
        })
    }

    fn open_db(path: &Path) -> Result<Database, StoreError> {
        let db = match Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse {
                    holder: lock_holder(path),
                });
            }
            other => other?,
        };
        let txn = db.begin_write()?;
        txn.open_table(SESSIONS)?;
        txn.commit()?;
        // Only read when the lock is refused, so a stale file after a crash misleads no one.
        let _ = std::fs::write(holder_file(path), std::process::id().to_string());
        Ok(db)
    }

    /// Runs a write transaction. After a failed write (a full disk) redb refuses every
    /// later one until the database is opened again, so that is done once, here.
    fn write(
        &self,
        change: impl Fn(&mut redb::Table<&[u8; 16], &[u8]>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let attempt = |db: &Database| -> Result<(), StoreError> {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(SESSIONS)?;
                change(&mut table)?;
            }
            txn.commit()?;
            Ok(())
        };
        let result = match &*self.db.read().unwrap_or_else(|e| e.into_inner()) {
            Some(db) => attempt(db),
            None => Err(StoreError::Closed),
        };
        match result {
            Err(StoreError::Db(err)) if matches!(*err, redb::Error::PreviousIo) => {}
            Err(StoreError::Closed) => {}
            other => return other,
        }
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        tracing::warn!("reopening the session store after an I/O error");
        // redb holds a file lock: the old handle must be gone before the new one opens.
        drop(db.take());
        let reopened = Self::open_db(&self.path)?;
        let result = attempt(&reopened);
        *db = Some(reopened);
        result
    }

    pub fn put(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.put_many(std::slice::from_ref(record))
    }

    /// Writes several records in one transaction (one fsync).
    pub fn put_many(&self, records: &[SessionRecord]) -> Result<(), StoreError> {
        let encoded = records
            .iter()
            .map(|r| Ok((r.id, serde_json::to_vec(r)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(|table| {
            for (id, bytes) in &encoded {
                table.insert(id.as_bytes(), bytes.as_slice())?;
            }
            Ok(())
        })
    }

    pub fn remove(&self, id: Uuid) -> Result<(), StoreError> {
        self.write(|table| {
            table.remove(id.as_bytes())?;
            Ok(())
        })
    }

    pub fn load_all(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        let txn = db.as_ref().ok_or(StoreError::Closed)?.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        let mut records = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            match serde_json::from_slice::<SessionRecord>(value.value()) {
                Ok(record) => records.push(record),
                // One damaged record must not keep the server from starting.
                Err(err) => {
                    tracing::error!(error = %crate::error::Report(&err), "skipping unreadable session record")
                }
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
            idle_action: pico_wire::IdleAction::Delete,
            paused_at: None,
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

    #[test]
    fn a_store_in_use_names_its_holder_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pico.redb");
        let _held = Store::open(&path).expect("open");
        let Err(err) = Store::open(&path) else {
            panic!("a second open of a held store succeeded");
        };
        let text = format!("{:#}", anyhow::Error::new(err));
        let pid = std::process::id();
        assert_eq!(
            text,
            format!(
                "another pico-apiserver (pid {pid}) is using this --state-dir; stop it, or \
                 give this server another --state-dir"
            )
        );
    }
}
