//! SSH keys of a session: its host key, and the client key pair the server makes when the
//! caller brings none.

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey, PublicKey};

/// An ed25519 key pair in OpenSSH text forms. The private half is never logged.
pub struct KeyPair {
    pub private_openssh: String,
    pub public_openssh: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_openssh", &self.public_openssh)
            .finish_non_exhaustive()
    }
}

pub fn generate_ed25519(comment: &str) -> Result<KeyPair, String> {
    let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| format!("key generation failed: {e}"))?;
    key.set_comment(comment);
    let private_openssh = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| format!("key encoding failed: {e}"))?
        .to_string();
    let public_openssh = key
        .public_key()
        .to_openssh()
        .map_err(|e| format!("key encoding failed: {e}"))?;
    Ok(KeyPair {
        private_openssh,
        public_openssh,
    })
}

/// Key types the agent accepts for login.
const ACCEPTED_ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// Checks a client-supplied OpenSSH public key and returns it normalised to one line
/// `type base64 [comment]`.
pub fn validate_public_key(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("sshPublicKey is empty".into());
    }
    if text.len() > 16 * 1024 {
        return Err("sshPublicKey is too long".into());
    }
    if text.contains(['\n', '\r', '\0']) {
        return Err("sshPublicKey must be a single line".into());
    }
    let key = PublicKey::from_openssh(text)
        .map_err(|e| format!("sshPublicKey is not an OpenSSH public key: {e}"))?;
    let algorithm = key.algorithm();
    if !ACCEPTED_ALGORITHMS.contains(&algorithm.as_str()) {
        return Err(format!(
            "sshPublicKey type {} is not supported (use ed25519, ecdsa or rsa)",
            algorithm.as_str()
        ));
    }
    if let Some(rsa) = key.key_data().rsa() {
        let bits = rsa
            .n()
            .as_positive_bytes()
            .map(|b| b.len() * 8)
            .unwrap_or(0);
        if bits < 2048 {
            return Err("RSA keys must have at least 2048 bits".into());
        }
    }
    key.to_openssh()
        .map_err(|e| format!("sshPublicKey could not be encoded: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_public_key_validates() {
        let pair = generate_ed25519("test").expect("generate");
        assert!(
            pair.private_openssh
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        let normalised = validate_public_key(&pair.public_openssh).expect("valid");
        assert!(normalised.starts_with("ssh-ed25519 AAAA"));
    }

    #[test]
    fn garbage_and_multiline_keys_are_refused() {
        assert!(validate_public_key("").is_err());
        assert!(validate_public_key("ssh-ed25519 notbase64!!").is_err());
        let pair = generate_ed25519("x").expect("generate");
        let two = format!("{}\n{}", pair.public_openssh, pair.public_openssh);
        assert!(validate_public_key(&two).is_err());
    }
}
