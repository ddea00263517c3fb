//! How the service's session map follows a shared record store (the cluster): sessions other
//! replicas made appear, sessions deleted elsewhere disappear and their tunnels end. With the
//! local store the map is the whole truth and nothing here runs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use pico_wire::SessionStatus;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::service::{LiveSession, SessionService};
use crate::store::SessionRecord;

/// Marks a session as being created by this server for as long as it lives.
pub(crate) struct Creating {
    service: Arc<SessionService>,
    id: Uuid,
}

impl Creating {
    pub(crate) fn new(service: &Arc<SessionService>, id: Uuid) -> Self {
        service.creating_set().insert(id);
        Self {
            service: service.clone(),
            id,
        }
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        self.service.creating_set().remove(&self.id);
    }
}

/// The shared record wins, except that this server's later activity and a status it has
/// moved on (running, terminating) are kept until the store catches up. `restarting`: the
/// store says a session that was running is pending again (its sandbox is being recreated).
fn merge(live: &LiveSession, seen: SessionRecord, restarting: bool) {
    let mut record = live.lock();
    let rank = |s: SessionStatus| match s {
        SessionStatus::Pending => 0,
        // Running and paused follow each other: the store's word wins between them.
        SessionStatus::Running | SessionStatus::Paused => 1,
        SessionStatus::Failed => 2,
        SessionStatus::Terminating => 3,
    };
    let status = if rank(record.status) > rank(seen.status) && !restarting {
        record.status
    } else {
        seen.status
    };
    let last_activity_at = record.last_activity_at.max(seen.last_activity_at);
    *record = SessionRecord {
        status,
        last_activity_at,
        ..seen
    };
}

fn restarting(view: &dyn crate::records::SharedView, seen: &SessionRecord) -> bool {
    seen.status == SessionStatus::Pending && !view.create_unfinished(seen.id)
}

impl SessionService {
    pub(crate) fn creating_set(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.creating.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every session, after bringing the map in line with a shared store's view.
    pub(crate) fn all(&self) -> Vec<Arc<LiveSession>> {
        if let Some(view) = self.records.shared() {
            let seen = view.all();
            let ids: HashSet<Uuid> = seen.iter().map(|r| r.id).collect();
            let creating = self.creating_set().clone();
            let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
            for record in seen {
                match map.get(&record.id) {
                    Some(live) => {
                        let restarting = restarting(view, &record);
                        merge(live, record, restarting);
                    }
                    None => {
                        map.insert(record.id, LiveSession::new(record, &self.tunnels));
                    }
                }
            }
            map.retain(|id, live| {
                let keep = ids.contains(id) || creating.contains(id);
                if !keep {
                    live.cancel.cancel();
                }
                keep
            });
        }
        let map = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// One session, from the shared store's view when there is one.
    pub(crate) fn lookup(&self, id: Uuid) -> Option<Arc<LiveSession>> {
        let Some(view) = self.records.shared() else {
            let map = self.sessions.read().unwrap_or_else(|e| e.into_inner());
            return map.get(&id).cloned();
        };
        let seen = view.get(id);
        let creating = self.creating_set().contains(&id);
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        match seen {
            Some(record) => {
                let live = map
                    .entry(id)
                    .or_insert_with(|| LiveSession::new(record.clone(), &self.tunnels))
                    .clone();
                let restarting = restarting(view, &record);
                merge(&live, record, restarting);
                Some(live)
            }
            None if creating => map.get(&id).cloned(),
            None => {
                if let Some(live) = map.remove(&id) {
                    live.cancel.cancel();
                }
                None
            }
        }
    }

    /// A pending session of a shared store that no one finished creating: its replica died
    /// mid-create, long enough ago that no create can still be running.
    pub(crate) fn abandoned(&self, record: &SessionRecord, at: OffsetDateTime) -> bool {
        self.records
            .shared()
            .is_some_and(|view| view.create_unfinished(record.id))
            && record.status == SessionStatus::Pending
            && !self.creating_set().contains(&record.id)
            && record.created_at + self.settings.create_timeout * 2 + Duration::from_secs(5) <= at
    }
}
