//! The SFTP v3 file operations (russh-sftp `Handler`), run in the `sftp-server` child process
//! with the session user's identity, on paths relative to the home directory.

use std::collections::HashMap;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File as Entry, FileAttributes, Handle, Name, OpenFlags, Packet,
    Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;

use crate::sys;

/// Largest read or write we serve, matching OpenSSH's sftp-server (and our `limits` reply).
pub const MAX_IO: u32 = 256 * 1024 - 1024;
const MAX_HANDLES: usize = 4096;
/// Directory entries returned per READDIR reply.
const DIR_CHUNK: usize = 128;

enum OpenItem {
    File { file: File, append: bool },
    Dir { entries: std::vec::IntoIter<Entry> },
}

#[derive(Default)]
pub struct Sftp {
    handles: HashMap<String, OpenItem>,
    next_handle: u64,
}

/// An I/O error as an SFTP status with the OS message, so clients show why.
fn status(err: io::Error) -> StatusReply {
    let code = match err.kind() {
        io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    code.with_message(err.to_string())
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Success".to_owned(),
        language_tag: "en-US".to_owned(),
    }
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(if name.is_empty() { "." } else { name })
}

pub fn attributes(meta: &fs::Metadata) -> FileAttributes {
    FileAttributes {
        size: Some(meta.len()),
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
        permissions: Some(meta.mode()),
        atime: Some(u32::try_from(meta.atime()).unwrap_or(0)),
        mtime: Some(u32::try_from(meta.mtime()).unwrap_or(0)),
        ..Default::default()
    }
}

/// Applies SETSTAT attributes in the order OpenSSH's sftp-server does.
fn apply_attrs(path: &Path, file: Option<&File>, attrs: &FileAttributes) -> io::Result<()> {
    let opened;
    let file = match file {
        Some(file) => Some(file),
        None if attrs.size.is_some() => {
            opened = OpenOptions::new().write(true).open(path)?;
            Some(&opened)
        }
        None => None,
    };
    if let (Some(size), Some(file)) = (attrs.size, file) {
        file.set_len(size)?;
    }
    if let Some(mode) = attrs.permissions {
        let perms = fs::Permissions::from_mode(mode & 0o7777);
        match file {
            Some(file) => file.set_permissions(perms)?,
            None => fs::set_permissions(path, perms)?,
        }
    }
    if let (Some(atime), Some(mtime)) = (attrs.atime, attrs.mtime) {
        let at = |secs: u32| UNIX_EPOCH + Duration::from_secs(u64::from(secs));
        let times = FileTimes::new()
            .set_accessed(at(atime))
            .set_modified(at(mtime));
        match file {
            Some(file) => file.set_times(times)?,
            None => File::open(path)?.set_times(times)?,
        }
    }
    if attrs.uid.is_some() || attrs.gid.is_some() {
        std::os::unix::fs::lchown(path, attrs.uid, attrs.gid)?;
    }
    Ok(())
}

/// `.` and `..` resolved without touching the file system (for paths that do not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Reads the SFTP `string` fields of an extended request.
fn strings(mut data: &[u8], count: usize) -> Result<Vec<String>, StatusReply> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let bad = || StatusCode::BadMessage.with_message("malformed extended request");
        let (len, rest) = data.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = u32::from_be_bytes(*len) as usize;
        let (s, rest) = (rest.get(..len).ok_or_else(bad)?, &rest[len..]);
        out.push(String::from_utf8_lossy(s).into_owned());
        data = rest;
    }
    Ok(out)
}

fn u64s(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

impl Sftp {
    fn insert(&mut self, item: OpenItem) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(StatusCode::Failure.with_message("too many open handles"));
        }
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.handles.insert(handle.clone(), item);
        Ok(handle)
    }

    fn file(&self, handle: &str) -> Result<(&File, bool), StatusReply> {
        match self.handles.get(handle) {
            Some(OpenItem::File { file, append }) => Ok((file, *append)),
            _ => Err(StatusCode::Failure.with_message("invalid file handle")),
        }
    }
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        let mut version = Version::new();
        for (name, revision) in [
            ("posix-rename@openssh.com", "1"),
            ("statvfs@openssh.com", "2"),
            ("hardlink@openssh.com", "1"),
            ("fsync@openssh.com", "1"),
            ("limits@openssh.com", "1"),
        ] {
            version
                .extensions
                .insert(name.to_owned(), revision.to_owned());
        }
        Ok(version)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let mut options = OpenOptions::from(pflags);
        options.mode(attrs.permissions.map_or(0o666, |m| m & 0o7777));
        let file = options.open(path(&filename)).map_err(status)?;
        let append = pflags.contains(OpenFlags::APPEND);
        Ok(Handle {
            id,
            handle: self.insert(OpenItem::File { file, append })?,
        })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(_) => Ok(ok(id)),
            None => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let (mut file, _) = self.file(&handle)?;
        let len = len.min(MAX_IO);
        // Seek + read_to_end fills the vector without zeroing it first (256 KiB per request).
        let mut data = Vec::with_capacity(len as usize);
        file.seek(SeekFrom::Start(offset)).map_err(status)?;
        file.take(u64::from(len))
            .read_to_end(&mut data)
            .map_err(status)?;
        if data.is_empty() && len > 0 {
            return Err(StatusCode::Eof.into());
        }
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let (file, append) = self.file(&handle)?;
        let result = if append {
            (&*file).write_all(&data)
        } else {
            file.write_all_at(&data, offset)
        };
        result.map_err(status)?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, p: String) -> Result<Attrs, Self::Error> {
        let meta = fs::symlink_metadata(path(&p)).map_err(status)?;
        Ok(Attrs {
            id,
            attrs: attributes(&meta),
        })
    }

    async fn stat(&mut self, id: u32, p: String) -> Result<Attrs, Self::Error> {
        let meta = fs::metadata(path(&p)).map_err(status)?;
        Ok(Attrs {
            id,
            attrs: attributes(&meta),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let (file, _) = self.file(&handle)?;
        Ok(Attrs {
            id,
            attrs: attributes(&file.metadata().map_err(status)?),
        })
    }

    async fn setstat(
        &mut self,
        id: u32,
        p: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        apply_attrs(&path(&p), None, &attrs).map_err(status)?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let (file, _) = self.file(&handle)?;
        // Ownership changes need a path; /proc/self/fd names the open file.
        let fd_path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(file)
        ));
        apply_attrs(&fd_path, Some(file), &attrs).map_err(status)?;
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, p: String) -> Result<Handle, Self::Error> {
        let dir = path(&p);
        let mut entries = Vec::new();
        for entry in fs::read_dir(&dir).map_err(status)? {
            let entry = entry.map_err(status)?;
            let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            entries.push(Entry::new(
                entry.file_name().to_string_lossy(),
                attributes(&meta),
            ));
        }
        entries.sort_by(|a, b| a.filename.cmp(&b.filename));
        Ok(Handle {
            id,
            handle: self.insert(OpenItem::Dir {
                entries: entries.into_iter(),
            })?,
        })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let Some(OpenItem::Dir { entries }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("invalid directory handle"));
        };
        let files: Vec<Entry> = entries.by_ref().take(DIR_CHUNK).collect();
        if files.is_empty() {
            return Err(StatusCode::Eof.into());
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        fs::remove_file(path(&filename)).map_err(status)?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        p: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let mut builder = fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(
            &mut builder,
            attrs.permissions.map_or(0o777, |m| m & 0o7777),
        );
        builder.create(path(&p)).map_err(status)?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, p: String) -> Result<Status, Self::Error> {
        fs::remove_dir(path(&p)).map_err(status)?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, p: String) -> Result<Name, Self::Error> {
        let absolute = std::env::current_dir().map_err(status)?.join(path(&p));
        let real = fs::canonicalize(&absolute).unwrap_or_else(|_| normalize(&absolute));
        Ok(Name {
            id,
            files: vec![Entry::dummy(real.to_string_lossy())],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        // SFTP v3 rename must not replace an existing file (posix-rename does).
        if fs::symlink_metadata(path(&newpath)).is_ok() {
            return Err(StatusCode::Failure.with_message("target exists"));
        }
        fs::rename(path(&oldpath), path(&newpath)).map_err(status)?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, p: String) -> Result<Name, Self::Error> {
        let target = fs::read_link(path(&p)).map_err(status)?;
        Ok(Name {
            id,
            files: vec![Entry::dummy(target.to_string_lossy())],
        })
    }

    /// OpenSSH (and paramiko) send the link target first and the new link second, the reverse
    /// of the draft; russh-sftp names the fields after the draft.
    async fn symlink(
        &mut self,
        id: u32,
        linkpath: String,
        targetpath: String,
    ) -> Result<Status, Self::Error> {
        std::os::unix::fs::symlink(&linkpath, path(&targetpath)).map_err(status)?;
        Ok(ok(id))
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        data: Vec<u8>,
    ) -> Result<Packet, Self::Error> {
        match request.as_str() {
            "posix-rename@openssh.com" => {
                let names = strings(&data, 2)?;
                fs::rename(path(&names[0]), path(&names[1])).map_err(status)?;
                Ok(Packet::Status(ok(id)))
            }
            "hardlink@openssh.com" => {
                let names = strings(&data, 2)?;
                fs::hard_link(path(&names[0]), path(&names[1])).map_err(status)?;
                Ok(Packet::Status(ok(id)))
            }
            "fsync@openssh.com" => {
                let handle = strings(&data, 1)?;
                self.file(&handle[0])?.0.sync_all().map_err(status)?;
                Ok(Packet::Status(ok(id)))
            }
            "statvfs@openssh.com" => {
                let names = strings(&data, 1)?;
                let s = sys::statvfs(&path(&names[0])).map_err(status)?;
                let values = [
                    s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail,
                    s.fsid, s.flag, s.namemax,
                ];
                Ok(Packet::ExtendedReply(ExtendedReply {
                    id,
                    data: u64s(&values),
                }))
            }
            "limits@openssh.com" => {
                let max = u64::from(MAX_IO);
                let values = [u64::from(MAX_IO) + 1024, max, max, MAX_HANDLES as u64];
                Ok(Packet::ExtendedReply(ExtendedReply {
                    id,
                    data: u64s(&values),
                }))
            }
            _ => Err(StatusCode::OpUnsupported.with_message(format!("{request} is not supported"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dots_lexically() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(normalize(Path::new("/../..")), PathBuf::from("/"));
    }

    #[test]
    fn extended_strings_are_bounds_checked() {
        let mut data = Vec::new();
        data.extend_from_slice(&3u32.to_be_bytes());
        data.extend_from_slice(b"abc");
        assert_eq!(
            strings(&data, 1).expect("one string"),
            vec!["abc".to_owned()]
        );
        assert!(strings(&data, 2).is_err());
        assert!(strings(&[0, 0, 0, 9, b'x'], 1).is_err());
    }
}
