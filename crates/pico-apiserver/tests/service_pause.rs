//! Pause and resume in the session service, in-process against the fakes on tokio's paused
//! clock: idle → pause, the TTL still deleting a paused session, resume on use (one resume
//! for concurrent callers), the states that refuse a pause, and recovery of paused sessions.

mod fakes;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fakes::{FakeRecords, FakeRuntime};
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

fn fixture() -> Fixture {
    let runtime = Arc::new(FakeRuntime::default());
    let records = Arc::new(FakeRecords::default());
    let settings = Settings {
        max_ttl: pico_wire::MAX_TTL,
        max_sessions_per_user: 0,
        ssh_username: "sandbox".into(),
        create_timeout: Duration::from_secs(60),
        max_tunnels_per_session: 0,
        max_tunnels_per_user: 0,
        server_public_key: None,
    };
    let service = SessionService::new(
        records.clone(),
        runtime.clone(),
        settings,
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

fn request(body: serde_json::Value) -> CreateSessionRequest {
    serde_json::from_value(body).expect("request")
}

async fn advance(secs: u64) {
    tokio::time::advance(Duration::from_secs(secs)).await;
}

fn status(f: &Fixture, id: Uuid) -> SessionStatus {
    f.service.get(&alice(), id).expect("session").status
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_with_idle_action_pause_sleeps_until_its_ttl_ends_it() {
    let f = fixture();
    let body = serde_json::json!({"ttl": 600, "idleTimeout": 60, "idleAction": "pause"});
    let id = f
        .service
        .create(&alice(), request(body))
        .await
        .expect("create")
        .session_id;
    advance(59).await;
    f.service.reap().await;
    assert_eq!(status(&f, id), SessionStatus::Running);
    advance(2).await;
    f.service.reap().await;
    let session = f.service.get(&alice(), id).expect("session");
    assert_eq!(session.status, SessionStatus::Paused);
    assert!(session.paused_at.is_some());
    assert!(f.runtime.paused.lock().expect("lock").contains(&id));
    assert_eq!(
        f.records.get(id).expect("record").status,
        SessionStatus::Paused
    );
    // Paused is not idle any more: no further action until the TTL.
    advance(400).await;
    f.service.reap().await;
    assert_eq!(status(&f, id), SessionStatus::Paused);
    assert_eq!(f.runtime.pauses.load(Ordering::SeqCst), 1);
    advance(200).await;
    f.service.reap().await;
    assert!(
        f.service.get(&alice(), id).is_err(),
        "the TTL still ends it"
    );
    assert!(f.runtime.deleted().contains(&id));
}

#[tokio::test(start_paused = true)]
async fn a_paused_session_is_not_deleted_for_idleness() {
    let f = fixture();
    let body = serde_json::json!({"ttl": 600, "idleTimeout": 60});
    let id = f
        .service
        .create(&alice(), request(body))
        .await
        .expect("create")
        .session_id;
    f.service.pause(&alice(), id).await.expect("pause");
    advance(120).await;
    f.service.reap().await;
    assert_eq!(status(&f, id), SessionStatus::Paused);
    // Once resumed, its idle timer starts again from the resume.
    advance(100).await;
    f.service.resume(&alice(), id).await.expect("resume");
    advance(59).await;
    f.service.reap().await;
    assert_eq!(status(&f, id), SessionStatus::Running);
    advance(2).await;
    f.service.reap().await;
    assert!(f.service.get(&alice(), id).is_err(), "idle-deleted");
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_resume() {
    let f = fixture();
    let id = f
        .service
        .create(&alice(), request(serde_json::json!({})))
        .await
        .expect("create")
        .session_id;
    let paused = f.service.pause(&alice(), id).await.expect("pause");
    assert_eq!(paused.status, SessionStatus::Paused);
    let caller = alice();
    let calls = (0..5).map(|_| f.service.ready_session(&caller, id));
    for ready in futures::future::join_all(calls).await {
        assert!(ready.is_ok());
    }
    assert_eq!(f.runtime.resumes.load(Ordering::SeqCst), 1);
    assert_eq!(status(&f, id), SessionStatus::Running);
    assert!(f.runtime.paused.lock().expect("lock").is_empty());
    // Both are idempotent.
    f.service.resume(&alice(), id).await.expect("resume again");
    f.service.pause(&alice(), id).await.expect("pause");
    f.service.pause(&alice(), id).await.expect("pause again");
    assert_eq!(f.runtime.resumes.load(Ordering::SeqCst), 1);
    assert_eq!(f.runtime.pauses.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn traffic_on_a_tunnel_left_open_wakes_a_paused_session() {
    let f = fixture();
    let id = f
        .service
        .create(&alice(), request(serde_json::json!({})))
        .await
        .expect("create")
        .session_id;
    let (live, _stream) = f.service.open_tunnel(&alice(), id).await.expect("tunnel");
    f.service.pause(&alice(), id).await.expect("pause");
    f.service.reap().await;
    assert_eq!(status(&f, id), SessionStatus::Paused, "old traffic woke it");
    live.bytes_relayed.fetch_add(100, Ordering::Relaxed);
    f.service.reap().await;
    assert_eq!(status(&f, id), SessionStatus::Running);
}

fn record(status: SessionStatus) -> SessionRecord {
    let now = Clock::following_tokio().now();
    SessionRecord {
        id: Uuid::new_v4(),
        owner: "alice".into(),
        status,
        created_at: now,
        expires_at: now + time::Duration::seconds(600),
        last_activity_at: now,
        metadata: Default::default(),
        image: None,
        ttl: 600,
        idle_timeout: 0,
        username: "sandbox".into(),
        host_public_key: "ssh-ed25519 AAAA".into(),
        authorized_key: "ssh-ed25519 BBBB".into(),
        idle_action: Default::default(),
        paused_at: (status == SessionStatus::Paused).then_some(now),
    }
}

#[tokio::test(start_paused = true)]
async fn paused_sessions_stay_paused_across_a_restart_and_failed_ones_refuse() {
    let f = fixture();
    let adopted = record(SessionStatus::Paused);
    let restarted = record(SessionStatus::Paused);
    let broken = record(SessionStatus::Running);
    for r in [&adopted, &restarted, &broken] {
        use pico_apiserver::records::Records;
        f.records.put(r).await.expect("put");
    }
    {
        let mut on_recover = f.runtime.on_recover.lock().expect("lock");
        on_recover.insert(restarted.id, Ok(Recovery::Restarted));
        on_recover.insert(broken.id, Err(()));
    }
    f.service.recover().await.expect("recover");
    assert_eq!(status(&f, adopted.id), SessionStatus::Paused);
    assert_eq!(status(&f, restarted.id), SessionStatus::Paused);
    // The sandbox that had to start again is paused again; the adopted one still is.
    assert_eq!(f.runtime.pauses.load(Ordering::SeqCst), 1);
    assert!(
        f.runtime
            .paused
            .lock()
            .expect("lock")
            .contains(&restarted.id)
    );

    assert_eq!(status(&f, broken.id), SessionStatus::Failed);
    for refused in [
        f.service.pause(&alice(), broken.id).await,
        f.service.resume(&alice(), broken.id).await,
    ] {
        let err = refused.expect_err("a failed session");
        assert_eq!(err.code, ErrorCode::InvalidState);
        assert_eq!(err.status.as_u16(), 409);
    }
    let other = Caller {
        sub: "mallory".into(),
        admin: false,
    };
    let err = f
        .service
        .pause(&other, adopted.id)
        .await
        .expect_err("not hers");
    assert_eq!(err.code, ErrorCode::SessionNotFound);
    f.service
        .resume(&alice(), adopted.id)
        .await
        .expect("resume");
    assert_eq!(status(&f, adopted.id), SessionStatus::Running);
}
