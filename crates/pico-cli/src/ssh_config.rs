//! `pico ssh-config --install`: the OpenSSH stanza in pico's config directory, included once
//! from `~/.ssh/config`, on a machine that may have no `~/.ssh` yet.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The file beside pico's key and known_hosts that holds the stanza.
const STANZA_FILE: &str = "ssh_config";

/// Writes `stanza` next to `key_path` and makes `~/.ssh/config` include it (once, first:
/// an `Include` after a `Host` line would only apply inside that host's block).
pub fn install(stanza: &str, key_path: &Path) -> anyhow::Result<()> {
    let dir = key_path
        .parent()
        .context("pico's config directory is unknown")?;
    let stanza_path = dir.join(STANZA_FILE);
    write_private(&stanza_path, stanza)?;

    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set: cannot find ~/.ssh")?;
    let ssh_dir = home.join(".ssh");
    if !ssh_dir.is_dir() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&ssh_dir)
            .with_context(|| format!("cannot create {}", ssh_dir.display()))?;
        eprintln!("created {} (mode 0700)", ssh_dir.display());
    }
    let config = ssh_dir.join("config");
    let include = format!("Include \"{}\"", stanza_path.display());
    let current = match fs::read_to_string(&config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", config.display())),
    };
    if current.lines().any(|line| line.trim() == include) {
        eprintln!(
            "{} already includes {}; updated the stanza",
            config.display(),
            stanza_path.display()
        );
    } else {
        write_private(&config, &format!("{include}\n{current}"))?;
        eprintln!("added `{include}` to {}", config.display());
    }
    eprintln!("now: ssh sandbox@SESSION_ID (also scp, sftp, rsync)");
    Ok(())
}

/// Replaces `path` with `text` (mode 0600, as OpenSSH wants its config), via a temporary
/// file so a crash never leaves half a config.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("pico-tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    // An existing config keeps its own mode; a new one is 0600.
    if let Ok(meta) = fs::metadata(path) {
        let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(meta.permissions().mode()));
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}
