//! The static build (`-C target-feature=+crt-static`) runs and serves. Ignored by default:
//! `make test` builds it (`make image-bins`) and runs this with `PICO_AGENT_STATIC_BIN` set.

mod common;

use std::process::Command;

use common::{Agent, text};

#[test]
#[ignore = "needs a static build in PICO_AGENT_STATIC_BIN (make image-bins)"]
fn static_binary_is_static_and_serves() {
    let bin = std::env::var("PICO_AGENT_STATIC_BIN")
        .expect("set PICO_AGENT_STATIC_BIN to a static pico-agent build (make image-bins)");
    let file = Command::new("file").arg(&bin).output().expect("file(1)");
    let description = text(&file.stdout);
    assert!(
        description.contains("statically linked") || description.contains("static-pie"),
        "{description}"
    );
    let agent = Agent::start_with(common::Options {
        binary: Some(bin.into()),
        ..Default::default()
    });
    assert_eq!(agent.exec("echo static-ok").stdout, b"static-ok\n");
    let out = agent.sftp_batch("mkdir from-static\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
}
