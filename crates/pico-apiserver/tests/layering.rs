//! The error model's seams, checked on the source: only the HTTP layer names HTTP statuses,
//! the session service knows nothing of axum, and `anyhow` stays in the binary.

use std::path::{Path, PathBuf};

/// Modules that speak HTTP and may name a status.
const HTTP_LAYER: &[&str] = &["api/", "error.rs", "server.rs", "tunnel.rs", "websocket.rs"];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// `(path relative to src/, code before its unit tests)` of every source file.
fn non_test_code() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read source");
            let code = match text.find("#[cfg(test)]") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            let rel = path.strip_prefix(&src).expect("under src");
            (rel.display().to_string(), code)
        })
        .collect()
}

#[test]
fn only_the_http_layer_names_status_codes() {
    let offenders: Vec<String> = non_test_code()
        .into_iter()
        .filter(|(rel, _)| !HTTP_LAYER.iter().any(|h| rel.starts_with(h)))
        // SFTP and the image registries have status codes of their own (we are their
        // client), imported under other names.
        .filter(|(_, code)| {
            code.replace("StatusCode as SftpStatus", "")
                .replace("StatusCode as RegistryStatus", "")
                .contains("StatusCode")
        })
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        offenders.is_empty(),
        "StatusCode named outside the HTTP layer (return an ApiError with an ErrorCode): \
         {offenders:?}"
    );
}

#[test]
fn the_session_service_does_not_know_axum() {
    for (rel, code) in non_test_code() {
        if rel.starts_with("service") {
            assert!(!code.contains("axum"), "{rel} imports axum");
        }
    }
}

/// Modules that `main.rs` declares belong to the binary, not the library.
fn binary_modules() -> Vec<String> {
    let main = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs"))
        .expect("main.rs");
    let mut files = vec!["main.rs".to_owned()];
    files.extend(main.lines().filter_map(|line| {
        let name = line.trim().strip_prefix("mod ")?.strip_suffix(';')?;
        Some(format!("{name}.rs"))
    }));
    files
}

#[test]
fn anyhow_is_only_in_the_binary() {
    let binary = binary_modules();
    let offenders: Vec<String> = non_test_code()
        .into_iter()
        .filter(|(rel, code)| !binary.contains(rel) && code.contains("anyhow"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        offenders.is_empty(),
        "anyhow used in the library: {offenders:?}"
    );
}
