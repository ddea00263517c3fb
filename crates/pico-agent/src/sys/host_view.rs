//! What of the host a sandbox sees: every host mount read-only and nosuid, directories
//! covered by empty tmpfs, and the host's unix sockets outside the covered directories
//! masked, so that no path leads to a host service (or another sandbox).

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::check;
use super::ns::{AT_RECURSIVE, mount};

/// Directories the sandbox gets its own copy of: sockets under them need no mask.
const PRIVATE: [&str; 6] = ["/run", "/tmp", "/var/tmp", "/dev/shm", "/home", "/proc"];

/// At most this many sockets are masked (a host with more is unusual; the rest stays
/// reachable, and a warning says so).
const MAX_MASKS: usize = 4096;

/// Paths of the unix sockets bound in the caller's network namespace (`/proc/net/unix`).
pub fn unix_socket_paths() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let mut paths: Vec<PathBuf> = text
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(7))
        .filter(|path| path.starts_with('/'))
        .map(PathBuf::from)
        .filter(|path| !PRIVATE.iter().any(|dir| path.starts_with(dir)))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// Binds /dev/null over each host socket still visible, so connecting to it fails.
pub fn mask_sockets(paths: &[PathBuf]) -> io::Result<()> {
    if paths.len() > MAX_MASKS {
        tracing::warn!(
            count = paths.len(),
            "too many host sockets to mask them all"
        );
    }
    for path in paths.iter().take(MAX_MASKS) {
        let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
        if is_socket {
            mount(Some("/dev/null"), path, None, libc::MS_BIND, None)?;
        }
    }
    Ok(())
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;

/// `struct mount_attr` of `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Makes every mount of the host's tree read-only and nosuid (in this namespace), so the
/// only writable places are the sandbox's own, mounted afterwards.
pub fn read_only_host() -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: valid C string and attribute struct of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            AT_RECURSIVE,
            &attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(i32::try_from(ret).unwrap_or(-1))
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("making the host read-only: {e}")))
}

/// An empty read-only tmpfs over `path`.
pub fn cover(path: &Path, mode: &str) -> io::Result<()> {
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount(Some("tmpfs"), path, Some("tmpfs"), flags, Some(mode))?;
    mount(
        None,
        path,
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | flags,
        None,
    )
}
