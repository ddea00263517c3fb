//! File transfer with OpenSSH `scp` and `sftp -b` (both speak SFTP to the agent).

mod common;

use std::io::Write;

use common::{Agent, text};

/// A deterministic pseudo-random 64 MiB file (xorshift), written in chunks.
fn make_file(path: &std::path::Path, size: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1 << 16];
    for _ in 0..size / chunk.len() {
        for word in chunk.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&chunk).expect("write");
    }
    file.flush().expect("flush");
}

fn sha256(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn scp_64_mib_both_ways_keeps_checksums() {
    let agent = Agent::start();
    let local = agent.path("big.bin");
    make_file(&local, 64 << 20);
    let up = agent
        .scp()
        .arg(&local)
        .arg("sandbox@127.0.0.1:big.up")
        .output()
        .expect("scp up");
    assert!(up.status.success(), "scp up: {}", text(&up.stderr));
    assert_eq!(sha256(&agent.home.join("big.up")), sha256(&local));
    let down_path = agent.path("big.down");
    let down = agent
        .scp()
        .arg("sandbox@127.0.0.1:big.up")
        .arg(&down_path)
        .output()
        .expect("scp down");
    assert!(down.status.success(), "scp down: {}", text(&down.stderr));
    assert_eq!(sha256(&down_path), sha256(&local));
    assert_eq!(std::fs::metadata(&down_path).expect("meta").len(), 64 << 20);
}

#[test]
fn sftp_batch_covers_common_operations() {
    let agent = Agent::start();
    let src = agent.path("upload.txt");
    std::fs::write(&src, "sftp payload\n").expect("write");
    let got = agent.path("got.txt");
    let batch = format!(
        "mkdir dir1\n\
         put {src} dir1/a.txt\n\
         ls -l dir1\n\
         rename dir1/a.txt dir1/b.txt\n\
         get dir1/b.txt {got}\n\
         symlink dir1/b.txt link.txt\n\
         chmod 600 dir1/b.txt\n\
         ls -l\n\
         df -h .\n\
         rm link.txt\n\
         rm dir1/b.txt\n\
         rmdir dir1\n\
         ls -1\n",
        src = src.display(),
        got = got.display()
    );
    let out = agent.sftp_batch(&batch);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "sftp failed: {stdout}\n{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&got).expect("got"),
        "sftp payload\n"
    );
    assert!(stdout.contains("a.txt"), "{stdout}");
    assert!(stdout.contains("link.txt"), "{stdout}");
    assert!(!agent.home.join("dir1").exists());
    assert!(!agent.home.join("link.txt").exists());
}

#[test]
fn sftp_symlink_and_rename_semantics() {
    let agent = Agent::start();
    std::fs::write(agent.home.join("target.txt"), "t").expect("write");
    std::fs::write(agent.home.join("other.txt"), "o").expect("write");
    let out = agent.sftp_batch("symlink target.txt link\nrename target.txt other.txt\n");
    // The link points at its target (argument order as OpenSSH sends it).
    let link = std::fs::read_link(agent.home.join("link")).expect("link");
    assert_eq!(link, std::path::Path::new("target.txt"));
    // OpenSSH's rename uses posix-rename@openssh.com, which replaces the target.
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(agent.home.join("other.txt")).expect("read"),
        "t"
    );
}

#[test]
fn sftp_bad_paths_fail_clearly_and_the_agent_keeps_serving() {
    let agent = Agent::start();
    for bad in [
        "get no/such/file.txt",
        "get ../../../../no-such-dir/x",
        "rmdir not-there",
        "rm missing.txt",
        "cd /proc/self/nonexistent",
    ] {
        let out = agent.sftp_batch(&format!("{bad}\n"));
        assert!(!out.status.success(), "{bad} should fail");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("No such file")
                || stderr.contains("not found")
                || stderr.contains("Couldn't")
                || stderr.contains("Failure"),
            "{bad}: {stderr}"
        );
    }
    // `..` is an ordinary path component: the agent enforces Unix permissions, not a chroot.
    let out = agent.sftp_batch("ls ..\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = agent.sftp_batch("mkdir ok\nrmdir ok\n");
    assert!(out.status.success(), "still serving: {}", text(&out.stderr));
}
