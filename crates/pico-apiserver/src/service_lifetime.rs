//! The lifetime side of the session service: the reaper's pass (expiry, idleness, activity,
//! delete retries) and recovery of sessions at start-up.

use std::sync::atomic::Ordering;
use std::time::Duration;

use pico_wire::{IdleAction, SessionStatus};

use crate::error::{ApiError, Report};
use crate::runtime::Recovery;
use crate::service::{LiveSession, SessionService};
use crate::store::SessionRecord;

impl SessionService {
    /// One reaper pass: expiry, idleness, activity flush, and retries of failed deletes.
    /// A paused session's TTL keeps running; its idle timer does not (it is asleep already),
    /// and traffic on a tunnel that stayed open through the pause wakes it.
    pub async fn reap(&self) {
        let at = self.clock.now();
        let mut touched = Vec::new();
        let activity_lag = self.records.activity_lag();
        let mut doomed = Vec::new();
        let (mut to_pause, mut to_resume) = (Vec::new(), Vec::new());
        for live in self.all() {
            let bytes = live.bytes_relayed.load(Ordering::Relaxed);
            let mut record = live.lock();
            let active = live.bytes_seen.swap(bytes, Ordering::Relaxed) != bytes;
            if active {
                record.last_activity_at = at;
                touched.push(record.clone());
            }
            let expired = record.expires_at <= at;
            // Activity seen by other replicas reaches us late: never judge idleness on less.
            let idle_after = Duration::from_secs(record.idle_timeout).max(activity_lag);
            let idle = record.idle_timeout > 0
                && record.status != SessionStatus::Paused
                && record.last_activity_at + idle_after <= at;
            let sleepy = record.idle_action == IdleAction::Pause;
            if !expired && record.status == SessionStatus::Paused && active {
                drop(record);
                to_resume.push(live.clone());
                continue;
            }
            if !expired && idle && sleepy && record.status == SessionStatus::Running {
                drop(record);
                to_pause.push(live.clone());
                continue;
            }
            let idle = idle && !sleepy;
            let stuck = record.status == SessionStatus::Terminating;
            let abandoned = self.abandoned(&record, at);
            if expired || idle || stuck || abandoned {
                let why = if expired {
                    "expired"
                } else if idle {
                    "idle"
                } else if abandoned {
                    "abandoned"
                } else {
                    "retry"
                };
                drop(record);
                doomed.push((live.clone(), why));
            }
        }
        // Called on every pass, so a store that coalesces activity can flush what it held.
        if let Err(err) = self.records.touch(&touched).await {
            tracing::error!(error = %Report(&err), "cannot record session activity");
        }
        for live in to_pause {
            if let Err(err) = self.pause_live(&live, "idle").await {
                tracing::warn!(error = %err.message, "reaper could not pause an idle session");
            }
        }
        for live in to_resume {
            if let Err(err) = self.resume_live(&live).await {
                tracing::warn!(error = %err.message, "reaper could not resume a session with traffic");
            }
        }
        for (live, why) in doomed {
            if let Err(err) = self.remove(&live, why).await {
                tracing::warn!(error = %err.message, "reaper could not remove session");
            } else {
                self.metrics.reaped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Start-up: load records, drop what expired while we were down, make the rest usable.
    pub async fn recover(&self) -> Result<(), ApiError> {
        let records = self.records.load_all().await?;
        let at = self.clock.now();
        let mut known = Vec::new();
        for mut record in records {
            let id = record.id;
            // Another replica may be creating a pending session of a shared store right now.
            let usable = matches!(
                record.status,
                SessionStatus::Running | SessionStatus::Paused
            );
            let unusable = record.expires_at <= at
                || (!usable && (self.records.shared().is_none() || self.abandoned(&record, at)));
            if unusable {
                tracing::info!(session_id = %id, status = ?record.status, "removing session left from before the restart");
                if let Err(err) = self.runtime.delete(id).await {
                    tracing::warn!(session_id = %id, error = %Report(&err), "cannot remove sandbox; will retry");
                    known.push(id);
                    record.status = SessionStatus::Terminating;
                    self.insert(record);
                    continue;
                }
                self.records.remove(id).await?;
                continue;
            }
            known.push(id);
            match self.runtime.recover(&record).await {
                Ok(Recovery::Adopted) => tracing::info!(session_id = %id, "sandbox adopted"),
                Ok(Recovery::Restarted) => {
                    tracing::info!(session_id = %id, "sandbox restarted");
                    // A paused session stays paused, even if its sandbox had to start again.
                    if record.status == SessionStatus::Paused
                        && let Err(err) = self.runtime.pause(id).await
                    {
                        tracing::warn!(session_id = %id, error = %Report(&err), "cannot pause the restarted sandbox");
                    }
                }
                Err(err) => {
                    tracing::error!(session_id = %id, error = %Report(&err), "sandbox cannot be recovered");
                    record.status = SessionStatus::Failed;
                    self.records.put(&record).await?;
                }
            }
            self.insert(record);
        }
        let removed = self.runtime.remove_orphans(&known).await?;
        if removed > 0 {
            tracing::info!(removed, "removed sandboxes without a session record");
        }
        Ok(())
    }

    pub(crate) fn insert(&self, record: SessionRecord) {
        let live = LiveSession::new(record, &self.tunnels);
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        map.insert(live.lock().id, live.clone());
    }
}
