//! The server's client key for agents: made once and kept in a file, so sessions recovered
//! after a restart (and other replicas sharing the file) still trust it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use russh::keys::PrivateKey;

use crate::keys;

pub struct ClientKey {
    private: Arc<PrivateKey>,
    public_openssh: String,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("public_openssh", &self.public_openssh)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// Reads the key at `path`, or makes one there (mode 0600) when the file is missing.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_openssh(&text)
                .map_err(|e| format!("agent client key {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pair = keys::generate_ed25519("pico-apiserver")?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                file.write_all(pair.private_openssh.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Self::from_openssh(&pair.private_openssh)
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// A key that lives as long as the process (when there is nowhere to keep one).
    pub fn ephemeral() -> Result<Self, String> {
        let pair = keys::generate_ed25519("pico-apiserver")?;
        Self::from_openssh(&pair.private_openssh)
    }

    fn from_openssh(text: &str) -> Result<Self, String> {
        let private = PrivateKey::from_openssh(text).map_err(|e| e.to_string())?;
        let public_openssh = private
            .public_key()
            .to_openssh()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            private: Arc::new(private),
            public_openssh,
        })
    }

    pub fn private(&self) -> Arc<PrivateKey> {
        self.private.clone()
    }

    pub fn public_openssh(&self) -> &str {
        &self.public_openssh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_key_is_read_back_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let made = ClientKey::load_or_create(&path).expect("create");
        let again = ClientKey::load_or_create(&path).expect("load");
        assert_eq!(made.public_openssh(), again.public_openssh());
        assert!(made.public_openssh().starts_with("ssh-ed25519 "));
    }
}
