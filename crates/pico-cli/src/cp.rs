//! `pico cp`: copies files and (with `-r`) directories to or from a session over SFTP,
//! keeping permission bits, with a progress bar for large files on a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Files at least this large get a progress bar.
const PROGRESS_BYTES: u64 = 1024 * 1024;
const BUFFER: usize = 256 * 1024;

/// One side of a copy: `ID:path` is in a session, anything else is local.
#[derive(Debug, PartialEq, Eq)]
pub enum Spec {
    Local(PathBuf),
    Remote { session: String, path: String },
}

impl Spec {
    pub fn parse(text: &str) -> Self {
        match text.split_once(':') {
            // Like scp: a colon before any slash marks a remote path.
            Some((session, path)) if !session.is_empty() && !session.contains('/') => {
                Self::Remote {
                    session: session.to_owned(),
                    path: path.to_owned(),
                }
            }
            _ => Self::Local(PathBuf::from(text)),
        }
    }
}

pub async fn upload(
    sftp: &SftpSession,
    local: &Path,
    remote: &str,
    recursive: bool,
) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(local).with_context(|| format!("cannot read {}", local.display()))?;
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into());
    let remote = if remote.is_empty() { "." } else { remote };
    let target = match sftp.metadata(remote).await {
        Ok(attrs) if attrs.is_dir() => join(remote, &name),
        _ => remote.to_owned(),
    };
    if meta.is_dir() {
        if !recursive {
            bail!("{} is a directory (use -r)", local.display());
        }
        return upload_dir(sftp, local, &target).await;
    }
    upload_file(sftp, local, &target, meta.len()).await
}

async fn upload_dir(sftp: &SftpSession, local: &Path, remote: &str) -> anyhow::Result<()> {
    // Boxed because async recursion needs a known-size future.
    Box::pin(async move {
        if !matches!(sftp.metadata(remote).await, Ok(a) if a.is_dir()) {
            sftp.create_dir(remote)
                .await
                .map_err(|e| anyhow!("cannot create remote directory {remote}: {}", reason(&e)))?;
        }
        set_remote_mode(sftp, remote, local).await;
        let entries =
            std::fs::read_dir(local).with_context(|| format!("cannot list {}", local.display()))?;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let target = join(remote, &entry.file_name().to_string_lossy());
            if meta.is_dir() {
                upload_dir(sftp, &path, &target).await?;
            } else if meta.is_file() {
                upload_file(sftp, &path, &target, meta.len()).await?;
            }
        }
        anyhow::Ok(())
    })
    .await
}

async fn upload_file(
    sftp: &SftpSession,
    local: &Path,
    remote: &str,
    size: u64,
) -> anyhow::Result<()> {
    let mut source = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("cannot open {}", local.display()))?;
    let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
    let mut dest = sftp
        .open_with_flags(remote, flags)
        .await
        .map_err(|e| anyhow!("cannot create remote file {remote}: {}", reason(&e)))?;
    copy(&mut source, &mut dest, size, remote).await?;
    dest.shutdown()
        .await
        .with_context(|| format!("cannot finish writing {remote}"))?;
    set_remote_mode(sftp, remote, local).await;
    Ok(())
}

/// Gives a remote file the local one's permission bits; a failure only loses the bits.
async fn set_remote_mode(sftp: &SftpSession, remote: &str, local: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(local) {
        let attrs = FileAttributes {
            permissions: Some(meta.permissions().mode() & 0o7777),
            ..FileAttributes::default()
        };
        let _ = sftp.set_metadata(remote, attrs).await;
    }
}

pub async fn download(
    sftp: &SftpSession,
    remote: &str,
    local: &Path,
    recursive: bool,
) -> anyhow::Result<()> {
    let remote = if remote.is_empty() { "." } else { remote };
    let attrs = sftp.metadata(remote).await.map_err(|e| match &e {
        SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile => {
            anyhow!("{remote}: no such file or directory in the session")
        }
        _ => anyhow!("cannot read remote {remote}: {}", reason(&e)),
    })?;
    let name = remote
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(remote);
    check_local_target(local)?;
    let target = if local.is_dir() && !name.is_empty() && name != "." {
        local.join(name)
    } else {
        local.to_path_buf()
    };
    if attrs.is_dir() {
        if !recursive {
            bail!("{remote} is a directory (use -r)");
        }
        return download_dir(sftp, remote, &target).await;
    }
    download_file(sftp, remote, &target, &attrs).await
}

async fn download_dir(sftp: &SftpSession, remote: &str, local: &Path) -> anyhow::Result<()> {
    Box::pin(async move {
        if !local.is_dir() {
            std::fs::create_dir(local)
                .with_context(|| format!("cannot create {}", local.display()))?;
        }
        let entries = sftp
            .read_dir(remote)
            .await
            .map_err(|e| anyhow!("cannot list remote directory {remote}: {}", reason(&e)))?;
        for entry in entries {
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = join(remote, &name);
            // Follow symlinks like the local side does.
            let attrs = sftp
                .metadata(&path)
                .await
                .unwrap_or_else(|_| entry.metadata());
            if attrs.is_dir() {
                download_dir(sftp, &path, &local.join(&name)).await?;
            } else if attrs.is_regular() {
                download_file(sftp, &path, &local.join(&name), &attrs).await?;
            }
        }
        if let Ok(attrs) = sftp.metadata(remote).await {
            set_local_mode(local, &attrs);
        }
        anyhow::Ok(())
    })
    .await
}

async fn download_file(
    sftp: &SftpSession,
    remote: &str,
    local: &Path,
    attrs: &FileAttributes,
) -> anyhow::Result<()> {
    let mut source = sftp
        .open(remote)
        .await
        .map_err(|e| anyhow!("cannot open remote file {remote}: {}", reason(&e)))?;
    let mut dest = tokio::fs::File::create(local)
        .await
        .with_context(|| format!("cannot create {}", local.display()))?;
    copy(&mut source, &mut dest, attrs.size.unwrap_or(0), remote).await?;
    dest.flush().await?;
    set_local_mode(local, attrs);
    Ok(())
}

/// The reason of an SFTP error once: the server's text without the status code's name,
/// which says the same ("No such file: No such file or directory").
fn reason(err: &SftpError) -> String {
    match err {
        SftpError::Status(status) if !status.error_message.is_empty() => {
            status.error_message.clone()
        }
        other => other.to_string(),
    }
}

/// A download names a directory that must exist: `out/` (a trailing slash) itself, or the
/// parent of `out/file`. Said plainly instead of the OS's "Is a directory".
pub(crate) fn check_local_target(local: &Path) -> anyhow::Result<()> {
    let text = local.as_os_str().to_string_lossy();
    if text.ends_with('/') && !local.is_dir() {
        bail!("local directory {text} does not exist; create it first (mkdir -p {text})");
    }
    if let Some(parent) = local.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        bail!(
            "local directory {} does not exist; create it first",
            parent.display()
        );
    }
    Ok(())
}

fn set_local_mode(local: &Path, attrs: &FileAttributes) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(mode) = attrs.permissions {
        let _ = std::fs::set_permissions(local, std::fs::Permissions::from_mode(mode & 0o7777));
    }
}

async fn copy(
    source: &mut (impl AsyncRead + Unpin),
    dest: &mut (impl AsyncWrite + Unpin),
    size: u64,
    label: &str,
) -> anyhow::Result<u64> {
    let bar = if size >= PROGRESS_BYTES && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(size);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_owned());
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut buf = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = source
            .read(&mut buf)
            .await
            .with_context(|| format!("reading {label} failed"))?;
        if n == 0 {
            break;
        }
        dest.write_all(&buf[..n])
            .await
            .with_context(|| format!("writing {label} failed"))?;
        total += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(total)
}

fn join(dir: &str, name: &str) -> String {
    match dir.trim_end_matches('/') {
        "" if dir.starts_with('/') => format!("/{name}"),
        "" | "." => name.to_owned(),
        dir => format!("{dir}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            Spec::parse("abc:/tmp/x"),
            Spec::Remote {
                session: "abc".into(),
                path: "/tmp/x".into()
            }
        );
        assert_eq!(Spec::parse("./a:b"), Spec::Local("./a:b".into()));
        assert_eq!(Spec::parse(":x"), Spec::Local(":x".into()));
        assert_eq!(Spec::parse("plain"), Spec::Local("plain".into()));
    }

    #[test]
    fn joins() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join(".", "a"), "a");
        assert_eq!(join("d/", "a"), "d/a");
    }
}
