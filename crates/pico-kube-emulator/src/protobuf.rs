//! Decoding the protobuf bodies kubectl's imperative `create` commands send, for a few kinds.

// `kubectl create secret|configmap|namespace|serviceaccount` post
// `application/vnd.kubernetes.protobuf` and do not fall back to JSON on 415, so the kinds
// those commands make are decoded here (only the fields they can set); anything else is 415.

use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Iterates over `(field number, value)` of one message.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    fn varint(buf: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (num, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((num, Field::Varint(varint(&mut buf)?))),
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|e| e.to_string())?;
                if len > buf.len() {
                    return Err("truncated field".into());
                }
                let (v, rest) = buf.split_at(len);
                buf = rest;
                out.push((num, Field::Bytes(v)));
            }
            1 if buf.len() >= 8 => buf = &buf[8..],
            5 if buf.len() >= 4 => buf = &buf[4..],
            _ => return Err(format!("unsupported wire type {wire}")),
        }
    }
    Ok(out)
}

fn string(b: &[u8]) -> Value {
    json!(String::from_utf8_lossy(b))
}

/// A `map<string, string|bytes>` entry: key 1, value 2.
fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), String> {
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    for (n, f) in fields(b)? {
        if let Field::Bytes(x) = f {
            match n {
                1 => k = String::from_utf8_lossy(x).into_owned(),
                2 if bytes_value => v = json!(base64::engine::general_purpose::STANDARD.encode(x)),
                2 => v = string(x),
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn insert_entry(obj: &mut Value, field: &str, b: &[u8], bytes_value: bool) -> Result<(), String> {
    let (k, v) = map_entry(b, bytes_value)?;
    if !obj[field].is_object() {
        obj[field] = Value::Object(Map::new());
    }
    obj[field][k] = v;
    Ok(())
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut m = json!({});
    for (n, f) in fields(b)? {
        match (n, f) {
            // Protobuf writes empty strings too; JSON clients omit them.
            (1 | 2 | 3 | 6, Field::Bytes([])) => {}
            (1, Field::Bytes(x)) => m["name"] = string(x),
            (2, Field::Bytes(x)) => m["generateName"] = string(x),
            (3, Field::Bytes(x)) => m["namespace"] = string(x),
            (6, Field::Bytes(x)) => m["resourceVersion"] = string(x),
            (11, Field::Bytes(x)) => insert_entry(&mut m, "labels", x, false)?,
            (12, Field::Bytes(x)) => insert_entry(&mut m, "annotations", x, false)?,
            _ => {}
        }
    }
    Ok(m)
}

/// Decodes the object of `kind` from its protobuf message.
fn object(kind: &str, b: &[u8]) -> Result<Value, String> {
    let mut o = json!({});
    for (n, f) in fields(b)? {
        match (kind, n, f) {
            (_, 1, Field::Bytes(x)) => o["metadata"] = object_meta(x)?,
            ("Secret", 2, Field::Bytes(x)) => insert_entry(&mut o, "data", x, true)?,
            ("Secret", 3, Field::Bytes(x)) if !x.is_empty() => o["type"] = string(x),
            ("Secret", 4, Field::Bytes(x)) => insert_entry(&mut o, "stringData", x, false)?,
            ("Secret" | "ConfigMap", 5 | 4, Field::Varint(v)) => o["immutable"] = json!(v != 0),
            ("ConfigMap", 2, Field::Bytes(x)) => insert_entry(&mut o, "data", x, false)?,
            ("ConfigMap", 3, Field::Bytes(x)) => insert_entry(&mut o, "binaryData", x, true)?,
            ("ServiceAccount", 4, Field::Varint(v)) => {
                o["automountServiceAccountToken"] = json!(v != 0)
            }
            ("Namespace" | "ServiceAccount", _, _) => {}
            (_, _, _) => {}
        }
    }
    Ok(o)
}

/// The JSON form of a protobuf request body, for the kinds kubectl creates imperatively.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf envelope")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    if let Field::Bytes(x) = tf {
                        match tn {
                            1 => api_version = String::from_utf8_lossy(x).into_owned(),
                            2 => kind = String::from_utf8_lossy(x).into_owned(),
                            _ => {}
                        }
                    }
                }
            }
            (2, Field::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    if !matches!(
        kind.as_str(),
        "Secret" | "ConfigMap" | "Namespace" | "ServiceAccount"
    ) {
        return Err(format!(
            "protobuf bodies of kind {kind:?} are not supported; send JSON"
        ));
    }
    let mut o = object(&kind, raw)?;
    o["apiVersion"] = json!(api_version);
    o["kind"] = json!(kind);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(num: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(num << 3) | 2, u8::try_from(payload.len()).expect("short")];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_secret() {
        let meta = [ld(1, b"s1"), ld(11, &[ld(1, b"app"), ld(2, b"x")].concat())].concat();
        let secret = [
            ld(1, &meta),
            ld(2, &[ld(1, b"k"), ld(2, b"v")].concat()),
            ld(3, b"Opaque"),
        ]
        .concat();
        let unknown = [
            ld(1, &[ld(1, b"v1"), ld(2, b"Secret")].concat()),
            ld(2, &secret),
        ]
        .concat();
        let body = [MAGIC, &unknown].concat();
        let v = decode(&body).expect("decode");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s1", "labels": {"app": "x"}}, "data": {"k": "dg=="}})
        );
    }
}
