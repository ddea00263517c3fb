//! Local sessions on an OCI image: the image store the local runtime pulls through, and
//! each session's image root under `<state-dir>/sessions/<id>/rootfs/`: `lower` (the
//! image's layer directories, top first), `upper/` + `work/` (the session's writable layer,
//! its files across restarts), `merged/` (where the agent assembles the root), `image`
//! (the manifest digest, which keeps the image from eviction), `env` and `workdir` (from
//! the image's config).

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::images::{Credentials, ImageError, ImageRecord, ImageStore, RegistryOptions};
use crate::start_error::StartError;

use super::{FailureKind, RuntimeError};

pub const ROOTFS: &str = "rootfs";

/// The image store and its cache limit, when sessions may ask for images.
pub struct ImageSettings {
    pub store: Arc<ImageStore>,
    pub cache_size: u64,
}

/// Builds the store from the flags. Images need root (overlayfs, whiteout devices, a
/// `pivot_root`): without it, `None`, and a create with `image` is refused with a reason.
pub fn image_settings(
    config: &Config,
    state_dir: &Path,
) -> Result<Option<ImageSettings>, StartError> {
    let cache_size =
        super::cgroup::parse_size(&config.image_cache_size).map_err(StartError::Config)?;
    if !crate::sys::is_root() {
        return Ok(None);
    }
    if let Some(mirror) = &config.registry_mirror
        && !(mirror.starts_with("https://") || mirror.starts_with("http://"))
    {
        return Err(StartError::Config(format!(
            "--registry-mirror {mirror}: give a URL (https://host[:port])"
        )));
    }
    let credentials =
        Credentials::load(config.registry_config.as_deref()).map_err(StartError::Config)?;
    let options = RegistryOptions {
        mirror: config.registry_mirror.clone(),
        insecure: config.insecure_registry.clone(),
        credentials,
    };
    let store = ImageStore::new(state_dir, options, true)
        .map_err(|e| StartError::Config(format!("image cache in {}: {e}", state_dir.display())))?;
    Ok(Some(ImageSettings {
        store: Arc::new(store),
        cache_size,
    }))
}

/// What a client is told when its image cannot be used.
pub fn pull_failed(image: &str, err: &ImageError) -> RuntimeError {
    let why = match err {
        // The host's paths stay in the server log.
        ImageError::Io(_) => format!("image {image}: the image cache failed (see the server log)"),
        other => other.to_string(),
    };
    if let ImageError::Io(e) = err {
        tracing::warn!(%image, error = %e, "image cache I/O");
    }
    RuntimeError::SandboxFailed {
        kind: FailureKind::ImagePull,
        why,
    }
}

/// Pulls `image` (or finds it cached) and lays out the session's image root in `dir`.
pub async fn prepare(
    settings: Option<&ImageSettings>,
    image: &str,
    dir: &Path,
) -> Result<ImageRecord, RuntimeError> {
    let Some(settings) = settings else {
        return Err(RuntimeError::SandboxFailed {
            kind: FailureKind::Create,
            why: "sessions with an image need the server to run as root (overlayfs); \
                  create the session without `image` to use the host's userland"
                .into(),
        });
    };
    let record = settings
        .store
        .ensure(image)
        .await
        .map_err(|e| pull_failed(image, &e))?;
    let root = dir.join(ROOTFS);
    for sub in ["", "upper", "work", "merged"] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(root.join(sub))?;
    }
    let lower: Vec<String> = record
        .layers
        .iter()
        .rev()
        .map(|l| settings.store.layer_dir(&l.digest).display().to_string())
        .collect();
    std::fs::write(root.join("lower"), lower.join(":"))?;
    std::fs::write(root.join("image"), &record.digest)?;
    let env: String = record
        .config
        .env
        .iter()
        .flatten()
        .filter(|line| {
            line.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            }) && !line.contains('\n')
        })
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(root.join("env"), env)?;
    let workdir = record
        .config
        .working_dir
        .as_deref()
        .filter(|w| w.starts_with('/') && *w != "/")
        .unwrap_or("");
    std::fs::write(root.join("workdir"), workdir)?;
    Ok(record)
}

/// The agent's flags for a session with an image root (none without one).
pub fn agent_args(dir: &Path) -> Vec<OsString> {
    let root = dir.join(ROOTFS);
    if !root.join("lower").is_file() {
        return Vec::new();
    }
    let mut args: Vec<OsString> = vec!["--image-root".into(), root.clone().into()];
    args.push("--env-file".into());
    args.push(root.join("env").into());
    if let Ok(workdir) = std::fs::read_to_string(root.join("workdir"))
        && !workdir.trim().is_empty()
    {
        args.push("--workdir".into());
        args.push(workdir.trim().into());
    }
    args
}

/// The manifest digest of every session under `sessions_dir` that runs on an image.
fn session_images(sessions_dir: &Path) -> Vec<String> {
    let mut digests = Vec::new();
    if let Ok(entries) = std::fs::read_dir(sessions_dir) {
        for entry in entries.flatten() {
            let path: PathBuf = entry.path().join(ROOTFS).join("image");
            if let Ok(digest) = std::fs::read_to_string(path) {
                digests.push(digest.trim().to_owned());
            }
        }
    }
    digests
}

/// Manifest digests some session under `sessions_dir` runs on.
pub fn in_use(sessions_dir: &Path) -> HashSet<String> {
    session_images(sessions_dir).into_iter().collect()
}

/// The cache as `GET /v1/images` shows it, with the sessions using each image.
pub fn list(settings: &ImageSettings, sessions_dir: &Path) -> Vec<pico_wire::ImageInfo> {
    let used = session_images(sessions_dir);
    settings
        .store
        .list()
        .into_iter()
        .map(|image| pico_wire::ImageInfo {
            sessions: u32::try_from(used.iter().filter(|d| **d == image.digest).count())
                .unwrap_or(u32::MAX),
            size: image.size(),
            layers: u32::try_from(image.layers.len()).unwrap_or(u32::MAX),
            pulled_at: time::OffsetDateTime::from_unix_timestamp(
                i64::try_from(image.pulled_at).unwrap_or(0),
            )
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            reference: image.reference,
            digest: image.digest,
        })
        .collect()
}

/// Removes unused images beyond the cache limit (after a pull added one).
pub async fn evict(settings: &ImageSettings, sessions_dir: &Path) {
    let in_use = in_use(sessions_dir);
    let removed = settings.store.evict(settings.cache_size, &in_use).await;
    if removed > 0 {
        tracing::info!(removed, "image cache trimmed to --image-cache-size");
    }
}
