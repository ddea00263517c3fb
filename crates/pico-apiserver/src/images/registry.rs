//! A small client of the OCI distribution API over the workspace's hyper + rustls (the
//! same aws-lc-rs provider as everything else): manifests by tag or digest, blobs streamed
//! to disk with their digest checked, anonymous, Basic and Bearer-token auth, redirects.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode as RegistryStatus, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;

use super::ImageError;
use super::auth::{Challenge, Credentials, encode_query, parse_challenge};
use super::reference::{DOCKER_HUB, DOCKER_HUB_API, Reference};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Bodies above this are not manifests.
const MAX_MANIFEST: usize = 4 << 20;
const MAX_REDIRECTS: usize = 5;

/// Where and how to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Base URL used instead of Docker Hub (`https://mirror.example`), as dockerd's
    /// `registry-mirrors`.
    pub mirror: Option<String>,
    /// `host:port` registries spoken to over plain HTTP.
    pub insecure: Vec<String>,
    pub credentials: Credentials,
}

pub struct RegistryClient {
    client: Client<Https, Empty<Bytes>>,
    options: RegistryOptions,
    /// Bearer tokens by `registry/repository`.
    tokens: Mutex<HashMap<String, String>>,
}

impl RegistryClient {
    pub fn new(options: RegistryOptions) -> Result<Self, ImageError> {
        let provider = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| ImageError::Registry(format!("TLS set-up: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            options,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// `https://registry-1.docker.io`, the mirror, or `http://host:port` when insecure.
    fn base(&self, reference: &Reference) -> String {
        if reference.registry == DOCKER_HUB {
            if let Some(mirror) = &self.options.mirror {
                return mirror.trim_end_matches('/').to_owned();
            }
            return format!("https://{DOCKER_HUB_API}");
        }
        let scheme = if self
            .options
            .insecure
            .iter()
            .any(|h| h == &reference.registry)
        {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", reference.registry)
    }

    /// The manifest (or index) named by `target` and its media type.
    pub async fn manifest(
        &self,
        reference: &Reference,
        target: &str,
    ) -> Result<(Bytes, Option<String>), ImageError> {
        let path = format!("/v2/{}/manifests/{target}", reference.repository);
        let response = self
            .get(reference, &path, Some(super::manifest::ACCEPT_MANIFESTS))
            .await?;
        let media_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let body = read_limited(response.into_body(), MAX_MANIFEST).await?;
        Ok((body, media_type))
    }

    /// Small blobs (image configs) into memory, digest checked.
    pub async fn small_blob(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<Bytes, ImageError> {
        let path = format!("/v2/{}/blobs/{digest}", reference.repository);
        let body = read_limited(
            self.get(reference, &path, None).await?.into_body(),
            MAX_MANIFEST,
        )
        .await?;
        super::verify_digest(digest, &body)?;
        Ok(body)
    }

    /// Streams a blob into `dest`, counting bytes into `progress`, and checks its digest
    /// (the file is removed when it does not match).
    pub async fn blob_to_file(
        &self,
        reference: &Reference,
        digest: &str,
        dest: &Path,
        progress: &AtomicU64,
    ) -> Result<u64, ImageError> {
        let path = format!("/v2/{}/blobs/{digest}", reference.repository);
        let mut body = self.get(reference, &path, None).await?.into_body();
        let mut file = tokio::fs::File::create(dest).await?;
        let mut hasher = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ImageError::Registry(format!("reading {digest}: {e}")))?;
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                file.write_all(&data).await?;
                total += data.len() as u64;
                progress.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        file.sync_all().await?;
        let got = format!("sha256:{}", hex(hasher.finish().as_ref()));
        if got != digest {
            let _ = tokio::fs::remove_file(dest).await;
            return Err(ImageError::DigestMismatch {
                expected: digest.to_owned(),
                got,
            });
        }
        Ok(total)
    }

    /// GET with auth and redirects; anything but 200 becomes an error that says what.
    async fn get(
        &self,
        reference: &Reference,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response<Incoming>, ImageError> {
        let key = format!("{}/{}", reference.registry, reference.repository);
        let url = format!("{}{path}", self.base(reference));
        let mut auth = self.cached_token(&key);
        let mut tried_auth = false;
        loop {
            let response = self.follow(&url, accept, auth.as_deref()).await?;
            match response.status() {
                RegistryStatus::OK => return Ok(response),
                RegistryStatus::UNAUTHORIZED if !tried_auth => {
                    tried_auth = true;
                    let challenge = response
                        .headers()
                        .get(header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge);
                    auth = match challenge {
                        Some(Challenge::Basic) => {
                            self.options.credentials.basic(&reference.registry)
                        }
                        Some(Challenge::Bearer {
                            realm,
                            service,
                            scope,
                        }) => {
                            let scope = scope.unwrap_or_else(|| {
                                format!("repository:{}:pull", reference.repository)
                            });
                            let token = self
                                .token(reference, &realm, service.as_deref(), &scope)
                                .await?;
                            let value = format!("Bearer {token}");
                            if let Ok(mut tokens) = self.tokens.lock() {
                                tokens.insert(key.clone(), value.clone());
                            }
                            Some(value)
                        }
                        None => None,
                    };
                    if auth.is_none() {
                        return Err(ImageError::Unauthorized(reference.to_string()));
                    }
                }
                RegistryStatus::UNAUTHORIZED | RegistryStatus::FORBIDDEN => {
                    return Err(ImageError::Unauthorized(reference.to_string()));
                }
                RegistryStatus::NOT_FOUND => {
                    return Err(ImageError::NotFound(reference.to_string()));
                }
                status => {
                    return Err(ImageError::Registry(format!(
                        "{} answered {status} for {path}",
                        reference.registry
                    )));
                }
            }
        }
    }

    fn cached_token(&self, key: &str) -> Option<String> {
        self.tokens.lock().ok()?.get(key).cloned()
    }

    /// A Bearer token from the challenge's realm (with the config's credentials, if any).
    async fn token(
        &self,
        reference: &Reference,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, ImageError> {
        let mut url = format!("{realm}?scope={}", encode_query(scope));
        if let Some(service) = service {
            url.push_str(&format!("&service={}", encode_query(service)));
        }
        let basic = self.options.credentials.basic(&reference.registry);
        let response = self.follow(&url, None, basic.as_deref()).await?;
        if response.status() != RegistryStatus::OK {
            return Err(ImageError::Unauthorized(format!(
                "{reference} (token service answered {})",
                response.status()
            )));
        }
        let body = read_limited(response.into_body(), MAX_MANIFEST).await?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = serde_json::from_slice(&body)
            .map_err(|e| ImageError::Registry(format!("token answer: {e}")))?;
        token
            .token
            .or(token.access_token)
            .ok_or_else(|| ImageError::Registry("token answer holds no token".into()))
    }

    /// One GET, following redirects (blob stores); credentials go only to the first host.
    async fn follow(
        &self,
        url: &str,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<Response<Incoming>, ImageError> {
        let mut uri: Uri = url
            .parse()
            .map_err(|e| ImageError::Registry(format!("bad URL {url}: {e}")))?;
        let first_authority = uri.authority().cloned();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = Request::get(uri.clone());
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            if let Some(auth) = auth
                && uri.authority() == first_authority.as_ref()
                && let Ok(value) = HeaderValue::from_str(auth)
            {
                request = request.header(header::AUTHORIZATION, value);
            }
            let request = request
                .body(Empty::new())
                .map_err(|e| ImageError::Registry(e.to_string()))?;
            let response = self.client.request(request).await.map_err(|e| {
                ImageError::Registry(format!("cannot reach {}: {e}", display_host(&uri)))
            })?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| ImageError::Registry("redirect without Location".into()))?;
            uri = resolve(&uri, location)?;
        }
        Err(ImageError::Registry(format!(
            "more than {MAX_REDIRECTS} redirects for {url}"
        )))
    }
}

fn display_host(uri: &Uri) -> String {
    uri.authority()
        .map_or_else(String::new, ToString::to_string)
}

/// A `Location` relative to the URI it came from.
fn resolve(base: &Uri, location: &str) -> Result<Uri, ImageError> {
    let bad = |e: http::Error| ImageError::Registry(format!("bad redirect {location}: {e}"));
    if location.starts_with("http://") || location.starts_with("https://") {
        return location
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(e.into()));
    }
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(
        location
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(e.into()))?,
    );
    Uri::from_parts(parts).map_err(|e| bad(e.into()))
}

async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, ImageError> {
    let limited = http_body_util::Limited::new(body, limit);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ImageError::Registry(format!("reading an answer: {e}")))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
