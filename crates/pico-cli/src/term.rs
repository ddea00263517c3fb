//! The local terminal of an interactive `pico ssh`: raw mode for its lifetime, and its size.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr};

/// Puts stdin's terminal in raw mode and restores it when dropped, on every path out.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enable() -> anyhow::Result<Self> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// Columns and rows of the terminal on stdout (else stdin), or 80x24.
pub fn size() -> (u32, u32) {
    let from = |fd: std::os::fd::BorrowedFd<'_>| tcgetwinsize(fd).ok();
    let stdout = std::io::stdout();
    let stdin = std::io::stdin();
    from(stdout.as_fd())
        .or_else(|| from(stdin.as_fd()))
        .filter(|w| w.ws_col > 0 && w.ws_row > 0)
        .map(|w| (u32::from(w.ws_col), u32::from(w.ws_row)))
        .unwrap_or((80, 24))
}

pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}
