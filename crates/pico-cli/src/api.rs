//! A small HTTP/1.1 client of the pico REST API (`docs/API.md`): one connection per call,
//! JSON in and out, error bodies turned into one readable line.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use pico_wire::{CreateSessionRequest, ErrorBody, ExtendSessionRequest, Session, SessionList};
use rustls_pki_types::ServerName;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use uuid::Uuid;

use crate::tls;

/// How long a TCP connect to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a REST call may take: creation waits for the sandbox to start.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest response the CLI reads.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// A connection to the server, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Conn = Box<dyn Io>;

#[derive(Clone)]
pub struct Client {
    /// `host:port`, for dialing and the `Host` header.
    pub authority: String,
    /// Path prefix of the API (a server behind a path-routing proxy), without a trailing `/`.
    pub base_path: String,
    pub token: Option<String>,
    /// Reach sessions through the WebSocket tunnel rather than CONNECT.
    pub websocket: bool,
    /// Set for `https://` URLs.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// A parsed HTTP response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Client {
    /// `ca_cert` adds a PEM bundle to the system's roots for `https://` servers.
    pub fn new(url: &str, token: Option<String>, ca_cert: Option<&Path>) -> anyhow::Result<Self> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            bail!("server URL must start with http:// or https://, got {url:?}");
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("server URL {url:?} has no usable host");
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'));
        let host = if has_port {
            authority.rsplit_once(':').map_or(authority, |(h, _)| h)
        } else {
            authority
        };
        let authority = match (has_port, https) {
            (true, _) => authority.to_owned(),
            (false, false) => format!("{authority}:80"),
            (false, true) => format!("{authority}:443"),
        };
        let tls = if https {
            let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|_| anyhow!("{host:?} is not a valid TLS server name"))?
                .to_owned();
            Some((tls::client_config(ca_cert)?, name))
        } else {
            None
        };
        Ok(Self {
            authority,
            base_path: path.trim_end_matches('/').to_owned(),
            token,
            websocket: false,
            tls,
        })
    }

    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.base_path)
    }

    pub async fn dial(&self) -> anyhow::Result<Conn> {
        let dial = async {
            let stream = TcpStream::connect(&self.authority).await.map_err(|e| {
                anyhow!(
                    "cannot reach the pico server at {}: {e}; start it (`pico-apiserver`), or \
                     point PICO_URL (or --url) at the server you use",
                    self.authority
                )
            })?;
            let _ = stream.set_nodelay(true);
            let Some((config, name)) = &self.tls else {
                return anyhow::Ok(Box::new(stream) as Conn);
            };
            let stream = TlsConnector::from(config.clone())
                .connect(name.clone(), stream)
                .await
                .map_err(|e| {
                    let why = tls::explain(&e, &self.authority)
                        .map_or_else(String::new, |why| format!("; {why}"));
                    anyhow!(
                        "TLS with the pico server at {} failed: {e}{why}",
                        self.authority
                    )
                })?;
            Ok(Box::new(stream) as Conn)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, dial)
            .await
            .map_err(|_| {
                anyhow!(
                    "timed out connecting to the pico server at {}",
                    self.authority
                )
            })?
    }

    /// The request head up to (not including) the blank line.
    pub fn head(&self, method: &str, target: &str) -> String {
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pico-cli/{}\r\n",
            self.authority,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Response> {
        self.send_as(method, path, "application/json", body).await
    }

    /// [`Client::send`] with a body of another `Content-Type` (file bytes for `/files`).
    pub async fn send_as(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Response> {
        let call = async {
            let mut stream = self.dial().await?;
            let mut head = self.head(method, &self.path(path));
            head.push_str("Connection: close\r\nAccept: application/json\r\n");
            if let Some(body) = &body {
                head.push_str(&format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                    body.len()
                ));
            }
            head.push_str("\r\n");
            let mut request = head.into_bytes();
            request.extend_from_slice(body.as_deref().unwrap_or_default());
            stream
                .write_all(&request)
                .await
                .context("sending the request failed")?;
            let mut raw = Vec::new();
            (&mut stream)
                .take(MAX_RESPONSE as u64 + 1)
                .read_to_end(&mut raw)
                .await
                .context("reading the response failed")?;
            parse_response(&raw)
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| anyhow!("the pico server did not answer {method} {path} in time"))?
    }

    /// Sends JSON and decodes the 2xx answer, or fails with the server's error message.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<T> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let response = self.send(method, path, body).await?;
        if !(200..300).contains(&response.status) {
            return Err(api_error(response.status, &response.body));
        }
        serde_json::from_slice(&response.body)
            .with_context(|| format!("unexpected answer from the server to {method} {path}"))
    }

    pub async fn create(&self, request: &CreateSessionRequest) -> anyhow::Result<Session> {
        self.call("POST", "/v1/sessions", Some(request)).await
    }

    pub async fn list(&self, limit: u32, offset: u64) -> anyhow::Result<SessionList> {
        let path = format!("/v1/sessions?limit={limit}&offset={offset}");
        self.call("GET", &path, None::<&()>).await
    }

    pub async fn images(&self) -> anyhow::Result<pico_wire::ImageList> {
        self.call("GET", "/v1/images", None::<&()>).await
    }

    pub async fn get(&self, id: Uuid) -> anyhow::Result<Session> {
        self.call("GET", &format!("/v1/sessions/{id}"), None::<&()>)
            .await
    }

    pub async fn delete(&self, id: Uuid) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .call("DELETE", &format!("/v1/sessions/{id}"), None::<&()>)
            .await?;
        Ok(())
    }

    pub async fn extend(&self, id: Uuid, ttl: u64) -> anyhow::Result<Session> {
        let body = ExtendSessionRequest { ttl };
        self.call("PATCH", &format!("/v1/sessions/{id}"), Some(&body))
            .await
    }

    /// `POST /v1/sessions/{id}/pause` or `…/resume`.
    pub async fn session_action(&self, id: Uuid, action: &str) -> anyhow::Result<Session> {
        self.call("POST", &format!("/v1/sessions/{id}/{action}"), None::<&()>)
            .await
    }

    /// A session id from a full id or a unique prefix of one of the caller's sessions.
    pub async fn resolve(&self, text: &str) -> anyhow::Result<Uuid> {
        let text = text.trim();
        if let Ok(id) = Uuid::parse_str(text) {
            return Ok(id);
        }
        if text.len() < 4 || !text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            bail!("{text:?} is not a session id");
        }
        let list = self.list(pico_wire::MAX_LIMIT, 0).await?;
        let matches: Vec<Uuid> = list
            .sessions
            .iter()
            .map(|s| s.session_id)
            .filter(|id| id.to_string().starts_with(&text.to_ascii_lowercase()))
            .collect();
        match matches.as_slice() {
            [id] => Ok(*id),
            [] => bail!("no session matches {text:?}"),
            _ => bail!(
                "{text:?} matches {} sessions; give more of the id",
                matches.len()
            ),
        }
    }
}

/// One line from an error response: the server's code and message when it sent the JSON body.
pub fn api_error(status: u16, body: &[u8]) -> anyhow::Error {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(err) if status == 401 => anyhow!(
            "{} (HTTP {status} {}); set PICO_TOKEN (or --token) to a token this server \
             accepts, e.g. one from `pico-apiserver token --sub NAME`",
            err.message,
            err.error.as_str()
        ),
        Ok(err) => anyhow!("{} (HTTP {status} {})", err.message, err.error.as_str()),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                anyhow!("the server answered HTTP {status}")
            } else {
                anyhow!("the server answered HTTP {status}: {}", truncate(text, 200))
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Parses a whole `Connection: close` response.
pub fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(raw).context("malformed HTTP response")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => bail!("the server closed the connection without an answer"),
    };
    let status = parsed.code.unwrap_or(0);
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let rest = &raw[head_len..];
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..len)
            .context("the server's answer was cut short")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("malformed chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).context("malformed chunked body")?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = data
            .get(end + 2..end + 2 + size)
            .context("the server's answer was cut short")?;
        out.extend_from_slice(chunk);
        data = data.get(end + 2 + size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = Client::new("http://127.0.0.1:9000/", None, None).expect("url");
        assert_eq!(
            (c.authority.as_str(), c.base_path.as_str()),
            ("127.0.0.1:9000", "")
        );
        let c = Client::new("http://pico.example/api/", None, None).expect("url");
        assert_eq!(
            (c.authority.as_str(), c.path("/v1/sessions").as_str()),
            ("pico.example:80", "/api/v1/sessions")
        );
        let c = Client::new("https://[::1]/", None, None).expect("url");
        assert_eq!(c.authority, "[::1]:443");
        assert!(Client::new("ftp://x", None, None).is_err());
        assert!(Client::new("http://", None, None).is_err());
    }

    #[test]
    fn responses_and_errors() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).expect("parse").body, b"abcde");
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
        let res = parse_response(raw).expect("parse");
        assert_eq!((res.status, res.body.as_slice()), (404, &b"{}"[..]));
        let body = br#"{"error":"SESSION_NOT_FOUND","message":"Session not found","timestamp":"2026-01-01T00:00:00.000000Z","requestId":"r"}"#;
        assert_eq!(
            api_error(404, body).to_string(),
            "Session not found (HTTP 404 SESSION_NOT_FOUND)"
        );
        assert_eq!(
            api_error(502, b"").to_string(),
            "the server answered HTTP 502"
        );
    }
}
