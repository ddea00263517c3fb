//! Exec, pty shell, environment, signals, hang-up and `ssh -L`, driven with OpenSSH `ssh`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use common::{Agent, eventually, processes_matching, text};

#[test]
fn exec_reports_exit_codes_stdout_and_stderr() {
    let agent = Agent::start();
    let out = agent.exec("echo out; echo err >&2; exit 3");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(agent.exec("true").status.code(), Some(0));
    assert_eq!(agent.exec("exit 255").status.code(), Some(255));
    let out = agent.exec("no-such-command-xyz");
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("not found"));
}

#[test]
fn exec_environment_and_working_directory() {
    let agent = Agent::start();
    let out = agent.exec("echo \"$HOME|$USER|$LOGNAME|$SHELL|$PATH|$SESSION_NAME|$GREETING\"; pwd");
    let home = agent.home.display().to_string();
    // A user without a passwd entry gets bash where the machine has it, else sh.
    let shell = if std::path::Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let expected = format!(
        "{home}|sandbox|sandbox|{shell}|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|test-session|hello world\n{home}\n"
    );
    assert_eq!(text(&out.stdout), expected);
    // LANG and LC_* are accepted env requests; other names are refused (silently, by ssh).
    let out = agent
        .ssh()
        .env("LANG", "C.UTF-8")
        .env("LC_FOO", "bar")
        .env("NOT_ALLOWED", "x")
        .args(["-o", "SendEnv=LANG LC_FOO NOT_ALLOWED"])
        .arg("echo \"$LANG|$LC_FOO|${NOT_ALLOWED-unset}\"")
        .output()
        .expect("ssh");
    assert_eq!(text(&out.stdout), "C.UTF-8|bar|unset\n");
}

#[test]
fn exec_stdin_is_forwarded_and_eof_propagates() {
    let agent = Agent::start();
    let mut child = agent
        .ssh()
        .arg("wc -c; echo done")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&vec![b'x'; 100_000]).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        text(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["100000", "done"]
    );
}

#[test]
fn pty_shell_is_driven_with_input() {
    let agent = Agent::start();
    let mut child = agent
        .ssh()
        .arg("-tt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh -tt");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"tty && echo TERM=$TERM\necho $((6 * 7))\nexit 7\n")
        .expect("input");
    let out = child.wait_with_output().expect("wait");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout}");
    assert!(stdout.contains("/dev/pts/"), "{stdout}");
    assert!(stdout.contains("42"), "{stdout}");
    // The pty turns \n into \r\n, which only happens with a real terminal.
    assert!(stdout.contains("42\r\n"), "{stdout:?}");
}

#[test]
fn pty_exec_sees_a_terminal() {
    let agent = Agent::start();
    let out = agent
        .ssh()
        .args(["-tt", "test -t 0 && test -t 1 && echo is-a-tty"])
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert!(text(&out.stdout).contains("is-a-tty"));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn killed_command_reports_its_signal() {
    let agent = Agent::start();
    // OpenSSH exits 255 when the remote command died from a signal; -v shows the exit-signal.
    let out = agent
        .ssh()
        .args(["-v", "kill -TERM $$"])
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("rtype exit-signal"),
        "{}",
        text(&out.stderr)
    );
    let out = agent
        .ssh()
        .args(["-v", "kill -9 $$"])
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert!(text(&out.stderr).contains("rtype exit-signal"));
}

#[test]
fn disconnecting_mid_command_leaves_no_process() {
    let agent = Agent::start();
    let marker = format!("sleep {}", 300 + agent.port % 97);
    let mut child = agent
        .ssh()
        .arg(format!("echo started; {marker}; echo never"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    assert_eq!(line, "started\n");
    assert!(!processes_matching(&marker).is_empty(), "command runs");
    child.kill().expect("kill ssh");
    let _ = child.wait();
    eventually("the command to be hung up", Duration::from_secs(10), || {
        processes_matching(&marker).is_empty()
    });
}

#[test]
fn nohup_background_server_survives_and_ssh_l_reaches_it() {
    let agent = Agent::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    // A plain background job dies with the channel; a nohup'ed one keeps running.
    let start = format!(
        "nohup python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 & echo $! > srv.pid; \
         sleep 600 & echo $! > plain.pid; \
         for i in $(seq 100); do python3 -c 'import socket,sys; socket.create_connection((\"127.0.0.1\", {port}))' 2>/dev/null && exit 0; sleep 0.1; done; exit 1"
    );
    std::fs::write(agent.home.join("hello.txt"), "hello through the tunnel\n").expect("file");
    let out = agent.exec(&start);
    assert_eq!(
        out.status.code(),
        Some(0),
        "server started: {}",
        text(&out.stderr)
    );
    let plain: u32 = std::fs::read_to_string(agent.home.join("plain.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    eventually(
        "the plain background job to be hung up",
        Duration::from_secs(10),
        || {
            !std::path::Path::new(&format!("/proc/{plain}")).exists()
                || std::fs::read_to_string(format!("/proc/{plain}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        },
    );
    let local = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut tunnel = agent
        .ssh()
        .args([
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            &format!("{local}:127.0.0.1:{port}"),
            "echo up; sleep 60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssh -L");
    let mut line = String::new();
    // The forward listens before the remote command runs, so "up" means it is ready.
    BufReader::new(tunnel.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    assert_eq!(line, "up\n");
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", local)).expect("connect to forward");
    stream
        .write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.contains("hello through the tunnel"), "{response}");
    let _ = tunnel.kill();
    let _ = tunnel.wait();
    let out = agent.exec("kill $(cat srv.pid)");
    assert_eq!(
        out.status.code(),
        Some(0),
        "server still running: {}",
        text(&out.stderr)
    );
}

#[test]
fn direct_tcpip_outside_loopback_is_refused() {
    let agent = Agent::start();
    let out = agent
        .ssh()
        .args(["-W", "192.0.2.1:80"])
        .stdin(Stdio::null())
        .output()
        .expect("ssh -W");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("forwarding failed")
            || text(&out.stderr).contains("open failed"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(agent.exec("echo still-serving").stdout, b"still-serving\n");
}

#[test]
fn finished_commands_leave_no_zombies() {
    let agent = Agent::start();
    for _ in 0..5 {
        assert!(agent.exec("true").status.success());
    }
    let sftp = agent.sftp_batch("ls\n");
    assert!(sftp.status.success());
    let zombies = || {
        let mut count = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // Fields after the command name: state, ppid.
            let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r.to_owned()) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() > 1 && fields[0] == "Z" && fields[1] == agent.pid().to_string() {
                count += 1;
            }
        }
        count
    };
    eventually(
        "the agent to reap its children",
        Duration::from_secs(5),
        || zombies() == 0,
    );
}

#[test]
fn unread_stdin_does_not_stall_the_commands_output() {
    let agent = Agent::start();
    // The command writes 20 MB before it reads any of the 16 MiB sent to it meanwhile: more
    // than russh's channel queue and the pipe hold, so the agent must buffer it.
    let mut child = agent
        .ssh()
        .arg("head -c 20000000 /dev/zero; cat > in.bin; echo done >&2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'i'; 1 << 20];
        for _ in 0..16 {
            stdin.write_all(&chunk).expect("stdin");
        }
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        let _ = done_tx.send(total);
    });
    let total = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("output keeps flowing");
    writer.join().expect("writer");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(total, 20_000_000);
    assert!(text(&out.stderr).contains("done"));
    assert_eq!(
        std::fs::metadata(agent.home.join("in.bin"))
            .expect("in.bin")
            .len(),
        16 << 20
    );
}
