//! kube-rs against the emulator with typed k8s-openapi objects: CRUD, selectors, watches, errors.

mod common;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use pico_kube_emulator::EmulatorConfig;
use serde_json::json;

fn pod(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod")
}

fn secret(name: &str, labels: serde_json::Value) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {}}))
        .expect("secret")
}

#[tokio::test]
async fn typed_crud_selectors_and_status_errors() {
    let (emu, client) = common::start().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(
        &PostParams::default(),
        &pod("web-1", json!({"app": "web", "tier": "front"})),
    )
    .await
    .expect("create");
    pods.create(&PostParams::default(), &pod("db-1", json!({"app": "db"})))
        .await
        .expect("create");
    let mut generated = pod("", json!({"app": "gen"}));
    generated.metadata.generate_name = Some("gen-".into());
    let made = pods
        .create(&PostParams::default(), &generated)
        .await
        .expect("generateName");
    let made_name = made.metadata.name.clone().expect("name");
    assert!(
        made_name.starts_with("gen-") && made_name.len() == 9,
        "{made_name}"
    );
    assert!(made.metadata.uid.is_some() && made.metadata.creation_timestamp.is_some());

    let dup = pods
        .create(&PostParams::default(), &pod("web-1", json!({})))
        .await
        .expect_err("duplicate");
    let s = common::api_error(dup);
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    let missing = common::api_error(pods.get("nope").await.expect_err("missing"));
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    let invalid = common::api_error(
        pods.create(&PostParams::default(), &pod("Bad_Name", json!({})))
            .await
            .expect_err("bad name"),
    );
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));

    let names = |l: kube::core::ObjectList<Pod>| {
        let mut v: Vec<String> = l
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("app=web"))
                .await
                .expect("list")
        ),
        ["web-1"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("app in (web,db),tier notin (back)"))
                .await
                .expect("list")
        ),
        ["db-1", "web-1"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("!tier,app"))
                .await
                .expect("list")
        ),
        ["db-1", made_name.as_str()]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("metadata.name=db-1"))
                .await
                .expect("list")
        ),
        ["db-1"]
    );
    let meta = pods
        .list_metadata(&ListParams::default().labels("app=db"))
        .await
        .expect("list metadata");
    assert_eq!(meta.items.len(), 1);
    assert_eq!(meta.items[0].metadata.name.as_deref(), Some("db-1"));
    let list = pods.list(&ListParams::default()).await.expect("list");
    assert!(
        list.metadata
            .resource_version
            .is_some_and(|rv| !rv.is_empty())
    );

    // Secrets: stringData becomes data; merge patch adds a key.
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"a": "1"}}))
            .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let patched = secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"b": "2"}})),
        )
        .await
        .expect("patch");
    let data = patched.data.expect("data");
    assert_eq!(data.get("a").map(|b| b.0.clone()), Some(b"1".to_vec()));
    assert_eq!(data.get("b").map(|b| b.0.clone()), Some(b"2".to_vec()));
    secrets
        .delete("s", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(
        common::api_error(secrets.get("s").await.expect_err("gone")).code,
        404
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn stale_resource_version_conflicts() {
    let (emu, client) = common::start().await;
    let pods: Api<Secret> = Api::default_namespaced(client);
    let first = pods
        .create(&PostParams::default(), &secret("p", json!({"v": "1"})))
        .await
        .expect("create");
    let mut fresh = first.clone();
    fresh
        .metadata
        .labels
        .get_or_insert_default()
        .insert("v".into(), "2".into());
    let updated = pods
        .replace("p", &PostParams::default(), &fresh)
        .await
        .expect("replace");
    assert_ne!(
        updated.metadata.resource_version,
        first.metadata.resource_version
    );

    let mut stale = first.clone();
    stale
        .metadata
        .labels
        .get_or_insert_default()
        .insert("v".into(), "3".into());
    let err = common::api_error(
        pods.replace("p", &PostParams::default(), &stale)
            .await
            .expect_err("stale"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));

    let stale_patch = json!({"metadata": {"resourceVersion": first.metadata.resource_version, "labels": {"v": "4"}}});
    let err = common::api_error(
        pods.patch("p", &PatchParams::default(), &Patch::Merge(stale_patch))
            .await
            .expect_err("stale"),
    );
    assert_eq!(err.reason, "Conflict");

    // Server-side apply merges into the live object.
    let applied = pods
        .patch("p", &PatchParams::apply("test").force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "p", "labels": {"ssa": "yes"}}})))
        .await
        .expect("apply");
    let labels = applied.metadata.labels.expect("labels");
    assert_eq!(
        (
            labels.get("ssa").map(String::as_str),
            labels.get("v").map(String::as_str)
        ),
        (Some("yes"), Some("2"))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn watch_resumes_bookmarks_and_expires() {
    let config = EmulatorConfig {
        bookmark_interval: std::time::Duration::from_millis(100),
        ..EmulatorConfig::default()
    };
    let (emu, client) = common::start_with(config).await;
    let pods: Api<Secret> = Api::default_namespaced(client);
    pods.create(&PostParams::default(), &secret("a", json!({"w": "1"})))
        .await
        .expect("create");
    let rv = pods
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    pods.create(&PostParams::default(), &secret("b", json!({"w": "1"})))
        .await
        .expect("create b");
    pods.delete("a", &DeleteParams::default())
        .await
        .expect("delete a");

    // Secrets, because the kubelet writes pod status behind a test's back.
    // Resuming from the list's resourceVersion replays exactly what happened after it.
    let wp = WatchParams::default().labels("w=1").timeout(5);
    let mut stream = pods.watch(&wp, &rv).await.expect("watch").boxed();
    let mut seen = Vec::new();
    while let Some(ev) = stream.try_next().await.expect("event") {
        match ev {
            WatchEvent::Added(p) => {
                seen.push(format!("ADDED {}", p.metadata.name.unwrap_or_default()))
            }
            WatchEvent::Deleted(p) => {
                seen.push(format!("DELETED {}", p.metadata.name.unwrap_or_default()))
            }
            WatchEvent::Bookmark(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED b", "DELETED a"]);

    // timeoutSeconds ends the stream (with a final bookmark).
    let rv_now = emu.resource_version().to_string();
    let mut short = pods
        .watch(&WatchParams::default().timeout(1), &rv_now)
        .await
        .expect("watch")
        .boxed();
    let ended = tokio::time::timeout(common::WAIT, async {
        while let Some(ev) = short.try_next().await.expect("event") {
            assert!(matches!(ev, WatchEvent::Bookmark(_)), "{ev:?}");
        }
    });
    ended.await.expect("the watch ends after timeoutSeconds");

    // After compaction, an old resourceVersion is answered with an ERROR event: 410 Expired.
    emu.compact_history();
    let mut stream = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Error(s)) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn bearer_token_is_checked() {
    let config = EmulatorConfig {
        token: Some("s3cret".into()),
        ..EmulatorConfig::default()
    };
    let (emu, client) = common::start_with(config).await;
    let pods: Api<Pod> = Api::default_namespaced(client);
    pods.list(&ListParams::default()).await.expect("authorized");
    let wrong = emu.kubeconfig_yaml().replace("s3cret", "wrong");
    let bad: Api<Pod> = Api::default_namespaced(common::client_for(&wrong).await);
    let err = common::api_error(
        bad.list(&ListParams::default())
            .await
            .expect_err("unauthorized"),
    );
    assert_eq!(err.code, 401);
    emu.shutdown().await;
}
