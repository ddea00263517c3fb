//! The per-session disk of the local runtime (server as root): a sparse ext4 image of
//! `--session-disk` bytes in the session's directory. The agent mounts it inside the
//! sandbox's own mount namespace and keeps the home and every writable scratch directory
//! on it, so writes beyond its size fail with ENOSPC inside the sandbox and never fill the
//! host. It lives with the session's files, so it survives server and agent restarts.

use std::io;
use std::path::{Path, PathBuf};

pub const IMAGE: &str = "disk.img";

/// Finds `mkfs.ext4` (e2fsprogs), which making an image needs.
pub fn find_mkfs() -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join("mkfs.ext4"))
        .find(|path| path.is_file())
}

/// Makes the sparse image `path` of `size` bytes. Lazy initialisation keeps it to a few
/// MiB on the host until the sandbox writes.
pub async fn make_image(mkfs: &Path, path: &Path, size: u64) -> io::Result<()> {
    let file = tokio::fs::File::create(path).await?;
    file.set_len(size).await?;
    drop(file);
    let output = tokio::process::Command::new(mkfs)
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
        ])
        .arg(path)
        .env_clear()
        .output()
        .await?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} failed: {}",
            mkfs.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}
