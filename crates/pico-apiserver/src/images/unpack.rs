//! Unpacks one layer tarball into a directory overlayfs can use as a lower layer, safely:
//! no entry lands outside the directory (`..` and paths through symlinks are refused, so a
//! symlink planted by the layer is never followed), device files are skipped, and OCI
//! whiteouts become overlayfs whiteouts (0/0 character devices, opaque directories).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::ImageError;
use crate::sys;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks the (gzip or plain) tarball `blob` into `dest`, which must exist and be empty.
/// Returns the bytes of file data written. `chown`: keep the entries' owners (as root).
pub fn unpack(blob: &Path, dest: &Path, chown: bool) -> Result<u64, ImageError> {
    let mut file = File::open(blob)?;
    let mut magic = [0u8; 4];
    let read = file.read(&mut magic)?;
    let file = File::open(blob)?;
    let reader: Box<dyn Read> = match &magic[..read] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(io::BufReader::new(file))),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            return Err(ImageError::Unsupported(
                "zstd-compressed layers are not supported; push the image with gzip layers".into(),
            ));
        }
        _ => Box::new(io::BufReader::new(file)),
    };
    unpack_reader(reader, dest, chown)
}

/// A directory's mode and time, applied after its entries are written (a read-only
/// directory must not stop its own entries).
struct DirAttrs {
    path: PathBuf,
    mode: u32,
    mtime: u64,
}

pub fn unpack_reader(reader: impl Read, dest: &Path, chown: bool) -> Result<u64, ImageError> {
    let mut archive = tar::Archive::new(reader);
    let mut written = 0u64;
    let mut dirs = Vec::new();
    let bad = |e: io::Error| ImageError::BadLayer(format!("reading the layer: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.into_owned();
        let Some(rel) = clean(&raw)? else { continue };
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let owner = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let parent = safe_parent(dest, &rel)?;
        if name == OPAQUE {
            sys::set_opaque(&parent)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            let target = parent.join(hidden);
            remove_any(&target)?;
            sys::make_whiteout(&target)?;
            continue;
        }
        let path = parent.join(&name);
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        remove_any(&path)?;
                        fs::create_dir(&path)?;
                    }
                    Err(_) => fs::create_dir(&path)?,
                }
                dirs.push(DirAttrs {
                    path: path.clone(),
                    mode,
                    mtime,
                });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_any(&path)?;
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                written += io::copy(&mut entry, &mut out)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
                set_mtime(&path, mtime);
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(bad)?.ok_or_else(|| {
                    ImageError::BadLayer(format!("{}: symlink without target", rel.display()))
                })?;
                remove_any(&path)?;
                // Never followed here (see `safe_parent`); inside the sandbox it resolves
                // against the sandbox's own root.
                std::os::unix::fs::symlink(&target, &path)?;
                set_mtime(&path, mtime);
            }
            tar::EntryType::Link => {
                let target = entry.link_name().map_err(bad)?.ok_or_else(|| {
                    ImageError::BadLayer(format!("{}: hard link without target", rel.display()))
                })?;
                let target_rel = clean(&target)?.ok_or_else(|| {
                    ImageError::BadLayer(format!("{}: hard link to the root", rel.display()))
                })?;
                let source = safe_parent(dest, &target_rel)?
                    .join(target_rel.file_name().unwrap_or_default());
                match fs::symlink_metadata(&source) {
                    Ok(meta) if !meta.is_dir() => {}
                    _ => {
                        return Err(ImageError::BadLayer(format!(
                            "{}: hard link to {}, which the layer does not hold",
                            rel.display(),
                            target_rel.display()
                        )));
                    }
                }
                remove_any(&path)?;
                // linkat without AT_SYMLINK_FOLLOW: a symlink is linked, not followed.
                fs::hard_link(&source, &path)?;
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                tracing::debug!(path = %rel.display(), "skipping a device file of a layer");
                continue;
            }
            _ => continue,
        }
        if chown {
            let (uid, gid) = (u32::try_from(owner.0).ok(), u32::try_from(owner.1).ok());
            std::os::unix::fs::lchown(&path, uid, gid)?;
        }
    }
    // Deepest first, so a parent's mode never stops a child's.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
    for dir in dirs {
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(dir.mode))?;
        set_mtime(&dir.path, dir.mtime);
    }
    Ok(written)
}

/// The entry's path relative to the layer root; `None` for the root itself. `..` anywhere
/// is refused (a well-formed layer never needs it).
fn clean(raw: &Path) -> Result<Option<PathBuf>, ImageError> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ImageError::BadLayer(format!(
                    "entry {} leaves the layer (`..`)",
                    raw.display()
                )));
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// The directory that will hold `rel`, creating missing parents; refuses a parent that is
/// a symlink (or anything but a directory), so no write is ever redirected out of `dest`.
fn safe_parent(dest: &Path, rel: &Path) -> Result<PathBuf, ImageError> {
    let mut current = dest.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(current);
    };
    for part in parent.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ImageError::BadLayer(format!(
                    "entry {} goes through the symlink {}",
                    rel.display(),
                    current.strip_prefix(dest).unwrap_or(&current).display()
                )));
            }
            Ok(_) => {
                return Err(ImageError::BadLayer(format!(
                    "entry {} goes through a file that is not a directory",
                    rel.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current)?;
                fs::set_permissions(&current, fs::Permissions::from_mode(0o755))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(current)
}

/// Removes whatever `path` is (a directory with its contents); missing is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mtime(path: &Path, mtime: u64) {
    let time = filetime::FileTime::from_unix_time(i64::try_from(mtime).unwrap_or(0), 0);
    let _ = filetime::set_symlink_file_times(path, time, time);
}
