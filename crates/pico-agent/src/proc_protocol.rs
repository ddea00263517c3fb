//! The `pico-processes` subsystem: how the API server reaches the [`ProcTable`] over its SSH
//! connection. Only a key marked `pico-server` in authorized_keys may open it.
//!
//! One request per channel: the client sends one JSON line (`{"op": "start"|"list"|"get"|
//! "output"|"stdin"|"signal", …}`); for `stdin` the bytes to write follow, up to EOF. The agent
//! answers one line, `{"ok": value}` or `{"error": {"code", "message"}}`; for `output` the
//! NDJSON events of DESIGN.md §10 (with byte offsets) follow until the process is done (or,
//! without `follow`, until what was retained is sent), then the channel closes. A client that
//! closes the channel stops a follow.

use std::sync::Arc;

use russh::Channel;
use russh::server::Msg;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::proc_table::{Proc, ProcError, ProcTable};
use crate::sys;
use pico_wire::exec::incomplete_tail;

pub const SUBSYSTEM: &str = "pico-processes";
/// Longest request line.
const MAX_REQUEST: u64 = 64 * 1024;
/// Output bytes per event.
const EVENT_CHUNK: usize = 64 * 1024;
const STREAM_NAMES: [&str; 2] = ["stdout", "stderr"];

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Request {
    Start {
        command: String,
        max: usize,
    },
    List,
    Get {
        pid: i32,
    },
    #[serde(rename_all = "camelCase")]
    Output {
        pid: i32,
        #[serde(default)]
        offset: u64,
        #[serde(default)]
        stderr_offset: u64,
        #[serde(default)]
        follow: bool,
    },
    Stdin {
        pid: i32,
        #[serde(default)]
        close: bool,
    },
    Signal {
        pid: i32,
        signal: String,
    },
}

/// Serves one request on `channel`.
pub async fn serve(channel: Channel<Msg>, table: Arc<ProcTable>) {
    let (reader, mut writer) = tokio::io::split(channel.into_stream());
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    let read = (&mut reader)
        .take(MAX_REQUEST)
        .read_until(b'\n', &mut line)
        .await;
    let answer = match read {
        Ok(_) => match serde_json::from_slice::<Request>(&line) {
            Ok(request) => handle(request, &table, &mut reader, &mut writer).await,
            Err(e) => Err(ProcError::new(
                "INVALID_REQUEST",
                format!("bad request: {e}"),
            )),
        },
        Err(e) => Err(ProcError::new("INVALID_REQUEST", e.to_string())),
    };
    if let Err(err) = answer {
        let body = json!({"error": {"code": err.code, "message": err.message}});
        let _ = write_line(&mut writer, &body).await;
    }
    let _ = writer.shutdown().await;
}

async fn write_line(writer: &mut (impl AsyncWrite + Unpin), value: &Value) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    writer.write_all(&bytes).await
}

async fn ok(writer: &mut (impl AsyncWrite + Unpin), value: Value) -> Result<(), ProcError> {
    let _ = write_line(writer, &json!({ "ok": value })).await;
    Ok(())
}

pub fn describe(proc: &Proc) -> Value {
    let st = proc.state();
    json!({
        "processId": proc.id,
        "pid": proc.pid,
        "command": proc.command,
        "startedAtMs": proc.started_ms,
        "state": if st.exit.is_some() { "exited" } else { "running" },
        "exitCode": st.exit.map(|e| e.code),
        "stdoutBytes": st.streams[0].end(),
        "stderrBytes": st.streams[1].end(),
    })
}

async fn handle(
    request: Request,
    table: &Arc<ProcTable>,
    reader: &mut (impl AsyncRead + Unpin),
    writer: &mut (impl AsyncWrite + Unpin),
) -> Result<(), ProcError> {
    match request {
        Request::Start { command, max } => {
            let proc = table.start(&command, max)?;
            ok(writer, json!({"processId": proc.id, "pid": proc.pid})).await
        }
        Request::List => {
            let all: Vec<Value> = table.list().iter().map(|p| describe(p)).collect();
            ok(writer, Value::Array(all)).await
        }
        Request::Get { pid } => ok(writer, describe(&*table.get(pid)?)).await,
        Request::Signal { pid, signal } => {
            let number = signal_number(&signal).ok_or_else(|| {
                ProcError::new("INVALID_SIGNAL", format!("unknown signal {signal:?}"))
            })?;
            let proc = table.get(pid)?;
            if proc.state().exit.is_some() {
                return Err(ProcError::exited(pid));
            }
            sys::kill_group(proc.pid, number);
            ok(writer, json!({"pid": pid, "signal": signal})).await
        }
        Request::Stdin { pid, close } => {
            let proc = table.get(pid)?;
            let mut stdin = proc.stdin.lock().await;
            let Some(pipe) = stdin.as_mut() else {
                return Err(ProcError::new(
                    "PROCESS_EXITED",
                    format!("process {pid} has exited or its stdin is closed"),
                ));
            };
            let written = tokio::io::copy(reader, pipe).await.map_err(|e| {
                ProcError::new("PROCESS_EXITED", format!("process {pid} stdin: {e}"))
            })?;
            if close {
                *stdin = None;
            }
            ok(writer, json!({"written": written})).await
        }
        Request::Output {
            pid,
            offset,
            stderr_offset,
            follow,
        } => {
            let proc = table.get(pid)?;
            ok(writer, Value::Null).await?;
            stream_output(&proc, [offset, stderr_offset], follow, reader, writer).await;
            Ok(())
        }
    }
}

/// `TERM` or `SIGTERM` (upper case, as the API's schema says), from the known set.
fn signal_number(name: &str) -> Option<i32> {
    if name.bytes().any(|b| b.is_ascii_lowercase()) {
        return None;
    }
    pico_wire::signal::number(name)
}

/// Writes the retained output from `offsets` (stdout, stderr) and, with `follow`, what comes
/// after, until the process is finished; then the exit event. Without `follow` it stops at
/// the end the streams had when the request came.
async fn stream_output(
    proc: &Proc,
    mut offsets: [u64; 2],
    follow: bool,
    reader: &mut (impl AsyncRead + Unpin),
    writer: &mut (impl AsyncWrite + Unpin),
) {
    let mut changed = proc.subscribe();
    let limit = if follow {
        [u64::MAX; 2]
    } else {
        let st = proc.state();
        [st.streams[0].end(), st.streams[1].end()]
    };
    let mut probe = [0u8; 64];
    loop {
        changed.borrow_and_update();
        let (events, finished, exit) = next_events(proc, &mut offsets, limit);
        let sent_any = !events.is_empty();
        let mut out = Vec::new();
        for event in &events {
            let _ = serde_json::to_writer(&mut out, event);
            out.push(b'\n');
        }
        if sent_any && writer.write_all(&out).await.is_err() {
            return;
        }
        if sent_any {
            continue;
        }
        if finished || !follow {
            if let Some(exit) = exit.filter(|_| finished) {
                let status = if exit.code == 0 {
                    "completed"
                } else {
                    "failed"
                };
                let event = json!({"exit": {"status": status, "exitCode": exit.code,
                    "durationMs": exit.duration_ms}});
                let _ = write_line(writer, &event).await;
            }
            let _ = writer.flush().await;
            return;
        }
        let _ = writer.flush().await;
        tokio::select! {
            res = changed.changed() => if res.is_err() { return },
            // The client closed the channel: stop following.
            read = reader.read(&mut probe) => if matches!(read, Ok(0) | Err(_)) { return },
        }
    }
}

/// The events available now from `offsets` (advanced past them), up to `limit` per stream.
fn next_events(
    proc: &Proc,
    offsets: &mut [u64; 2],
    limit: [u64; 2],
) -> (Vec<Value>, bool, Option<crate::proc_table::Exit>) {
    let st = proc.state();
    let mut events = Vec::new();
    for (i, name) in STREAM_NAMES.iter().enumerate() {
        let room = limit[i].saturating_sub(offsets[i]);
        let max = usize::try_from(room).unwrap_or(usize::MAX).min(EVENT_CHUNK);
        let slice = st.streams[i].read(offsets[i], max);
        if slice.dropped > 0 {
            events.push(json!({"dropped": slice.dropped, "stream": name, "offset": offsets[i]}));
        }
        let mut data = slice.data;
        // Hold a cut character back until the rest arrives (or nothing more can).
        if !st.finished {
            let keep = incomplete_tail(&data);
            data.truncate(data.len() - keep);
        }
        offsets[i] = slice.offset;
        if !data.is_empty() {
            let end = slice.offset + data.len() as u64;
            events.push(
                json!({*name: String::from_utf8_lossy(&data), "offset": slice.offset, "end": end}),
            );
            offsets[i] = end;
        }
    }
    (events, st.finished, st.exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_with_or_without_sig() {
        assert_eq!(signal_number("TERM"), Some(libc::SIGTERM));
        assert_eq!(signal_number("SIGKILL"), Some(libc::SIGKILL));
        assert_eq!(signal_number("term"), None);
        assert_eq!(signal_number("2"), None);
        assert_eq!(signal_number("NOPE"), None);
    }
}
