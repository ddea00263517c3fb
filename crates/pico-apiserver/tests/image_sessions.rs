//! Local sessions on an OCI image, end to end: the real server pulls from a real registry
//! on loopback, the sandbox's root is the image (its files, Env and WorkingDir, a writable
//! layer that survives a kill -9 restart), and a pull that cannot work says why.

mod common;
mod registry;

use common::{Server, SshTarget, stderr, stdout};
use registry::{Item, Registry, busybox_layer, config, layer};

fn push_busybox(registry: &Registry, repo: &str, tag: &str) {
    let base = busybox_layer("pico busybox image");
    let extra = layer(&[
        Item::OpenDir("srv"),
        Item::File("srv/data.txt", b"from the image\n", 0o644),
    ]);
    registry.push_image(
        repo,
        tag,
        &[base, extra],
        &config(&["PATH=/bin", "GREETING=hello from the image"], "/srv"),
    );
}

#[test]
#[ignore = "needs root"]
fn a_session_runs_on_its_image_and_keeps_its_files_across_a_restart() {
    let registry = Registry::start();
    push_busybox(&registry, "pico-test/busybox", "1");
    let host = registry.host();
    let mut server = Server::start(&["--insecure-registry", &host]);
    let image = format!("{host}/pico-test/busybox:1");
    let session = server.create(None, &format!(r#"{{"image": "{image}"}}"#));
    assert_eq!(session["status"], "running", "{session}");
    assert_eq!(session["image"], image.as_str());
    let ssh = SshTarget::new(&server, &session, None);

    let out =
        ssh.ssh("cat /etc/os-release; echo \"$GREETING\"; pwd; cat data.txt; ls /usr 2>&1; true");
    let id = session["sessionId"].as_str().expect("id");
    let agent_log = server.state_dir.join("sessions").join(id).join("agent.log");
    let agent_log = || std::fs::read_to_string(&agent_log).unwrap_or_default();
    assert!(
        out.status.success(),
        "{} {} {}",
        stdout(&out),
        stderr(&out),
        agent_log()
    );
    let text = stdout(&out);
    assert!(text.contains("NAME=\"pico busybox image\""), "{text}");
    assert!(text.contains("hello from the image\n"), "{text}");
    assert!(text.contains("/srv\n"), "the image's WorkingDir: {text}");
    assert!(text.contains("from the image\n"), "{text}");
    assert!(text.contains("No such file"), "no /usr of the host: {text}");

    // The writable layer and the home directory are the session's own.
    let out = ssh.ssh("echo mine > /srv/written && echo kept > ~/keep.txt && whoami");
    assert!(out.status.success(), "{}", stderr(&out));

    let state_dir = server.state_dir.clone();
    server.kill9();
    common::kill_agents(&state_dir);
    let restarted = Server::start_in(&state_dir, &["--insecure-registry", &host]);
    drop(registry); // the cached image is enough from now on
    let ssh = SshTarget::new(&restarted, &session, None);
    let out = ssh.ssh("cat /srv/written ~/keep.txt; cat /etc/os-release");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("mine\nkept\n"), "{text}");
    assert!(text.contains("pico busybox image"), "{text}");

    let images = restarted.request("GET", "/v1/images").send();
    assert_eq!(images.status, 200, "{}", images.text());
    let images = images.json();
    assert_eq!(images["images"][0]["reference"], image.as_str(), "{images}");
    assert!(
        images["images"][0]["size"].as_u64().unwrap_or(0) > 1000,
        "{images}"
    );
    assert_eq!(images["images"][0]["sessions"], 1, "{images}");

    // The CLI shows the same cache.
    let out = std::process::Command::new(common::bin_dir().join("pico"))
        .args(["--url", &restarted.url(), "images"])
        .env("HOME", restarted.state_dir.with_extension("home"))
        .output()
        .expect("run pico");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("IMAGE") && text.contains(&image), "{text}");
}

#[test]
#[ignore = "needs root"]
fn an_image_that_cannot_be_pulled_fails_the_create_with_the_reason() {
    let registry = Registry::start();
    let host = registry.host();
    let server = Server::start(&["--insecure-registry", &host]);
    let body = format!(r#"{{"image": "{host}/nonexistent/image:zzz"}}"#);
    let res = server.request("POST", "/v1/sessions").json(&body).send();
    let err = res.assert_error(422, "IMAGE_PULL_FAILED");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("nonexistent/image:zzz") && message.contains("not found"),
        "{err}"
    );
    let list = server.request("GET", "/v1/sessions").send().json();
    assert_eq!(
        list["total"], 0,
        "a failed create leaves no session: {list}"
    );
}

/// A proxy to the registry that holds every connection's answer after its first 64 KiB
/// until `open` is set: a layer's download stays in flight while the test looks.
fn gated_proxy(registry: u16, open: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u16 {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming().take(64).flatten() {
            let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", registry)) else {
                return;
            };
            let (mut c_read, mut u_write) = (
                client.try_clone().expect("clone"),
                upstream.try_clone().expect("clone"),
            );
            std::thread::spawn(move || std::io::copy(&mut c_read, &mut u_write));
            let (mut u_read, mut c_write, open) = (upstream, client, open.clone());
            std::thread::spawn(move || {
                let mut sent = 0usize;
                let mut buf = [0u8; 8192];
                loop {
                    let n = match u_read.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    // Bounded: at most ten minutes held.
                    for _ in 0..12_000 {
                        if sent < 64 * 1024 || open.load(Ordering::SeqCst) {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    if c_write.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    sent += n;
                }
            });
        }
    });
    port
}

#[test]
#[ignore = "needs root"]
fn a_first_pull_shows_progress_while_the_session_is_pending() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let registry = Registry::start();
    push_busybox(&registry, "pico-test/slow", "1");
    let open = std::sync::Arc::new(AtomicBool::new(false));
    let proxy = format!("127.0.0.1:{}", gated_proxy(registry.port, open.clone()));
    let server = std::sync::Arc::new(Server::start(&["--insecure-registry", &proxy]));
    let body = format!(r#"{{"image": "{proxy}/pico-test/slow:1"}}"#);
    let creating = {
        let server = server.clone();
        std::thread::spawn(move || server.create(None, &body))
    };
    let mut seen = None;
    for _ in 0..600 {
        let list = server.request("GET", "/v1/sessions").send().json();
        let pull = &list["sessions"][0]["imagePull"];
        if pull["bytesDone"].as_u64().unwrap_or(0) > 0 {
            seen = Some(list["sessions"][0].clone());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    open.store(true, Ordering::SeqCst);
    let session = seen.expect("a pending session with pull progress");
    assert_eq!(session["status"], "pending", "{session}");
    let pull = &session["imagePull"];
    assert!(
        pull["bytesDone"].as_u64() < pull["bytesTotal"].as_u64(),
        "{session}"
    );
    let created = creating.join().expect("create");
    assert_eq!(created["status"], "running", "{created}");
    assert!(created.get("imagePull").is_none(), "{created}");
}
