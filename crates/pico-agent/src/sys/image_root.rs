//! A sandbox whose root is an OCI image: an overlayfs of the image's layers (read-only,
//! shared by every session of the image) under the session's own writable layer, entered
//! with `pivot_root`, so nothing of the host's tree stays reachable. `/proc`, a minimal
//! `/dev`, `/tmp`, `/run` and the home directory are laid out as for a host-userland sandbox.

use std::io;
use std::path::{Path, PathBuf};

use super::check;
use super::ns::{IsolateSpec, NO_DNS, Trees, add_account, attach_tree, mount, scratch_at};

/// Device nodes a program may expect; bound from the host's (they carry no host state).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// overlayfs takes its options in one page: shorter names by mounting from the layers'
/// common directory.
fn lower_option(list: &str) -> io::Result<(Option<PathBuf>, String)> {
    let layers: Vec<&Path> = list
        .split(':')
        .filter(|l| !l.is_empty())
        .map(Path::new)
        .collect();
    if layers.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the image has no layers",
        ));
    }
    let parent = layers[0].parent().map(Path::to_path_buf);
    let shared = parent
        .as_ref()
        .is_some_and(|p| layers.iter().all(|l| l.parent() == Some(p.as_path())));
    if shared {
        let names: Vec<String> = layers
            .iter()
            .filter_map(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        Ok((parent, names.join(":")))
    } else {
        Ok((None, list.to_owned()))
    }
}

/// Builds the image root under `root/merged`, moves into it, and finishes the sandbox's
/// mounts there. Runs in the sandbox's fresh mount namespace (already private).
pub fn enter(spec: &IsolateSpec<'_>, root: &Path, trees: &Trees) -> io::Result<()> {
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    let lower = std::fs::read_to_string(root.join("lower"))?;
    let (lower_dir, lower) = lower_option(lower.trim())?;
    let merged = root.join("merged");
    let options = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        root.join("upper").display(),
        root.join("work").display()
    );
    let cwd = std::env::current_dir()?;
    if let Some(dir) = &lower_dir {
        std::env::set_current_dir(dir)?;
    }
    // nosuid: a setuid binary of the image never gains the sandbox user anything.
    let mounted = mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        libc::MS_NOSUID,
        Some(&options),
    );
    std::env::set_current_dir(cwd)?;
    mounted?;
    // Read now, in the host's tree: the sandbox's view of the name servers.
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();

    let at = |path: &str| merged.join(path);
    for dir in ["proc", "dev", "tmp", "run", "home", "etc"] {
        std::fs::create_dir_all(at(dir))?;
    }
    mount(
        Some("proc"),
        &at("proc"),
        Some("proc"),
        nosuid_nodev | libc::MS_NOEXEC,
        None,
    )?;
    minimal_dev(&at("dev"))?;
    mount(
        Some("tmpfs"),
        &at("home"),
        Some("tmpfs"),
        nosuid_nodev,
        Some("mode=0755"),
    )?;
    let home = at("home").join(spec.username);
    std::fs::create_dir(&home)?;
    attach_tree(&trees.home, &home)?;
    let scratch = trees.scratch.as_ref();
    scratch_at(scratch.map(|s| &s[0]), &at("tmp"))?;
    if at("var/tmp").is_dir() {
        scratch_at(scratch.map(|s| &s[1]), &at("var/tmp"))?;
    }
    mount(
        Some("tmpfs"),
        &at("run"),
        Some("tmpfs"),
        nosuid_nodev | libc::MS_NOEXEC,
        Some("mode=0755"),
    )?;
    std::fs::create_dir(at("run/lock"))?;
    scratch_at(scratch.map(|s| &s[2]), &at("run/lock"))?;
    // The session's own files (its writable layer): rewritten at every start.
    let resolv = if spec.private_network {
        NO_DNS.to_owned()
    } else {
        host_resolv
    };
    replace_file(&at("etc/resolv.conf"), &resolv)?;
    let hostname = spec.hostname.unwrap_or("pico");
    if !at("etc/hosts").exists() {
        replace_file(
            &at("etc/hosts"),
            &format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{hostname}\n"),
        )?;
    }

    pivot_into(&merged)?;
    if let Some((uid, gid)) = spec.account {
        add_account(spec.username, uid, gid)?;
    }
    if let Some(name) = spec.hostname {
        // SAFETY: pointer and length describe the name's bytes.
        unsafe { check(libc::sethostname(name.as_ptr().cast(), name.len()))? };
    }
    std::env::set_current_dir("/")?;
    Ok(())
}

/// Writes `path` afresh (a symlink there, e.g. to systemd's resolver, is replaced, never
/// followed out of the image).
fn replace_file(path: &Path, contents: &str) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => std::fs::remove_file(path)?,
        Err(_) => {}
    }
    std::fs::write(path, contents)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
}

/// A tmpfs `/dev` with the harmless character devices bound in, a private devpts for
/// terminals and a `/dev/shm`.
fn minimal_dev(dev: &Path) -> io::Result<()> {
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755"),
    )?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let node = dev.join(name);
        std::fs::File::create(&node)?;
        mount(host.to_str(), &node, None, libc::MS_BIND, None)?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir(&pts)?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"))?;
    let shm = dev.join("shm");
    std::fs::create_dir(&shm)?;
    mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=1777"),
    )?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name))?;
    }
    Ok(())
}

/// `pivot_root(new, new)` then a lazy unmount of the old root stacked beneath: the host's
/// tree is gone from this namespace.
fn pivot_into(new_root: &Path) -> io::Result<()> {
    std::env::set_current_dir(new_root)?;
    // SAFETY: valid C strings; pivot_root and umount2 act on this mount namespace only.
    unsafe {
        check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int)
            .map_err(|e| io::Error::new(e.kind(), format!("pivot_root: {e}")))?;
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
    }
    std::env::set_current_dir("/")
}
