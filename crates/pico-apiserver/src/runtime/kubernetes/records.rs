//! Session records kept on the Sandboxes themselves: reads come from the watch-fed cache,
//! writes are merge patches of annotations and `spec.shutdownTime`, so that every replica
//! (and a restarted one) sees the same sessions.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::KubernetesRuntime;
use super::api::{ApiFail, call};
use super::manifest::{self, object_name};
use crate::records::{Records, SharedView};
use crate::store::{SessionRecord, StoreError};

/// `lastActivityAt` reaches the cluster at most this often per session.
const ACTIVITY_EVERY: Duration = Duration::from_secs(60);

/// What `touch` remembers of one session.
#[derive(Debug, Default)]
pub struct Activity {
    written: Option<Instant>,
    pending: Option<OffsetDateTime>,
}

fn record_of(sandbox: &DynamicObject) -> Option<SessionRecord> {
    manifest::record_from(&serde_json::to_value(sandbox).ok()?)
}

/// resourceVersions the Sandbox watch applied lately. Kubernetes defines them as opaque
/// strings that may be compared only for equality, so read-your-writes waits until the watch
/// has applied exactly the version a write returned (or a later event removed the object).
#[derive(Debug, Default)]
pub struct SeenVersions(Mutex<VecDeque<String>>);

/// Enough for every write in flight; older versions are long in the cache.
const SEEN_VERSIONS: usize = 4096;

impl SeenVersions {
    pub fn record(&self, rv: &str) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() == SEEN_VERSIONS {
            seen.pop_front();
        }
        seen.push_back(rv.to_owned());
    }

    fn contains(&self, rv: &str) -> bool {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().rev().any(|s| s == rv)
    }
}

/// Notes the activity in `records` and takes what is due for the cluster: per session at most
/// one write every `ACTIVITY_EVERY`, the newest activity held back until then.
fn take_due(
    log: &mut HashMap<Uuid, Activity>,
    records: &[SessionRecord],
    now: Instant,
    exists: impl Fn(Uuid) -> bool,
) -> Vec<(Uuid, OffsetDateTime)> {
    for record in records {
        log.entry(record.id).or_default().pending = Some(record.last_activity_at);
    }
    log.retain(|id, _| exists(*id));
    log.iter_mut()
        .filter(|(_, a)| {
            a.written
                .is_none_or(|at| now.duration_since(at) >= ACTIVITY_EVERY)
        })
        .filter_map(|(id, a)| {
            let pending = a.pending.take()?;
            a.written = Some(now);
            Some((*id, pending))
        })
        .collect()
}

impl KubernetesRuntime {
    async fn patch(&self, id: Uuid, patch: serde_json::Value) -> Result<(), StoreError> {
        let name = object_name(id);
        match call(
            self.sandboxes
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch)),
        )
        .await
        {
            Ok(patched) => {
                // Read-your-writes: the next read on this replica sees the change.
                if let Some(written) = patched.metadata.resource_version.as_deref() {
                    self.await_cache(id, |o| o.is_none() || self.seen_versions.contains(written))
                        .await;
                }
                Ok(())
            }
            // Not made yet (the create writes the whole record) or already gone.
            Err(ApiFail::NotFound) => Ok(()),
            Err(e) => Err(StoreError::Remote {
                context: format!("patching Sandbox {name}"),
                source: e.into(),
            }),
        }
    }
}

#[async_trait::async_trait]
impl Records for KubernetesRuntime {
    async fn put(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.patch(record.id, manifest::record_patch(record)).await
    }

    async fn touch(&self, records: &[SessionRecord]) -> Result<(), StoreError> {
        let due = {
            let mut log = self
                .activity_written
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // Forget sessions that ended anywhere (on another replica too).
            take_due(&mut log, records, Instant::now(), |id| {
                self.cached(id).is_some()
            })
        };
        for (id, at) in due {
            let patch = json!({"metadata": {"annotations": {
                manifest::A_ACTIVITY: pico_wire::timestamp::format(at),
            }}});
            self.patch(id, patch).await?;
        }
        Ok(())
    }

    fn activity_lag(&self) -> Duration {
        // Held back for up to a minute, then written on the next reaper pass.
        ACTIVITY_EVERY + Duration::from_secs(10)
    }

    async fn remove(&self, id: Uuid) -> Result<(), StoreError> {
        self.delete_sandbox(&object_name(id))
            .await
            .map_err(|e| StoreError::Remote {
                context: "deleting Sandbox".into(),
                source: e.into(),
            })?;
        self.await_cache(id, |o| o.is_none()).await;
        Ok(())
    }

    async fn load_all(&self) -> Result<Vec<SessionRecord>, StoreError> {
        Ok(SharedView::all(self))
    }

    fn shared(&self) -> Option<&dyn SharedView> {
        Some(self)
    }
}

impl SharedView for KubernetesRuntime {
    fn get(&self, id: Uuid) -> Option<SessionRecord> {
        record_of(&*self.cached(id)?)
    }

    fn all(&self) -> Vec<SessionRecord> {
        self.cache
            .state()
            .iter()
            .filter_map(|s| record_of(s))
            .collect()
    }

    fn create_unfinished(&self, id: Uuid) -> bool {
        self.cached(id)
            .and_then(|s| serde_json::to_value(&*s).ok())
            .is_none_or(|s| !manifest::was_running(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touched(id: Uuid, at: OffsetDateTime) -> SessionRecord {
        let mut record: SessionRecord = serde_json::from_value(json!({
            "id": id, "owner": "a", "status": "running",
            "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T01:00:00Z",
            "last_activity_at": "2026-01-01T00:00:00Z", "metadata": {}, "image": null,
            "ttl": 3600, "idle_timeout": 0, "username": "sandbox",
            "host_public_key": "k", "authorized_key": "k",
        }))
        .expect("record");
        record.last_activity_at = at;
        record
    }

    #[test]
    fn activity_reaches_the_cluster_at_most_once_a_minute() {
        let (id, start) = (Uuid::new_v4(), Instant::now());
        let t = |s: i64| OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s);
        let mut log = HashMap::new();
        let exists = |_| true;
        // The first activity is written at once.
        assert_eq!(
            take_due(&mut log, &[touched(id, t(1))], start, exists),
            [(id, t(1))]
        );
        // Newer activity within the minute is held back, then written, newest first.
        let later = start + Duration::from_secs(30);
        assert!(take_due(&mut log, &[touched(id, t(30))], later, exists).is_empty());
        assert!(take_due(&mut log, &[touched(id, t(40))], later, exists).is_empty());
        let due = start + ACTIVITY_EVERY;
        assert_eq!(take_due(&mut log, &[], due, exists), [(id, t(40))]);
        assert!(take_due(&mut log, &[], due + ACTIVITY_EVERY, exists).is_empty());
        // A session gone from the cluster is forgotten.
        take_due(&mut log, &[], due, |_| false);
        assert!(log.is_empty());
    }
}
