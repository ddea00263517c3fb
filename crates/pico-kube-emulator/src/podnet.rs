//! The emulated pod network: pod IPs on loopback, and (for out-of-cluster tests) a pod
//! network the API's clients cannot reach, as a laptop cannot reach a cluster's pod CIDR.

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The second octet of every pod IP this process hands out (random per process).
fn base() -> u8 {
    static BASE: OnceLock<u8> = OnceLock::new();
    *BASE.get_or_init(|| rand::random::<u8>() % 250 + 1)
}

/// Second octet of reported IPs when the pod network is unreachable: `base` never takes it,
/// so nothing listens there and a dial is refused at once.
const HIDDEN: u8 = 254;

/// Hands out pod IPs 127.R.x.y: R is random per process so that emulators in concurrent
/// processes rarely meet, and the counter is process-wide so emulators in one process never do.
pub fn next_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % (254 * 254);
    let (hi, lo) = (n / 254 + 1, n % 254 + 1);
    Ipv4Addr::new(
        127,
        base(),
        u8::try_from(hi).unwrap_or(1),
        u8::try_from(lo).unwrap_or(1),
    )
}

/// The IP the pod's status reports for a pod listening on `real`.
pub fn reported(real: Ipv4Addr, reachable: bool) -> Ipv4Addr {
    if reachable {
        return real;
    }
    let [_, _, hi, lo] = real.octets();
    Ipv4Addr::new(127, HIDDEN, hi, lo)
}

/// Where a pod whose status reports `ip` really listens (the kubelet's own view).
pub fn real(ip: Ipv4Addr) -> Ipv4Addr {
    match ip.octets() {
        [127, HIDDEN, hi, lo] => Ipv4Addr::new(127, base(), hi, lo),
        _ => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_ips_map_back() {
        let ip = next_ip();
        assert_eq!(reported(ip, true), ip);
        let hidden = reported(ip, false);
        assert_ne!(hidden, ip);
        assert_eq!(real(hidden), ip);
        assert_eq!(real(ip), ip);
    }
}
