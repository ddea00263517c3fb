//! Minimal OpenAPI v3 documents: enough for kubectl to see that the server validates fields.

// kubectl's `--validate=strict` (its default) asks `/openapi/v3` whether a type's PATCH
// accepts `fieldValidation`; when it does, kubectl leaves validation to the server instead
// of downloading full schemas. No schemas are served.

use serde_json::{Map, Value, json};

use crate::resources::{self, ALL, Served};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn all_gvs(served: &Served) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![("", "v1")];
    for g in resources::groups(served) {
        for v in resources::group_versions(served, g) {
            out.push((g, v));
        }
    }
    out
}

/// `/openapi/v3`: the index of per-group-version documents.
pub fn root(served: &Served) -> Value {
    let mut paths = Map::new();
    for (g, v) in all_gvs(served) {
        let p = gv_path(g, v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=pico-kube-emulator")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/{api/v1 | apis/G/V}`: one PATCH operation per resource, with `fieldValidation`.
pub fn group_version(served: &Served, path: &str) -> Option<Value> {
    let (g, v) = all_gvs(served)
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path)?;
    let mut paths = Map::new();
    for d in ALL
        .iter()
        .filter(|d| d.group == g && served.versions(d).contains(&v))
    {
        let url = if d.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}/{{name}}",
                gv_path(g, v),
                d.plural
            )
        } else {
            format!("/{}/{}/{{name}}", gv_path(g, v), d.plural)
        };
        let op = json!({
            "operationId": format!("patch{}", d.kind),
            "x-kubernetes-group-version-kind": {"group": g, "version": v, "kind": d.kind},
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            ],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(url, json!({"patch": op}));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
