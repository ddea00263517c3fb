//! `meta.k8s.io/v1` Table responses, which kubectl asks for to print `get` columns.

use http::HeaderMap;
use serde_json::{Value, json};

use crate::resources::ResourceDef;

/// What a Table row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

/// `Some` when the client asked for a Table (kubectl's `Accept: …;as=Table;…`).
pub fn requested(headers: &HeaderMap, include: Option<&String>) -> Option<Include> {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let first = accept.split(',').next().unwrap_or("");
    if !first.contains("as=Table") {
        return None;
    }
    Some(match include.map(String::as_str) {
        Some("None") => Include::None,
        Some("Object") => Include::Object,
        _ => Include::Metadata,
    })
}

/// kube's `duration.HumanDuration`, as the AGE column shows it.
fn human(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 && s % 60 != 0 => format!("{m}m{}s", s % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        _ if d < 730 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

fn age(obj: &Value) -> String {
    let fmt = time::format_description::well_known::Rfc3339;
    let created = obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| time::OffsetDateTime::parse(t, &fmt).ok());
    created.map_or_else(
        || "<unknown>".into(),
        |t| human((time::OffsetDateTime::now_utc() - t).whole_seconds()),
    )
}

fn col(name: &str, kind: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": kind, "format": format, "description": "", "priority": priority})
}

/// The STATUS column of `kubectl get pods`: a container's waiting/terminated reason, else the phase.
fn pod_status(pod: &Value) -> String {
    let phase = pod["status"]["phase"]
        .as_str()
        .unwrap_or("Pending")
        .to_string();
    for cs in pod["status"]["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(r) = cs["state"]["waiting"]["reason"].as_str() {
            return format!("Init:{r}");
        }
    }
    for cs in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for state in ["waiting", "terminated"] {
            if let Some(r) = cs["state"][state]["reason"].as_str() {
                return r.to_string();
            }
        }
    }
    phase
}

fn columns(def: &ResourceDef) -> Vec<Value> {
    let mut c = vec![col("Name", "string", 0)];
    match def.key {
        "pods" => c.extend([
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "string", 0),
            col("Age", "string", 0),
            col("IP", "string", 1),
            col("Node", "string", 1),
        ]),
        "services" => c.extend([
            col("Type", "string", 0),
            col("Cluster-IP", "string", 0),
            col("Age", "string", 0),
        ]),
        "secrets" => c.extend([
            col("Type", "string", 0),
            col("Data", "integer", 0),
            col("Age", "string", 0),
        ]),
        "namespaces" => c.extend([col("Status", "string", 0), col("Age", "string", 0)]),
        _ => c.push(col("Age", "string", 0)),
    }
    c
}

fn cells(def: &ResourceDef, o: &Value) -> Vec<Value> {
    let name = o["metadata"]["name"].clone();
    match def.key {
        "pods" => {
            let statuses = o["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|c| c["ready"] == json!(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .filter_map(|c| c["restartCount"].as_i64())
                .sum();
            let ip = o["status"]["podIP"].as_str().unwrap_or("<none>");
            let node = o["spec"]["nodeName"].as_str().unwrap_or("<none>");
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                json!(age(o)),
                json!(ip),
                json!(node),
            ]
        }
        "services" => vec![
            name,
            o["spec"]["type"].clone(),
            o["spec"]["clusterIP"].clone(),
            json!(age(o)),
        ],
        "secrets" => vec![
            name,
            o["type"].clone(),
            json!(o["data"].as_object().map_or(0, |d| d.len())),
            json!(age(o)),
        ],
        "namespaces" => vec![name, o["status"]["phase"].clone(), json!(age(o))],
        _ => vec![name, json!(age(o))],
    }
}

fn row_object(o: &Value, include: Include) -> Value {
    match include {
        Include::None => Value::Null,
        Include::Object => o.clone(),
        Include::Metadata => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
        }
    }
}

/// A Table of `objects` (already rendered in the requested version).
pub fn table(
    def: &ResourceDef,
    objects: &[Value],
    rv: Option<String>,
    include: Include,
    with_columns: bool,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| json!({"cells": cells(def, o), "object": row_object(o, include)}))
        .collect();
    let mut t =
        json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "rows": rows});
    if with_columns {
        t["columnDefinitions"] = json!(columns(def));
    }
    if let Some(rv) = rv {
        t["metadata"]["resourceVersion"] = json!(rv);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(5), "5s");
        assert_eq!(human(130), "2m10s");
        assert_eq!(human(600), "10m");
        assert_eq!(human(3 * 3600 + 60), "3h1m");
        assert_eq!(human(30 * 3600), "30h");
        assert_eq!(human(3 * 86400), "3d");
    }
}
