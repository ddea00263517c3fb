//! Bearer-token authentication: who the caller is, and whether they may see a session.

use std::path::Path;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, PROXY_AUTHORIZATION};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::ApiError;
use crate::start_error::StartError;

/// Scope that lets a token see and manage every user's sessions.
pub const ADMIN_SCOPE: &str = "sessions:admin";
/// The one user of a server without auth.
pub const ANONYMOUS: &str = "anonymous";
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    pub admin: bool,
}

impl Caller {
    pub fn anonymous() -> Self {
        Self {
            sub: ANONYMOUS.into(),
            admin: false,
        }
    }

    pub fn may_see(&self, owner: &str) -> bool {
        self.admin || self.sub == owner
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(default)]
    scope: Option<ScopeClaim>,
    iat: Option<i64>,
}

/// `scope` is a space-separated string by RFC 8693, but some issuers send a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Text(String),
    List(Vec<String>),
}

impl ScopeClaim {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Self::Text(text) => text.split_whitespace().any(|s| s == wanted),
            Self::List(list) => list.iter().any(|s| s == wanted),
        }
    }
}

pub enum Authenticator {
    Disabled,
    Jwt {
        keys: Vec<(DecodingKey, Validation)>,
    },
}

impl Authenticator {
    pub fn new(
        secret: &str,
        public_key: Option<&Path>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Self, StartError> {
        let validation = |alg: Algorithm| {
            let mut v = Validation::new(alg);
            v.leeway = LEEWAY_SECS;
            v.validate_nbf = true;
            let mut required = vec!["exp"];
            if let Some(iss) = issuer {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            match audience {
                Some(aud) => {
                    v.set_audience(&[aud]);
                    required.push("aud");
                }
                None => v.validate_aud = false,
            }
            v.set_required_spec_claims(&required);
            v
        };
        let mut keys = Vec::new();
        if !secret.is_empty() {
            keys.push((
                DecodingKey::from_secret(secret.as_bytes()),
                validation(Algorithm::HS256),
            ));
        }
        if let Some(path) = public_key {
            let pem = std::fs::read(path).map_err(StartError::io(format!(
                "cannot read --jwt-public-key {}",
                path.display()
            )))?;
            let attempts = [
                (DecodingKey::from_rsa_pem(&pem), Algorithm::RS256),
                (DecodingKey::from_ec_pem(&pem), Algorithm::ES256),
                (DecodingKey::from_ed_pem(&pem), Algorithm::EdDSA),
            ];
            let (key, alg) = attempts
                .into_iter()
                .find_map(|(key, alg)| key.ok().map(|k| (k, alg)))
                .ok_or_else(|| {
                    StartError::Config(format!(
                        "--jwt-public-key {} is not an RSA, EC P-256 or Ed25519 public key in PEM",
                        path.display()
                    ))
                })?;
            keys.push((key, validation(alg)));
        }
        Ok(if keys.is_empty() {
            Self::Disabled
        } else {
            Self::Jwt { keys }
        })
    }

    pub fn enabled(&self) -> bool {
        matches!(self, Self::Jwt { .. })
    }

    /// Authenticates a request from its `Authorization` or `Proxy-Authorization` header.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Self::Jwt { keys } = self else {
            return Ok(Caller::anonymous());
        };
        let token = bearer_token(headers)?;
        let header = jsonwebtoken::decode_header(&token)
            .map_err(|_| ApiError::unauthorized("malformed token"))?;
        // Each key is tied to one algorithm, so a token cannot pick the algorithm a key is
        // used with (no `none`, no HS256 signed with an RSA public key).
        let (key, validation) = keys
            .iter()
            .find(|(_, v)| v.algorithms.contains(&header.alg))
            .ok_or_else(|| ApiError::unauthorized("token algorithm not accepted"))?;
        let data = jsonwebtoken::decode::<Claims>(&token, key, validation)
            .map_err(|e| ApiError::unauthorized(format!("invalid token: {}", describe(&e))))?;
        let claims = data.claims;
        if let Some(iat) = claims.iat {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if iat > now + LEEWAY_SECS as i64 {
                return Err(ApiError::unauthorized(
                    "invalid token: issued in the future",
                ));
            }
        }
        let sub = claims
            .sub
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| ApiError::unauthorized("invalid token: no subject"))?;
        let admin = claims.scope.is_some_and(|s| s.contains(ADMIN_SCOPE));
        Ok(Caller { sub, admin })
    }
}

/// Signs a development token with the HS256 secret (`pico-apiserver token`).
pub fn mint_hs256(
    secret: &str,
    sub: &str,
    ttl_secs: u64,
    scope: Option<&str>,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, StartError> {
    if secret.is_empty() {
        return Err(StartError::Config(
            "a token needs --jwt-secret (or PICO_JWT_SECRET), the same the server runs with".into(),
        ));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = serde_json::json!({
        "sub": sub,
        "iat": now,
        "exp": now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX)),
    });
    if let Some(scope) = scope {
        claims["scope"] = scope.into();
    }
    if let Some(iss) = issuer {
        claims["iss"] = iss.into();
    }
    if let Some(aud) = audience {
        claims["aud"] = aud.into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| StartError::Config(format!("cannot sign the token: {e}")))
}

/// Parses `3600`, `90s`, `30m`, `1h` or `7d` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 3600, 90s, 30m, 1h or 7d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use s, m, h or d)"
            ));
        }
    };
    Ok(number * factor)
}

fn describe(err: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not yet valid",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::MissingRequiredClaim(_) => "missing required claim",
        _ => "malformed",
    }
}

/// The token from `Authorization: Bearer`, `Proxy-Authorization: Bearer`, or
/// `Proxy-Authorization: Basic` with the token as password (what ncat and socat send).
fn bearer_token(headers: &HeaderMap) -> Result<String, ApiError> {
    for name in [AUTHORIZATION, PROXY_AUTHORIZATION] {
        let Some(value) = headers.get(&name) else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed authorization header"))?;
        let (scheme, rest) = value
            .split_once(' ')
            .ok_or_else(|| ApiError::unauthorized("malformed authorization header"))?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Ok(rest.to_owned());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| ApiError::unauthorized("malformed basic credentials"))?;
            let (_, password) = decoded
                .split_once(':')
                .ok_or_else(|| ApiError::unauthorized("malformed basic credentials"))?;
            if !password.is_empty() {
                return Ok(password.to_owned());
            }
        }
        return Err(ApiError::unauthorized("unsupported authorization scheme"));
    }
    Err(ApiError::unauthorized("missing bearer token"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn headers(name: &str, value: &[u8]) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value,
            );
        }
        map
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("1y").is_err() && parse_duration("").is_err());
    }

    #[test]
    fn basic_credentials_carry_the_token_as_password() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("user:tok.en.x");
        let map = headers("proxy-authorization", format!("Basic {encoded}").as_bytes());
        assert_eq!(bearer_token(&map).ok().as_deref(), Some("tok.en.x"));
    }

    proptest! {
        /// Arbitrary header bytes never panic and never authenticate.
        #[test]
        fn random_headers_are_refused(value in proptest::collection::vec(any::<u8>(), 0..200),
                                      proxy in any::<bool>()) {
            let auth = Authenticator::new("secret-for-property-tests", None, None, None).expect("auth");
            let name = if proxy { "proxy-authorization" } else { "authorization" };
            prop_assert!(auth.authenticate(&headers(name, &value)).is_err());
        }

        #[test]
        fn random_bearer_tokens_are_refused(token in "[A-Za-z0-9._-]{0,300}") {
            let auth = Authenticator::new("secret-for-property-tests", None, None, None).expect("auth");
            let map = headers("authorization", format!("Bearer {token}").as_bytes());
            prop_assert!(auth.authenticate(&map).is_err());
        }
    }
}
