//! `?watch=true` streams: newline-delimited watch events, bookmarks, resume and 410 Gone.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::api::{App, Params, ResPath, render};
use crate::error::ApiError;
use crate::selector::Filter;
use crate::store::{Event, EventType};
use crate::table::{self, Include};

/// kube-apiserver closes watches after a random 30–60 minutes; clients re-watch.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

fn line(kind: &str, object: Value) -> bytes::Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    bytes::Bytes::from(s)
}

struct Watcher {
    rp: ResPath,
    filter: Filter,
    tx: mpsc::Sender<bytes::Bytes>,
    /// Events carry one-row Tables (kubectl `get -w`); columns go with the first only.
    table: Option<Include>,
    columns_sent: bool,
}

impl Watcher {
    fn in_scope(&self, ev: &Event) -> bool {
        ev.key.res == self.rp.def.key && self.rp.ns.as_deref().is_none_or(|n| n == ev.key.ns)
    }

    /// Sends the event as this watch's selectors see it; false when the client is gone.
    async fn send(&mut self, kind: &str, obj: &Value) -> bool {
        let rendered = render(&self.rp, obj);
        let body = match self.table {
            Some(include) => {
                let first = !std::mem::replace(&mut self.columns_sent, true);
                table::table(self.rp.def, &[rendered], None, include, first)
            }
            None => rendered,
        };
        self.tx.send(line(kind, body)).await.is_ok()
    }

    async fn send_event(&mut self, ev: &Event) -> bool {
        if !self.in_scope(ev) {
            return true;
        }
        let now = self.filter.matches(&ev.object);
        let was = ev.prev.as_ref().is_some_and(|p| self.filter.matches(p));
        let kind = match ev.kind {
            EventType::Added if now => "ADDED",
            EventType::Modified if now && was => "MODIFIED",
            EventType::Modified if now => "ADDED",
            EventType::Modified if was => "DELETED",
            EventType::Deleted if now || was => "DELETED",
            _ => return true,
        };
        self.send(kind, &ev.object).await
    }

    async fn bookmark(&self, rv: u64, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.rp.def.kind, "apiVersion": self.rp.def.api_version(&self.rp.version), "metadata": meta});
        self.tx.send(line("BOOKMARK", obj)).await.is_ok()
    }
}

/// The query parameters that shape a watch.
struct Options {
    /// Replay retained events after this resourceVersion (0: none).
    from: u64,
    send_initial: bool,
    bookmarks: bool,
    timeout: Duration,
}

fn param_true(params: &Params, name: &str) -> bool {
    params.get(name).is_some_and(|v| v == "true" || v == "1")
}

/// Answers a watch request with a streaming body.
pub async fn serve(
    app: Arc<App>,
    rp: ResPath,
    filter: Filter,
    params: &Params,
    table: Option<Include>,
) -> Result<Response, ApiError> {
    let send_initial = param_true(params, "sendInitialEvents");
    let bookmarks = param_true(params, "allowWatchBookmarks");
    let from = match params.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(_) if send_initial => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
        ),
    };
    let timeout = match params.get("timeoutSeconds") {
        Some(s) => Duration::from_secs(
            s.parse()
                .map_err(|_| ApiError::bad_request("invalid timeoutSeconds"))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let (tx, rx) = mpsc::channel::<bytes::Bytes>(256);
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    }));
    let start = app.store.watch(rp.def, rp.ns.as_deref(), &filter, from);
    let w = Watcher {
        rp,
        filter,
        tx,
        table,
        columns_sent: false,
    };
    match start {
        Err(e) if e.code == 410 => {
            // kube-apiserver reports an expired resourceVersion as an ERROR event on a 200 stream.
            let _ = w.tx.send(line("ERROR", e.status())).await;
        }
        Err(e) => return Err(e),
        Ok(start) => {
            let opts = Options {
                from: from.unwrap_or(0),
                send_initial,
                bookmarks,
                timeout,
            };
            tokio::spawn(run(app, w, start, opts));
        }
    }
    let headers = [
        (http::header::CONTENT_TYPE, "application/json"),
        (http::header::CACHE_CONTROL, "no-cache, private"),
    ];
    Ok((headers, body).into_response())
}

async fn run(app: Arc<App>, mut w: Watcher, start: crate::store::WatchStart, opts: Options) {
    let Options {
        from,
        send_initial,
        bookmarks,
        timeout,
    } = opts;
    let crate::store::WatchStart {
        initial,
        backlog,
        mut rx,
        epoch,
        rv,
    } = start;
    for obj in &initial {
        if !w.send("ADDED", obj).await {
            return;
        }
    }
    if send_initial && !w.bookmark(rv, true).await {
        return;
    }
    let mut last_rv = rv;
    for ev in backlog.iter().filter(|e| e.rv > from) {
        if !w.send_event(ev).await {
            return;
        }
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(app.bookmark_interval);
    tick.tick().await;
    // Only a watch that times out ends with a bookmark; a dropped one just stops, as a cut
    // connection would.
    let timed_out = loop {
        tokio::select! {
            _ = &mut deadline => break true,
            _ = epoch.cancelled() => break false,
            _ = app.shutdown.cancelled() => break false,
            _ = w.tx.closed() => break false,
            _ = tick.tick(), if bookmarks => {
                if !w.bookmark(last_rv, false).await { break false }
            }
            r = rx.recv() => match r {
                Ok(ev) => {
                    last_rv = last_rv.max(ev.rv);
                    if ev.rv > from && !w.send_event(&ev).await { break false }
                }
                // A watcher that fell behind is closed; its client resumes from its last event.
                Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => break false,
            },
        }
    };
    if bookmarks && timed_out {
        let _ = w.bookmark(last_rv, false).await;
    }
}
