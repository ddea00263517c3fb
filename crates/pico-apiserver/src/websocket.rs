//! The WebSocket fallback of the tunnel (docs/API.md, "The tunnel"), for networks whose proxies
//! strip CONNECT: `GET /v1/sessions/{id}/tunnel` with `Upgrade: websocket`. This module
//! recognises and checks the handshake; `tunnel::serve` authorises, dials and relays as for
//! CONNECT, with binary frames (`ws_stream`) carrying the SSH bytes both ways.

use axum::body::Body;
use axum::http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use uuid::Uuid;

use crate::error::ApiError;

const PREFIX: &str = "/v1/sessions/";
const SUFFIX: &str = "/tunnel";
/// Whether `request` asks for the WebSocket tunnel (anything else goes to the router).
pub fn is_websocket<B>(request: &Request<B>) -> bool {
    let path = request.uri().path();
    request.method() == Method::GET
        && path.starts_with(PREFIX)
        && path.ends_with(SUFFIX)
        && has_token(request.headers(), &UPGRADE, "websocket")
}

/// Whether a comma-separated header (`Connection`, `Upgrade`) lists `token`.
fn has_token(headers: &HeaderMap, name: &axum::http::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

fn session_id(request: &Request<impl Sized>) -> Result<Uuid, ApiError> {
    if request.uri().query().is_some() {
        // Tokens never travel in query strings (they would land in proxy logs).
        return Err(ApiError::invalid_request(
            "the tunnel takes no query string",
        ));
    }
    let path = request.uri().path();
    let id = path
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .ok_or_else(ApiError::session_not_found)?;
    Uuid::parse_str(id).map_err(|_| ApiError::session_not_found())
}

/// The `Sec-WebSocket-Accept` value for a valid RFC 6455 opening handshake.
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(ApiError::invalid_request(
            "a WebSocket handshake needs `Connection: Upgrade`",
        ));
    }
    if headers
        .get("sec-websocket-version")
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(ApiError::invalid_request(
            "only WebSocket version 13 is supported",
        ));
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::invalid_request("missing Sec-WebSocket-Key"))?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| ApiError::internal("cannot encode Sec-WebSocket-Accept"))
}

/// Checks the opening handshake of `request`; returns the session it names and the `101`
/// to answer once the tunnel is authorised and dialled.
pub fn handshake<B>(request: &Request<B>) -> Result<(Uuid, Response<Body>), ApiError> {
    let id = session_id(request)?;
    let accept = accept_key(request.headers())?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    Ok((id, response))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, upgrade: &str) -> Request<()> {
        Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(UPGRADE, upgrade)
            .body(())
            .expect("request")
    }

    #[test]
    fn only_websocket_upgrades_of_the_tunnel_path_are_taken() {
        let id = Uuid::new_v4();
        assert!(is_websocket(&get(
            &format!("/v1/sessions/{id}/tunnel"),
            "websocket"
        )));
        assert!(is_websocket(&get(
            &format!("/v1/sessions/{id}/tunnel"),
            "WebSocket"
        )));
        assert!(!is_websocket(&get(
            &format!("/v1/sessions/{id}/tunnel"),
            "h2c"
        )));
        assert!(!is_websocket(&get(
            &format!("/v1/sessions/{id}"),
            "websocket"
        )));
    }

    #[test]
    fn ids_and_query_strings() {
        let id = Uuid::new_v4();
        let ok = get(&format!("/v1/sessions/{id}/tunnel"), "websocket");
        assert_eq!(session_id(&ok).map_err(|e| e.status), Ok(id));
        let bad = get("/v1/sessions/nope/tunnel", "websocket");
        assert_eq!(
            session_id(&bad).map_err(|e| e.status),
            Err(StatusCode::NOT_FOUND)
        );
        let query = get(&format!("/v1/sessions/{id}/tunnel?token=x"), "websocket");
        assert_eq!(
            session_id(&query).map_err(|e| e.status),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn accept_key_follows_rfc_6455() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
        headers.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        // The example of RFC 6455 §1.3.
        assert_eq!(
            accept_key(&headers).ok(),
            Some(HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
        );
        headers.remove(SEC_WEBSOCKET_KEY);
        assert!(accept_key(&headers).is_err());
    }
}
