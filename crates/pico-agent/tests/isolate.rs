//! `--isolate` (run as root, like the API server's local runtime in CI): the sandbox sees its
//! own pid namespace, a private /tmp, its home at /home/<user>, and nothing of hidden paths.

mod common;

use std::process::Stdio;

use common::{Agent, Options, have, text};

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0")
}

#[test]
#[ignore = "needs root"]
fn isolated_sandbox_hides_the_host() {
    assert!(is_root(), "needs root: run as root with --include-ignored");
    // Outside /tmp, which the sandbox replaces anyway: this exercises --hide itself.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("other-session")).expect("state");
    std::fs::write(state.join("other-session/secret"), "secret").expect("secret");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).expect("chown home");
    let host_tmp_marker = tempfile::NamedTempFile::new_in("/tmp").expect("marker");
    let extra = vec![
        "--isolate".to_owned(),
        "--hide".to_owned(),
        state.display().to_string(),
        // The agent's own directory too: sftp must still find the binary (opened at start-up).
        "--hide".to_owned(),
        std::path::Path::new(common::AGENT)
            .parent()
            .expect("bin dir")
            .display()
            .to_string(),
        "--hostname".to_owned(),
        "sbx-test".to_owned(),
        "--uid".to_owned(),
        "65534".to_owned(),
        "--gid".to_owned(),
        "65534".to_owned(),
    ];
    let agent = Agent::start_with(Options {
        extra,
        unix: have("socat"),
        dir: Some(dir),
        ..Options::default()
    });
    let me = std::process::id();
    let script = format!(
        "echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline); \
         echo me=$(test -e /proc/{me} && echo visible || echo hidden); \
         echo procs=$(ls /proc | grep -c '^[0-9]'); \
         echo state=$(ls -A {state} | wc -l); \
         echo statewrite=$(touch {state}/x 2>/dev/null && echo writable || echo readonly); \
         echo secret=$(cat {state}/other-session/secret 2>&1 >/dev/null | grep -c 'No such file'); \
         echo tmp=$(test -e {marker} && echo visible || echo private); \
         echo host=$(hostname); echo uid=$(id -u); echo home=$HOME; echo pwd=$(pwd); \
         echo hi > $HOME/from-inside; \
         touch /tmp/inside && echo tmpwrite=ok; \
         mount -t tmpfs none /mnt >/dev/null 2>&1 && echo mount=allowed || echo mount=denied",
        state = state.display(),
        marker = host_tmp_marker.path().display(),
    );
    let out = agent
        .ssh()
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        text(&out.stderr),
        agent.log()
    );
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing in {stdout}"))
            .to_owned()
    };
    assert!(field("pid1").contains("pico-agent serve"), "{stdout}");
    assert_eq!(field("me"), "hidden");
    // The agent, the shell and its few children: nothing of the host.
    assert!(
        field("procs").parse::<u32>().expect("count") < 10,
        "{stdout}"
    );
    assert_eq!(field("state"), "0", "hidden dir is empty");
    assert_eq!(field("statewrite"), "readonly");
    assert_eq!(field("secret"), "1", "other session's file is gone");
    assert_eq!(field("tmp"), "private");
    assert_eq!(field("host"), "sbx-test");
    assert_eq!(field("uid"), "65534");
    assert_eq!(field("home"), "/home/sandbox");
    assert_eq!(field("pwd"), "/home/sandbox");
    assert_eq!(field("tmpwrite"), "ok");
    assert_eq!(field("mount"), "denied");
    assert_eq!(
        std::fs::read_to_string(agent.home.join("from-inside")).expect("home is shared"),
        "hi\n"
    );
    assert!(
        !std::path::Path::new("/tmp/inside").exists(),
        "sandbox /tmp is not the host's"
    );
    // As PID 1 the agent reaps orphans: a detached job that exits leaves no zombie.
    let out = agent.exec("nohup sh -c 'sleep 0.2' >/dev/null 2>&1 &");
    assert!(out.status.success());
    common::eventually(
        "no zombie in the sandbox",
        std::time::Duration::from_secs(10),
        || {
            let out = agent.exec("ps -eo stat= | grep -c '^Z' || true");
            text(&out.stdout).trim() == "0"
        },
    );
    // SFTP runs as the session user too.
    let out = agent.sftp_batch("put /etc/hostname copied\nget /etc/shadow /dev/null\n");
    assert!(!out.status.success(), "reading /etc/shadow must fail");
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    let copied = std::fs::metadata(agent.home.join("copied")).expect("uploaded");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&copied), 65534);
}

#[test]
#[ignore = "needs root"]
fn unprivileged_agent_uses_a_user_namespace_and_drops_capabilities() {
    assert!(is_root(), "needs root: run as root with --include-ignored");
    assert!(
        have("setpriv"),
        "setpriv is missing: run scripts/test-deps.sh"
    );
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).expect("chown");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    // The keys are generated by the harness as root; the unprivileged agent must read them.
    let extra = vec!["--isolate".to_owned()];
    let agent = Agent::start_with(Options {
        extra,
        unix: false,
        dir: Some(dir),
        wrapper: Some(vec![
            "setpriv".into(),
            "--reuid=65534".into(),
            "--regid=65534".into(),
            "--clear-groups".into(),
        ]),
        ..Options::default()
    });
    let out = agent
        .ssh()
        .arg("id -u; grep CapEff /proc/self/status; mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo denied; echo x > f")
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        text(&out.stderr),
        agent.log()
    );
    assert!(
        stdout.starts_with("0\n"),
        "root of its own user namespace: {stdout}"
    );
    assert!(stdout.contains("CapEff:\t0000000000000000"), "{stdout}");
    assert!(stdout.contains("denied"), "{stdout}");
    let meta = std::fs::metadata(agent.home.join("f")).expect("written");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        65534,
        "files belong to the unprivileged user"
    );
}

#[test]
#[ignore = "needs root"]
fn user_flag_drops_to_a_passwd_user() {
    assert!(is_root(), "needs root: run as root with --include-ignored");
    let agent = Agent::start_with(Options {
        extra: vec!["--user".into(), "nobody".into()],
        ..Options::default()
    });
    let out = agent.exec("id -un; id -G; echo $SHELL");
    let stdout = text(&out.stdout);
    let nologin = stdout.lines().nth(2).unwrap_or_default().to_owned();
    assert!(stdout.starts_with("nobody\n65534\n"), "{stdout}");
    assert!(
        nologin.ends_with("nologin") || nologin.ends_with("false"),
        "passwd shell: {stdout}"
    );
    let out = agent.sftp_batch("get /etc/shadow /dev/null\n");
    assert!(!out.status.success(), "sftp runs as nobody too");
}

#[test]
#[ignore = "needs root"]
fn killing_the_isolated_agent_outright_ends_the_sandbox() {
    assert!(is_root(), "needs root: run as root with --include-ignored");
    let agent = Agent::start_with(Options {
        extra: vec!["--isolate".into()],
        ..Options::default()
    });
    let marker = format!("sleep {}", 500 + agent.port % 97);
    let out = agent.exec(&format!("nohup {marker} >/dev/null 2>&1 &"));
    assert!(out.status.success());
    common::eventually(
        "the job to start",
        std::time::Duration::from_secs(5),
        || !common::processes_matching(&marker).is_empty(),
    );
    // SIGKILL cannot be forwarded; the sandbox's PID 1 dies with its parent (PDEATHSIG),
    // and with it every process of the pid namespace.
    let status = std::process::Command::new("kill")
        .args(["-KILL", &agent.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    common::eventually(
        "the sandbox to be gone",
        std::time::Duration::from_secs(10),
        || common::processes_matching(&marker).is_empty(),
    );
}
