//! The session service's logic in-process, against fake runtime and records, on tokio's paused
//! clock: expiry, idleness, activity, restart recovery, quota, delete retries and cleanup after
//! a failed create. Milliseconds, no sleeps; the black-box suites prove the wiring.

mod fakes;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fakes::{FakeRecords, FakeRuntime, OnCreate};
use pico_apiserver::auth::Caller;
use pico_apiserver::clock::Clock;
use pico_apiserver::runtime::Recovery;
use pico_apiserver::service::{SessionService, Settings};
use pico_apiserver::store::SessionRecord;
use pico_wire::{CreateSessionRequest, ErrorCode, SessionStatus};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Fixture {
    service: Arc<SessionService>,
    runtime: Arc<FakeRuntime>,
    records: Arc<FakeRecords>,
}

fn fixture(max_sessions_per_user: u32) -> Fixture {
    let runtime = Arc::new(FakeRuntime::default());
    let records = Arc::new(FakeRecords::default());
    let service = SessionService::new(
        records.clone(),
        runtime.clone(),
        Settings {
            max_ttl: pico_wire::MAX_TTL,
            max_sessions_per_user,
            ssh_username: "sandbox".into(),
            create_timeout: Duration::from_secs(60),
            max_tunnels_per_session: 0,
            max_tunnels_per_user: 0,
            server_public_key: None,
        },
        CancellationToken::new(),
        Arc::default(),
    )
    .with_clock(Clock::following_tokio());
    Fixture {
        service: Arc::new(service),
        runtime,
        records,
    }
}

fn alice() -> Caller {
    Caller {
        sub: "alice".into(),
        admin: false,
    }
}

fn request(ttl: u64, idle: u64) -> CreateSessionRequest {
    serde_json::from_value(serde_json::json!({"ttl": ttl, "idleTimeout": idle})).expect("request")
}

async fn advance(secs: u64) {
    tokio::time::advance(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn a_session_expires_at_its_ttl_and_not_before() {
    let f = fixture(0);
    let session = f
        .service
        .create(&alice(), request(60, 0))
        .await
        .expect("create");
    let id = session.session_id;
    advance(59).await;
    f.service.reap().await;
    assert!(f.service.get(&alice(), id).is_ok(), "reaped a second early");
    advance(2).await;
    f.service.reap().await;
    let gone = f.service.get(&alice(), id).expect_err("expired");
    assert_eq!(gone.code, ErrorCode::SessionNotFound);
    assert!(f.runtime.running().is_empty());
    assert_eq!(f.records.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn extending_moves_the_expiry() {
    let f = fixture(0);
    let id = f
        .service
        .create(&alice(), request(60, 0))
        .await
        .expect("create")
        .session_id;
    advance(50).await;
    f.service.extend(&alice(), id, 120).await.expect("extend");
    advance(100).await;
    f.service.reap().await;
    assert!(f.service.get(&alice(), id).is_ok());
    advance(21).await;
    f.service.reap().await;
    assert!(f.service.get(&alice(), id).is_err());
}

#[tokio::test(start_paused = true)]
async fn relayed_bytes_are_activity_and_idle_sessions_are_reaped() {
    let f = fixture(0);
    let created = f
        .service
        .create(&alice(), request(3600, 120))
        .await
        .expect("create");
    let id = created.session_id;
    advance(100).await;
    // A tunnel moves bytes; the next pass records it.
    let (live, _stream) = f.service.open_tunnel(&alice(), id).await.expect("tunnel");
    live.bytes_relayed.fetch_add(4096, Ordering::Relaxed);
    f.service.reap().await;
    let active = f.service.get(&alice(), id).expect("session");
    assert_eq!(
        active.last_activity_at,
        created.last_activity_at + Duration::from_secs(100)
    );
    assert_eq!(
        f.records.get(id).expect("record").last_activity_at,
        active.last_activity_at,
        "activity reaches the store"
    );
    // 119 s after that activity it is still there; at 120 s it is idle.
    advance(119).await;
    f.service.reap().await;
    assert!(f.service.get(&alice(), id).is_ok(), "reaped before idle");
    advance(1).await;
    f.service.reap().await;
    assert!(f.service.get(&alice(), id).is_err(), "idle session kept");
    assert!(f.runtime.running().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_quota_counts_live_sessions_per_user() {
    let f = fixture(2);
    let first = f
        .service
        .create(&alice(), request(600, 0))
        .await
        .expect("1");
    f.service
        .create(&alice(), request(600, 0))
        .await
        .expect("2");
    let refused = f
        .service
        .create(&alice(), request(600, 0))
        .await
        .expect_err("over quota");
    assert_eq!(refused.code, ErrorCode::QuotaExceeded);
    let bob = Caller {
        sub: "bob".into(),
        admin: false,
    };
    f.service
        .create(&bob, request(600, 0))
        .await
        .expect("bob has his own quota");
    f.service
        .delete(&alice(), first.session_id)
        .await
        .expect("delete");
    f.service
        .create(&alice(), request(600, 0))
        .await
        .expect("room again");
    assert_eq!(f.runtime.running().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failed_delete_is_reported_kept_terminating_and_retried() {
    let f = fixture(0);
    let id = f
        .service
        .create(&alice(), request(600, 0))
        .await
        .expect("create")
        .session_id;
    f.runtime.failing_deletes.store(1, Ordering::SeqCst);
    let err = f
        .service
        .delete(&alice(), id)
        .await
        .expect_err("delete fails");
    assert_eq!(err.code, ErrorCode::SandboxDeleteFailed);
    let kept = f.service.get(&alice(), id).expect("kept");
    assert_eq!(kept.status, SessionStatus::Terminating);
    assert_eq!(
        f.records.get(id).expect("record").status,
        SessionStatus::Terminating
    );
    f.service.reap().await;
    assert!(f.service.get(&alice(), id).is_err(), "the reaper retried");
    assert_eq!(f.runtime.deleted(), vec![id, id]);
    assert_eq!(f.records.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_create_that_times_out_leaves_nothing_and_says_so_cleanly() {
    for (on_create, code) in [
        (OnCreate::TimeOut, ErrorCode::SandboxTimeout),
        (OnCreate::Fail, ErrorCode::SandboxCreateFailed),
    ] {
        let f = fixture(0);
        *f.runtime.on_create.lock().expect("lock") = on_create;
        let err = f
            .service
            .create(&alice(), request(600, 0))
            .await
            .expect_err("create fails");
        assert_eq!(err.code, code);
        assert!(!err.message.contains("/var/lib"), "{}", err.message);
        assert!(f.runtime.running().is_empty(), "half-made sandbox left");
        assert_eq!(f.runtime.deleted().len(), 1);
        assert_eq!(f.records.len(), 0, "record left");
        assert_eq!(f.service.list(&alice(), 100, 0).total, 0);
    }
}

fn record(owner: &str, status: SessionStatus, expires_in: i64) -> SessionRecord {
    let now = Clock::following_tokio().now();
    SessionRecord {
        id: Uuid::new_v4(),
        owner: owner.into(),
        status,
        created_at: now,
        expires_at: now + time::Duration::seconds(expires_in),
        last_activity_at: now,
        metadata: Default::default(),
        image: None,
        ttl: 600,
        idle_timeout: 0,
        username: "sandbox".into(),
        host_public_key: "ssh-ed25519 AAAA".into(),
        authorized_key: "ssh-ed25519 BBBB".into(),
        idle_action: Default::default(),
        paused_at: None,
    }
}

#[tokio::test(start_paused = true)]
async fn recovery_adopts_restarts_fails_and_drops_what_expired() {
    let f = fixture(0);
    let adopted = record("alice", SessionStatus::Running, 600);
    let restarted = record("alice", SessionStatus::Running, 600);
    let failed = record("alice", SessionStatus::Running, 600);
    let expired = record("alice", SessionStatus::Running, -1);
    let half_made = record("alice", SessionStatus::Pending, 600);
    let orphan = Uuid::new_v4();
    f.runtime
        .sandboxes
        .lock()
        .expect("lock")
        .extend([expired.id, orphan]);
    {
        let mut on_recover = f.runtime.on_recover.lock().expect("lock");
        on_recover.insert(restarted.id, Ok(Recovery::Restarted));
        on_recover.insert(failed.id, Err(()));
    }
    for r in [&adopted, &restarted, &failed, &expired, &half_made] {
        f.records
            .records
            .lock()
            .expect("lock")
            .insert(r.id, r.clone());
    }

    f.service.recover().await.expect("recover");

    let status = |id| f.service.get(&alice(), id).map(|s| s.status).ok();
    assert_eq!(status(adopted.id), Some(SessionStatus::Running));
    assert_eq!(status(restarted.id), Some(SessionStatus::Running));
    assert_eq!(status(failed.id), Some(SessionStatus::Failed));
    assert_eq!(
        f.records.get(failed.id).expect("record").status,
        SessionStatus::Failed
    );
    for gone in [expired.id, half_made.id] {
        assert_eq!(status(gone), None);
        assert!(f.records.get(gone).is_none());
        assert!(f.runtime.deleted().contains(&gone));
    }
    let running = f.runtime.running();
    assert!(!running.contains(&orphan), "orphan sandbox kept");
    let mut known = f.runtime.orphan_checks.lock().expect("lock")[0].clone();
    known.sort();
    let mut expected = vec![adopted.id, restarted.id, failed.id];
    expected.sort();
    assert_eq!(known, expected);
}

#[tokio::test(start_paused = true)]
async fn the_reaper_loop_reaps_on_its_own_and_stops_on_shutdown() {
    let f = fixture(0);
    let id = f
        .service
        .create(&alice(), request(60, 0))
        .await
        .expect("create")
        .session_id;
    let shutdown = CancellationToken::new();
    let reaper = tokio::spawn(pico_apiserver::reaper::run(
        f.service.clone(),
        Duration::from_secs(1),
        shutdown.clone(),
    ));
    // The paused clock jumps to each tick as soon as every task waits.
    tokio::time::sleep(Duration::from_secs(62)).await;
    assert!(f.service.get(&alice(), id).is_err(), "not reaped");
    shutdown.cancel();
    reaper.await.expect("reaper ends");
}
