//! `pico exec --detach`, `pico ps`, `pico logs [-f]` and `pico kill`: background processes
//! of a session over the HTTP API (`…/commands` with `background`, `…/processes`).

use std::io::Write;

use anyhow::{Context, bail};
use pico_wire::{ProcessList, StartedProcess};
use serde_json::Value;
use uuid::Uuid;

use crate::api::{Client, api_error};
use crate::cli::Output;
use crate::commands::{emit, table};
use crate::http_exec::{Body, read_head, request};

/// `pico exec --detach ID -- COMMAND`: prints the pid.
pub async fn start(client: &Client, id: Uuid, command: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({"command": command, "background": true});
    let started: StartedProcess = client
        .call("POST", &format!("/v1/sessions/{id}/commands"), Some(&body))
        .await?;
    emit(&format!("{}\n", started.pid))?;
    Ok(())
}

/// `pico ps ID`.
pub async fn list(client: &Client, id: Uuid, output: Output) -> anyhow::Result<()> {
    let list: ProcessList = client
        .call("GET", &format!("/v1/sessions/{id}/processes"), None::<&()>)
        .await?;
    if output == Output::Json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&list)?))?;
        return Ok(());
    }
    if list.processes.is_empty() {
        eprintln!("no background processes");
        return Ok(());
    }
    let mut rows = vec![[
        "PID".to_owned(),
        "STATE".to_owned(),
        "EXIT".to_owned(),
        "STARTED".to_owned(),
        "OUTPUT".to_owned(),
        "COMMAND".to_owned(),
    ]];
    for p in &list.processes {
        rows.push([
            p.pid.to_string(),
            format!("{:?}", p.state).to_lowercase(),
            p.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            p.started_at.clone(),
            (p.stdout_bytes + p.stderr_bytes).to_string(),
            p.command.clone(),
        ]);
    }
    emit(&table(&rows))?;
    Ok(())
}

/// `pico kill ID PID [-s SIGNAL]`.
pub async fn kill(client: &Client, id: Uuid, pid: i32, signal: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({"signal": signal});
    let _: Value = client
        .call(
            "POST",
            &format!("/v1/sessions/{id}/processes/{pid}/signal"),
            Some(&body),
        )
        .await?;
    Ok(())
}

/// `pico logs ID PID [-f]`: the output as it was printed; with `-f` until the process ends,
/// then its exit code becomes pico's.
pub async fn logs(
    client: &Client,
    id: Uuid,
    pid: i32,
    offset: u64,
    follow: bool,
) -> anyhow::Result<i32> {
    let path = format!("/v1/sessions/{id}/processes/{pid}/output?offset={offset}&follow={follow}");
    let mut conn = request(client, "GET", &path, "", &[], 0).await?;
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
            if follow {
                bail!("the server ended the output before the process ended");
            }
            return Ok(0);
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(at) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            let event: Value =
                serde_json::from_slice(&line).context("malformed output line from the server")?;
            if let Some(text) = event["stdout"].as_str() {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            } else if let Some(text) = event["stderr"].as_str() {
                err.write_all(text.as_bytes())?;
                err.flush()?;
            } else if let Some(n) = event["dropped"].as_u64() {
                eprintln!(
                    "pico: {n} bytes of {} are no longer kept",
                    event["stream"].as_str().unwrap_or("output")
                );
            } else if let Some(exit) = event.get("exit") {
                let code = exit["exitCode"].as_i64().unwrap_or(1);
                return Ok(i32::try_from(code).unwrap_or(1));
            }
        }
    }
}
