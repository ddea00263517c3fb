//! OCI images for the local runtime: resolve a reference, pull its layers once into a
//! content-addressed cache under `<state-dir>/images/`, and describe what a session's root
//! is made of. Layout: `layers/<hex>/` (one unpacked layer, an overlayfs lower directory),
//! `images/<hex>.json` (an [`ImageRecord`], by manifest digest), `refs/<hex>` (the manifest
//! digest a reference resolved to, by the reference's hash), `tmp/` (downloads in flight).

mod auth;
mod manifest;
mod reference;
mod registry;
mod unpack;
#[cfg(test)]
mod unpack_tests;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use auth::Credentials;
pub use manifest::ImageConfig;
pub use reference::Reference;
pub use registry::RegistryOptions;

use manifest::{AnyManifest, ConfigBlob, Descriptor};
use registry::{RegistryClient, hex};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0:?} is not an image reference")]
    InvalidReference(String),
    #[error("image {0} was not found in its registry")]
    NotFound(String),
    #[error("the registry refused access to {0} (credentials missing or wrong)")]
    Unauthorized(String),
    #[error("digest mismatch: expected {expected}, the registry sent {got}")]
    DigestMismatch { expected: String, got: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("bad layer: {0}")]
    BadLayer(String),
    #[error("registry: {0}")]
    Registry(String),
    #[error("image cache I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// One layer of a cached image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LayerRecord {
    pub digest: String,
    /// Compressed bytes, as the registry sent them.
    pub size: u64,
}

/// A pulled image, as the cache remembers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// The reference it was pulled as, normalised (`docker.io/library/python:3.11`).
    pub reference: String,
    /// The manifest's digest.
    pub digest: String,
    /// Bottom layer first, as in the manifest.
    pub layers: Vec<LayerRecord>,
    pub config: ImageConfig,
    /// Unix seconds.
    pub pulled_at: u64,
}

impl ImageRecord {
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// Bytes of a pull in flight (layers already cached count as done).
#[derive(Debug, Default)]
pub struct PullProgress {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

pub struct ImageStore {
    root: PathBuf,
    client: RegistryClient,
    /// Keep the layers' owners (possible as root only).
    chown: bool,
    /// Serialises work on one reference or one layer: each is pulled once however many
    /// creates ask for it at the same time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pulls: Mutex<HashMap<String, Arc<PullProgress>>>,
    /// Pulls hold it shared, eviction exclusively: a layer just unpacked for an image whose
    /// record is not written yet is never taken for unused.
    gc: tokio::sync::RwLock<()>,
}

fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    if reference::is_sha256_digest(digest) {
        Ok(&digest["sha256:".len()..])
    } else {
        Err(ImageError::Unsupported(format!(
            "digest {digest:?} is not sha256"
        )))
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

pub(crate) fn verify_digest(expected: &str, data: &[u8]) -> Result<(), ImageError> {
    let got = format!("sha256:{}", sha256_hex(data));
    if got == expected {
        Ok(())
    } else {
        Err(ImageError::DigestMismatch {
            expected: expected.to_owned(),
            got,
        })
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ImageStore {
    pub fn new(
        state_dir: &Path,
        options: RegistryOptions,
        chown: bool,
    ) -> Result<Self, ImageError> {
        let root = state_dir.join("images");
        for sub in ["layers", "images", "refs", "tmp"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        // Downloads cut short by a crash.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for entry in entries.flatten() {
                let _ = remove_path(&entry.path());
            }
        }
        Ok(Self {
            client: RegistryClient::new(options)?,
            root,
            chown,
            locks: Mutex::new(HashMap::new()),
            pulls: Mutex::new(HashMap::new()),
            gc: tokio::sync::RwLock::new(()),
        })
    }

    /// The unpacked directory of a layer.
    pub fn layer_dir(&self, digest: &str) -> PathBuf {
        self.root
            .join("layers")
            .join(digest.strip_prefix("sha256:").unwrap_or(digest))
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(key.to_owned()).or_default().clone()
    }

    /// Progress of the first pull of `image`, while one runs.
    pub fn progress(&self, image: &str) -> Option<(u64, u64)> {
        let key = Reference::parse(image)?.to_string();
        let pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        let p = pulls.get(&key)?;
        Some((
            p.done.load(Ordering::Relaxed),
            p.total.load(Ordering::Relaxed),
        ))
    }

    fn ref_path(&self, key: &str) -> PathBuf {
        self.root.join("refs").join(sha256_hex(key.as_bytes()))
    }

    fn record_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .root
            .join("images")
            .join(format!("{}.json", digest_hex(digest)?)))
    }

    /// The cached image `key` resolved to, when every layer of it is still there.
    fn cached(&self, key: &str) -> Option<ImageRecord> {
        let digest = std::fs::read_to_string(self.ref_path(key)).ok()?;
        let record = self.read_record(digest.trim())?;
        record
            .layers
            .iter()
            .all(|l| self.layer_dir(&l.digest).is_dir())
            .then_some(record)
    }

    fn read_record(&self, digest: &str) -> Option<ImageRecord> {
        let text = std::fs::read(self.record_path(digest).ok()?).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Every cached image.
    pub fn list(&self) -> Vec<ImageRecord> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.root.join("images")) {
            for entry in entries.flatten() {
                if let Some(record) = std::fs::read(entry.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ImageRecord>(&b).ok())
                {
                    out.push(record);
                }
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        out
    }

    /// The image `image` names, pulled now unless the cache has it.
    pub async fn ensure(&self, image: &str) -> Result<ImageRecord, ImageError> {
        let reference = Reference::parse(image)
            .ok_or_else(|| ImageError::InvalidReference(image.to_owned()))?;
        let key = reference.to_string();
        let _no_gc = self.gc.read().await;
        let lock = self.lock_for(&format!("ref {key}"));
        let _held = lock.lock().await;
        if let Some(record) = self.cached(&key) {
            return Ok(record);
        }
        let progress = Arc::new(PullProgress::default());
        self.pulls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), progress.clone());
        let result = self.pull(&reference, &key, &progress).await;
        self.pulls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        result
    }

    async fn pull(
        &self,
        reference: &Reference,
        key: &str,
        progress: &PullProgress,
    ) -> Result<ImageRecord, ImageError> {
        let (digest, manifest) = self.resolve(reference).await?;
        let config_desc = manifest
            .config
            .ok_or_else(|| ImageError::Unsupported("the manifest names no image config".into()))?;
        let layers = manifest.layers.unwrap_or_default();
        let config_blob = self
            .client
            .small_blob(reference, &config_desc.digest)
            .await?;
        let config: ConfigBlob = serde_json::from_slice(&config_blob)
            .map_err(|e| ImageError::Registry(format!("image config: {e}")))?;
        progress
            .total
            .store(layers.iter().map(|l| l.size).sum(), Ordering::Relaxed);
        let pulls = layers
            .iter()
            .map(|layer| self.ensure_layer(reference, layer, progress));
        futures::future::try_join_all(pulls).await?;
        let record = ImageRecord {
            reference: key.to_owned(),
            digest: digest.clone(),
            layers: layers
                .iter()
                .map(|l| LayerRecord {
                    digest: l.digest.clone(),
                    size: l.size,
                })
                .collect(),
            config: config.config.unwrap_or_default(),
            pulled_at: now_secs(),
        };
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| ImageError::Registry(format!("image record: {e}")))?;
        write_atomic(&self.root, &self.record_path(&digest)?, &json)?;
        write_atomic(&self.root, &self.ref_path(key), digest.as_bytes())?;
        tracing::info!(image = %key, %digest, bytes = record.size(), "image pulled");
        Ok(record)
    }

    /// The manifest for this machine and its digest, through an index if there is one;
    /// every document's digest is checked against what named it.
    async fn resolve(&self, reference: &Reference) -> Result<(String, AnyManifest), ImageError> {
        let (body, _) = self.client.manifest(reference, reference.target()).await?;
        let digest = format!("sha256:{}", sha256_hex(&body));
        if let Some(pinned) = &reference.digest {
            verify_digest(pinned, &body)?;
        }
        let parsed: AnyManifest = serde_json::from_slice(&body)
            .map_err(|e| ImageError::Registry(format!("manifest of {reference}: {e}")))?;
        let Some(entries) = &parsed.manifests else {
            return Ok((digest, parsed));
        };
        let entry = manifest::pick_platform(entries).ok_or_else(|| {
            let (arch, _) = manifest::this_platform();
            ImageError::Unsupported(format!("image {reference} has no linux/{arch} variant"))
        })?;
        let (body, _) = self.client.manifest(reference, &entry.digest).await?;
        verify_digest(&entry.digest, &body)?;
        let parsed: AnyManifest = serde_json::from_slice(&body)
            .map_err(|e| ImageError::Registry(format!("manifest of {reference}: {e}")))?;
        if parsed.manifests.is_some() {
            return Err(ImageError::Unsupported(format!(
                "image {reference}: an index inside an index"
            )));
        }
        Ok((entry.digest.clone(), parsed))
    }

    /// Downloads and unpacks one layer unless the cache has it (once, however many ask).
    async fn ensure_layer(
        &self,
        reference: &Reference,
        layer: &Descriptor,
        progress: &PullProgress,
    ) -> Result<(), ImageError> {
        let hex = digest_hex(&layer.digest)?.to_owned();
        let lock = self.lock_for(&format!("layer {hex}"));
        let _held = lock.lock().await;
        let dir = self.layer_dir(&layer.digest);
        if dir.is_dir() {
            progress.done.fetch_add(layer.size, Ordering::Relaxed);
            return Ok(());
        }
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let blob = self.root.join("tmp").join(format!("{hex}.{unique}.blob"));
        let partial = self.root.join("tmp").join(format!("{hex}.{unique}.dir"));
        let result = async {
            self.client
                .blob_to_file(reference, &layer.digest, &blob, &progress.done)
                .await?;
            std::fs::create_dir(&partial)?;
            let (blob_path, partial_path, chown) = (blob.clone(), partial.clone(), self.chown);
            tokio::task::spawn_blocking(move || unpack::unpack(&blob_path, &partial_path, chown))
                .await
                .map_err(|e| ImageError::Registry(format!("unpack task: {e}")))??;
            std::fs::rename(&partial, &dir)?;
            Ok(())
        }
        .await;
        let _ = std::fs::remove_file(&blob);
        if result.is_err() {
            let _ = remove_path(&partial);
        }
        result
    }

    /// Removes cached images beyond `limit` bytes, least recently pulled first, except
    /// those in `in_use` (manifest digests); then layers no remaining image names.
    pub async fn evict(&self, limit: u64, in_use: &HashSet<String>) -> usize {
        let _exclusive = self.gc.write().await;
        let mut images = self.list();
        let mut total: u64 = images.iter().map(ImageRecord::size).sum();
        if limit == 0 || total <= limit {
            return 0;
        }
        images.sort_by_key(|i| i.pulled_at);
        let mut removed = 0;
        let mut kept = Vec::new();
        for image in images {
            if total > limit && !in_use.contains(&image.digest) {
                if let Ok(path) = self.record_path(&image.digest) {
                    let _ = std::fs::remove_file(path);
                }
                let _ = std::fs::remove_file(self.ref_path(&image.reference));
                total = total.saturating_sub(image.size());
                removed += 1;
                tracing::info!(image = %image.reference, "evicted from the image cache");
            } else {
                kept.push(image);
            }
        }
        let needed: HashSet<String> = kept
            .iter()
            .flat_map(|i| {
                i.layers
                    .iter()
                    .map(|l| digest_hex(&l.digest).unwrap_or("").to_owned())
            })
            .collect();
        if let Ok(entries) = std::fs::read_dir(self.root.join("layers")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !needed.contains(&name) {
                    let _ = remove_path(&entry.path());
                }
            }
        }
        removed
    }
}

/// Writes `data` to `path` through a temporary file in `root/tmp` and a rename.
fn write_atomic(root: &Path, path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let tmp = root
        .join("tmp")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn remove_path(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    }
}
