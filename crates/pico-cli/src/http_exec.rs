//! `pico exec`, `pico cp` (single files) and `pico run` over the server's HTTP API
//! (`/commands`, `/code`, `/files`): no SSH key needed, output streamed live as NDJSON,
//! the remote exit code passed through.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use pico_wire::{CommandStatus, StreamEvent};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

use crate::api::{Client, Conn, api_error};

/// The longest a command may run over the API (its `timeout` bound).
pub const MAX_TIMEOUT: u64 = pico_wire::exec::MAX_EXEC_TIMEOUT;
/// Exit code when the server killed the command at its timeout (as `timeout(1)`).
const TIMED_OUT: i32 = 124;
/// Most stdin sent with a command (the API's request body limit is 1 MiB).
const MAX_STDIN: u64 = 900 * 1024;

/// The response head of a streamed call: status, and whether the body is chunked.
pub(crate) struct Head {
    pub status: u16,
    chunked: bool,
    length: Option<u64>,
    json: bool,
}

pub(crate) async fn read_head(conn: &mut BufReader<Conn>) -> anyhow::Result<Head> {
    let mut head = Head {
        status: 0,
        chunked: false,
        length: None,
        json: false,
    };
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            bail!("the server closed the connection without an answer");
        }
        let text = line.trim_end();
        if text.is_empty() {
            return Ok(head);
        }
        if head.status == 0 {
            head.status = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .context("malformed HTTP response")?;
        } else if let Some((name, value)) = text.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("content-length") {
                head.length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("content-type") {
                head.json = value.starts_with("application/json");
            }
        }
    }
}

/// The body as a reader, whatever its framing.
pub(crate) struct Body {
    conn: BufReader<Conn>,
    chunked: bool,
    /// Bytes left in the current chunk (or in the whole body when not chunked).
    left: u64,
    done: bool,
}

impl Body {
    pub fn new(conn: BufReader<Conn>, head: &Head) -> Self {
        Self {
            conn,
            chunked: head.chunked,
            // A chunked body starts with a size line; otherwise the length bounds it.
            left: if head.chunked {
                0
            } else {
                head.length.unwrap_or(u64::MAX)
            },
            done: false,
        }
    }

    /// The next bytes of the body (empty at its end).
    pub async fn next(&mut self, buf: &mut [u8]) -> anyhow::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.chunked && self.left == 0 {
            let mut line = String::new();
            self.conn.read_line(&mut line).await?;
            if line.trim().is_empty() {
                line.clear();
                self.conn.read_line(&mut line).await?;
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16).context("malformed chunk")?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.conn.read(&mut buf[..want]).await?;
        if n == 0 {
            self.done = true;
        }
        self.left -= n as u64;
        if !self.chunked && self.left == 0 {
            self.done = true;
        }
        Ok(n)
    }

    pub async fn into_text(mut self) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        while out.len() < 1 << 20 {
            let n = self.next(&mut buf).await?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(out)
    }
}

pub(crate) async fn request(
    client: &Client,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
    length: u64,
) -> anyhow::Result<BufReader<Conn>> {
    let mut conn = client.dial().await?;
    let mut head = client.head(method, &client.path(path));
    head.push_str(&format!(
        "Connection: close\r\n{headers}Content-Length: {length}\r\n\r\n"
    ));
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    Ok(BufReader::with_capacity(256 * 1024, conn))
}

/// Stdin when it is not a terminal (`echo x | pico exec ID -- cat`), else none.
fn piped_stdin() -> anyhow::Result<Option<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut data = Vec::new();
    stdin.lock().take(MAX_STDIN + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_STDIN {
        bail!("stdin is larger than {MAX_STDIN} bytes; copy it with `pico cp` first");
    }
    Ok(Some(String::from_utf8_lossy(&data).into_owned()))
}

/// Posts `body` to `path` asking for NDJSON, prints the output as it comes, returns the
/// command's exit code.
async fn stream(client: &Client, path: &str, body: &serde_json::Value) -> anyhow::Result<i32> {
    let body = serde_json::to_vec(body)?;
    let conn = request(
        client,
        "POST",
        path,
        "Content-Type: application/json\r\nAccept: application/x-ndjson\r\n",
        &body,
        body.len() as u64,
    )
    .await?;
    let mut conn = conn;
    let head = read_head(&mut conn).await?;
    let mut body = Body::new(conn, &head);
    if !(200..300).contains(&head.status) {
        return Err(api_error(head.status, &body.into_text().await?));
    }
    let mut pending = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    loop {
        let n = body.next(&mut buf).await?;
        if n == 0 {
            bail!("the server ended the output without an exit status");
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(at) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            match serde_json::from_slice::<StreamEvent>(&line)
                .context("malformed output line from the server")?
            {
                StreamEvent::Stdout(text) => {
                    out.write_all(text.as_bytes())?;
                    out.flush()?;
                }
                StreamEvent::Stderr(text) => {
                    err.write_all(text.as_bytes())?;
                    err.flush()?;
                }
                StreamEvent::Exit(exit) => {
                    return Ok(match exit.status {
                        CommandStatus::Timeout => {
                            eprintln!(
                                "pico: the command was killed at its {MAX_TIMEOUT} s timeout"
                            );
                            TIMED_OUT
                        }
                        _ => exit.exit_code.unwrap_or(1),
                    });
                }
            }
        }
    }
}

/// `pico exec ID -- COMMAND`.
pub async fn exec(client: &Client, id: Uuid, command: &str) -> anyhow::Result<i32> {
    let mut body = serde_json::json!({"command": command, "timeout": MAX_TIMEOUT});
    if let Some(stdin) = piped_stdin()? {
        body["stdin"] = stdin.into();
    }
    stream(client, &format!("/v1/sessions/{id}/commands"), &body).await
}

/// `pico run ID --lang LANG FILE` (`-` reads the program from stdin).
pub async fn run_code(
    client: &Client,
    id: Uuid,
    language: &str,
    file: &Path,
) -> anyhow::Result<i32> {
    let code = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let body = serde_json::json!({"language": language, "code": code, "timeout": MAX_TIMEOUT});
    stream(client, &format!("/v1/sessions/{id}/code"), &body).await
}

/// `path` percent-encoded for a query string.
pub fn query(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Copies a local file into the session (parents made, an existing file replaced).
pub async fn upload(client: &Client, id: Uuid, local: &Path, remote: &str) -> anyhow::Result<()> {
    if local.is_dir() {
        bail!(
            "{} is a directory: copy it with `pico cp -r`",
            local.display()
        );
    }
    let mut file = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("cannot open {}", local.display()))?;
    let length = file.metadata().await?.len();
    let into_dir = remote.is_empty() || remote.ends_with('/') || is_dir(client, id, remote).await?;
    let remote = if into_dir {
        let name = local
            .file_name()
            .context("the local path has no file name")?
            .to_string_lossy();
        match remote.trim_end_matches('/') {
            "" if remote.starts_with('/') => format!("/{name}"),
            "" => name.into_owned(),
            dir => format!("{dir}/{name}"),
        }
    } else {
        remote.to_owned()
    };
    let path = format!(
        "/v1/sessions/{id}/files?path={}&overwrite=true",
        query(&remote)
    );
    let mut conn = request(
        client,
        "POST",
        &path,
        "Content-Type: application/octet-stream\r\n",
        b"",
        length,
    )
    .await?;
    copy_exact(&mut file, conn.get_mut(), length).await?;
    let head = read_head(&mut conn).await?;
    let body = Body::new(conn, &head);
    if !(200..300).contains(&head.status) {
        return Err(api_error(head.status, &body.into_text().await?));
    }
    Ok(())
}

/// Whether `remote` is a directory in the session (its listing is JSON, a file's bytes not).
async fn is_dir(client: &Client, id: Uuid, remote: &str) -> anyhow::Result<bool> {
    let path = format!("/v1/sessions/{id}/files?path={}", query(remote));
    let mut conn = request(client, "GET", &path, "Range: bytes=0-0\r\n", b"", 0).await?;
    let head = read_head(&mut conn).await?;
    Ok(head.status == 200 && head.json)
}

async fn copy_exact(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut Conn,
    length: u64,
) -> anyhow::Result<()> {
    let copied = tokio::io::copy(&mut from.take(length), to).await?;
    anyhow::ensure!(copied == length, "the local file changed while it was sent");
    to.flush().await?;
    Ok(())
}

/// Copies a file out of the session; written beside `local` and renamed when complete.
pub async fn download(client: &Client, id: Uuid, remote: &str, local: &Path) -> anyhow::Result<()> {
    crate::cp::check_local_target(local)?;
    let local = if local.is_dir() {
        let name = remote
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(remote);
        local.join(name)
    } else {
        local.to_path_buf()
    };
    let path = format!("/v1/sessions/{id}/files?path={}", query(remote));
    let mut conn = request(client, "GET", &path, "", b"", 0).await?;
    let head = read_head(&mut conn).await?;
    let mut body = Body::new(conn, &head);
    if head.status == 404 {
        let text = body.into_text().await?;
        if String::from_utf8_lossy(&text).contains("FILE_NOT_FOUND") {
            anyhow::bail!("{remote}: no such file or directory in the session");
        }
        return Err(api_error(head.status, &text));
    }
    if !(200..300).contains(&head.status) {
        return Err(api_error(head.status, &body.into_text().await?));
    }
    if head.json {
        bail!("{remote} is a directory in the session: use `pico cp -r`");
    }
    let partial = local.with_extension("pico-part");
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut buf = vec![0; 256 * 1024];
    let result = async {
        loop {
            let n = body.next(&mut buf).await?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).await?;
        }
        file.flush().await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(err) = result {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(err);
    }
    tokio::fs::rename(&partial, &local)
        .await
        .with_context(|| format!("cannot write {}", local.display()))
}
