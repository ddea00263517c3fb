//! `pico-apiserver tls-cert`: a self-signed server certificate that rustls clients (the
//! `pico` CLI) accept as well as curl and Python, for a first try of `--enable-tls`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

/// Writes the certificate for `hosts` (DNS names or IP addresses) and its key.
pub fn write(hosts: &[String], cert_path: &Path, key_path: &Path, days: u32) -> anyhow::Result<()> {
    let (cert, key) = make(hosts, days)?;
    write_file(key_path, &key, 0o600)?;
    write_file(cert_path, &cert, 0o644)?;
    let (cert, key) = (cert_path.display(), key_path.display());
    eprintln!(
        "wrote {cert} and {key} (self-signed, valid {days} days, for {})\n\
         serve:  pico-apiserver --enable-tls --tls-cert {cert} --tls-key {key}\n\
         trust:  pico --ca-cert {cert} …, curl --cacert {cert} …, SessionsClient(…, verify_ssl=\"{cert}\")",
        hosts.join(", ")
    );
    Ok(())
}

/// The PEM certificate and key. An end-entity certificate (CA:FALSE, serverAuth): the
/// `openssl req -x509` default, CA:TRUE, is what rustls refuses as `CaUsedAsEndEntity`.
pub fn make(hosts: &[String], days: u32) -> anyhow::Result<(String, String)> {
    let first = hosts.first().context("name at least one --host")?;
    // `new` turns names that parse as IP addresses into IP SANs, the rest into DNS SANs.
    let mut params = CertificateParams::new(hosts.to_vec())
        .with_context(|| format!("not a valid host name among {hosts:?}"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, first.as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(i64::from(days.max(1)));
    let key = KeyPair::generate().context("cannot make a key pair")?;
    let cert = params
        .self_signed(&key)
        .context("cannot sign the certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_become_sans() {
        let (cert, key) = make(&["localhost".into(), "127.0.0.1".into()], 1).expect("make");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
    }
}
