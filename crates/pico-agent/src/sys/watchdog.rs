//! The life of the process that stays outside the sandbox's pid namespace: it forwards
//! signals to the sandbox's PID 1, and ends the sandbox when it has lost its purpose: its
//! socket (or the session directory holding it) is gone, or its session expired long ago
//! while no server has been alive to adopt it.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::close_stdout;

/// A file named relative to a directory opened before the namespaces hid it.
pub struct DirEntry {
    pub dir: File,
    pub name: CString,
}

impl DirEntry {
    fn stat(&self) -> io::Result<libc::stat> {
        // SAFETY: stat is plain data filled by the call.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid directory descriptor, C string and out pointer.
        let ret = unsafe {
            libc::fstatat(
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        super::check(ret).map(|_| st)
    }

    fn read(&self) -> io::Result<String> {
        // SAFETY: valid directory descriptor and C string; the result is checked and owned.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let mut file = unsafe { File::from_raw_fd(super::check(fd)?) };
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(text)
    }

    fn unlink(&self) {
        // SAFETY: valid directory descriptor and C string.
        unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) };
    }
}

/// What the watchdog watches.
pub struct Watch {
    /// The agent's unix socket and its inode at start: another inode is another agent's.
    pub socket: Option<(DirEntry, u64)>,
    /// A file holding the session's expiry (unix seconds), kept current by the server.
    pub expires: Option<DirEntry>,
    /// A file the server touches while it runs.
    pub heartbeat: Option<DirEntry>,
    pub grace: Duration,
}

impl Watch {
    /// Why the sandbox should end now, if it should.
    fn purpose_lost(&self) -> Option<&'static str> {
        if let Some((socket, inode)) = &self.socket {
            match socket.stat() {
                Ok(st) if st.st_ino == *inode => {}
                Ok(_) => return Some("its socket belongs to another agent"),
                Err(_) => return Some("its socket or session directory is gone"),
            }
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        let expires: u64 = self.expires.as_ref()?.read().ok()?.trim().parse().ok()?;
        if now.as_secs() < expires.saturating_add(self.grace.as_secs()) {
            return None;
        }
        let beat = self.heartbeat.as_ref().and_then(|h| h.stat().ok());
        let beat_age = beat.map_or(u64::MAX, |st| {
            now.as_secs()
                .saturating_sub(u64::try_from(st.st_mtime).unwrap_or(0))
        });
        (beat_age > self.grace.as_secs()).then_some("it expired and no server adopted it")
    }
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Sleeps for `period` or until a signal arrives (unlike `thread::sleep`, which resumes).
fn nap(period: Duration) {
    let time = libc::timespec {
        tv_sec: libc::time_t::try_from(period.as_secs()).unwrap_or(1),
        tv_nsec: 0,
    };
    // SAFETY: valid timespec; a null remainder is allowed.
    unsafe { libc::nanosleep(&time, std::ptr::null_mut()) };
}

/// How often the watchdog looks; cheap (a stat or two), and bounds how long an orphan lives.
const PERIOD: Duration = Duration::from_secs(1);

/// The parent's whole remaining life: forward signals, watch, wait, exit like the child.
pub fn parent_wait(child: i32, watch: Watch) -> ! {
    CHILD.store(child, Ordering::SeqCst);
    let _ = close_stdout();
    let handler = forward_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installs an async-signal-safe handler.
        unsafe { libc::signal(signal, handler) };
    }
    // A handler (doing nothing) so that SIGCHLD cuts a nap short: the sandbox's end is
    // seen at once, not a period later.
    let wake = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installs an async-signal-safe handler.
    unsafe { libc::signal(libc::SIGCHLD, wake) };
    let mut status = 0;
    loop {
        // SAFETY: valid out pointer.
        let ret = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if ret == child {
            break;
        }
        if ret == -1 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
        if let Some(why) = watch.purpose_lost() {
            eprintln!("pico-agent: ending the sandbox: {why}");
            // PID 1 dying takes every process of its pid namespace with it.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child, libc::SIGKILL) };
            // SAFETY: valid out pointer; the child is ours to reap.
            unsafe { libc::waitpid(child, &mut status, 0) };
            break;
        }
        nap(PERIOD);
    }
    if let Some((socket, inode)) = &watch.socket
        && socket.stat().is_ok_and(|st| st.st_ino == *inode)
    {
        socket.unlink();
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    };
    std::process::exit(code)
}
