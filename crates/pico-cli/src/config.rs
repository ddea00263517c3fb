//! Where the CLI keeps its state: the config file (server URL, token), its own ed25519 key
//! pair, and the known_hosts file that pins each session's host key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};
use serde::Deserialize;

use crate::cli::Global;

/// Used when neither a flag, the environment nor the config file names a server.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
const KEY_FILE: &str = "id_ed25519";
const KNOWN_HOSTS_FILE: &str = "known_hosts";

/// The `config.toml` keys; everything is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    url: Option<String>,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
}

/// The resolved settings of one invocation.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub token: Option<String>,
    /// Extra CA bundle for https:// servers.
    pub ca_cert: Option<PathBuf>,
    /// Set when the CA bundle came from a flag or the environment.
    pub explicit_ca_cert: bool,
    /// Directory of the config file; the key pair and known_hosts live here too.
    pub dir: PathBuf,
    /// Set when the config file is not at its default place, so that the ProxyCommand that
    /// `ssh-config` prints reads the same one.
    pub explicit_config: Option<PathBuf>,
    /// Set when the URL came from a flag or the environment rather than the file.
    pub explicit_url: bool,
}

fn default_config_path() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("pico/config.toml"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither $XDG_CONFIG_HOME nor $HOME is set: pass --config")?;
    Ok(PathBuf::from(home).join(".config/pico/config.toml"))
}

impl Settings {
    /// Flags and environment first, then the config file, then defaults.
    pub fn resolve(global: &Global) -> anyhow::Result<Self> {
        let path = match &global.config {
            Some(path) => path.clone(),
            None => default_config_path()?,
        };
        let file = match fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<FileConfig>(&text)
                .with_context(|| format!("bad config file {}", path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let explicit_url = global.url.is_some();
        let url = global
            .url
            .clone()
            .or(file.url)
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        let token = global
            .token
            .clone()
            .or(file.token)
            .filter(|t| !t.trim().is_empty());
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let explicit_ca_cert = global.ca_cert.is_some();
        // A relative path in the file is relative to the file, as a user would expect.
        let ca_cert = match (&global.ca_cert, file.ca_cert) {
            (Some(flag), _) => Some(absolute(flag)),
            (None, Some(in_file)) => Some(absolute(&dir.join(in_file))),
            (None, None) => None,
        };
        let explicit_config = global.config.clone().map(|p| absolute(&p));
        Ok(Self {
            url,
            token,
            ca_cert,
            explicit_ca_cert,
            dir,
            explicit_config,
            explicit_url,
        })
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.join(KNOWN_HOSTS_FILE)
    }

    fn ensure_dir(&self) -> anyhow::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))
    }

    /// The CLI's key pair, made on first use (private half mode 0600).
    pub fn key(&self) -> anyhow::Result<PrivateKey> {
        let path = self.key_path();
        match fs::read_to_string(&path) {
            Ok(text) => {
                return PrivateKey::from_openssh(&text)
                    .with_context(|| format!("{} is not an OpenSSH private key", path.display()));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
        self.ensure_dir()?;
        let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .context("cannot generate a key pair")?;
        key.set_comment("pico-cli");
        let private = key
            .to_openssh(LineEnding::LF)
            .context("cannot encode the key")?;
        let public = key
            .public_key()
            .to_openssh()
            .context("cannot encode the key")?;
        // Written aside, then linked into place: a second pico starting at the same moment
        // either wins or reads a complete key, never half of one.
        let tmp = temp_beside(&path);
        write_private(&tmp, private.as_bytes())?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return self.key(),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot write {}", path.display()));
            }
        }
        write_private(
            &path.with_extension("pub"),
            format!("{public}\n").as_bytes(),
        )?;
        Ok(key)
    }

    pub fn public_key(&self) -> anyhow::Result<String> {
        Ok(self.key()?.public_key().to_openssh()?)
    }

    /// Replaces the pinned host keys of `id` with `keys` (none = forget the session).
    pub fn pin_host_keys(&self, id: &str, keys: &[String]) -> anyhow::Result<()> {
        let path = self.known_hosts_path();
        let old = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        let prefix = format!("{id} ");
        let mut text: String = old
            .lines()
            .filter(|line| !line.starts_with(&prefix))
            .map(|line| format!("{line}\n"))
            .collect();
        for key in keys {
            if key.contains(['\n', '\r']) {
                bail!("the server sent a malformed host key for session {id}");
            }
            text.push_str(&format!("{id} {}\n", key.trim()));
        }
        if text == old {
            return Ok(());
        }
        self.ensure_dir()?;
        // Write-then-rename: a concurrent `ssh` never reads half a file.
        let tmp = temp_beside(&path);
        write_private(&tmp, text.as_bytes())?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// A fresh name next to `path`, unique across processes and threads.
fn temp_beside(path: &Path) -> PathBuf {
    path.with_extension(format!(
        "tmp{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> Settings {
        Settings {
            url: DEFAULT_URL.into(),
            token: None,
            ca_cert: None,
            explicit_ca_cert: false,
            dir: dir.to_path_buf(),
            explicit_config: None,
            explicit_url: false,
        }
    }

    #[test]
    fn key_is_made_once_and_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = settings(&tmp.path().join("pico"));
        let first = s.public_key().expect("key");
        assert_eq!(s.public_key().expect("key"), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(s.key_path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn racing_first_uses_agree_on_one_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = settings(&tmp.path().join("pico"));
        let keys: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| s.public_key())).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").expect("key"))
                .collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
    }

    #[test]
    fn pins_replace_and_forget() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = settings(tmp.path());
        s.pin_host_keys("a", &["ssh-ed25519 AAA1".into()])
            .expect("pin");
        s.pin_host_keys("b", &["ssh-ed25519 BBB".into()])
            .expect("pin");
        s.pin_host_keys("a", &["ssh-ed25519 AAA2".into()])
            .expect("pin");
        let text = fs::read_to_string(s.known_hosts_path()).expect("read");
        assert_eq!(text, "b ssh-ed25519 BBB\na ssh-ed25519 AAA2\n");
        s.pin_host_keys("b", &[]).expect("forget");
        let text = fs::read_to_string(s.known_hosts_path()).expect("read");
        assert_eq!(text, "a ssh-ed25519 AAA2\n");
    }
}
