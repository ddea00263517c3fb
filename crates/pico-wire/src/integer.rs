//! Whole numbers that JSON writers send either as `60` or as `60.0`: JSON Schema's
//! `integer` admits both, so the API does too.

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Int(u64),
    Float(f64),
}

fn whole(number: Number) -> Result<u64, String> {
    match number {
        Number::Int(n) => Ok(n),
        Number::Float(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => {
            Ok(f as u64)
        }
        Number::Float(f) => Err(format!("expected a non-negative whole number, got {f}")),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Number::deserialize(d)
        .map_err(|_| serde::de::Error::custom("expected a non-negative whole number"))
        .and_then(|n| whole(n).map_err(serde::de::Error::custom))
}

pub mod option {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Number>::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a non-negative whole number"))?
        {
            None => Ok(None),
            Some(n) => whole(n).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::option::deserialize")]
        ttl: Option<u64>,
    }

    fn ttl(json: &str) -> Result<Option<u64>, serde_json::Error> {
        serde_json::from_str::<Body>(json).map(|b| b.ttl)
    }

    #[test]
    fn whole_floats_count_as_integers() {
        assert_eq!(ttl(r#"{"ttl": 60}"#).ok(), Some(Some(60)));
        assert_eq!(ttl(r#"{"ttl": 60.0}"#).ok(), Some(Some(60)));
        assert_eq!(ttl(r#"{"ttl": null}"#).ok(), Some(None));
        assert_eq!(ttl("{}").ok(), Some(None));
        assert!(ttl(r#"{"ttl": 60.5}"#).is_err());
        assert!(ttl(r#"{"ttl": -1}"#).is_err());
        assert!(ttl(r#"{"ttl": "60"}"#).is_err());
    }
}
