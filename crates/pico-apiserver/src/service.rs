//! The session service: validation, ownership, lifetime and persistence of sessions, on top
//! of whichever runtime runs the sandboxes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use pico_wire::{CreateSessionRequest, ErrorCode, Session, SessionList, SessionStatus, SshInfo};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::Caller;
use crate::clock::Clock;
use crate::error::{ApiError, Report};
use crate::keys;
use crate::limits::{TunnelLimits, TunnelStream};
use crate::metrics::Metrics;
use crate::records::Records;
use crate::runtime::{Runtime, SandboxSpec};
use crate::service_view::Creating;
use crate::store::SessionRecord;

const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_IMAGE_LEN: usize = 512;

pub struct Settings {
    pub max_ttl: u64,
    pub max_sessions_per_user: u32,
    pub ssh_username: String,
    /// How long a runtime lets a create wait. The runtime enforces it (one timer, whose
    /// error says what was awaited); the service only uses it to judge creates that another
    /// replica abandoned.
    pub create_timeout: Duration,
    pub max_tunnels_per_session: u32,
    pub max_tunnels_per_user: u32,
    /// Public key of the server's agent connections (exec and files over HTTP).
    pub server_public_key: Option<String>,
}

/// A session the server knows, with its in-memory activity counters.
pub struct LiveSession {
    record: Mutex<SessionRecord>,
    /// Bytes relayed by tunnels; the reaper turns changes into `lastActivityAt`, so the
    /// relay never writes to the store.
    pub bytes_relayed: AtomicU64,
    pub(crate) bytes_seen: AtomicU64,
    /// Open tunnels, for the per-session cap.
    tunnels: Arc<AtomicU32>,
    /// Cancels this session's tunnels when it is deleted or expires.
    pub cancel: CancellationToken,
    /// Held while the session is paused or resumed: concurrent callers wait for one
    /// transition and then find it done (`service_pause.rs`).
    pub(crate) transition: tokio::sync::Mutex<()>,
}

impl LiveSession {
    pub(crate) fn new(record: SessionRecord, parent: &CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            record: Mutex::new(record),
            bytes_relayed: AtomicU64::new(0),
            bytes_seen: AtomicU64::new(0),
            tunnels: Arc::default(),
            cancel: parent.child_token(),
            transition: tokio::sync::Mutex::new(()),
        })
    }

    pub fn record(&self) -> SessionRecord {
        self.lock().clone()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SessionRecord> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct SessionService {
    pub(crate) records: Arc<dyn Records>,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) settings: Settings,
    pub(crate) sessions: RwLock<HashMap<Uuid, Arc<LiveSession>>>,
    /// Sessions this server is creating right now (not yet in a shared store's view).
    pub(crate) creating: Mutex<HashSet<Uuid>>,
    pub(crate) tunnels: CancellationToken,
    tunnel_limits: TunnelLimits,
    pub metrics: Arc<Metrics>,
    pub(crate) clock: Clock,
}

impl SessionService {
    pub fn new(
        records: Arc<dyn Records>,
        runtime: Arc<dyn Runtime>,
        settings: Settings,
        tunnels: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            records,
            runtime,
            tunnel_limits: TunnelLimits::new(
                settings.max_tunnels_per_session,
                settings.max_tunnels_per_user,
            ),
            settings,
            sessions: RwLock::new(HashMap::new()),
            creating: Mutex::default(),
            tunnels,
            metrics,
            clock: Clock::System,
        }
    }

    /// The same service on another clock (tests: one that follows tokio's paused clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// Another user's session answers exactly like a missing one.
    pub(crate) fn visible(&self, caller: &Caller, id: Uuid) -> Result<Arc<LiveSession>, ApiError> {
        self.lookup(id)
            .filter(|live| caller.may_see(&live.lock().owner))
            .ok_or_else(ApiError::session_not_found)
    }

    fn check_ttl(&self, ttl: u64) -> Result<(), ApiError> {
        let max = self.settings.max_ttl;
        if (pico_wire::MIN_TTL..=max).contains(&ttl) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::InvalidTtl,
            format!(
                "ttl must be between {} and {max} seconds",
                pico_wire::MIN_TTL
            ),
        )
        .with_details(json!({"min": pico_wire::MIN_TTL, "max": max, "got": ttl})))
    }

    fn check_request(&self, req: &CreateSessionRequest) -> Result<(), ApiError> {
        self.check_ttl(req.ttl.unwrap_or(pico_wire::DEFAULT_TTL))?;
        if req
            .idle_timeout
            .is_some_and(|idle| idle > pico_wire::MAX_TTL)
        {
            return Err(ApiError::invalid_request(format!(
                "idleTimeout must be between 0 and {} seconds",
                pico_wire::MAX_TTL
            )));
        }
        let bad_image = |image: &String| {
            image.is_empty()
                || image.len() > MAX_IMAGE_LEN
                || !image.chars().all(|c| c.is_ascii_graphic())
        };
        if req.image.as_ref().is_some_and(bad_image) {
            return Err(ApiError::invalid_request(format!(
                "image must be 1..={MAX_IMAGE_LEN} printable ASCII characters without spaces"
            )));
        }
        let metadata_size = |m: &serde_json::Map<String, serde_json::Value>| {
            serde_json::to_vec(m).map(|v| v.len()).unwrap_or(0)
        };
        if req
            .metadata
            .as_ref()
            .is_some_and(|m| metadata_size(m) > MAX_METADATA_BYTES)
        {
            return Err(ApiError::invalid_request(format!(
                "metadata must be at most {MAX_METADATA_BYTES} bytes of JSON"
            )));
        }
        Ok(())
    }

    pub async fn create(
        self: &Arc<Self>,
        caller: &Caller,
        req: CreateSessionRequest,
    ) -> Result<Session, ApiError> {
        self.check_request(&req)?;
        let (authorized_key, private_key) = match &req.ssh_public_key {
            Some(key) => (
                keys::validate_public_key(key)
                    .map_err(|message| ApiError::new(ErrorCode::InvalidSshKey, message))?,
                None,
            ),
            None => {
                let pair = keys::generate_ed25519("pico-session").map_err(ApiError::internal)?;
                (pair.public_openssh, Some(pair.private_openssh))
            }
        };
        let host_key = keys::generate_ed25519("pico-host").map_err(ApiError::internal)?;
        let ttl = req.ttl.unwrap_or(pico_wire::DEFAULT_TTL);
        let created_at = self.clock.now();
        let record = SessionRecord {
            id: Uuid::new_v4(),
            owner: caller.sub.clone(),
            status: SessionStatus::Pending,
            created_at,
            expires_at: created_at + Duration::from_secs(ttl),
            last_activity_at: created_at,
            metadata: req.metadata.unwrap_or_default(),
            image: req.image,
            ttl,
            idle_timeout: req.idle_timeout.unwrap_or(0),
            username: self.settings.ssh_username.clone(),
            host_public_key: host_key.public_openssh,
            authorized_key,
            idle_action: req.idle_action.unwrap_or_default(),
            paused_at: None,
        };
        // With a shared store, count the sessions other replicas made too.
        self.all();
        let creating = Creating::new(self, record.id);
        let live = {
            let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
            let limit = self.settings.max_sessions_per_user;
            if limit > 0 {
                let owned = map
                    .values()
                    .filter(|s| s.lock().owner == caller.sub)
                    .count();
                if owned >= limit as usize {
                    return Err(ApiError::new(
                        ErrorCode::QuotaExceeded,
                        format!("session limit reached: at most {limit} live sessions per user"),
                    )
                    .with_details(json!({"limit": limit})));
                }
            }
            let live = LiveSession::new(record.clone(), &self.tunnels);
            map.insert(record.id, live.clone());
            live
        };
        // The record is durable before the sandbox exists, so a crash mid-create leaves
        // something a restart can clean up.
        if let Err(err) = self.records.put(&record).await {
            self.forget(record.id);
            return Err(err.into());
        }
        // Run the start on its own task: a client that hangs up mid-create must not leave a
        // half-made sandbox behind.
        let service = self.clone();
        let host_private = host_key.private_openssh;
        // The task logs under the request's id, so the client's requestId finds the details.
        let request_id = crate::error::current_request_id();
        let started = tokio::spawn(crate::error::REQUEST_ID.scope(request_id, async move {
            let _creating = creating;
            let began = std::time::Instant::now();
            let spec = SandboxSpec {
                record: &record,
                host_private_key: &host_private,
                server_public_key: service.settings.server_public_key.as_deref(),
            };
            // The runtime owns the create timeout: it knows what it was waiting for and says
            // so in its error (in the server log).
            let result = service.runtime.create(spec).await;
            service.metrics.observe_create(began.elapsed());
            match result {
                Ok(()) => service.mark_running(&live).await.map_err(ApiError::from),
                Err(err) => {
                    let err = ApiError::from(err);
                    if let Err(cleanup) = service.runtime.delete(record.id).await {
                        tracing::warn!(session_id = %record.id, error = %Report(&cleanup), "cleanup after failed create");
                    }
                    service.forget(record.id);
                    if let Err(e) = service.records.remove(record.id).await {
                        tracing::error!(session_id = %record.id, error = %Report(&e), "cannot remove record");
                    }
                    Err(err)
                }
            }
        }))
        .await
        .map_err(|e| ApiError::internal(format!("create task failed: {e}")))?;
        let record = started?;
        tracing::info!(session_id = %record.id, owner = %record.owner, "session created");
        self.metrics.created.fetch_add(1, Ordering::Relaxed);
        Ok(to_wire(&record, private_key))
    }

    async fn mark_running(
        &self,
        live: &LiveSession,
    ) -> Result<SessionRecord, crate::store::StoreError> {
        let record = {
            let mut record = live.lock();
            record.status = SessionStatus::Running;
            record.clone()
        };
        self.records.put(&record).await?;
        Ok(record)
    }

    /// A pending session's image pull progress, while the runtime pulls it.
    fn with_pull_progress(&self, mut session: Session) -> Session {
        if session.status == SessionStatus::Pending
            && let Some(image) = &session.image
        {
            session.image_pull =
                self.runtime
                    .image_progress(image)
                    .map(|(bytes_done, bytes_total)| pico_wire::ImagePull {
                        bytes_done,
                        bytes_total,
                    });
        }
        session
    }

    fn forget(&self, id: Uuid) -> Option<Arc<LiveSession>> {
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        map.remove(&id)
    }

    pub fn get(&self, caller: &Caller, id: Uuid) -> Result<Session, ApiError> {
        let live = self.visible(caller, id)?;
        Ok(self.with_pull_progress(to_wire(&live.record(), None)))
    }

    pub fn list(&self, caller: &Caller, limit: u32, offset: u64) -> SessionList {
        let mut records: Vec<SessionRecord> = self
            .all()
            .iter()
            .map(|live| live.record())
            .filter(|r| caller.may_see(&r.owner))
            .collect();
        records.sort_by_key(|r| (r.created_at, r.id));
        let total = records.len() as u64;
        let sessions = records
            .iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit as usize)
            .map(|r| self.with_pull_progress(to_wire(r, None)))
            .collect();
        SessionList {
            sessions,
            total,
            limit,
            offset,
        }
    }

    pub async fn extend(&self, caller: &Caller, id: Uuid, ttl: u64) -> Result<Session, ApiError> {
        self.check_ttl(ttl)?;
        let live = self.visible(caller, id)?;
        let record = {
            let mut record = live.lock();
            if record.status == SessionStatus::Terminating {
                return Err(ApiError::session_not_found());
            }
            record.expires_at = self.clock.now() + Duration::from_secs(ttl);
            record.ttl = ttl;
            record.clone()
        };
        self.records.put(&record).await?;
        Ok(to_wire(&record, None))
    }

    pub async fn delete(&self, caller: &Caller, id: Uuid) -> Result<(), ApiError> {
        let live = self.visible(caller, id)?;
        self.remove(&live, "deleted").await
    }

    /// Stops the sandbox, ends its tunnels and forgets the session.
    pub(crate) async fn remove(&self, live: &LiveSession, why: &str) -> Result<(), ApiError> {
        let record = {
            let mut record = live.lock();
            record.status = SessionStatus::Terminating;
            record.clone()
        };
        live.cancel.cancel();
        let began = std::time::Instant::now();
        if let Err(err) = self.runtime.delete(record.id).await {
            // Kept as terminating; the reaper tries again.
            let _ = self.records.put(&record).await;
            return Err(err.into());
        }
        self.records.remove(record.id).await?;
        self.forget(record.id);
        self.metrics.deleted.fetch_add(1, Ordering::Relaxed);
        self.metrics.delete_seconds.observe(began.elapsed());
        tracing::info!(session_id = %record.id, reason = why, "session removed");
        Ok(())
    }

    /// Finds a running session of the caller and dials its SSH server.
    pub async fn open_tunnel(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<(Arc<LiveSession>, TunnelStream), ApiError> {
        // Opening a tunnel is activity even before a byte moves.
        let live = self.ready_session(caller, id).await?;
        let owner = live.lock().owner.clone();
        let slot = self.tunnel_limits.acquire(&live.tunnels, &owner)?;
        let stream = self.runtime.connect(id).await?;
        let stream = TunnelStream::new(stream, slot, live.clone(), self.metrics.clone());
        Ok((live, stream))
    }

    /// A running session of the caller, for tunnels, exec and file calls; a paused one is
    /// resumed first. The call counts as activity.
    pub async fn ready_session(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<Arc<LiveSession>, ApiError> {
        let live = self.visible(caller, id)?;
        if live.lock().status == SessionStatus::Paused {
            self.resume_live(&live).await?;
        }
        let status = live.lock().status;
        if status != SessionStatus::Running {
            return Err(ApiError::new(
                ErrorCode::SessionNotReady,
                format!("session is {}", status_name(status)),
            ));
        }
        live.bytes_relayed.fetch_add(1, Ordering::Relaxed);
        Ok(live)
    }

    pub fn count_by_status(&self) -> HashMap<&'static str, u64> {
        let mut counts = HashMap::new();
        for live in self.all() {
            *counts.entry(status_name(live.lock().status)).or_insert(0) += 1;
        }
        counts
    }
}

pub fn status_name(status: SessionStatus) -> &'static str {
    match status {
        SessionStatus::Pending => "pending",
        SessionStatus::Running => "running",
        SessionStatus::Paused => "paused",
        SessionStatus::Failed => "failed",
        SessionStatus::Terminating => "terminating",
    }
}

pub fn to_wire(record: &SessionRecord, ssh_private_key: Option<String>) -> Session {
    Session {
        session_id: record.id,
        status: record.status,
        created_at: record.created_at,
        expires_at: record.expires_at,
        last_activity_at: record.last_activity_at,
        metadata: record.metadata.clone(),
        image: record.image.clone(),
        ttl: record.ttl,
        idle_timeout: record.idle_timeout,
        idle_action: record.idle_action,
        paused_at: record.paused_at,
        ssh: SshInfo {
            username: record.username.clone(),
            host_keys: vec![record.host_public_key.clone()],
            tunnel_path: format!("/v1/sessions/{}/tunnel", record.id),
        },
        image_pull: None,
        ssh_private_key,
    }
}
