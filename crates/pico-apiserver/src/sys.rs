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

pub use libc::{SIGKILL, SIGTERM};
