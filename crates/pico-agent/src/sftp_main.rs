//! The `sftp-server` subcommand: drops to the session user, then serves SFTP on stdin/stdout
//! (the agent connects those pipes to the channel), like OpenSSH's sftp-server.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::sync::oneshot;

use crate::config::SftpArgs;
use crate::fdio::FdIo;
use crate::sftp::{MAX_IO, Sftp};
use crate::sys::{self, Identity};

/// stdin + stdout as one stream; tells `done` when russh-sftp drops it at the end.
struct Stdio {
    input: BufReader<FdIo>,
    output: FdIo,
    done: Option<oneshot::Sender<()>>,
}

impl Drop for Stdio {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

impl AsyncRead for Stdio {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.input).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stdio {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.output).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.output).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.output).poll_shutdown(cx)
    }
}

pub fn run(args: &SftpArgs) -> anyhow::Result<()> {
    let identity = match (args.uid, args.gid) {
        (Some(uid), Some(gid)) => Identity::Switch { uid, gid },
        _ if args.drop_caps => Identity::NsRootNoCaps,
        _ => Identity::Inherit,
    };
    // Into the home first, like commands (std changes directory before dropping privileges).
    if std::env::set_current_dir(&args.home).is_err() {
        std::env::set_current_dir("/").context("changing to /")?;
    }
    sys::apply_identity(identity).context("dropping privileges")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let input = FdIo::new(io::stdin().as_fd().try_clone_to_owned()?)?;
        let output = FdIo::new(io::stdout().as_fd().try_clone_to_owned()?)?;
        let (done_tx, done_rx) = oneshot::channel();
        let stream = Stdio {
            input: BufReader::with_capacity(MAX_IO as usize + 4096, input),
            output,
            done: Some(done_tx),
        };
        let config = russh_sftp::server::Config {
            max_client_packet_len: MAX_IO + 1024,
        };
        russh_sftp::server::run_with_config(stream, Sftp::default(), config).await;
        let _ = done_rx.await;
        anyhow::Ok(())
    })
}
