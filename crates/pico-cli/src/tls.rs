//! TLS for `https://` servers: rustls on the workspace's one crypto provider (aws-lc-rs),
//! trusting the system's roots plus an optional CA bundle (`--ca-cert`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

pub fn client_config(ca_cert: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: a `--ca-cert` may be all that is needed.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| anyhow!("{}: not a PEM certificate: {e}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("{}: unusable CA certificate", path.display()))?;
            added += 1;
        }
        anyhow::ensure!(added > 0, "{}: no certificate in it", path.display());
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS setup failed")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The tunnel is an HTTP/1.1 CONNECT or Upgrade: never let ALPN pick h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
