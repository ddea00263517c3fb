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

/// What to do about a refused server certificate, in words: rustls names the problem
/// (`CaUsedAsEndEntity`, `UnknownIssuer`, …) but not the fix.
pub fn explain(err: &std::io::Error, authority: &str) -> Option<String> {
    let text = format!("{err:?}");
    let advice = if text.contains("CaUsedAsEndEntity") {
        "the server's certificate is a CA certificate (basicConstraints CA:TRUE, what \
         `openssl req -x509` makes unless told otherwise), which is refused as a server's own \
         certificate; make a server certificate with `pico-apiserver tls-cert --host NAME`, or \
         add `-addext basicConstraints=critical,CA:FALSE` to the openssl command"
            .to_owned()
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        "the server's certificate is not signed by a CA this machine trusts; pass that CA (or \
         the self-signed certificate itself) with --ca-cert FILE or PICO_CA_CERT"
            .to_owned()
    } else if text.contains("NotValidForName") {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        format!(
            "the server's certificate does not name {host}; use a URL with a name it has, or \
             make one that does: `pico-apiserver tls-cert --host {host}`"
        )
    } else if text.contains("Expired") || text.contains("NotValidYet") {
        "the server's certificate is outside its validity period; check the clocks, or make \
         a new one"
            .to_owned()
    } else {
        return None;
    };
    Some(advice)
}
