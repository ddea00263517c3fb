//! The session commands (create, list, get, delete, extend, ssh-config) and how their
//! results are shown.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::ProgressBar;
use pico_wire::{CreateSessionRequest, Session};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::api::Client;
use crate::cli::{CreateArgs, Output};
use crate::config::Settings;
use crate::ssh::quote;
use crate::tunnel;

/// How long `create --wait` waits for the SSH server's banner.
const BANNER_TIMEOUT: Duration = Duration::from_secs(60);
/// OpenSSH pattern matching exactly the shape of a session id (a UUID).
pub const SESSION_HOST_PATTERN: &str = "????????-????-????-????-????????????";

/// Writes to stdout, turning a closed pipe (`pico list | head`) into an error, not a panic.
pub fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// A spinner on stderr, only when a person is watching it.
fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

pub async fn create(client: &Client, settings: &Settings, args: CreateArgs) -> anyhow::Result<()> {
    let metadata: Map<String, Value> = args
        .metadata
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let request = CreateSessionRequest {
        ttl: args.ttl,
        image: args.image,
        ssh_public_key: Some(settings.public_key()?),
        metadata: (!metadata.is_empty()).then_some(metadata),
        idle_timeout: args.idle_timeout,
        idle_action: args.idle_action,
    };
    let bar = spinner("starting session…");
    let result = async {
        let session = client.create(&request).await?;
        settings.pin_host_keys(&session.session_id.to_string(), &session.ssh.host_keys)?;
        if !args.no_wait {
            bar.set_message("waiting for its SSH server…");
            wait_for_ssh(client, session.session_id).await?;
        }
        anyhow::Ok(session)
    }
    .await;
    bar.finish_and_clear();
    let session = result?;
    match args.output {
        Output::Json => emit(&format!("{}\n", serde_json::to_string_pretty(&session)?))?,
        Output::Text => {
            emit(&format!("{}\n", session.session_id))?;
            if std::io::stderr().is_terminal() {
                eprintln!("connect with: pico ssh {}", session.session_id);
            }
        }
    }
    Ok(())
}

/// Waits until the sandbox's SSH server sends its banner through a tunnel.
async fn wait_for_ssh(client: &Client, id: Uuid) -> anyhow::Result<()> {
    let check = async {
        let mut stream = tunnel::open(client, id).await?;
        // Speak first, as every SSH client does: the server may hold the sandbox's bytes
        // back until the client has sent something.
        stream
            .write_all(b"SSH-2.0-pico_probe\r\n")
            .await
            .context("the tunnel closed at once")?;
        let mut banner = [0u8; 4];
        stream
            .read_exact(&mut banner)
            .await
            .context("the session's SSH server closed the connection")?;
        if &banner != b"SSH-" {
            bail!("the session's SSH server sent no SSH banner");
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(BANNER_TIMEOUT, check)
        .await
        .map_err(|_| anyhow::anyhow!("session {id} started but its SSH server did not answer"))?
}

pub async fn list(client: &Client, limit: u32, offset: u64, output: Output) -> anyhow::Result<()> {
    let list = client.list(limit, offset).await?;
    if output == Output::Json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&list)?))?;
        return Ok(());
    }
    if list.sessions.is_empty() {
        // A bare header reads like a failure; say what it means.
        if list.total == 0 {
            emit("no sessions\n")?;
        } else {
            emit(&format!(
                "no sessions at offset {} ({} in all)\n",
                list.offset, list.total
            ))?;
        }
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let mut rows = vec![[
        "ID".to_owned(),
        "STATUS".to_owned(),
        "CREATED".to_owned(),
        "EXPIRES".to_owned(),
        "IMAGE".to_owned(),
        "METADATA".to_owned(),
    ]];
    for s in &list.sessions {
        rows.push([
            s.session_id.to_string(),
            status(s).to_owned(),
            format!("{} ago", human(now - s.created_at)),
            format!("in {}", human(s.expires_at - now)),
            s.image.clone().unwrap_or_else(|| "-".into()),
            metadata_text(&s.metadata),
        ]);
    }
    emit(&table(&rows))?;
    if list.total > list.offset + list.sessions.len() as u64 {
        eprintln!(
            "showing {} of {} sessions; see more with --offset {}",
            list.sessions.len(),
            list.total,
            list.offset + list.sessions.len() as u64
        );
    }
    Ok(())
}

pub async fn images(client: &Client, output: Output) -> anyhow::Result<()> {
    let list = client.images().await?;
    if output == Output::Json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&list)?))?;
        return Ok(());
    }
    if list.images.is_empty() {
        emit("no cached images\n")?;
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let mut rows = vec![[
        "IMAGE".to_owned(),
        "DIGEST".to_owned(),
        "SIZE".to_owned(),
        "PULLED".to_owned(),
        "SESSIONS".to_owned(),
    ]];
    for image in &list.images {
        rows.push([
            image.reference.clone(),
            image.digest.chars().take(19).collect(),
            format!("{:.1} MB", image.size as f64 / 1e6),
            format!("{} ago", human(now - image.pulled_at)),
            image.sessions.to_string(),
        ]);
    }
    emit(&table(&rows))?;
    Ok(())
}

pub fn print_session(session: &Session, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        emit(&format!("{}\n", serde_json::to_string_pretty(session)?))?;
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let rfc = |t: OffsetDateTime| pico_wire::timestamp::format(t);
    let rows = [
        ["ID:", &session.session_id.to_string()],
        ["Status:", status(session)],
        [
            "Created:",
            &format!(
                "{} ({} ago)",
                rfc(session.created_at),
                human(now - session.created_at)
            ),
        ],
        [
            "Expires:",
            &format!(
                "{} (in {})",
                rfc(session.expires_at),
                human(session.expires_at - now)
            ),
        ],
        ["Last activity:", &rfc(session.last_activity_at)],
        ["TTL:", &format!("{}s", session.ttl)],
        [
            "Idle timeout:",
            &if session.idle_timeout == 0 {
                "off".to_owned()
            } else {
                format!("{}s", session.idle_timeout)
            },
        ],
        ["Image:", session.image.as_deref().unwrap_or("-")],
        ["Metadata:", &metadata_text(&session.metadata)],
        ["SSH user:", &session.ssh.username],
        [
            "Host key:",
            session.ssh.host_keys.first().map_or("-", String::as_str),
        ],
    ];
    let rows: Vec<[String; 2]> = rows
        .iter()
        .map(|[k, v]| [k.to_string(), v.to_string()])
        .collect();
    emit(&table(&rows))?;
    Ok(())
}

fn status(session: &Session) -> &'static str {
    match session.status {
        pico_wire::SessionStatus::Pending => "pending",
        pico_wire::SessionStatus::Running => "running",
        pico_wire::SessionStatus::Paused => "paused",
        pico_wire::SessionStatus::Failed => "failed",
        pico_wire::SessionStatus::Terminating => "terminating",
    }
}

fn metadata_text(metadata: &Map<String, Value>) -> String {
    if metadata.is_empty() {
        return "-".into();
    }
    metadata
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Left-aligned columns separated by two spaces.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `1h2m`, `45s`, `3d4h`: the two largest units.
fn human(d: time::Duration) -> String {
    let secs = d.whole_seconds().max(0);
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m{s}s"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// Prints (or, with `install`, installs) the `Host` stanza for OpenSSH and pins the host
/// keys of the caller's sessions.
pub async fn ssh_config(client: &Client, settings: &Settings, install: bool) -> anyhow::Result<()> {
    // The key must exist before OpenSSH is pointed at it.
    settings.key()?;
    match client.list(pico_wire::MAX_LIMIT, 0).await {
        Ok(list) => {
            for s in &list.sessions {
                settings.pin_host_keys(&s.session_id.to_string(), &s.ssh.host_keys)?;
            }
        }
        // Printing the stanza does not need the server; `pico proxy` pins keys as it connects.
        Err(err) => eprintln!("pico: warning: cannot pin host keys now: {err:#}"),
    }
    let exe = std::env::current_exe().context("cannot find pico's own path")?;
    let mut proxy = vec![quote(&exe.to_string_lossy())];
    if let Some(config) = &settings.explicit_config {
        proxy.push("--config".into());
        proxy.push(quote(&config.to_string_lossy()));
    }
    if let Some(ca) = settings
        .ca_cert
        .as_ref()
        .filter(|_| settings.explicit_ca_cert)
    {
        proxy.push("--ca-cert".into());
        proxy.push(quote(&ca.to_string_lossy()));
    }
    if settings.explicit_url {
        proxy.push("--url".into());
        proxy.push(quote(&settings.url));
    }
    proxy.push("proxy".into());
    if client.websocket {
        proxy.push("--websocket".into());
    }
    proxy.push("%h".into());
    let path = |p: std::path::PathBuf| format!("\"{}\"", p.display());
    let stanza = [
        "# pico sessions: `ssh sandbox@SESSION_ID` (printed by `pico ssh-config`)".to_owned(),
        format!("Host {SESSION_HOST_PATTERN}"),
        "    User sandbox".to_owned(),
        format!("    ProxyCommand {}", proxy.join(" ")),
        format!("    IdentityFile {}", path(settings.key_path())),
        "    IdentitiesOnly yes".to_owned(),
        format!(
            "    UserKnownHostsFile {}",
            path(settings.known_hosts_path())
        ),
        "    StrictHostKeyChecking yes".to_owned(),
        "    ServerAliveInterval 30".to_owned(),
    ];
    let stanza = stanza.join("\n") + "\n";
    if install {
        return crate::ssh_config::install(&stanza, &settings.key_path());
    }
    emit(&stanza)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human(time::Duration::seconds(45)), "45s");
        assert_eq!(human(time::Duration::seconds(3725)), "1h2m");
        assert_eq!(human(time::Duration::seconds(-5)), "0s");
        assert_eq!(human(time::Duration::days(2)), "2d0h");
    }

    #[test]
    fn tables_align() {
        let rows = [
            ["a".to_owned(), "b".to_owned()],
            ["long".to_owned(), "c".to_owned()],
        ];
        assert_eq!(table(&rows), "a     b\nlong  c\n");
    }
}
