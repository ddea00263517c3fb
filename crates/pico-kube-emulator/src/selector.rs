//! Label selectors (equality and set-based) and field selectors, parsed from query strings.

use serde_json::Value;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    reqs: Vec<Req>,
}

/// Splits on commas outside parentheses, because `in (a,b)` holds commas of its own.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_set(rest: &str, term: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: {term}: expected (values)"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_term(term: &str) -> Result<Req, ApiError> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Req::NotExists(key.trim().to_string()));
    }
    if let Some((key, rest)) = term.split_once(char::is_whitespace) {
        let rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("notin") {
            return Ok(Req::NotIn(key.to_string(), parse_set(r, term)?));
        }
        if let Some(r) = rest.strip_prefix("in") {
            return Ok(Req::In(key.to_string(), parse_set(r, term)?));
        }
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Req::Ne(k.trim().to_string(), v.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Req::Eq(k.trim().to_string(), v.trim().to_string()));
    }
    if term.contains(['<', '>', '(', ')', ' ']) {
        return Err(ApiError::bad_request(format!(
            "unable to parse requirement: {term}"
        )));
    }
    Ok(Req::Exists(term.to_string()))
}

impl Selector {
    pub fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        let reqs = match s {
            Some(s) => split_terms(s)
                .into_iter()
                .map(parse_term)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Self { reqs })
    }

    /// `lookup` answers the value of a key (a label, or a field path).
    fn matches_with(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            Req::Ne(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Req::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
            Req::Exists(k) => lookup(k).is_some(),
            Req::NotExists(k) => lookup(k).is_none(),
        })
    }

    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.matches_with(|k| labels.get(k).and_then(Value::as_str).map(str::to_string))
    }

    /// Field selectors compare a dotted path (`metadata.name`, `status.phase`) as a string;
    /// a missing field compares as empty, as kube-apiserver does.
    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.matches_with(|path| {
            let mut cur = obj;
            for part in path.split('.') {
                cur = &cur[part];
            }
            Some(match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            })
        })
    }
}

/// Both selectors of a list or watch request.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub labels: Selector,
    pub fields: Selector,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_labels(obj) && self.fields.matches_fields(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p1", "labels": labels}, "status": {"phase": "Running"}})
    }

    #[test]
    fn equality_and_sets() {
        let p = pod(json!({"app": "web", "tier": "front"}));
        let m = |s: &str| Selector::parse(Some(s)).expect("parse").matches_labels(&p);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web, db),tier notin (back)"));
        assert!(!m("app notin (web)"));
        assert!(m("!missing"));
        assert!(!m("!app"));
        assert!(m(""));
        assert!(m("missing notin (x)"));
        assert!(!m("missing in (x)"));
    }

    #[test]
    fn fields() {
        let p = pod(json!({}));
        let m = |s: &str| Selector::parse(Some(s)).expect("parse").matches_fields(&p);
        assert!(m("metadata.name=p1"));
        assert!(!m("metadata.name=p2"));
        assert!(m("status.phase!=Pending"));
    }

    #[test]
    fn bad_selector_is_bad_request() {
        let e = Selector::parse(Some("a in b")).expect_err("must fail");
        assert_eq!(e.code, 400);
    }
}
