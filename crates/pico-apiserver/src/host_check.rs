//! With auth off, the server answers only requests addressed to a loopback name (or an
//! `--allowed-host`) and coming from no foreign web page: a page on another site cannot
//! drive it through the browser, neither by DNS rebinding (a foreign `Host`) nor by a
//! cross-site request or WebSocket (a foreign `Origin`).

use axum::http::{HeaderMap, Method, Request, header};
use pico_wire::ErrorCode;

use crate::error::ApiError;

pub struct HostCheck {
    /// Extra names served besides loopback ones, lower case, without port.
    allowed: Vec<String>,
}

impl HostCheck {
    pub fn new(allowed: &[String]) -> Self {
        Self {
            allowed: allowed
                .iter()
                .map(|h| name_of(h.trim()).to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    pub fn check<B>(&self, request: &Request<B>) -> Result<(), ApiError> {
        // Browsers cannot send CONNECT, and its proxy form names the session as its host.
        if request.method() == Method::CONNECT {
            return Ok(());
        }
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| header_text(request.headers(), header::HOST));
        if let Some(host) = host
            && !self.serves(&host)
        {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "host {host:?} is not served: without auth only loopback names are \
                     (add it with --allowed-host)"
                ),
            ));
        }
        if let Some(origin) = header_text(request.headers(), header::ORIGIN)
            && !self.origin_allowed(&origin)
        {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("cross-origin request from {origin:?} refused (auth is off)"),
            ));
        }
        Ok(())
    }

    /// Whether `authority` (`name[:port]`) is loopback or allowed.
    fn serves(&self, authority: &str) -> bool {
        let name = name_of(authority).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        name == "localhost"
            || name.ends_with(".localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback())
            || self.allowed.iter().any(|a| a == name)
    }

    /// An `Origin` (`scheme://host[:port]`, or `null`) of a page on this machine.
    fn origin_allowed(&self, origin: &str) -> bool {
        origin
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.contains('/') && self.serves(rest))
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The host part of `name[:port]` or `[v6]:port`.
fn name_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match authority.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_allowed_names() {
        let check = HostCheck::new(&["Pico.Internal:8080".into()]);
        for ok in [
            "localhost",
            "LOCALHOST:80",
            "app.localhost",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:8080",
            "[::ffff:127.0.0.1]",
            "pico.internal",
            "localhost.",
        ] {
            assert!(check.serves(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "localhost.evil",
            "10.0.0.1",
            "[::2]",
            "",
            "0.0.0.0",
        ] {
            assert!(!check.serves(bad), "{bad}");
        }
        assert!(check.origin_allowed("http://localhost:3000"));
        assert!(!check.origin_allowed("null"));
        assert!(!check.origin_allowed("http://evil.example"));
        assert!(!check.origin_allowed("http://evil.example/127.0.0.1"));
    }
}
