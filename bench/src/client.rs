//! A minimal in-process SSH client (russh), so that timings are not dominated by starting
//! an `ssh` process.

use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use tokio::io::{AsyncRead, AsyncWrite};

/// What a client needs of a session.
pub struct SessionInfo {
    pub id: String,
    pub host_key: PublicKey,
    pub key: Arc<PrivateKey>,
}

struct PinnedHostKey(PublicKey);

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(key.public_key().key_data() == self.0.key_data())
    }
}

pub struct Ssh {
    handle: Handle<PinnedHostKey>,
}

impl Ssh {
    pub async fn connect<S>(stream: S, session: &SessionInfo) -> anyhow::Result<Self>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = Arc::new(client::Config {
            window_size: 16 * 1024 * 1024,
            maximum_packet_size: 65535,
            ..Default::default()
        });
        let mut handle =
            client::connect_stream(config, stream, PinnedHostKey(session.host_key.clone())).await?;
        let auth = handle
            .authenticate_publickey(
                "sandbox",
                PrivateKeyWithHashAlg::new(session.key.clone(), None),
            )
            .await?;
        anyhow::ensure!(auth.success(), "public-key authentication failed");
        Ok(Self { handle })
    }

    /// Runs `command`, returns the number of stdout bytes.
    pub async fn exec_count(&mut self, command: &str) -> anyhow::Result<u64> {
        let mut channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        let mut bytes = 0u64;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => bytes += data.len() as u64,
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(bytes)
    }

    /// Runs `command`, returns its exit status.
    pub async fn exec_status(&mut self, command: &str) -> anyhow::Result<u32> {
        let mut channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        while let Some(msg) = channel.wait().await {
            if let ChannelMsg::ExitStatus { exit_status } = msg {
                return Ok(exit_status);
            }
        }
        anyhow::bail!("channel closed without an exit status")
    }
}

impl Ssh {
    /// Runs `cat`, sends `payload` while reading the echo, and returns what came back.
    pub async fn echo(&mut self, payload: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, "cat").await?;
        let (mut read, write) = channel.split();
        let expected = payload.len();
        let writer = tokio::spawn(async move {
            write.data(&payload[..]).await?;
            write.eof().await?;
            Ok::<_, russh::Error>(write)
        });
        let mut back = Vec::with_capacity(expected);
        while let Some(msg) = read.wait().await {
            match msg {
                ChannelMsg::Data { data } => back.extend_from_slice(&data),
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => {}
            }
        }
        writer.await??;
        Ok(back)
    }
}

pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}
