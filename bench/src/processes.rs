//! `processes`: background processes over HTTP. Start-to-first-output latency (`POST
//! /commands` with `background`, then `GET …/output?follow=true` until the first stdout
//! event) and follow throughput of `yes`, against OpenSSH `ssh` through the tunnel in the
//! same run.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::client::percentile;
use crate::exec::{OpenSsh, summary};
use crate::http::Http;
use crate::server::Server;

const MIB: f64 = 1024.0 * 1024.0;

/// The NDJSON events of one followed output, read off a keep-alive connection.
struct Follow<'a> {
    http: &'a mut Http,
    buf: Vec<u8>,
    start: usize,
    ended: bool,
}

impl<'a> Follow<'a> {
    async fn open(http: &'a mut Http, path: &str) -> anyhow::Result<Self> {
        http.get_chunked(path).await?;
        Ok(Self {
            http,
            buf: Vec::with_capacity(256 * 1024),
            start: 0,
            ended: false,
        })
    }

    /// The next event; `None` once the answer has ended.
    async fn event(&mut self) -> anyhow::Result<Option<Value>> {
        loop {
            if let Some(n) = self.buf[self.start..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[self.start..self.start + n];
                self.start += n + 1;
                return Ok(Some(serde_json::from_slice(line)?));
            }
            if self.ended {
                anyhow::ensure!(self.start == self.buf.len(), "output ends mid-line");
                return Ok(None);
            }
            self.buf.drain(..self.start);
            self.start = 0;
            self.ended = !self.http.chunk(&mut self.buf).await?;
        }
    }

    /// Reads to the answer's end, so the connection can carry the next request.
    async fn drain(mut self) -> anyhow::Result<()> {
        while self.event().await?.is_some() {}
        Ok(())
    }
}

/// `POST …/commands` in the background; the process's pid.
async fn start(http: &mut Http, commands: &str, command: &str) -> anyhow::Result<i64> {
    let body = serde_json::json!({ "command": command, "background": true }).to_string();
    let (status, text) = http.call("POST", commands, &body).await?;
    anyhow::ensure!(status == 202, "background start answered {status}: {text}");
    let started: Value = serde_json::from_str(&text)?;
    started["pid"].as_i64().context("no pid")
}

pub async fn run(server: &Server, starts: usize, mib: u64, secs: u64) -> anyhow::Result<()> {
    let session = server.create_session().await?;
    let base = format!("/v1/sessions/{}", session.id);
    let commands = format!("{base}/commands");
    let mut http = Http::connect(server.addr()).await?;
    // The first calls open the server's connection to the agent; later ones reuse it.
    for _ in 0..5 {
        let pid = start(&mut http, &commands, "true").await?;
        Follow::open(
            &mut http,
            &format!("{base}/processes/{pid}/output?follow=true"),
        )
        .await?
        .drain()
        .await?;
    }

    let mut took = Vec::with_capacity(starts);
    for _ in 0..starts {
        let started = Instant::now();
        let pid = start(&mut http, &commands, "echo hi").await?;
        let path = format!("{base}/processes/{pid}/output?follow=true");
        let mut follow = Follow::open(&mut http, &path).await?;
        loop {
            let event = follow
                .event()
                .await?
                .context("output ended without stdout")?;
            if let Some(text) = event["stdout"].as_str() {
                took.push(started.elapsed());
                anyhow::ensure!(text == "hi\n", "unexpected stdout {text:?}");
                break;
            }
        }
        follow.drain().await?;
    }
    println!(
        "background `echo hi`: POST /commands {{\"background\":true}} to its first stdout event \
         on GET …/output?follow=true, one keep-alive client:"
    );
    println!("  {}", summary(&mut took));
    let openssh = OpenSsh::new(server, &session)?;
    let ssh_calls = (starts / 10).max(10);
    let mut stock = Vec::with_capacity(ssh_calls);
    for _ in 0..ssh_calls {
        let started = Instant::now();
        openssh.ssh("echo hi").await?;
        stock.push(started.elapsed());
    }
    println!("`ssh … echo hi` with OpenSSH through the tunnel (ncat ProxyCommand), to its exit:");
    println!(
        "  {}   (p50 ratio OpenSSH / HTTP = {:.1}x)",
        summary(&mut stock),
        percentile(&stock, 50).as_secs_f64() / percentile(&took, 50).as_secs_f64()
    );

    let limit = mib * 1024 * 1024;
    let deadline = Duration::from_secs(secs);
    let started = Instant::now();
    let pid = start(&mut http, &commands, "yes").await?;
    let path = format!("{base}/processes/{pid}/output?follow=true");
    let (mut got, mut dropped) = (0u64, 0u64);
    {
        let mut follow = Follow::open(&mut http, &path).await?;
        while got < limit {
            // Bounded even if the follow stalls: a stall shows as a short read.
            let left = deadline.saturating_sub(started.elapsed());
            let Ok(event) = tokio::time::timeout(left, follow.event()).await else {
                break;
            };
            let event = event?.context("`yes` output ended")?;
            if let (Some(offset), Some(end)) = (event["offset"].as_u64(), event["end"].as_u64())
                && event.get("stdout").is_some()
            {
                got += end - offset;
            } else if let Some(n) = event["dropped"].as_u64() {
                dropped += n;
            }
        }
    }
    let http_secs = started.elapsed().as_secs_f64();
    // The follow is cut off mid-answer: the connection is spent, so signal on a new one.
    let mut control = Http::connect(server.addr()).await?;
    let signal = format!("{base}/processes/{pid}/signal");
    let (status, text) = control
        .call("POST", &signal, r#"{"signal":"KILL"}"#)
        .await?;
    anyhow::ensure!(status == 200, "signal answered {status}: {text}");
    let http_rate = got as f64 / MIB / http_secs;

    let started = Instant::now();
    openssh.ssh(&format!("yes | head -c {got}")).await?;
    let ssh_secs = started.elapsed().as_secs_f64();
    // The baseline without its connection set-up (the p50 of `ssh … echo hi` above), so the
    // ratio does not flatter the follow.
    let connect = percentile(&stock, 50).as_secs_f64();
    let ssh_rate = got as f64 / MIB / (ssh_secs - connect).max(f64::EPSILON);
    println!(
        "`yes` read through GET …/output?follow=true (from POST /commands, stdout bytes \
         delivered) vs `ssh … 'yes | head -c {got}' > /dev/null`:"
    );
    println!(
        "  follow {http_rate:7.1} MiB/s ({:.0} MiB in {:.2} s; {:.0} MiB dropped by the 1 MiB buffer)",
        got as f64 / MIB,
        http_secs,
        dropped as f64 / MIB
    );
    println!(
        "  ssh    {ssh_rate:7.1} MiB/s ({ssh_secs:.2} s less {connect:.2} s connecting)   \
         ratio follow/ssh {:.2}",
        http_rate / ssh_rate
    );
    server.delete_session(&session.id).await
}
