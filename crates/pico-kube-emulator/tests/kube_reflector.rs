//! A kube-rs reflector stays in sync across dropped watches and a 410 Gone relist.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use pico_kube_emulator::EmulatorConfig;
use serde_json::json;

fn secret(name: &str, labels: serde_json::Value) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("secret")
}

fn names(store: &Store<Secret>) -> BTreeSet<String> {
    store
        .state()
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect()
}

/// Drives the reflector stream until the store holds exactly `want`; counts relists (Init).
async fn sync_to<S>(stream: &mut S, store: &Store<Secret>, want: &[&str], inits: &mut usize)
where
    S: Stream<Item = Result<Event<Secret>, watcher::Error>> + Unpin,
{
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let run = async {
        while names(store) != want {
            match stream.next().await {
                Some(Ok(Event::Init)) => *inits += 1,
                Some(_) => {}
                None => panic!("reflector stream ended"),
            }
        }
    };
    tokio::time::timeout(common::WAIT, run)
        .await
        .unwrap_or_else(|_| panic!("reflector never reached {want:?}; has {:?}", names(store)));
}

#[tokio::test]
async fn reflector_stays_in_sync_across_watch_restarts() {
    // No bookmarks during the test, so the watcher's resume point is its last event.
    let config = EmulatorConfig {
        bookmark_interval: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    };
    let (emu, client) = common::start_with(config).await;
    let api: Api<Secret> = Api::default_namespaced(client);
    let (reader, writer) = reflector::store();
    let cfg = watcher::Config::default().labels("r=1");
    let mut stream = reflector::reflector(writer, watcher::watcher(api.clone(), cfg)).boxed();
    let mut inits = 0;
    let pp = PostParams::default();
    api.create(&pp, &secret("s1", json!({"r": "1"})))
        .await
        .expect("s1");
    api.create(&pp, &secret("s2", json!({"r": "1"})))
        .await
        .expect("s2");
    api.create(&pp, &secret("other", json!({})))
        .await
        .expect("other");
    sync_to(&mut stream, &reader, &["s1", "s2"], &mut inits).await;

    // A dropped connection: the watcher resumes from its last resourceVersion.
    emu.drop_watches();
    api.delete("s1", &DeleteParams::default())
        .await
        .expect("delete s1");
    api.create(&pp, &secret("s3", json!({"r": "1"})))
        .await
        .expect("s3");
    sync_to(&mut stream, &reader, &["s2", "s3"], &mut inits).await;

    // Changes the watch never shows (the label-less secret) move the resourceVersion past
    // the watcher's; after compaction its resume point is gone: 410, relist, Init again.
    let before = inits;
    api.delete("other", &DeleteParams::default())
        .await
        .expect("delete other");
    emu.compact_history();
    emu.drop_watches();
    api.create(&pp, &secret("s4", json!({"r": "1"})))
        .await
        .expect("s4");
    api.delete("s2", &DeleteParams::default())
        .await
        .expect("delete s2");
    sync_to(&mut stream, &reader, &["s3", "s4"], &mut inits).await;
    // The relist may land before or after s4/s2 changed; either way the Init must come.
    while inits == before {
        match tokio::time::timeout(common::WAIT, stream.next())
            .await
            .expect("relist")
        {
            Some(Ok(Event::Init)) => inits += 1,
            Some(_) => {}
            None => panic!("reflector stream ended"),
        }
    }
    sync_to(&mut stream, &reader, &["s3", "s4"], &mut inits).await;
    emu.shutdown().await;
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_then_changes() {
    let (emu, client) = common::start().await;
    let api: Api<Secret> = Api::default_namespaced(client);
    let pp = PostParams::default();
    api.create(&pp, &secret("a", json!({"r": "1"})))
        .await
        .expect("a");
    let (reader, writer) = reflector::store();
    // sendInitialEvents=true: the initial state arrives as ADDED events and a bookmark.
    let cfg = watcher::Config::default().labels("r=1").streaming_lists();
    let mut stream = reflector::reflector(writer, watcher::watcher(api.clone(), cfg)).boxed();
    let mut inits = 0;
    sync_to(&mut stream, &reader, &["a"], &mut inits).await;
    api.create(&pp, &secret("b", json!({"r": "1"})))
        .await
        .expect("b");
    sync_to(&mut stream, &reader, &["a", "b"], &mut inits).await;
    assert_eq!(inits, 1);
    emu.shutdown().await;
}
