//! Fakes for the session service's two seams, `Runtime` and `Records`: in memory, scripted,
//! and counting what the service asked of them.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use pico_apiserver::records::Records;
use pico_apiserver::runtime::{BoxedStream, Recovery, Runtime, RuntimeError, SandboxSpec};
use pico_apiserver::store::{SessionRecord, StoreError};
use uuid::Uuid;

/// What `create` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCreate {
    Start,
    TimeOut,
    Fail,
}

/// A runtime whose sandboxes are entries in a set.
pub struct FakeRuntime {
    pub sandboxes: Mutex<HashSet<Uuid>>,
    pub on_create: Mutex<OnCreate>,
    /// How the sandbox of a session recovers; missing = adopted.
    pub on_recover: Mutex<HashMap<Uuid, Result<Recovery, ()>>>,
    /// The next this many deletes fail.
    pub failing_deletes: AtomicU32,
    pub deletes: Mutex<Vec<Uuid>>,
    pub orphan_checks: Mutex<Vec<Vec<Uuid>>>,
    /// Sandboxes paused now, and how often pause and resume were asked for.
    pub paused: Mutex<HashSet<Uuid>>,
    pub pauses: AtomicU32,
    pub resumes: AtomicU32,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self {
            sandboxes: Mutex::default(),
            on_create: Mutex::new(OnCreate::Start),
            on_recover: Mutex::default(),
            failing_deletes: AtomicU32::new(0),
            deletes: Mutex::default(),
            orphan_checks: Mutex::default(),
            paused: Mutex::default(),
            pauses: AtomicU32::new(0),
            resumes: AtomicU32::new(0),
        }
    }
}

impl FakeRuntime {
    pub fn running(&self) -> HashSet<Uuid> {
        self.sandboxes.lock().expect("lock").clone()
    }

    pub fn deleted(&self) -> Vec<Uuid> {
        self.deletes.lock().expect("lock").clone()
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn ready(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn create(&self, spec: SandboxSpec<'_>) -> Result<(), RuntimeError> {
        let id = spec.record.id;
        // Half-made, as a real runtime would leave it before its error.
        self.sandboxes.lock().expect("lock").insert(id);
        let on_create = *self.on_create.lock().expect("lock");
        match on_create {
            OnCreate::Start => Ok(()),
            OnCreate::TimeOut => Err(RuntimeError::Timeout(
                "agent log: /var/lib/pico/sessions/x".into(),
            )),
            OnCreate::Fail => Err(RuntimeError::Create("cannot start".into())),
        }
    }

    async fn delete(&self, id: Uuid) -> Result<(), RuntimeError> {
        self.deletes.lock().expect("lock").push(id);
        let failing = self.failing_deletes.load(Ordering::SeqCst);
        if failing > 0 {
            self.failing_deletes.store(failing - 1, Ordering::SeqCst);
            return Err(RuntimeError::Delete("busy".into()));
        }
        self.sandboxes.lock().expect("lock").remove(&id);
        Ok(())
    }

    async fn connect(&self, id: Uuid) -> Result<BoxedStream, RuntimeError> {
        if !self.sandboxes.lock().expect("lock").contains(&id) {
            return Err(RuntimeError::Unreachable("no such sandbox".into()));
        }
        let (ours, _theirs) = tokio::io::duplex(64);
        Ok(Box::pin(ours))
    }

    async fn recover(&self, record: &SessionRecord) -> Result<Recovery, RuntimeError> {
        let outcome = self
            .on_recover
            .lock()
            .expect("lock")
            .get(&record.id)
            .copied()
            .unwrap_or(Ok(Recovery::Adopted));
        match outcome {
            Ok(recovery) => {
                self.sandboxes.lock().expect("lock").insert(record.id);
                Ok(recovery)
            }
            Err(()) => Err(RuntimeError::Unavailable("files are gone".into())),
        }
    }

    async fn pause(&self, id: Uuid) -> Result<(), RuntimeError> {
        self.pauses.fetch_add(1, Ordering::SeqCst);
        self.paused.lock().expect("lock").insert(id);
        Ok(())
    }

    async fn resume(&self, id: Uuid) -> Result<(), RuntimeError> {
        self.resumes.fetch_add(1, Ordering::SeqCst);
        // A real resume takes a while (a pod to start): concurrent callers overlap here.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.paused.lock().expect("lock").remove(&id);
        Ok(())
    }

    async fn remove_orphans(&self, known: &[Uuid]) -> Result<usize, RuntimeError> {
        self.orphan_checks
            .lock()
            .expect("lock")
            .push(known.to_vec());
        let mut sandboxes = self.sandboxes.lock().expect("lock");
        let before = sandboxes.len();
        sandboxes.retain(|id| known.contains(id));
        Ok(before - sandboxes.len())
    }
}

/// Records in a map.
#[derive(Default)]
pub struct FakeRecords {
    pub records: Mutex<HashMap<Uuid, SessionRecord>>,
}

impl FakeRecords {
    pub fn get(&self, id: Uuid) -> Option<SessionRecord> {
        self.records.lock().expect("lock").get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.records.lock().expect("lock").len()
    }
}

#[async_trait::async_trait]
impl Records for FakeRecords {
    async fn put(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.records
            .lock()
            .expect("lock")
            .insert(record.id, record.clone());
        Ok(())
    }

    async fn touch(&self, records: &[SessionRecord]) -> Result<(), StoreError> {
        for record in records {
            self.put(record).await?;
        }
        Ok(())
    }

    async fn remove(&self, id: Uuid) -> Result<(), StoreError> {
        self.records.lock().expect("lock").remove(&id);
        Ok(())
    }

    async fn load_all(&self) -> Result<Vec<SessionRecord>, StoreError> {
        Ok(self
            .records
            .lock()
            .expect("lock")
            .values()
            .cloned()
            .collect())
    }
}
