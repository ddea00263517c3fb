//! Pause and resume of sessions (docs/API.md, "Pause and resume"): the runtime stops every
//! process of the sandbox and the record says `paused`; a resume (asked for, or implied by a
//! tunnel, exec or file call, or by traffic on a tunnel that stayed open) lets them continue.
//! One transition at a time per session: concurrent callers wait for it and find it done.

use std::sync::atomic::Ordering;

use pico_wire::{ErrorCode, Session, SessionStatus};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::service::{LiveSession, SessionService, status_name, to_wire};

impl SessionService {
    /// `POST …/pause`: idempotent; a pending, failed or terminating session cannot be paused.
    pub async fn pause(&self, caller: &Caller, id: Uuid) -> Result<Session, ApiError> {
        let live = self.visible(caller, id)?;
        self.pause_live(&live, "requested").await?;
        Ok(to_wire(&live.record(), None))
    }

    /// `POST …/resume`: a running session answers as it is.
    pub async fn resume(&self, caller: &Caller, id: Uuid) -> Result<Session, ApiError> {
        let live = self.visible(caller, id)?;
        self.resume_live(&live).await?;
        Ok(to_wire(&live.record(), None))
    }

    pub(crate) async fn pause_live(&self, live: &LiveSession, why: &str) -> Result<(), ApiError> {
        let _turn = live.transition.lock().await;
        let record = live.record();
        match record.status {
            SessionStatus::Paused => return Ok(()),
            SessionStatus::Running => {}
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidState,
                    format!("a {} session cannot be paused", status_name(other)),
                ));
            }
        }
        let began = std::time::Instant::now();
        self.runtime.pause(record.id).await?;
        let paused = {
            let mut record = live.lock();
            // A delete that began meanwhile wins; its removal of the sandbox is under way.
            if record.status == SessionStatus::Running {
                record.status = SessionStatus::Paused;
                record.paused_at = Some(self.clock.now());
                // Only traffic after the pause wakes the session (see `reap`); what came
                // before is activity up to now.
                let bytes = live.bytes_relayed.load(Ordering::Relaxed);
                if live.bytes_seen.swap(bytes, Ordering::Relaxed) != bytes {
                    record.last_activity_at = self.clock.now();
                }
            }
            record.clone()
        };
        self.records.put(&paused).await?;
        self.metrics.pause_seconds.observe(began.elapsed());
        tracing::info!(session_id = %record.id, reason = why, "session paused");
        Ok(())
    }

    /// Lets a paused session's processes continue; returns once the sandbox answers again.
    pub(crate) async fn resume_live(&self, live: &LiveSession) -> Result<(), ApiError> {
        let _turn = live.transition.lock().await;
        let record = live.record();
        match record.status {
            SessionStatus::Paused => {}
            SessionStatus::Running => return Ok(()),
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidState,
                    format!("a {} session cannot be resumed", status_name(other)),
                ));
            }
        }
        let began = std::time::Instant::now();
        self.runtime.resume(record.id).await?;
        let resumed = {
            let mut record = live.lock();
            if record.status == SessionStatus::Paused {
                record.status = SessionStatus::Running;
                record.paused_at = None;
                // Resuming is activity: the idle timer starts again from now.
                record.last_activity_at = self.clock.now();
            }
            record.clone()
        };
        self.records.put(&resumed).await?;
        self.metrics.resume_seconds.observe(began.elapsed());
        tracing::info!(session_id = %record.id, "session resumed");
        Ok(())
    }
}
