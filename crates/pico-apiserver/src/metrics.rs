//! Counters for `/metrics` in the Prometheus text format; plain atomics, no registry.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 8] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

/// A Prometheus histogram of durations.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, name: &str, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", get(bucket));
        }
        let count = get(&self.count);
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {}\n{name}_count {count}",
            get(&self.micros) as f64 / 1e6
        );
    }
}

#[derive(Default)]
pub struct Metrics {
    pub created: AtomicU64,
    pub deleted: AtomicU64,
    pub reaped: AtomicU64,
    pub auth_failures: AtomicU64,
    pub tunnels_open: AtomicU64,
    pub tunnels_total: AtomicU64,
    pub bytes_relayed: AtomicU64,
    /// Client connections open now, and refused by the connection caps.
    pub connections_open: AtomicU64,
    pub connections_refused: AtomicU64,
    pub create_seconds: Histogram,
    pub delete_seconds: Histogram,
    pub pause_seconds: Histogram,
    pub resume_seconds: Histogram,
}

impl Metrics {
    pub fn observe_create(&self, took: Duration) {
        self.create_seconds.observe(took);
    }

    /// Renders every metric; `sessions` are current counts by status.
    pub fn render(&self, sessions: &[(&str, u64)]) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# TYPE pico_sessions gauge\n");
        for (status, count) in sessions {
            let _ = writeln!(out, "pico_sessions{{status=\"{status}\"}} {count}");
        }
        let counters = [
            ("pico_sessions_created_total", &self.created),
            ("pico_sessions_deleted_total", &self.deleted),
            ("pico_reaper_deletions_total", &self.reaped),
            ("pico_auth_failures_total", &self.auth_failures),
            ("pico_tunnels_total", &self.tunnels_total),
            ("pico_tunnel_bytes_total", &self.bytes_relayed),
            ("pico_connections_refused_total", &self.connections_refused),
        ];
        for (name, counter) in counters {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", get(counter));
        }
        let _ = writeln!(
            out,
            "# TYPE pico_tunnels_open gauge\npico_tunnels_open {}",
            get(&self.tunnels_open)
        );
        let _ = writeln!(
            out,
            "# TYPE pico_connections_open gauge\npico_connections_open {}",
            get(&self.connections_open)
        );
        self.create_seconds
            .render("pico_session_create_seconds", &mut out);
        self.delete_seconds
            .render("pico_session_delete_seconds", &mut out);
        self.pause_seconds
            .render("pico_session_pause_seconds", &mut out);
        self.resume_seconds
            .render("pico_session_resume_seconds", &mut out);
        out
    }
}

/// One open tunnel in the gauges: counted when made, uncounted however the relay ends.
pub struct OpenTunnel(Arc<Metrics>);

impl OpenTunnel {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        metrics.tunnels_open.fetch_add(1, Ordering::Relaxed);
        metrics.tunnels_total.fetch_add(1, Ordering::Relaxed);
        Self(metrics)
    }
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.tunnels_open.fetch_sub(1, Ordering::Relaxed);
    }
}
