//! Harness for the kubectl tests: the emulator binary and kubectl runs against it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(30);

/// The agent-sandbox README example (its `<IMAGE>` filled in); `VERSION` and `NAME` vary.
pub const README_SANDBOX: &str = "apiVersion: agents.x-k8s.io/VERSION
kind: Sandbox
metadata:
  name: NAME
spec:
  podTemplate:
    spec:
      containers:
      - name: my-container
        image: python:3.12-slim
";

/// Fails the test when kubectl is missing: a missing tool is no reason to pass.
pub fn require_kubectl() {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "kubectl is not installed (Debian package kubernetes-client): run scripts/test-deps.sh"
    );
}

/// The emulator binary, killed on drop.
pub struct Emu {
    child: Child,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Emu {
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(env!("CARGO_BIN_EXE_pico-kube-emulator"))
            .args(["--port", "0", "--write-kubeconfig"])
            .arg(&kubeconfig)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn emulator");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("read address");
        assert!(first.starts_with("listening on 127.0.0.1:"), "{first:?}");
        Self {
            child,
            dir,
            kubeconfig,
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run kubectl")
    }

    /// Runs kubectl, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, asserting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write manifest");
        p
    }

    pub fn sandbox_file(&self, version: &str, name: &str) -> PathBuf {
        self.write(
            &format!("{name}.yaml"),
            &README_SANDBOX
                .replace("VERSION", version)
                .replace("NAME", name),
        )
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        // SIGTERM lets the emulator stop the processes it started; SIGKILL would orphan them.
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if !term.is_ok_and(|s| s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Lines of a long-running kubectl, read on a thread.
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub fn expect_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if pred(&l) => return,
            Ok(_) => {}
            Err(e) => panic!("kubectl get -w never showed {what}: {e}"),
        }
    }
}
