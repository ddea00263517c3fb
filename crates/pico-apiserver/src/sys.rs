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

pub use libc::{SIGKILL, SIGTERM};
