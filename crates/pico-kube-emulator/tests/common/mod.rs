//! Shared harness: an in-process emulator and a kube-rs client configured from its kubeconfig.
#![allow(dead_code)]

use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Config, Resource};
use pico_kube_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Every wait in these tests is on a watch; this only bounds a hang.
pub const WAIT: Duration = Duration::from_secs(20);

pub async fn start() -> (EmulatorHandle, Client) {
    start_with(EmulatorConfig::default()).await
}

pub async fn start_with(config: EmulatorConfig) -> (EmulatorHandle, Client) {
    let handle = Emulator::start(config).await.expect("start emulator");
    let client = client_for(&handle.kubeconfig_yaml()).await;
    (handle, client)
}

/// A client built exactly as a user's kubeconfig would build it.
pub async fn client_for(kubeconfig: &str) -> Client {
    let kc = Kubeconfig::from_yaml(kubeconfig).expect("parse kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

pub fn sandbox_resource(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("agents.x-k8s.io", version, "Sandbox"),
        "sandboxes",
    )
}

pub fn sandboxes(client: &Client, version: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), "default", &sandbox_resource(version))
}

/// The agent-sandbox README example, with a name and extra spec fields merged in.
pub fn sandbox(version: &str, name: &str, image: &str, extra_spec: Value) -> DynamicObject {
    let mut spec = json!({"podTemplate": {"spec": {"containers": [{"name": "my-container", "image": image}]}}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(e.clone());
    }
    let mut obj = DynamicObject::new(name, &sandbox_resource(version));
    obj.data = json!({"spec": spec});
    obj
}

/// Waits, on a watch, until `cond` holds for the named object.
pub async fn wait_for<K>(api: &Api<K>, name: &str, cond: impl Condition<K>) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let got = tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {name}"))
        .expect("watch");
    got.unwrap_or_else(|| panic!("{name} was deleted while waiting"))
}

/// Waits until the named object no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let cond = |o: Option<&K>| o.is_none();
    tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {name} to go"))
        .expect("watch");
}

/// The `status` of a condition of a dynamic object, e.g. `Ready` → `Some("True")`.
pub fn condition(obj: &DynamicObject, kind: &str) -> Option<String> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

pub fn is_ready(obj: Option<&DynamicObject>) -> bool {
    obj.is_some_and(|o| condition(o, "Ready").as_deref() == Some("True"))
}

/// The `Status` of a failed call.
pub fn api_error(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub fn condition_is(obj: Option<&DynamicObject>, kind: &str, status: &str) -> bool {
    obj.is_some_and(|o| condition(o, kind).as_deref() == Some(status))
}
