//! Test support shared by the black-box tests of the workspace: starts the real
//! `pico-apiserver` on `127.0.0.1:0`, learns its address from the `listening on` line it
//! prints once it serves, and leaves no server or sandbox process behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running `pico-apiserver`; killed (with its sandboxes' agents) on drop.
pub struct ServerProcess {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub state_dir: PathBuf,
    /// The server's stderr.
    pub log: PathBuf,
}

impl ServerProcess {
    /// Runs `binary args…` (which must include `--port 0` and `--state-dir state_dir`) with
    /// its stderr appended to `log`, and returns once it listens. Panics with the log when it
    /// does not start.
    pub fn start(binary: &Path, args: &[String], state_dir: &Path, log: &Path) -> Self {
        Self::start_logging(binary, args, state_dir, log, "info,pico_apiserver=debug")
    }

    /// As [`ServerProcess::start`] with the server's `RUST_LOG` (the benchmarks run it at
    /// `warn`, so that logging costs nothing in their figures).
    pub fn start_logging(
        binary: &Path,
        args: &[String],
        state_dir: &Path,
        log: &Path,
        rust_log: &str,
    ) -> Self {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut child = Command::new(binary)
            .args(args)
            // The tests choose auth themselves.
            .env_remove("PICO_JWT_SECRET")
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                let _ = child.wait();
                let log_text = std::fs::read_to_string(log).unwrap_or_default();
                panic!("server did not start: {line:?}\n{log_text}")
            });
        Self {
            child: Some(child),
            addr,
            state_dir: state_dir.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL and wait.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
        kill_agents(&self.state_dir);
    }
}

/// Kills every agent a state directory knows: agents lead their own process groups, so a
/// dead server leaves them running.
pub fn kill_agents(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir.join("sessions")) else {
        return;
    };
    for entry in entries.flatten() {
        if let Ok(pid) = std::fs::read_to_string(entry.path().join("agent.pid")) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", pid.trim())])
                .stderr(Stdio::null())
                .status();
        }
    }
}
