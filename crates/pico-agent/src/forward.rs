//! `direct-tcpip` channels (`ssh -L`): only to the sandbox's own loopback.

use std::net::IpAddr;
use std::time::Duration;

use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelOpenFailure};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The loopback address to dial for `host`, if it names the loopback at all.
pub fn loopback_target(host: &str) -> Option<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::from([127, 0, 0, 1]));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>().ok().filter(IpAddr::is_loopback)
}

/// Dials the target before confirming the channel, then copies both ways keeping half-close.
pub async fn open(channel: Channel<Msg>, host: String, port: u32, reply: ChannelOpenHandle) {
    let (Some(ip), Ok(port)) = (loopback_target(&host), u16::try_from(port)) else {
        tracing::info!(host, port, "direct-tcpip refused: not the sandbox loopback");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        return;
    };
    let mut tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((ip, port))).await
    {
        Ok(Ok(tcp)) => tcp,
        _ => {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    reply.accept().await;
    let mut stream = channel.into_stream();
    if let Err(err) = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await {
        tracing::debug!(error = %err, "direct-tcpip ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(loopback_target("localhost").is_some());
        assert!(loopback_target("127.0.0.1").is_some());
        assert!(loopback_target("127.3.2.1").is_some());
        assert!(loopback_target("::1").is_some());
        assert!(loopback_target("[::1]").is_some());
        assert!(loopback_target("10.0.0.1").is_none());
        assert!(loopback_target("example.com").is_none());
    }
}
