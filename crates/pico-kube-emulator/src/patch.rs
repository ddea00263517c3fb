//! Patch formats: JSON merge patch, strategic merge (approximated), JSON patch and apply.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The patch types kube-apiserver accepts, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Parses a patch body; apply patches are YAML (of which JSON is a subset).
pub fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    let parsed = match kind {
        PatchKind::Apply => serde_norway::from_slice(body).map_err(|e| e.to_string()),
        _ => serde_json::from_slice(body).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Applies `patch` of `kind` to `target`.
pub fn apply(kind: PatchKind, target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    match kind {
        PatchKind::Merge => merge(target, patch, false),
        PatchKind::Strategic | PatchKind::Apply => merge(target, patch, true),
        PatchKind::Json => json_patch(target, patch)?,
    }
    Ok(())
}

/// RFC 7386 merge. With `by_name`, lists of named objects (containers, volumes, ports, env)
/// merge element-wise by `name`, which is what strategic merge and apply do for those lists;
/// `$`-directives that kubectl adds to strategic patches are dropped.
pub fn merge(target: &mut Value, patch: &Value, by_name: bool) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if by_name && k.starts_with('$') {
                        continue;
                    }
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v, by_name);
                    }
                }
            }
        }
        Value::Array(items)
            if by_name && named_list(items) && target.as_array().is_some_and(|a| named_list(a)) =>
        {
            let mut out = Vec::new();
            let old = target.as_array().cloned().unwrap_or_default();
            for item in items {
                let mut base = old
                    .iter()
                    .find(|o| o["name"] == item["name"])
                    .cloned()
                    .unwrap_or(Value::Null);
                merge(&mut base, item, by_name);
                out.push(base);
            }
            *target = Value::Array(out);
        }
        other => *target = strip_directives(other, by_name),
    }
}

fn named_list(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|i| i.get("name").is_some_and(Value::is_string))
}

fn strip_directives(v: &Value, by_name: bool) -> Value {
    if !by_name {
        return v.clone();
    }
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v, by_name)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| strip_directives(x, by_name)).collect()),
        other => other.clone(),
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(Vec<String>, String), ApiError> {
    let bad = || ApiError::bad_request(format!("invalid JSON pointer {path:?}"));
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    let mut parts: Vec<String> = rest.split('/').map(unescape).collect();
    let last = parts.pop().ok_or_else(bad)?;
    Ok((parts, last))
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    parts: &[String],
    path: &str,
) -> Result<&'a mut Value, ApiError> {
    let mut cur = doc;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                format!("json patch: path {path} does not exist"),
            )
        })?;
    }
    Ok(cur)
}

fn get_at(doc: &Value, path: &str) -> Option<Value> {
    doc.pointer(path).cloned()
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, ApiError> {
    let (parts, last) = split_pointer(path)?;
    let missing = || {
        ApiError::new(
            422,
            "Invalid",
            format!("json patch: path {path} does not exist"),
        )
    };
    match parent_mut(doc, &parts, path)? {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(missing)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

fn add_at(doc: &mut Value, path: &str, value: Value, replace: bool) -> Result<(), ApiError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parts, last) = split_pointer(path)?;
    let bad = || ApiError::new(422, "Invalid", format!("json patch: cannot set {path}"));
    match parent_mut(doc, &parts, path)? {
        Value::Object(m) => {
            if replace && !m.contains_key(&last) {
                return Err(bad());
            }
            m.insert(last, value);
        }
        Value::Array(a) if last == "-" && !replace => a.push(value),
        Value::Array(a) => {
            let i = last.parse::<usize>().map_err(|_| bad())?;
            if replace {
                *a.get_mut(i).ok_or_else(bad)? = value;
            } else if i <= a.len() {
                a.insert(i, value);
            } else {
                return Err(bad());
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// RFC 6902.
fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array"))?;
    for op in ops {
        let path = op["path"].as_str().unwrap_or("");
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| ApiError::bad_request("json patch: missing value"))
        };
        let from = || {
            op["from"]
                .as_str()
                .and_then(|f| get_at(doc, f).map(|v| (f.to_string(), v)))
                .ok_or_else(|| ApiError::new(422, "Invalid", "json patch: from does not exist"))
        };
        match op["op"].as_str().unwrap_or("") {
            "add" => add_at(doc, path, value()?, false)?,
            "replace" => add_at(doc, path, value()?, true)?,
            "remove" => {
                remove_at(doc, path)?;
            }
            "test" => {
                if get_at(doc, path) != Some(value()?) {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!("json patch: test failed at {path}"),
                    ));
                }
            }
            "copy" => {
                let (_, v) = from()?;
                add_at(doc, path, v, false)?;
            }
            "move" => {
                let (f, _) = from()?;
                let v = remove_at(doc, &f)?;
                add_at(doc, path, v, false)?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "json patch: unknown op {other:?}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_removes_nulls_and_replaces_lists() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [{"name": "x", "v": 1}]});
        merge(
            &mut t,
            &json!({"a": null, "b": {"c": 5}, "l": [{"name": "y"}]}),
            false,
        );
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "l": [{"name": "y"}]}));
    }

    #[test]
    fn strategic_merges_named_lists() {
        let mut t = json!({"containers": [{"name": "a", "image": "i1", "ports": [1]}]});
        let p = json!({"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "a", "image": "i2"}]});
        merge(&mut t, &p, true);
        assert_eq!(
            t,
            json!({"containers": [{"name": "a", "image": "i2", "ports": [1]}]})
        );
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"metadata": {"labels": {"a": "1"}}, "l": [1, 2]});
        let p = json!([
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "replace", "path": "/l/0", "value": 9},
            {"op": "add", "path": "/l/-", "value": 3},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "test", "path": "/l/1", "value": 2},
        ]);
        json_patch(&mut t, &p).expect("patch");
        assert_eq!(
            t,
            json!({"metadata": {"labels": {"b": "2"}}, "l": [9, 2, 3]})
        );
        let err = json_patch(&mut t, &json!([{"op": "test", "path": "/l/0", "value": 1}]))
            .expect_err("test op");
        assert_eq!(err.code, 422);
    }

    #[test]
    fn apply_body_is_yaml() {
        let v = parse_body(PatchKind::Apply, b"metadata:\n  name: x\n").expect("yaml");
        assert_eq!(v, json!({"metadata": {"name": "x"}}));
    }
}
