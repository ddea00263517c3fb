//! `--isolate`: unshare the namespaces, fork the sandbox's PID 1 and lay out its mounts.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::host_view::{cover, mask_sockets, read_only_host, unix_socket_paths};
use super::watchdog::{DirEntry, Watch, parent_wait};
use super::{check, cstr, egid, euid};

/// What `--isolate` needs to set up the sandbox.
pub struct IsolateSpec<'a> {
    /// The session's home directory (canonical; it may lie under a hidden path).
    pub home: &'a Path,
    pub username: &'a str,
    pub hide: &'a [PathBuf],
    pub hostname: Option<&'a str>,
    /// Not root: create a user namespace mapping our uid/gid to 0.
    pub user_ns: bool,
    /// A network namespace of its own, with only a loopback interface.
    pub private_network: bool,
    /// The numeric uid/gid commands run as when they have no passwd entry on the host:
    /// they get one inside the sandbox, so `whoami`, git or pip know the user.
    pub account: Option<(u32, u32)>,
    /// Unix socket file the parent removes once the sandbox is gone, and whose removal
    /// (or its directory's) ends the sandbox.
    pub socket: Option<PathBuf>,
    /// The session's ext4 image: home and every writable scratch directory live on it, so
    /// its size bounds everything the sandbox can write.
    pub disk: Option<&'a Path>,
    /// File with the session's expiry (unix seconds) and file the server touches while it
    /// runs: past expiry plus `grace` with no heartbeat, the sandbox ends.
    pub expires_file: Option<&'a Path>,
    pub heartbeat_file: Option<&'a Path>,
    /// The session's image root (`lower`, `upper/`, `work/`, `merged/`): the sandbox's root
    /// becomes an overlay of the image's layers instead of the host's tree (`image_root`).
    pub image_root: Option<&'a Path>,
    pub grace: Duration,
}

/// `path` as a directory descriptor and a name in it, opened now: in the new mount
/// namespace the directory may be hidden.
fn dir_entry(path: &Path) -> io::Result<DirEntry> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    Ok(DirEntry {
        dir: File::open(dir)?,
        name: CString::new(name).map_err(io::Error::other)?,
    })
}

/// Enters fresh namespaces. Returns in the child, PID 1 of the new pid namespace, once its
/// mounts are in place; the parent never returns: it waits for the child and exits with its
/// status. Must run before any thread is started.
pub fn isolate(spec: &IsolateSpec<'_>) -> io::Result<()> {
    // A cgroup namespace too: the agent already sits in the session's groups, which become
    // its root, so no other session's group is named anywhere inside.
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    if spec.user_ns {
        flags |= libc::CLONE_NEWUSER;
    }
    if spec.private_network {
        flags |= libc::CLONE_NEWNET;
    }
    let (uid, gid) = (euid(), egid());
    // The parent shares the new mount namespace, where the session's directory is hidden:
    // it watches (and finally removes) the socket through descriptors opened now.
    let socket = match &spec.socket {
        Some(path) => {
            let inode = std::fs::symlink_metadata(path)?.ino();
            Some((dir_entry(path)?, inode))
        }
        None => None,
    };
    let watch = Watch {
        socket,
        expires: spec.expires_file.map(dir_entry).transpose()?,
        heartbeat: spec.heartbeat_file.map(dir_entry).transpose()?,
        grace: spec.grace,
    };
    let disk = spec.disk.map(super::disk::open_image).transpose()?;
    // Read in the host's network namespace, which lists the host's sockets.
    let host_sockets = unix_socket_paths();
    // SAFETY: unshare affects only this (still single-threaded) process.
    unsafe { check(libc::unshare(flags))? };
    if spec.user_ns {
        std::fs::write("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
        std::fs::write("/proc/self/setgroups", "deny\n")?;
        std::fs::write("/proc/self/gid_map", format!("0 {gid} 1\n"))?;
    }
    if spec.private_network {
        loopback_up()?;
    }
    // SAFETY: no other thread exists, so the child starts from a consistent state.
    let pid = unsafe { check(libc::fork())? };
    if pid > 0 {
        parent_wait(pid, watch);
    }
    // If the parent is killed outright (SIGKILL cannot be forwarded), the sandbox goes too.
    // (The parent lives outside our pid namespace, so getppid cannot check the fork race.)
    // SAFETY: prctl on the calling process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    setup_mounts(spec, disk.as_ref(), &host_sockets)
}

/// A new network namespace starts with `lo` down; bring it up so that programs in the
/// sandbox can talk to each other over 127.0.0.1.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain datagram socket, closed below.
    let fd = unsafe {
        check(libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))?
    };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
    let result = unsafe {
        check(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request)).and_then(|_| {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            check(libc::ioctl(fd, libc::SIOCSIFFLAGS, &request))
        })
    };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    result.map(|_| ())
}

pub(super) fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let c = |s: Option<&str>| s.map(CString::new).transpose();
    let bad = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in mount argument");
    let (src, fstype, data) = (
        c(src).map_err(bad)?,
        c(fstype).map_err(bad)?,
        c(data).map_err(bad)?,
    );
    let target_c = cstr(target)?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is a valid C string or null, as mount(2) allows.
    let ret = unsafe {
        libc::mount(
            ptr(&src),
            target_c.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    check(ret)
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("mount on {}: {e}", target.display())))
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
pub(super) const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached bind mount of `path`.
fn clone_tree(path: &Path) -> io::Result<OwnedFd> {
    let c_path = cstr(path)?;
    let flags = OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: valid C string; the returned descriptor is checked and then owned.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c_path.as_ptr(), flags) };
    let fd = check(i32::try_from(fd).unwrap_or(-1))
        .map_err(|e| io::Error::new(e.kind(), format!("open_tree {}: {e}", path.display())))?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `move_mount` of a detached tree onto `target`.
pub(super) fn attach_tree(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let c_target = cstr(target)?;
    let empty = c"";
    // SAFETY: valid descriptor and C strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c_target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check(i32::try_from(ret).unwrap_or(-1))
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("move_mount to {}: {e}", target.display())))
}

/// Lays copies of /etc/passwd and /etc/group that also name the sandbox user over the
/// originals (read-only, in this mount namespace only).
pub(super) fn add_account(username: &str, uid: u32, gid: u32) -> io::Result<()> {
    let dir = Path::new("/tmp/.pico-account");
    std::fs::create_dir(dir)?;
    let home = Path::new("/home").join(username);
    let files = [
        (
            "passwd",
            format!(
                "{username}:x:{uid}:{gid}:pico sandbox:{}:{}\n",
                home.display(),
                crate::config::default_shell()
            ),
            format!(":{uid}:"),
        ),
        (
            "group",
            format!("{username}:x:{gid}:\n"),
            format!(":{gid}:"),
        ),
    ];
    for (name, line, id_field) in files {
        let original = Path::new("/etc").join(name);
        let mut text = std::fs::read_to_string(&original).unwrap_or_default();
        let taken = text
            .lines()
            .any(|l| l.split(':').next() == Some(username) || l.contains(&format!(":x{id_field}")));
        if taken {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        let copy = dir.join(name);
        std::fs::write(&copy, text)?;
        std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        mount(
            Some(copy.as_os_str().to_str().unwrap_or_default()),
            &original,
            None,
            libc::MS_BIND,
            None,
        )?;
        mount(
            None,
            &original,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// Detached copies of the session's writable trees, taken before anything is covered.
pub(super) struct Trees {
    pub(super) home: OwnedFd,
    /// `/tmp`, `/var/tmp` and `/run/lock` on the session's disk; `None` = a tmpfs each.
    pub(super) scratch: Option<[OwnedFd; 3]>,
    /// The host's resolver configuration when it lives under `/run` (systemd-resolved),
    /// which the sandbox's own `/run` would otherwise hide.
    resolv: Option<(OwnedFd, PathBuf)>,
}

const SCRATCH: [&str; 3] = ["tmp", "var-tmp", "run-lock"];

/// Mounts the session's disk on its home directory (in this namespace only) and lays out
/// `home` and the scratch directories on it; `tmp` and `run-lock` start empty each time.
fn disk_trees(disk: &File, mountpoint: &Path, account: Option<(u32, u32)>) -> io::Result<Trees> {
    use std::os::unix::fs::PermissionsExt;
    super::disk::mount_image(disk, mountpoint)?;
    let home = mountpoint.join("home");
    if !home.is_dir() {
        std::fs::create_dir(&home)?;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(&home, Some(uid), Some(gid))?;
        }
    }
    let mut scratch = Vec::new();
    for name in SCRATCH {
        let dir = mountpoint.join(name);
        if name != "var-tmp" && dir.is_dir() {
            std::fs::remove_dir_all(&dir)?;
        }
        if !dir.is_dir() {
            std::fs::create_dir(&dir)?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))?;
        scratch.push(clone_tree(&dir)?);
    }
    Ok(Trees {
        home: clone_tree(&home)?,
        scratch: scratch.try_into().ok(),
        resolv: None,
    })
}

/// A writable directory of the sandbox at `target`: the disk's tree, or a fresh tmpfs.
pub(super) fn scratch_at(tree: Option<&OwnedFd>, target: &Path) -> io::Result<()> {
    match tree {
        Some(tree) => attach_tree(tree, target),
        None => mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some("mode=1777"),
        ),
    }
}

/// What a failed name lookup in an isolated sandbox finds when it looks at
/// /etc/resolv.conf: why there is no name server (README, `--session-network`).
pub(super) const NO_DNS: &str = "\
# pico: this sandbox's network is isolated (--session-network isolated, the default when
# the server has auth on): it has only loopback, so no name server and no outside host is
# reachable, and name lookups fail. The server's operator can give sessions the host's
# network with --session-network host.
options attempts:1 timeout:1
";

/// Lays a read-only /etc/resolv.conf saying [`NO_DNS`] over the host's, in this mount
/// namespace only (and only where the host has one: nothing is created in the host's /etc).
fn explain_no_dns() -> io::Result<()> {
    let original = Path::new("/etc/resolv.conf");
    if !original.exists() {
        return Ok(());
    }
    let dir = Path::new("/tmp/.pico-network");
    std::fs::create_dir(dir)?;
    let copy = dir.join("resolv.conf");
    std::fs::write(&copy, NO_DNS)?;
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let source = copy.as_os_str().to_str().unwrap_or_default();
    mount(Some(source), original, None, libc::MS_BIND, None)?;
    mount(
        None,
        original,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
        None,
    )
}

fn setup_mounts(
    spec: &IsolateSpec<'_>,
    disk: Option<&File>,
    host_sockets: &[PathBuf],
) -> io::Result<()> {
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    // Nothing mounted here may propagate back to the host.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    // Detached copies of the writable trees, taken before /home, /tmp or the state
    // directory (where they may live) are covered.
    let mut trees = match disk {
        Some(disk) => disk_trees(disk, spec.home, spec.account)?,
        None => Trees {
            home: clone_tree(spec.home)?,
            scratch: None,
            resolv: None,
        },
    };
    if let Ok(resolv) = std::fs::canonicalize("/etc/resolv.conf")
        && resolv.starts_with("/run")
    {
        trees.resolv = Some((clone_tree(&resolv)?, resolv));
    }
    if let Some(root) = spec.image_root {
        return super::image_root::enter(spec, root, &trees);
    }
    match read_only_host() {
        Ok(()) => {}
        // In a user namespace (server not root) the sandbox runs as the server's own uid,
        // which owns what it can write anyway; as root this is a hard requirement.
        Err(e) if spec.user_ns => tracing::warn!(error = %e, "host file system stays writable"),
        Err(e) => return Err(e),
    }
    mask_sockets(host_sockets)?;
    mount(
        Some("proc"),
        Path::new("/proc"),
        Some("proc"),
        nosuid_nodev | libc::MS_NOEXEC,
        None,
    )?;
    let home_root = Path::new("/home");
    mount(
        Some("tmpfs"),
        home_root,
        Some("tmpfs"),
        nosuid_nodev,
        Some("mode=0755"),
    )?;
    let home = home_root.join(spec.username);
    std::fs::create_dir(&home)?;
    attach_tree(&trees.home, &home)?;
    let scratch = trees.scratch.as_ref();
    scratch_at(scratch.map(|s| &s[0]), Path::new("/tmp"))?;
    if Path::new("/var/tmp").is_dir() {
        scratch_at(scratch.map(|s| &s[1]), Path::new("/var/tmp"))?;
    }
    // The host's /run holds its services' sockets: the sandbox gets its own.
    mount(
        Some("tmpfs"),
        Path::new("/run"),
        Some("tmpfs"),
        nosuid_nodev | libc::MS_NOEXEC,
        Some("mode=0755"),
    )?;
    std::fs::create_dir(Path::new("/run/lock"))?;
    scratch_at(scratch.map(|s| &s[2]), Path::new("/run/lock"))?;
    std::os::unix::fs::symlink("/dev/shm", "/run/shm")?;
    if let Some((tree, path)) = &trees.resolv {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        File::create(path)?;
        attach_tree(tree, path)?;
    }
    if let Some((uid, gid)) = spec.account {
        add_account(spec.username, uid, gid)?;
    }
    if spec.private_network {
        // Only an explanation: a sandbox whose copy fails still starts.
        let _ = explain_no_dns();
    }
    if Path::new("/dev/shm").is_dir() {
        // Memory-backed, so counted by the session's memory limit.
        mount(
            Some("tmpfs"),
            Path::new("/dev/shm"),
            Some("tmpfs"),
            nosuid_nodev,
            Some("mode=1777"),
        )?;
    }
    // Every session's group lives under /sys/fs/cgroup: the sandbox sees none of them.
    if Path::new("/sys/fs/cgroup").is_dir() {
        cover(Path::new("/sys/fs/cgroup"), "mode=0555")?;
    }
    for path in spec.hide {
        if path.is_dir() {
            cover(path, "mode=0755")?;
        }
    }
    if let Some(name) = spec.hostname {
        // SAFETY: pointer and length describe the name's bytes.
        unsafe { check(libc::sethostname(name.as_ptr().cast(), name.len()))? };
    }
    std::env::set_current_dir("/")?;
    Ok(())
}
