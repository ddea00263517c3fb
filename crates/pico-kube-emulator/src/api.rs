//! The HTTP front: path routing, discovery, and create/get/list/update/patch/delete handlers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::patch::{self, PatchKind};
use crate::resources::{self, ResourceDef};
use crate::selector::{Filter, Selector};
use crate::store::{DeleteOpts, ObjKey, Store};
use crate::{table, watch};

/// Shared state of the HTTP handlers.
pub struct App {
    pub store: Arc<Store>,
    pub token: Option<String>,
    pub server_address: String,
    pub bookmark_interval: Duration,
    pub shutdown: CancellationToken,
    pub served: resources::Served,
    pub logs: crate::kubelet::PodLogs,
    /// For namespaces without a Pod Security label.
    pub pod_security: crate::pod_security::Level,
}

/// A request for a resource path, e.g. `/apis/agents.x-k8s.io/v1beta1/namespaces/x/sandboxes/y/status`.
pub struct ResPath {
    pub def: &'static ResourceDef,
    pub version: String,
    pub ns: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

pub type Params = HashMap<String, String>;

pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(dispatch).with_state(app)
}

fn json_response(code: StatusCode, v: Value) -> Response {
    (code, axum::Json(v)).into_response()
}

/// kube-apiserver's limit on a request body.
const BODY_LIMIT: usize = 3 * 1024 * 1024;

async fn dispatch(State(app): State<Arc<App>>, request: axum::extract::Request) -> Response {
    if let Some((ns, name)) = crate::portforward::target(&request) {
        tracing::debug!(method = %request.method(), uri = %request.uri(), "request");
        if !authorized(&app, request.headers()) {
            return ApiError::unauthorized().into_response();
        }
        return crate::portforward::serve(app, request, &ns, &name).await;
    }
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let Ok(Query(params)) = Query::<Params>::try_from_uri(&uri) else {
        return ApiError::bad_request("invalid query string").into_response();
    };
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return ApiError::new(413, "RequestEntityTooLarge", "request body too large")
            .into_response();
    };
    tracing::debug!(%method, %uri, "request");
    match handle(&app, &method, uri.path(), &headers, &params, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %uri, code = e.code, reason = e.reason, "request failed");
            e.into_response()
        }
    }
}

fn authorized(app: &App, headers: &HeaderMap) -> bool {
    let Some(token) = &app.token else { return true };
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == token)
}

async fn handle(
    app: &Arc<App>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    params: &Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Health endpoints answer without a token, as kube-apiserver's do.
    if let ["healthz" | "livez" | "readyz"] = segs.as_slice() {
        return Ok((StatusCode::OK, "ok").into_response());
    }
    if !authorized(app, headers) {
        return Err(ApiError::unauthorized());
    }
    let ok = |v: Value| Ok(json_response(StatusCode::OK, v));
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let served = &app.served;
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return ok(resources::version()),
        ["api"] => return ok(resources::core_versions(&app.server_address)),
        ["apis"] => return ok(resources::group_list(served)),
        ["api", v] => {
            return resources::resource_list(served, "", v).map_or_else(|| Err(not_found()), ok);
        }
        ["apis", g] => return resources::group(served, g).map_or_else(|| Err(not_found()), ok),
        ["apis", g, v] => {
            return resources::resource_list(served, g, v).map_or_else(|| Err(not_found()), ok);
        }
        ["openapi", "v3"] => return ok(crate::openapi::root(served)),
        ["openapi", "v3", rest @ ..] => {
            return crate::openapi::group_version(served, &rest.join("/"))
                .map_or_else(|| Err(not_found()), ok);
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found()),
    };
    let (ns, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..] => (Some(*ns), *plural, tail.first(), tail.get(1)),
        [plural, tail @ ..] => (None, *plural, tail.first(), tail.get(1)),
        [] => return Err(not_found()),
    };
    let def = served
        .lookup(group, version, plural)
        .ok_or_else(not_found)?;
    if def.key == resources::PODS.key && sub.is_some_and(|s| *s == "log") && *method == Method::GET
    {
        return pod_log(app, ns.unwrap_or(""), name.map_or("", |n| n), params);
    }
    if (ns.is_some() && !def.namespaced) || sub.is_some_and(|s| *s != "status" || !def.has_status) {
        return Err(not_found());
    }
    if ns.is_none() && def.namespaced && name.is_some() {
        return Err(not_found());
    }
    let rp = ResPath {
        def,
        version: version.to_string(),
        ns: ns.map(str::to_string),
        name: name.map(|s| s.to_string()),
        sub: sub.map(|s| s.to_string()),
    };
    let dry_run = params.get("dryRun").is_some_and(|v| v == "All");
    match (method.as_str(), rp.name.is_some()) {
        ("GET", false) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            let table = table::requested(headers, params.get("includeObject"));
            watch::serve(app.clone(), rp, filter(params)?, params, table).await
        }
        ("GET", false) => list(
            app,
            &rp,
            params,
            table::requested(headers, params.get("includeObject")),
        ),
        ("GET", true) => get(
            app,
            &rp,
            table::requested(headers, params.get("includeObject")),
        ),
        ("POST", false) => create(app, &rp, headers, &body, dry_run),
        ("PUT", true) => update(app, &rp, headers, &body, dry_run),
        ("PATCH", true) => patch_object(app, &rp, headers, params, &body, dry_run),
        ("DELETE", true) => delete(app, &rp, params, &body, dry_run),
        ("DELETE", false) => delete_collection(app, &rp, params, &body, dry_run),
        (m, _) => Err(ApiError::method_not_allowed(m)),
    }
}

fn filter(params: &Params) -> Result<Filter, ApiError> {
    Ok(Filter {
        labels: Selector::parse(params.get("labelSelector").map(String::as_str))?,
        fields: Selector::parse(params.get("fieldSelector").map(String::as_str))?,
    })
}

/// The object as the requested version shows it: sandboxes are stored once for both versions.
pub fn render(rp: &ResPath, obj: &Value) -> Value {
    let mut v = obj.clone();
    v["apiVersion"] = json!(rp.def.api_version(&rp.version));
    v["kind"] = json!(rp.def.kind);
    v
}

fn key(rp: &ResPath) -> ObjKey {
    ObjKey::new(
        rp.def,
        rp.ns.as_deref().unwrap_or(""),
        rp.name.as_deref().unwrap_or(""),
    )
}

/// Parses a create or update body: JSON or YAML, or protobuf for the few kinds kubectl's
/// imperative commands send that way.
fn parse_object(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.contains("protobuf") {
        return crate::protobuf::decode(body).map_err(|e| {
            let mut err = ApiError::unsupported_media_type(ct);
            err.message = e;
            err
        });
    }
    if ct.contains("cbor") {
        return Err(ApiError::unsupported_media_type(ct));
    }
    let v: Value = serde_json::from_slice(body)
        .or_else(|_| serde_norway::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(ApiError::bad_request("the request body must be an object"))
    }
}

fn get(app: &App, rp: &ResPath, as_table: Option<table::Include>) -> Result<Response, ApiError> {
    let obj = app.store.get(&key(rp)).ok_or_else(|| {
        ApiError::not_found(
            rp.def.group,
            rp.def.plural,
            rp.name.as_deref().unwrap_or(""),
        )
    })?;
    let obj = render(rp, &obj);
    if let Some(include) = as_table {
        let rv = crate::store::rv_of(&obj).to_string();
        return Ok(json_response(
            StatusCode::OK,
            table::table(rp.def, &[obj], Some(rv), include, true),
        ));
    }
    Ok(json_response(StatusCode::OK, obj))
}

/// `kubectl logs`: what the pod's agent process printed (nothing for other images).
fn pod_log(app: &App, ns: &str, name: &str, params: &Params) -> Result<Response, ApiError> {
    let pod = app
        .store
        .get(&ObjKey::new(&resources::PODS, ns, name))
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let tail = params.get("tailLines").and_then(|t| t.parse().ok());
    let text = app
        .logs
        .read(pod["metadata"]["uid"].as_str().unwrap_or(""), tail);
    Ok(([(http::header::CONTENT_TYPE, "text/plain")], text).into_response())
}

fn list(
    app: &App,
    rp: &ResPath,
    params: &Params,
    as_table: Option<table::Include>,
) -> Result<Response, ApiError> {
    let (items, rv) = app
        .store
        .list(rp.def.key, rp.ns.as_deref(), &filter(params)?);
    let items: Vec<Value> = items.iter().map(|o| render(rp, o)).collect();
    if let Some(include) = as_table {
        return Ok(json_response(
            StatusCode::OK,
            table::table(rp.def, &items, Some(rv.to_string()), include, true),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        json!({
            "apiVersion": rp.def.api_version(&rp.version),
            "kind": format!("{}List", rp.def.kind),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    ))
}

fn create(
    app: &App,
    rp: &ResPath,
    headers: &HeaderMap,
    body: &[u8],
    dry_run: bool,
) -> Result<Response, ApiError> {
    if rp.def.namespaced && rp.ns.is_none() {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let mut obj = parse_object(headers, body)?;
    crate::defaults::normalize(rp.def, &mut obj, true);
    if rp.def.key == crate::resources::PODS.key {
        let ns = rp.ns.as_deref().unwrap_or("");
        let level = crate::pod_security::level_of(&app.store, ns, app.pod_security);
        crate::pod_security::admit(&obj, level)?;
    }
    let created = app
        .store
        .create(rp.def, rp.ns.as_deref().unwrap_or(""), obj, dry_run)?;
    Ok(json_response(StatusCode::CREATED, render(rp, &created)))
}

/// Keeps the part a request may not change: status on the main resource, the rest on `/status`.
fn merge_scope(rp: &ResPath, old: &Value, mut new: Value) -> Value {
    if rp.sub.is_some() {
        let mut out = old.clone();
        out["status"] = new["status"].take();
        if !new["metadata"]["resourceVersion"].is_null() {
            out["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].take();
        }
        out
    } else {
        if rp.def.has_status {
            new["status"] = old["status"].clone();
            if new["status"].is_null()
                && let Some(m) = new.as_object_mut()
            {
                m.remove("status");
            }
        }
        new
    }
}

fn update(
    app: &App,
    rp: &ResPath,
    headers: &HeaderMap,
    body: &[u8],
    dry_run: bool,
) -> Result<Response, ApiError> {
    let mut obj = parse_object(headers, body)?;
    let name = rp.name.as_deref().unwrap_or("");
    if obj["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    crate::defaults::normalize(rp.def, &mut obj, false);
    let updated = app.store.update(rp.def, &key(rp), dry_run, |old| {
        Ok(merge_scope(rp, old, obj))
    })?;
    Ok(json_response(StatusCode::OK, render(rp, &updated)))
}

fn patch_object(
    app: &App,
    rp: &ResPath,
    headers: &HeaderMap,
    params: &Params,
    body: &[u8],
    dry_run: bool,
) -> Result<Response, ApiError> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind =
        PatchKind::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))?;
    let p = patch::parse_body(kind, body)?;
    let k = key(rp);
    if kind == PatchKind::Apply {
        if !params.contains_key("fieldManager") {
            return Err(ApiError::bad_request(
                "PATCH with apply requires a fieldManager",
            ));
        }
        if rp.sub.is_none() && app.store.get(&k).is_none() {
            let mut obj = p.clone();
            obj["metadata"]["name"] = json!(k.name);
            crate::defaults::normalize(rp.def, &mut obj, true);
            let created = app
                .store
                .create(rp.def, rp.ns.as_deref().unwrap_or(""), obj, dry_run)?;
            return Ok(json_response(StatusCode::CREATED, render(rp, &created)));
        }
    }
    let updated = app.store.update(rp.def, &k, dry_run, |old| {
        let mut target = old.clone();
        patch::apply(kind, &mut target, &p)?;
        // A patch that does not name a resourceVersion is unconditional.
        if p["metadata"]["resourceVersion"].is_null() && kind != PatchKind::Json {
            target["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        }
        crate::defaults::normalize(rp.def, &mut target, false);
        Ok(merge_scope(rp, old, target))
    })?;
    Ok(json_response(StatusCode::OK, render(rp, &updated)))
}

fn delete_opts(params: &Params, body: &[u8]) -> (DeleteOpts, bool) {
    let b: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let policy = b["propagationPolicy"]
        .as_str()
        .map(str::to_string)
        .or_else(|| params.get("propagationPolicy").cloned());
    let orphan = policy.as_deref() == Some("Orphan") || b["orphanDependents"] == json!(true);
    let dry = b["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "All"));
    let opts = DeleteOpts {
        orphan,
        precondition_rv: b["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        precondition_uid: b["preconditions"]["uid"].as_str().map(str::to_string),
    };
    (opts, dry)
}

fn delete(
    app: &App,
    rp: &ResPath,
    params: &Params,
    body: &[u8],
    dry_run: bool,
) -> Result<Response, ApiError> {
    if rp.sub.is_some() {
        return Err(ApiError::method_not_allowed("DELETE"));
    }
    let (opts, dry) = delete_opts(params, body);
    let deleted = app.store.delete(rp.def, &key(rp), &opts, dry_run || dry)?;
    if rp.def.key == resources::NAMESPACES.key && !(dry_run || dry) {
        // A namespace takes everything in it along (at once: there are no finalizers here).
        let ns = rp.name.as_deref().unwrap_or("");
        for def in resources::ALL.iter().filter(|d| d.namespaced) {
            for obj in app.store.list(def.key, Some(ns), &Filter::default()).0 {
                let k = ObjKey::new(def, ns, obj["metadata"]["name"].as_str().unwrap_or(""));
                // The garbage collector may have taken it already.
                let _ = app.store.delete(def, &k, &DeleteOpts::default(), false);
            }
        }
    }
    Ok(json_response(StatusCode::OK, render(rp, &deleted)))
}

fn delete_collection(
    app: &App,
    rp: &ResPath,
    params: &Params,
    body: &[u8],
    dry_run: bool,
) -> Result<Response, ApiError> {
    let (opts, dry) = delete_opts(params, body);
    let (items, _) = app
        .store
        .list(rp.def.key, rp.ns.as_deref(), &filter(params)?);
    let mut out = Vec::new();
    for item in items {
        let k = ObjKey::new(
            rp.def,
            item["metadata"]["namespace"].as_str().unwrap_or(""),
            item["metadata"]["name"].as_str().unwrap_or(""),
        );
        // Another deleter (or the garbage collector) may have been faster.
        if let Ok(d) = app.store.delete(rp.def, &k, &opts, dry_run || dry) {
            out.push(render(rp, &d));
        }
    }
    let rv = app.store.current_rv().to_string();
    let kind = format!("{}List", rp.def.kind);
    Ok(json_response(
        StatusCode::OK,
        json!({"apiVersion": rp.def.api_version(&rp.version), "kind": kind, "metadata": {"resourceVersion": rv}, "items": out}),
    ))
}
