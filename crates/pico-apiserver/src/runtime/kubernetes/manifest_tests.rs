//! The Sandbox and Secret manifests as data, and records read back from them.

use super::*;

fn record() -> SessionRecord {
    let at = OffsetDateTime::parse("2026-01-02T03:04:05.25Z", &Rfc3339).expect("time");
    let mut metadata = Map::new();
    metadata.insert("team".into(), json!("ml"));
    SessionRecord {
        id: "7b0e8a40-3f1e-4c55-9a55-2f6d1b0c9a11"
            .parse()
            .expect("uuid"),
        owner: "alice@example.com".into(),
        status: SessionStatus::Running,
        created_at: at,
        expires_at: at + time::Duration::seconds(3600),
        last_activity_at: at,
        metadata,
        image: Some("python:3.12-slim".into()),
        ttl: 3600,
        idle_timeout: 300,
        username: "sandbox".into(),
        host_public_key: "ssh-ed25519 AAAAhost pico-host".into(),
        authorized_key: "ssh-ed25519 AAAAuser pico-session".into(),
        idle_action: pico_wire::IdleAction::Pause,
        paused_at: None,
    }
}

fn pod() -> PodSettings {
    PodSettings {
        home_volume: None,
        agent_mode: AgentMode::Inject,
        agent_image: "registry.example/pico:1".into(),
        default_image: "debian:stable-slim".into(),
        ssh_port: 2222,
        ssh_username: "sandbox".into(),
        runtime_class: Some("gvisor".into()),
        agent_pull_policy: "IfNotPresent".into(),
        hardening: Hardening::default(),
        server_authorized_keys: Vec::new(),
    }
}

#[test]
fn sandbox_carries_name_labels_expiry_and_agent_injection() {
    let r = record();
    let s = sandbox(&r, "v1beta1", &pod());
    let name = "pico-7b0e8a40-3f1e-4c55-9a55-2f6d1b0c9a11";
    assert_eq!(s["apiVersion"], "agents.x-k8s.io/v1beta1");
    assert_eq!(s["kind"], "Sandbox");
    assert_eq!(s["metadata"]["name"], name);
    let labels = &s["metadata"]["labels"];
    assert_eq!(labels[MANAGED_BY], "pico-apiserver");
    assert_eq!(labels[SESSION_LABEL], r.id.to_string());
    assert_eq!(labels[OWNER_HASH_LABEL].as_str().map(str::len), Some(32));
    assert_ne!(labels[OWNER_HASH_LABEL], owner_hash("bob"));
    // Rounded up to whole seconds: never earlier than expiresAt.
    assert_eq!(s["spec"]["shutdownTime"], "2026-01-02T04:04:06Z");
    assert_eq!(s["spec"]["shutdownPolicy"], "Delete");
    let spec = &s["spec"]["podTemplate"]["spec"];
    assert_eq!(spec["runtimeClassName"], "gvisor");
    assert_eq!(spec["automountServiceAccountToken"], false);
    let init = &spec["initContainers"][0];
    assert_eq!(init["image"], "registry.example/pico:1");
    assert_eq!(
        init["command"],
        json!(["/usr/local/bin/pico-agent", "install", "/pico"])
    );
    let main = &spec["containers"][0];
    assert_eq!(main["image"], "python:3.12-slim");
    assert_eq!(
        main["command"],
        json!([
            "/pico/pico-agent",
            "serve",
            "--listen",
            "0.0.0.0:2222",
            "--host-key",
            "/etc/pico/host_key",
            "--authorized-keys",
            "/etc/pico/authorized_keys",
            "--username",
            "sandbox",
            "--home",
            "/home/sandbox"
        ])
    );
    assert_eq!(
        spec["volumes"][0],
        json!({"name": "pico-agent", "emptyDir": {}})
    );
    assert_eq!(spec["volumes"][2]["secret"]["secretName"], name);
}

#[test]
fn v1alpha1_has_a_shutdown_policy_and_default_image_applies() {
    let mut r = record();
    r.image = None;
    let mut settings = pod();
    settings.runtime_class = None;
    let s = sandbox(&r, "v1alpha1", &settings);
    assert_eq!(s["apiVersion"], "agents.x-k8s.io/v1alpha1");
    assert_eq!(s["spec"]["shutdownPolicy"], "Delete");
    let spec = &s["spec"]["podTemplate"]["spec"];
    assert!(spec.get("runtimeClassName").is_none());
    assert_eq!(spec["containers"][0]["image"], "debian:stable-slim");
    assert!(s["metadata"]["annotations"].get("pico.dev/image").is_none());
}

#[test]
fn secret_is_owned_by_the_sandbox_and_holds_both_keys() {
    let r = record();
    let s = secret(
        &r,
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        "v1beta1",
        "uid-1",
        &pod(),
    );
    assert_eq!(s["metadata"]["name"], object_name(r.id));
    let owner = &s["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Sandbox");
    assert_eq!(owner["uid"], "uid-1");
    assert_eq!(owner["apiVersion"], "agents.x-k8s.io/v1beta1");
    assert_eq!(
        s["stringData"]["host_key"],
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    );
    assert_eq!(
        s["stringData"]["authorized_keys"],
        "ssh-ed25519 AAAAuser pico-session\n"
    );
    // A key the server holds is trusted too, one per line after the session's.
    let mut settings = pod();
    settings.server_authorized_keys = vec!["ssh-ed25519 AAAAserver pico-server".into()];
    let s = secret(&r, "k", "v1beta1", "uid-1", &settings);
    assert_eq!(
        s["stringData"]["authorized_keys"],
        "ssh-ed25519 AAAAuser pico-session\nssh-ed25519 AAAAserver pico-server\n"
    );
}

#[test]
fn record_round_trips_through_the_sandbox() {
    let r = record();
    let s = sandbox(&r, "v1beta1", &pod());
    assert_eq!(record_from(&s), Some(r.clone()));
    let mut deleting = s.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-02T03:05:00Z");
    assert_eq!(
        record_from(&deleting).map(|r| r.status),
        Some(SessionStatus::Terminating)
    );
    let mut foreign = s;
    foreign["metadata"]["labels"] = json!({});
    assert_eq!(record_from(&foreign), None);
}

#[test]
fn patch_moves_expiry_and_status() {
    let mut r = record();
    r.expires_at += time::Duration::seconds(600);
    r.status = SessionStatus::Pending;
    let p = record_patch(&r);
    assert_eq!(p["spec"]["shutdownTime"], "2026-01-02T04:14:06Z");
    assert_eq!(
        p["metadata"]["annotations"]["pico.dev/expires-at"],
        "2026-01-02T04:14:05.250000Z"
    );
    // A Sandbox's `pending` is read from its Ready condition, never written back.
    assert!(p["metadata"]["annotations"]["pico.dev/status"].is_null());
    r.status = SessionStatus::Failed;
    assert_eq!(
        record_patch(&r)["metadata"]["annotations"]["pico.dev/status"],
        "failed"
    );
}

#[test]
fn pod_ip_and_condition_from_status() {
    let s = json!({"status": {"podIPs": ["127.1.0.2"],
        "conditions": [{"type": "Ready", "status": "True", "message": "ok"}]}});
    assert_eq!(pod_ip(&s).as_deref(), Some("127.1.0.2"));
    let ready = condition(&s, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.message.as_str()),
        ("True", "ok")
    );
    assert_eq!(
        pod_ip(&json!({"status": {"podIPs": [{"ip": "10.0.0.1"}]}})).as_deref(),
        Some("10.0.0.1")
    );
}

#[test]
fn image_mode_runs_the_image_with_the_key_in_its_environment() {
    let r = record();
    let mut settings = pod();
    settings.agent_mode = AgentMode::Image;
    let s = sandbox(&r, "v1beta1", &settings);
    let spec = &s["spec"]["podTemplate"]["spec"];
    assert!(spec.get("initContainers").is_none());
    let main = &spec["containers"][0];
    assert!(main.get("command").is_none());
    assert_eq!(
        main["env"][0],
        json!({"name": "SSH_PUBLIC_KEY", "value": "ssh-ed25519 AAAAuser pico-session"})
    );
    assert_eq!(main["ports"][0]["containerPort"], 2222);
    assert_eq!(spec["volumes"].as_array().map(Vec::len), Some(1));
    assert_eq!(spec["volumes"][0]["name"], "pico-keys");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::from),
            Just(Value::Null),
        ]
    }

    proptest! {
        /// Whatever the owner and metadata, the Sandbox's labels stay valid Kubernetes label
        /// values and the record reads back from the manifest unchanged.
        #[test]
        fn owner_and_metadata_round_trip(
            owner in "\\PC{1,80}",
            metadata in proptest::collection::btree_map("\\PC{1,16}", json_leaf(), 0..6),
        ) {
            let mut original = record();
            original.owner = owner;
            original.metadata = metadata.into_iter().collect();
            let manifest = sandbox(&original, "v1beta1", &pod());
            let labels = manifest["metadata"]["labels"].as_object().expect("labels");
            for value in labels.values() {
                let value = value.as_str().expect("label value");
                prop_assert!(value.len() <= 63);
                prop_assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            }
            let back = record_from(&manifest).expect("record");
            prop_assert_eq!(back.owner, original.owner);
            prop_assert_eq!(back.metadata, original.metadata);
        }
    }
}

#[test]
fn failed_sandbox_is_a_failed_session_on_either_version() {
    let r = record();
    for version in ["v1beta1", "v1alpha1"] {
        let mut s = sandbox(&r, version, &pod());
        // v1alpha1 too: without it an expired Sandbox is kept and its session lingers.
        assert_eq!(s["spec"]["shutdownPolicy"], "Delete", "{version}");
        assert_eq!(
            record_from(&s).map(|r| r.status),
            Some(SessionStatus::Running)
        );
        s["status"] = json!({"conditions": [{"type": "Ready", "status": "False",
            "reason": "PodFailed", "message": "Pod failed"}]});
        assert_eq!(
            record_from(&s).map(|r| r.status),
            Some(SessionStatus::Failed)
        );
        // Not ready for another reason (the pod is being recreated): pending until it is back.
        s["status"]["conditions"][0]["reason"] = json!("DependenciesNotReady");
        assert_eq!(
            record_from(&s).map(|r| r.status),
            Some(SessionStatus::Pending)
        );
        assert!(was_running(&s));
    }
}

#[test]
fn pod_is_hardened_with_a_writable_home_and_a_pinned_pull_policy() {
    let s = sandbox(&record(), "v1beta1", &pod());
    let spec = &s["spec"]["podTemplate"]["spec"];
    assert_eq!(spec["initContainers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["securityContext"]["fsGroup"], 1000);
    let c = &spec["containers"][0];
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    let argv: Vec<&str> = c["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        argv.windows(2).any(|w| w == ["--home", "/home/sandbox"]),
        "{argv:?}"
    );
    assert!(
        c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["mountPath"] == "/home/sandbox")
    );
}
