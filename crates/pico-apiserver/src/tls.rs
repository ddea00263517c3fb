//! HTTPS with rustls: the certificate and key are re-read when their files change, so a
//! rotation needs no restart and leaves open connections (and tunnels) alone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::error::Report;
use crate::start_error::StartError;

/// How often the certificate files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

pub struct Tls {
    pub acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    files: TlsFiles,
}

fn load(files: &TlsFiles) -> Result<CertifiedKey, StartError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(StartError::io(format!("cannot read {}", path.display())))
    };
    let cert_pem = read(&files.cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            StartError::Config(format!(
                "{}: not a PEM certificate chain: {e}",
                files.cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(StartError::Config(format!(
            "{}: no certificate in it",
            files.cert.display()
        )));
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        StartError::Config(format!(
            "{}: not a PEM private key: {e}",
            files.key.display()
        ))
    })?;
    let provider = aws_lc_rs::default_provider();
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        StartError::Config(format!(
            "{}: unusable private key: {e}",
            files.key.display()
        ))
    })?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        StartError::Config(format!("certificate and key do not belong together: {e}"))
    })?;
    Ok(certified)
}

impl Tls {
    /// Loads the files once (failing start-up on any problem) and builds the acceptor.
    pub fn new(files: TlsFiles) -> Result<Self, StartError> {
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(load(&files)?)),
        });
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| StartError::Config(format!("TLS setup: {e}")))?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone());
        // h2 for REST; CONNECT tunnels use http/1.1.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            files,
        })
    }

    /// Re-reads the files whenever their modification times change, until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let stamp = |files: &TlsFiles| -> Option<(SystemTime, SystemTime)> {
            let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            Some((modified(&files.cert)?, modified(&files.key)?))
        };
        let mut seen = stamp(&self.files);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RELOAD_CHECK) => {}
            }
            let now = stamp(&self.files);
            if now.is_none() || now == seen {
                continue;
            }
            match load(&self.files) {
                Ok(certified) => {
                    *self
                        .resolver
                        .current
                        .write()
                        .unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
                    seen = now;
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                }
                // Half-written files during a rotation: keep serving the old pair, try again.
                Err(err) => tracing::warn!(error = %Report(&err), "TLS certificate not reloaded"),
            }
        }
    }
}
