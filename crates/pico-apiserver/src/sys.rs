//! The few system calls the server makes directly (process identity and signals).
#![allow(unsafe_code)]

/// Whether the server runs as root (then sandboxes get their own unprivileged uid).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `signal` to process `pid`; false when it does not exist (or is not ours).
pub fn kill(pid: u32, signal: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill takes plain integers; a positive pid never targets a process group.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Sends `signal` to every process of group `pgid`.
pub fn kill_group(pgid: i32, signal: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: a negative pid addresses the process group; pgid > 1 never means "all".
    unsafe { libc::kill(-pgid, signal) == 0 }
}

/// Raises the open-file soft limit to the hard limit: every tunnel holds two descriptors,
/// and the usual soft limit of 1024 would cap the server at ~500 tunnels.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

pub use libc::{SIGCONT, SIGKILL, SIGSTOP, SIGTERM};

/// Makes the child of `command` join the given `cgroup.procs` files before it executes, so
/// that it and everything it starts are counted from its first instruction.
pub fn join_cgroups_before_exec(
    command: &mut tokio::process::Command,
    procs_files: &[std::path::PathBuf],
) {
    use std::os::unix::ffi::OsStrExt;
    let paths: Vec<std::ffi::CString> = procs_files
        .iter()
        .filter_map(|p| std::ffi::CString::new(p.as_os_str().as_bytes()).ok())
        .collect();
    if paths.is_empty() {
        return;
    }
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe calls
    // (open, write, close) on memory allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            for path in &paths {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" means the writing process.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let error = std::io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(error);
                }
            }
            Ok(())
        });
    }
}

/// Bytes free for unprivileged writers on the file system holding `path`.
pub fn available_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    // SAFETY: statvfs is plain data filled by the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Bytes of memory of this machine (0 when unknown).
pub fn total_memory() -> u64 {
    // SAFETY: sysconf takes a plain integer.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    u64::try_from(pages)
        .unwrap_or(0)
        .saturating_mul(u64::try_from(size).unwrap_or(0))
}

fn c_path(path: &std::path::Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))
}

/// An overlayfs whiteout at `path` (a 0/0 character device): hides a lower layer's file.
pub fn make_whiteout(path: &std::path::Path) -> std::io::Result<()> {
    let path = c_path(path)?;
    // SAFETY: valid C string; device 0/0 is what overlayfs reads as a whiteout.
    if unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Marks `dir` opaque for overlayfs: lower layers' entries of it are hidden.
pub fn set_opaque(dir: &std::path::Path) -> std::io::Result<()> {
    let path = c_path(dir)?;
    let value = b"y";
    // SAFETY: valid C strings and a value buffer of the length passed.
    let ret = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
