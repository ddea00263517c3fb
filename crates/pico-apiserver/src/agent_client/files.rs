//! Files through the agent's SFTP subsystem on the session's shared connection: stat, list,
//! streamed reads from an offset, uploads into a temporary file renamed into place, deletes.
//! The agent's sftp server runs as the sandbox user, so the sandbox's view is all it sees.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use pico_wire::{FileInfo, FileType};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode as SftpStatus};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Most entries a directory listing returns (a listing is one response held in memory).
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("no such file or directory: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    Exists(String),
    #[error("directory is not empty: {0}")]
    NotEmpty(String),
    #[error("permission denied: {0}")]
    Denied(String),
    #[error("{0}")]
    TooLarge(String),
    /// The sandbox refused the operation (a name too long, not a directory, …).
    #[error("{0}")]
    Refused(String),
    #[error("the upload body failed: {0}")]
    Body(String),
    #[error("SFTP: {0}")]
    Sftp(String),
}

pub struct Sftp {
    session: SftpSession,
    broken: AtomicBool,
}

fn attrs_kind(attrs: &FileAttributes) -> FileType {
    match attrs.permissions.unwrap_or(0) & 0o170_000 {
        0o040_000 => FileType::Directory,
        0o120_000 => FileType::Symlink,
        _ => FileType::File,
    }
}

fn permissions(mode: u32) -> String {
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    bits.iter()
        .map(|(bit, c)| if mode & bit != 0 { *c } else { '-' })
        .collect()
}

fn rfc3339(secs: u32) -> String {
    time::OffsetDateTime::from_unix_timestamp(i64::from(secs))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The last path component, or the path itself for `/` and the like.
pub fn base_name(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(path)
        .to_owned()
}

pub fn file_info(path: &str, attrs: &FileAttributes) -> FileInfo {
    FileInfo {
        name: base_name(path),
        path: path.to_owned(),
        kind: attrs_kind(attrs),
        size: attrs.size.unwrap_or(0),
        permissions: permissions(attrs.permissions.unwrap_or(0)),
        modified_at: rfc3339(attrs.mtime.unwrap_or(0)),
    }
}

fn parent(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    let (dir, _) = trimmed.rsplit_once('/')?;
    Some(if dir.is_empty() { "/" } else { dir })
}

impl Sftp {
    pub async fn start(channel: russh::Channel<russh::client::Msg>) -> Result<Self, SftpError> {
        let config = russh_sftp::client::Config {
            max_concurrent_reads: 32,
            max_concurrent_writes: 32,
            max_write_packet_len: 60 * 1024,
            // A big upload's rename and a slow disk must not look like a dead agent.
            request_timeout_secs: 60,
            ..Default::default()
        };
        Ok(Self {
            session: SftpSession::new_with_config(channel.into_stream(), config).await?,
            broken: AtomicBool::new(false),
        })
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Maps an SFTP failure; anything but a status reply means the subsystem is unusable.
    fn error(&self, path: &str, err: SftpError) -> FileError {
        match err {
            SftpError::Status(status) => match status.status_code {
                SftpStatus::NoSuchFile => FileError::NotFound(path.to_owned()),
                SftpStatus::PermissionDenied => FileError::Denied(path.to_owned()),
                _ => FileError::Refused(format!("{path}: {}", status.error_message)),
            },
            other => {
                self.broken.store(true, Ordering::Relaxed);
                FileError::Sftp(other.to_string())
            }
        }
    }

    /// The file or directory at `path`, following symlinks.
    pub async fn stat(&self, path: &str) -> Result<FileInfo, FileError> {
        let attrs = self
            .session
            .metadata(path)
            .await
            .map_err(|e| self.error(path, e))?;
        Ok(file_info(path, &attrs))
    }

    pub async fn exists(&self, path: &str) -> Result<bool, FileError> {
        match self.session.symlink_metadata(path).await {
            Ok(_) => Ok(true),
            Err(e) => match self.error(path, e) {
                FileError::NotFound(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    pub async fn list(&self, path: &str) -> Result<Vec<FileInfo>, FileError> {
        let dir = self
            .session
            .read_dir(path)
            .await
            .map_err(|e| self.error(path, e))?;
        let prefix = path.trim_end_matches('/');
        let mut entries: Vec<FileInfo> = dir
            .take(MAX_ENTRIES)
            .map(|entry| {
                let name = entry.file_name();
                let full = if prefix.is_empty() {
                    format!("/{name}")
                } else {
                    format!("{prefix}/{name}")
                };
                let mut info = file_info(&full, &entry.metadata());
                info.name = name;
                info
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The file's bytes from `offset`, at most `len` of them, as they are read.
    pub async fn read(
        &self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static, FileError> {
        let mut file = self
            .session
            .open(path)
            .await
            .map_err(|e| self.error(path, e))?;
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| FileError::Sftp(e.to_string()))?;
        }
        let reader = tokio::io::AsyncReadExt::take(file, len);
        Ok(tokio_util::io::ReaderStream::with_capacity(
            reader,
            256 * 1024,
        ))
    }

    /// Makes `path` and its missing parents.
    pub async fn create_dirs(&self, path: &str) -> Result<(), FileError> {
        let mut missing = Vec::new();
        let mut at = Some(path);
        while let Some(dir) = at.filter(|d| !d.is_empty() && *d != "/") {
            if self.exists(dir).await? {
                break;
            }
            missing.push(dir.to_owned());
            at = parent(dir);
        }
        for dir in missing.iter().rev() {
            if let Err(e) = self.session.create_dir(dir.as_str()).await {
                // A concurrent upload may have made it meanwhile.
                if !self.exists(dir).await? {
                    return Err(self.error(dir, e));
                }
            }
        }
        Ok(())
    }

    /// Writes `body` to a temporary file beside `path` and renames it into place, so a
    /// failed or oversized upload leaves nothing behind.
    pub async fn upload<S, E>(
        &self,
        path: &str,
        body: S,
        overwrite: bool,
        max_size: u64,
    ) -> Result<FileInfo, FileError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        if let Some(dir) = parent(path) {
            self.create_dirs(dir).await?;
        }
        if !overwrite && self.exists(path).await? {
            return Err(FileError::Exists(path.to_owned()));
        }
        // Beside the target (a rename never crosses file systems), whatever its name's length.
        let unique = uuid::Uuid::new_v4().simple();
        let temp = match parent(path) {
            Some(dir) => format!("{}/.pico-upload-{unique}", dir.trim_end_matches('/')),
            None => format!(".pico-upload-{unique}"),
        };
        let file = self
            .session
            .open_with_flags(
                temp.as_str(),
                OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE,
            )
            .await
            .map_err(|e| self.error(path, e))?;
        let written = self.write_all(file, body, max_size).await;
        if let Err(err) = written {
            let _ = self.session.remove_file(temp.as_str()).await;
            return Err(err);
        }
        if let Err(err) = self.rename_into_place(&temp, path, overwrite).await {
            let _ = self.session.remove_file(temp.as_str()).await;
            return Err(err);
        }
        self.stat(path).await
    }

    async fn write_all<S, E>(
        &self,
        mut file: russh_sftp::client::fs::File,
        mut body: S,
        max_size: u64,
    ) -> Result<(), FileError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let mut total: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| FileError::Body(e.to_string()))?;
            total += chunk.len() as u64;
            if max_size > 0 && total > max_size {
                return Err(FileError::TooLarge(format!(
                    "upload is larger than {max_size} bytes"
                )));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| FileError::Sftp(e.to_string()))?;
        }
        file.shutdown()
            .await
            .map_err(|e| FileError::Sftp(e.to_string()))
    }

    /// SFTP's rename refuses an existing target: that is `overwrite=false` done atomically;
    /// with `overwrite` the old file is removed first.
    async fn rename_into_place(
        &self,
        temp: &str,
        path: &str,
        overwrite: bool,
    ) -> Result<(), FileError> {
        match self.session.rename(temp, path).await {
            Ok(()) => Ok(()),
            Err(first) => {
                if !self.exists(path).await? {
                    return Err(self.error(path, first));
                }
                if !overwrite {
                    return Err(FileError::Exists(path.to_owned()));
                }
                self.session
                    .remove_file(path)
                    .await
                    .map_err(|e| self.error(path, e))?;
                self.session
                    .rename(temp, path)
                    .await
                    .map_err(|e| self.error(path, e))
            }
        }
    }

    /// Removes a file, a symlink, an empty directory, or with `recursive` a whole tree.
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<(), FileError> {
        let attrs = self
            .session
            .symlink_metadata(path)
            .await
            .map_err(|e| self.error(path, e))?;
        if attrs_kind(&attrs) != FileType::Directory {
            return self
                .session
                .remove_file(path)
                .await
                .map_err(|e| self.error(path, e));
        }
        if recursive {
            // Depth-first without recursion: directories are removed after their contents.
            let mut stack = vec![(path.to_owned(), false)];
            while let Some((dir, emptied)) = stack.pop() {
                if emptied {
                    self.session
                        .remove_dir(dir.as_str())
                        .await
                        .map_err(|e| self.error(&dir, e))?;
                    continue;
                }
                stack.push((dir.clone(), true));
                let entries = self
                    .session
                    .read_dir(dir.as_str())
                    .await
                    .map_err(|e| self.error(&dir, e))?;
                for entry in entries {
                    let child = format!("{}/{}", dir.trim_end_matches('/'), entry.file_name());
                    if attrs_kind(&entry.metadata()) == FileType::Directory {
                        stack.push((child, false));
                    } else {
                        self.session
                            .remove_file(child.as_str())
                            .await
                            .map_err(|e| self.error(&child, e))?;
                    }
                }
            }
            return Ok(());
        }
        match self.session.remove_dir(path).await {
            Ok(()) => Ok(()),
            Err(e) => match self.error(path, e) {
                FileError::Refused(_) => Err(FileError::NotEmpty(path.to_owned())),
                other => Err(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_and_names() {
        assert_eq!(permissions(0o100_644), "rw-r--r--");
        assert_eq!(permissions(0o755), "rwxr-xr-x");
        assert_eq!(base_name("a/b/c.txt"), "c.txt");
        assert_eq!(base_name("dir/"), "dir");
        assert_eq!(parent("a/b/c"), Some("a/b"));
        assert_eq!(parent("/c"), Some("/"));
        assert_eq!(parent("c"), None);
    }
}
