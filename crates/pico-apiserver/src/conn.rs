//! Caps on open client connections, overall and per source address. A slot is a guard the
//! connection holds for its whole life (a tunnel's included) and frees when it drops.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use pico_wire::ErrorCode;
use serde_json::json;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Descriptors kept free for the store, agents' sockets and the like when the cap is
/// derived from the open-file limit.
const RESERVED_FDS: u64 = 128;

pub struct ConnLimits {
    max: usize,
    per_ip: usize,
    open: Mutex<Open>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

impl ConnLimits {
    /// `max` 0 = derived from the open-file limit `fd_limit`; `per_ip` 0 = no per-address cap.
    pub fn new(max: usize, per_ip: usize, fd_limit: u64, metrics: Arc<Metrics>) -> Arc<Self> {
        let max = if max > 0 {
            max
        } else {
            // A tunnel holds two descriptors: the client's and the sandbox's.
            usize::try_from(fd_limit.saturating_sub(RESERVED_FDS) / 2)
                .unwrap_or(usize::MAX)
                .max(16)
        };
        Arc::new(Self {
            max,
            per_ip,
            open: Mutex::default(),
            metrics,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Takes a slot for a connection from `ip`, or explains the refusal.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, ApiError> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = open.by_ip.get(&ip).copied().unwrap_or(0);
        let refusal = if open.total >= self.max {
            Some(refuse("server", self.max))
        } else if self.per_ip > 0 && from_ip >= self.per_ip {
            Some(refuse("address", self.per_ip))
        } else {
            None
        };
        if let Some(err) = refusal {
            self.metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(err);
        }
        self.metrics
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        open.total += 1;
        open.by_ip.insert(ip, from_ip + 1);
        Ok(ConnSlot {
            limits: self.clone(),
            ip,
        })
    }
}

fn refuse(scope: &str, limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::TooManyConnections,
        format!("too many open connections (at most {limit} per {scope}); retry later"),
    )
    .with_details(json!({"scope": scope, "limit": limit}))
}

/// One open connection in the counts; shared (`Arc`) between the connection and the tunnel
/// it may turn into, and released when the last of them ends.
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.limits
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_overall_and_per_address_and_frees_on_drop() {
        let limits = ConnLimits::new(3, 2, 0, Arc::default());
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = limits.acquire(a).expect("1");
        let _second = limits.acquire(a).expect("2");
        assert!(limits.acquire(a).is_err(), "per address");
        let _third = limits.acquire(b).expect("3");
        assert!(limits.acquire(b).is_err(), "overall");
        drop(first);
        // An IPv4-mapped IPv6 peer counts as its IPv4 address.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let _again = limits.acquire(mapped).expect("freed");
        drop(_third);
        assert!(limits.acquire(a).is_err(), "per address, mapped counted");
        assert!(limits.acquire(b).is_ok());
    }

    #[test]
    fn the_default_cap_follows_the_fd_limit() {
        assert_eq!(
            ConnLimits::new(0, 0, 1024 * 1024, Arc::default()).max(),
            (1024 * 1024 - 128) / 2
        );
        assert_eq!(ConnLimits::new(0, 0, 40, Arc::default()).max(), 16);
        assert_eq!(ConnLimits::new(7, 0, 40, Arc::default()).max(), 7);
    }
}
