//! A real OCI registry on loopback for image tests: Debian's `docker-registry` (the CNCF
//! Distribution server) on 127.0.0.1:<free port>, with images the test builds itself
//! (tarballs written here, a static busybox from the host) and pushes over the
//! distribution API. No packet leaves the machine.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
pub const BUSYBOX: &str = "/bin/busybox";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub struct Registry {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha256(data: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl Registry {
    pub fn start() -> Self {
        assert!(
            Path::new(REGISTRY_BINARY).is_file(),
            "{REGISTRY_BINARY} is missing: `make test-deps` installs docker-registry"
        );
        // The port is picked by binding and releasing it, so another process (or a parallel
        // test) may take it first: then this registry exits, and another port is tried.
        let mut last_log = String::new();
        for _ in 0..5 {
            match Self::start_once() {
                Ok(registry) => return registry,
                Err(log) => last_log = log,
            }
        }
        panic!("registry did not start: {last_log}");
    }

    /// Starts one registry on a free port; its log if it exits or never answers.
    fn start_once() -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("tmp");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let log = dir.path().join("registry.log");
        let log_file = std::fs::File::create(&log).expect("log");
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Self {
            child,
            port,
            log,
            _dir: dir,
        };
        for _ in 0..200 {
            if registry.child.try_wait().ok().flatten().is_some() {
                return Err(registry.logs());
            }
            // Ours answers only once its own log says it listens (not another's on the port).
            if registry.logs().contains("listening on")
                && registry.raw("GET", "/v2/", &[], b"").0 == 200
            {
                return Ok(registry);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(registry.logs())
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times a blob was fetched (GET, not HEAD), from the access log.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.logs()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{digest}")))
            .count()
    }

    /// One HTTP/1.1 request with `Connection: close`: (status, headers, body).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, String::new(), Vec::new());
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host(),
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("write");
        stream.write_all(body).expect("write");
        let mut raw = Vec::new();
        // The registry may close without reading an unwanted body: keep what came.
        let _ = stream.read_to_end(&mut raw);
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len().saturating_sub(4));
        if raw.len() < split + 4 {
            // Nothing came (the connection was reset): no status.
            return (0, String::from_utf8_lossy(&raw).into_owned(), Vec::new());
        }
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head, raw[split + 4..].to_vec())
    }

    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let (status, head, _) = self.raw("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(status, 202, "{head}");
        let location = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_owned())
            })
            .expect("Location");
        let path = location
            .strip_prefix(&format!("http://{}", self.host()))
            .unwrap_or(&location)
            .to_owned();
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, head, _) = self.raw(
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(status, 201, "{head}");
        digest
    }

    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let (status, head, _) = self.raw(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
        );
        assert_eq!(status, 201, "{head}");
        sha256(body)
    }

    /// Pushes config + layers + manifest; returns the manifest's bytes' digest and size.
    pub fn push_image(
        &self,
        repo: &str,
        tag: &str,
        layers: &[Vec<u8>],
        config: &Value,
    ) -> (String, usize) {
        let config_bytes = serde_json::to_vec(config).expect("config");
        let config_digest = self.push_blob(repo, &config_bytes);
        let layer_descs: Vec<Value> = layers
            .iter()
            .map(|layer| {
                json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": self.push_blob(repo, layer),
                    "size": layer.len(),
                })
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_bytes.len(),
            },
            "layers": layer_descs,
        });
        let body = serde_json::to_vec(&manifest).expect("manifest");
        (
            self.push_manifest(repo, tag, OCI_MANIFEST, &body),
            body.len(),
        )
    }
}

/// The image config of an image for this machine.
pub fn config(env: &[&str], working_dir: &str) -> Value {
    json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {"Env": env, "WorkingDir": working_dir},
        "rootfs": {"type": "layers", "diff_ids": []},
    })
}

pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// What goes into a test layer.
pub enum Item<'a> {
    Dir(&'a str),
    /// A directory anyone may write to (mode 1777), as `/tmp`.
    OpenDir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
}

/// A gzip-compressed tar layer of `items`.
pub fn layer(items: &[Item<'_>]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for item in items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        match item {
            Item::Dir(path) | Item::OpenDir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(if matches!(item, Item::Dir(_)) {
                    0o755
                } else {
                    0o1777
                });
                header.set_size(0);
                builder
                    .append_data(&mut header, path, std::io::empty())
                    .expect("dir");
            }
            Item::File(path, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, *data).expect("file");
            }
            Item::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, path, target)
                    .expect("symlink");
            }
        }
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("gzip")
}

/// A busybox userland: `/bin/busybox` and links for the usual commands, an `/etc/passwd`
/// and an `/etc/os-release` that says which image this is.
pub fn busybox_layer(os_name: &str) -> Vec<u8> {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: `make test-deps` installs busybox-static"
    );
    let busybox = std::fs::read(BUSYBOX).expect("busybox");
    let os_release = format!("NAME=\"{os_name}\"\nID=pico-test\n");
    let passwd = "root:x:0:0:root:/root:/bin/sh\n";
    let mut items = vec![
        Item::Dir("bin"),
        Item::Dir("etc"),
        Item::Dir("root"),
        Item::Dir("tmp"),
        Item::Dir("home"),
        Item::File("bin/busybox", &busybox, 0o755),
        Item::File("etc/passwd", passwd.as_bytes(), 0o644),
        Item::File("etc/group", b"root:x:0:\n", 0o644),
        Item::File("etc/os-release", os_release.as_bytes(), 0o644),
    ];
    let commands = [
        "sh", "ls", "cat", "echo", "env", "pwd", "id", "mkdir", "rm", "test", "touch", "true",
        "false", "sleep", "uname", "whoami", "wc", "head", "grep", "stat", "mount",
    ];
    let links: Vec<(String, String)> = commands
        .iter()
        .map(|c| (format!("bin/{c}"), "busybox".to_owned()))
        .collect();
    for (path, target) in &links {
        items.push(Item::Symlink(path, target));
    }
    layer(&items)
}

/// An OCI index naming `manifest` for this machine and `decoy` for another architecture
/// (the registry checks that both exist).
pub fn index_for(manifest_digest: &str, manifest_size: usize, decoy: (&str, usize)) -> Vec<u8> {
    let other = if oci_arch() == "s390x" {
        "ppc64le"
    } else {
        "s390x"
    };
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": decoy.0, "size": decoy.1,
             "platform": {"architecture": other, "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest_size,
             "platform": {"architecture": oci_arch(), "os": "linux"}},
        ],
    }))
    .expect("index")
}
