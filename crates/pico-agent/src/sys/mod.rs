//! Every libc call of the agent: namespaces and mounts, fork, pty, privilege drop, signals.
//!
//! This is the only module allowed to use `unsafe` (with its `ns` child); everything it
//! exports is a safe function.
#![allow(unsafe_code)]

mod disk;
mod harden;
mod host_view;
mod image_root;
mod ns;
mod watchdog;

pub use harden::drop_privileges;
pub use ns::{IsolateSpec, isolate};

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Turns a libc return value into an `io::Result`, reading errno on -1.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

pub fn egid() -> u32 {
    // SAFETY: getegid has no preconditions.
    unsafe { libc::getegid() }
}

/// How session commands (and the sftp server) run relative to the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Same user and capabilities as the agent (the agent is not root).
    Inherit,
    /// The agent is root on the host: switch to this unprivileged uid/gid, no supplementary groups.
    Switch { uid: u32, gid: u32 },
    /// The agent is root of its own user namespace: stay uid 0 there but drop every capability,
    /// so the command cannot undo the sandbox's mounts.
    NsRootNoCaps,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Applies `identity` to the calling process. Only async-signal-safe calls: it also runs between
/// fork and exec.
pub fn apply_identity(identity: Identity) -> io::Result<()> {
    match identity {
        Identity::Inherit => Ok(()),
        Identity::Switch { uid, gid } => {
            // SAFETY: plain syscalls on the calling process; a null list with size 0 is valid.
            unsafe {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
            }
            Ok(())
        }
        Identity::NsRootNoCaps => {
            // SAFETY: prctl/capset with valid arguments; the cap structs outlive the call.
            unsafe {
                for cap in 0..64 {
                    // EINVAL marks the first capability this kernel does not know: stop there.
                    if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) == -1 {
                        break;
                    }
                }
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL,
                    0,
                    0,
                    0,
                );
                let mut header = CapHeader {
                    version: CAP_VERSION_3,
                    pid: 0,
                };
                let data = [CapData {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                }; 2];
                check(libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) as libc::c_int)?;
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            Ok(())
        }
    }
}

/// Makes the spawned command the leader of a new session (so its process group can be hung
/// up as a whole), gives it the pty on stdin as controlling terminal when `pty` is set, and
/// applies `identity`.
pub fn prepare_command(cmd: &mut Command, pty: bool, identity: Identity) {
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::setsid())?;
            if pty {
                check(libc::ioctl(0, libc::TIOCSCTTY, 0))?;
            }
            apply_identity(identity)
        });
    }
}

/// Lets the spawned command inherit `fd` (which stays close-on-exec in the agent), so it can
/// execute `/proc/self/fd/<fd>`.
pub fn keep_open_across_exec(cmd: &mut Command, fd: RawFd) {
    // SAFETY: the closure runs between fork and exec and only calls fcntl.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::fcntl(fd, libc::F_SETFD, 0))?;
            Ok(())
        });
    }
}

pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let flags = check(libc::fcntl(fd, libc::F_GETFL))?;
        check(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// Grows a pipe's kernel buffer (best effort): bulk output such as SFTP replies of 255 KiB then
/// needs one write and one wake-up instead of four.
pub fn grow_pipe(fd: &impl AsRawFd, size: i32) {
    // SAFETY: fcntl on a descriptor the caller owns; failure leaves the pipe as it was.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
}

/// Sends `signal` to every process of the process group `pgid`; errors (group gone) are ignored.
pub fn kill_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// Kills every process this one may signal: as PID 1 of a pid namespace, all of the sandbox.
pub fn kill_everything() {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(-1, libc::SIGKILL) };
}

/// Reaps one exited child without blocking: `(pid, raw wait status)`.
pub fn reap_any() -> Option<(i32, i32)> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid > 0 { Some((pid, status)) } else { None }
}

/// Terminal size as in `pty-req` / `window-change`.
#[derive(Clone, Copy, Debug, Default)]
pub struct WinSize {
    pub cols: u32,
    pub rows: u32,
    pub px_width: u32,
    pub px_height: u32,
}

fn winsize(size: WinSize) -> libc::winsize {
    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    libc::winsize {
        ws_row: clamp(size.rows),
        ws_col: clamp(size.cols),
        ws_xpixel: clamp(size.px_width),
        ws_ypixel: clamp(size.px_height),
    }
}

/// Opens a pty pair `(master, slave)` with the given size and terminal modes
/// (RFC 4254 §8 opcodes with their values).
pub fn open_pty(size: WinSize, modes: &[(u8, u32)]) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut master: RawFd = -1;
    let mut slave: RawFd = -1;
    let ws = winsize(size);
    // SAFETY: valid out pointers; null name and termios are allowed.
    unsafe {
        check(libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        ))?;
    }
    // SAFETY: openpty succeeded, so both descriptors are open and ours.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on descriptors we own; keeps them out of spawned commands.
        unsafe { check(libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC))? };
    }
    apply_modes(&slave, modes)?;
    Ok((master, slave))
}

/// The foreground process group of the terminal whose master is `master`.
pub fn foreground_group(master: &impl AsRawFd) -> Option<i32> {
    // SAFETY: tcgetpgrp only reads the terminal's state.
    let pgrp = unsafe { libc::tcgetpgrp(master.as_raw_fd()) };
    (pgrp > 1).then_some(pgrp)
}

pub fn resize_pty(master: &impl AsRawFd, size: WinSize) -> io::Result<()> {
    let ws = winsize(size);
    // SAFETY: TIOCSWINSZ reads a winsize that lives across the call.
    unsafe { check(libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws))? };
    Ok(())
}

/// Applies the client's terminal modes: control characters, then input/local/output flags.
fn apply_modes(fd: &impl AsRawFd, modes: &[(u8, u32)]) -> io::Result<()> {
    if modes.is_empty() {
        return Ok(());
    }
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer.
    unsafe { check(libc::tcgetattr(fd.as_raw_fd(), &mut t))? };
    for &(op, value) in modes {
        let cc = |i: usize, t: &mut libc::termios| t.c_cc[i] = value as libc::cc_t;
        let flag = |field: &mut libc::tcflag_t, bit: libc::tcflag_t| {
            if value != 0 {
                *field |= bit
            } else {
                *field &= !bit
            }
        };
        match op {
            1 => cc(libc::VINTR, &mut t),
            2 => cc(libc::VQUIT, &mut t),
            3 => cc(libc::VERASE, &mut t),
            4 => cc(libc::VKILL, &mut t),
            5 => cc(libc::VEOF, &mut t),
            6 => cc(libc::VEOL, &mut t),
            7 => cc(libc::VEOL2, &mut t),
            8 => cc(libc::VSTART, &mut t),
            9 => cc(libc::VSTOP, &mut t),
            10 => cc(libc::VSUSP, &mut t),
            12 => cc(libc::VREPRINT, &mut t),
            13 => cc(libc::VWERASE, &mut t),
            14 => cc(libc::VLNEXT, &mut t),
            18 => cc(libc::VDISCARD, &mut t),
            30 => flag(&mut t.c_iflag, libc::IGNPAR),
            31 => flag(&mut t.c_iflag, libc::PARMRK),
            32 => flag(&mut t.c_iflag, libc::INPCK),
            33 => flag(&mut t.c_iflag, libc::ISTRIP),
            34 => flag(&mut t.c_iflag, libc::INLCR),
            35 => flag(&mut t.c_iflag, libc::IGNCR),
            36 => flag(&mut t.c_iflag, libc::ICRNL),
            37 => flag(&mut t.c_iflag, libc::IUCLC),
            38 => flag(&mut t.c_iflag, libc::IXON),
            39 => flag(&mut t.c_iflag, libc::IXANY),
            40 => flag(&mut t.c_iflag, libc::IXOFF),
            41 => flag(&mut t.c_iflag, libc::IMAXBEL),
            42 => flag(&mut t.c_iflag, libc::IUTF8),
            50 => flag(&mut t.c_lflag, libc::ISIG),
            51 => flag(&mut t.c_lflag, libc::ICANON),
            53 => flag(&mut t.c_lflag, libc::ECHO),
            54 => flag(&mut t.c_lflag, libc::ECHOE),
            55 => flag(&mut t.c_lflag, libc::ECHOK),
            56 => flag(&mut t.c_lflag, libc::ECHONL),
            57 => flag(&mut t.c_lflag, libc::NOFLSH),
            58 => flag(&mut t.c_lflag, libc::TOSTOP),
            59 => flag(&mut t.c_lflag, libc::IEXTEN),
            60 => flag(&mut t.c_lflag, libc::ECHOCTL),
            61 => flag(&mut t.c_lflag, libc::ECHOKE),
            62 => flag(&mut t.c_lflag, libc::PENDIN),
            70 => flag(&mut t.c_oflag, libc::OPOST),
            71 => flag(&mut t.c_oflag, libc::OLCUC),
            72 => flag(&mut t.c_oflag, libc::ONLCR),
            73 => flag(&mut t.c_oflag, libc::OCRNL),
            74 => flag(&mut t.c_oflag, libc::ONOCR),
            75 => flag(&mut t.c_oflag, libc::ONLRET),
            // Speeds, parity and character size are meaningless on a pseudo-terminal.
            _ => {}
        }
    }
    // SAFETY: valid fd and pointer.
    unsafe { check(libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t))? };
    Ok(())
}

/// File system statistics for the `statvfs@openssh.com` sftp extension.
pub struct FsStats {
    pub bsize: u64,
    pub frsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub favail: u64,
    pub fsid: u64,
    pub flag: u64,
    pub namemax: u64,
}

pub fn statvfs(path: &Path) -> io::Result<FsStats> {
    let path = cstr(path)?;
    // SAFETY: statvfs is plain data filled by the call.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    unsafe { check(libc::statvfs(path.as_ptr(), &mut s))? };
    Ok(FsStats {
        bsize: s.f_bsize,
        frsize: s.f_frsize,
        blocks: s.f_blocks,
        bfree: s.f_bfree,
        bavail: s.f_bavail,
        files: s.f_files,
        ffree: s.f_ffree,
        favail: s.f_favail,
        fsid: s.f_fsid,
        flag: s.f_flag,
        namemax: s.f_namemax,
    })
}

/// Points stdout at /dev/null, so whoever waits for our `ready` line sees end of file.
pub fn close_stdout() -> io::Result<()> {
    let devnull = File::options().write(true).open("/dev/null")?;
    // SAFETY: dup2 onto fd 1 which this process owns.
    unsafe { check(libc::dup2(devnull.as_raw_fd(), 1))? };
    Ok(())
}

/// Registers a file with tokio's reactor (the caller has made it non-blocking).
pub fn async_fd(file: File) -> io::Result<tokio::io::unix::AsyncFd<File>> {
    // SAFETY: a `File` owns its descriptor and keeps it open, unchanged, until dropped, which
    // is all `register` requires.
    unsafe { tokio::io::unix::AsyncFd::register(file) }.map_err(io::Error::from)
}
