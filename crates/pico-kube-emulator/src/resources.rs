//! The resource types the emulator serves and the discovery documents that describe them.

use serde_json::{Value, json};

/// One served resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// Storage key; unique across groups.
    pub key: &'static str,
    pub group: &'static str,
    /// Served versions, preferred (storage) first.
    pub versions: &'static [&'static str],
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub has_status: bool,
}

pub const SANDBOX_GROUP: &str = "agents.x-k8s.io";

pub static PODS: ResourceDef = ResourceDef {
    key: "pods",
    group: "",
    versions: &["v1"],
    plural: "pods",
    singular: "pod",
    kind: "Pod",
    namespaced: true,
    short_names: &["po"],
    has_status: true,
};

pub static SECRETS: ResourceDef = ResourceDef {
    key: "secrets",
    group: "",
    versions: &["v1"],
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    namespaced: true,
    short_names: &[],
    has_status: false,
};

pub static SERVICES: ResourceDef = ResourceDef {
    key: "services",
    group: "",
    versions: &["v1"],
    plural: "services",
    singular: "service",
    kind: "Service",
    namespaced: true,
    short_names: &["svc"],
    has_status: true,
};

pub static NAMESPACES: ResourceDef = ResourceDef {
    key: "namespaces",
    group: "",
    versions: &["v1"],
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    namespaced: false,
    short_names: &["ns"],
    has_status: true,
};

pub static SANDBOXES: ResourceDef = ResourceDef {
    key: "sandboxes.agents.x-k8s.io",
    group: SANDBOX_GROUP,
    versions: &["v1beta1", "v1alpha1"],
    plural: "sandboxes",
    singular: "sandbox",
    kind: "Sandbox",
    namespaced: true,
    short_names: &["sandbox"],
    has_status: true,
};

/// Stored without behaviour, so that deployment manifests (issue 8) apply against the emulator.
macro_rules! plain {
    ($name:ident, $key:literal, $group:literal, $version:literal, $plural:literal, $singular:literal, $kind:literal, $namespaced:literal, $short:expr) => {
        pub static $name: ResourceDef = ResourceDef {
            key: $key,
            group: $group,
            versions: &[$version],
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $namespaced,
            short_names: $short,
            has_status: false,
        };
    };
}

plain!(
    CONFIGMAPS,
    "configmaps",
    "",
    "v1",
    "configmaps",
    "configmap",
    "ConfigMap",
    true,
    &["cm"]
);
plain!(
    SERVICEACCOUNTS,
    "serviceaccounts",
    "",
    "v1",
    "serviceaccounts",
    "serviceaccount",
    "ServiceAccount",
    true,
    &["sa"]
);
plain!(
    EVENTS,
    "events",
    "",
    "v1",
    "events",
    "event",
    "Event",
    true,
    &["ev"]
);
plain!(
    DEPLOYMENTS,
    "deployments.apps",
    "apps",
    "v1",
    "deployments",
    "deployment",
    "Deployment",
    true,
    &["deploy"]
);
plain!(
    ROLES,
    "roles.rbac.authorization.k8s.io",
    "rbac.authorization.k8s.io",
    "v1",
    "roles",
    "role",
    "Role",
    true,
    &[]
);
plain!(
    ROLEBINDINGS,
    "rolebindings.rbac.authorization.k8s.io",
    "rbac.authorization.k8s.io",
    "v1",
    "rolebindings",
    "rolebinding",
    "RoleBinding",
    true,
    &[]
);

plain!(
    CLUSTERROLES,
    "clusterroles.rbac.authorization.k8s.io",
    "rbac.authorization.k8s.io",
    "v1",
    "clusterroles",
    "clusterrole",
    "ClusterRole",
    false,
    &[]
);
plain!(
    CLUSTERROLEBINDINGS,
    "clusterrolebindings.rbac.authorization.k8s.io",
    "rbac.authorization.k8s.io",
    "v1",
    "clusterrolebindings",
    "clusterrolebinding",
    "ClusterRoleBinding",
    false,
    &[]
);
plain!(
    NETWORKPOLICIES,
    "networkpolicies.networking.k8s.io",
    "networking.k8s.io",
    "v1",
    "networkpolicies",
    "networkpolicy",
    "NetworkPolicy",
    true,
    &["netpol"]
);
plain!(
    PDBS,
    "poddisruptionbudgets.policy",
    "policy",
    "v1",
    "poddisruptionbudgets",
    "poddisruptionbudget",
    "PodDisruptionBudget",
    true,
    &["pdb"]
);
plain!(
    RUNTIMECLASSES,
    "runtimeclasses.node.k8s.io",
    "node.k8s.io",
    "v1",
    "runtimeclasses",
    "runtimeclass",
    "RuntimeClass",
    false,
    &[]
);
plain!(
    CRDS,
    "customresourcedefinitions.apiextensions.k8s.io",
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "customresourcedefinition",
    "CustomResourceDefinition",
    false,
    &["crd", "crds"]
);

pub static ALL: [&ResourceDef; 17] = [
    &PODS,
    &SECRETS,
    &SERVICES,
    &NAMESPACES,
    &SANDBOXES,
    &CONFIGMAPS,
    &SERVICEACCOUNTS,
    &EVENTS,
    &DEPLOYMENTS,
    &ROLES,
    &ROLEBINDINGS,
    &CLUSTERROLES,
    &CLUSTERROLEBINDINGS,
    &NETWORKPOLICIES,
    &PDBS,
    &RUNTIMECLASSES,
    &CRDS,
];

/// Which versions this emulator serves: all, except that the Sandbox versions are configurable
/// (a cluster with an older agent-sandbox serves only `v1alpha1`).
#[derive(Debug, Clone)]
pub struct Served {
    sandbox_versions: Vec<&'static str>,
}

impl Served {
    /// Keeps the known Sandbox versions among `wanted`, in Sandbox preference order.
    pub fn new(wanted: &[String]) -> Self {
        let sandbox_versions = SANDBOXES
            .versions
            .iter()
            .copied()
            .filter(|v| wanted.iter().any(|w| w == v))
            .collect();
        Self { sandbox_versions }
    }

    /// Served versions of a resource, preferred first.
    pub fn versions(&self, d: &ResourceDef) -> Vec<&'static str> {
        if d.key == SANDBOXES.key {
            self.sandbox_versions.clone()
        } else {
            d.versions.to_vec()
        }
    }

    /// The resource served at `group/version/plural`, if any.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
        ALL.iter()
            .copied()
            .find(|d| d.group == group && d.plural == plural && self.versions(d).contains(&version))
    }

    fn defs<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'static ResourceDef> + 'a {
        ALL.iter()
            .copied()
            .filter(move |d| d.group == group && self.versions(d).contains(&version))
    }
}

impl ResourceDef {
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `APIResourceList` for one group/version (legacy discovery, which kubectl falls back to).
pub fn resource_list(served: &Served, group: &str, version: &str) -> Option<Value> {
    let defs: Vec<_> = served.defs(group, version).collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for d in defs {
        resources.push(json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": VERBS,
            "shortNames": d.short_names,
            // `kubectl get all` lists what kube-apiserver puts in the "all" category.
            "categories": if matches!(d.plural, "pods" | "services" | "deployments") { json!(["all"]) } else { json!([]) },
        }));
        if d.has_status {
            resources.push(json!({
                "name": format!("{}/status", d.plural),
                "singularName": "",
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// Named API groups, in the order first served.
pub fn groups(served: &Served) -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for d in ALL
        .iter()
        .filter(|d| !d.group.is_empty() && !served.versions(d).is_empty())
    {
        if !out.contains(&d.group) {
            out.push(d.group);
        }
    }
    out
}

/// Served versions of a group, preferred first.
pub fn group_versions(served: &Served, group: &str) -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for d in ALL.iter().filter(|d| d.group == group) {
        for v in served.versions(d) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

fn group_json(served: &Served, name: &str) -> Value {
    let versions: Vec<Value> = group_versions(served, name)
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
}

/// `APIGroupList` at `/apis`.
pub fn group_list(served: &Served) -> Value {
    let groups: Vec<Value> = groups(served)
        .into_iter()
        .map(|g| group_json(served, g))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `APIGroup` at `/apis/{group}`.
pub fn group(served: &Served, name: &str) -> Option<Value> {
    groups(served).contains(&name).then(|| {
        let mut g = group_json(served, name);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

/// `APIVersions` at `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `/version`: a recent minor so clients enable their current code paths.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-pico-kube-emulator",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}
