//! The russh `Handler` adapter: translates callbacks into [`Connection`] calls and answers
//! every request with success or failure (OpenSSH and paramiko wait for the answer).

use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Pty, Sig};

use crate::exec::{Program, PtySpec};
use crate::forward;
use crate::session::Connection;
use crate::sys::WinSize;

pub struct SshHandler {
    conn: Connection,
}

impl SshHandler {
    pub fn new(conn: Connection) -> Self {
        Self { conn }
    }
}

fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
        partial_success: false,
    }
}

fn reply(session: &mut Session, id: ChannelId, ok: bool) -> Result<(), russh::Error> {
    if ok {
        session.channel_success(id)
    } else {
        session.channel_failure(id)
    }
}

impl russh::server::Handler for SshHandler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(reject())
    }

    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.conn.authorize(user, offer.public_key) {
            Auth::Accept
        } else {
            reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.conn.login(user, key.public_key) {
            Auth::Accept
        } else {
            reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.conn.open_session(channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Dialing may take a while: never block the connection's other channels on it.
        tokio::spawn(forward::open(
            channel,
            host_to_connect.to_owned(),
            port_to_connect,
            reply,
        ));
        Ok(())
    }

    async fn env_request(
        &mut self,
        id: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.conn.set_env(id, name, value);
        reply(session, id, ok)
    }

    async fn pty_request(
        &mut self,
        id: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        px_width: u32,
        px_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let spec = PtySpec {
            term: term.to_owned(),
            size: WinSize {
                cols,
                rows,
                px_width,
                px_height,
            },
            modes: modes
                .iter()
                .map(|(op, value)| (*op as u8, *value))
                .collect(),
        };
        let ok = self.conn.set_pty(id, spec);
        reply(session, id, ok)
    }

    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.conn.start(id, Program::Shell, session.handle());
        reply(session, id, ok)
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self
            .conn
            .start(id, Program::Exec(data.to_vec()), session.handle());
        reply(session, id, ok)
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = match name {
            "sftp" => self.conn.start(id, Program::Sftp, session.handle()),
            crate::proc_protocol::SUBSYSTEM => self.conn.start_procs(id),
            _ => false,
        };
        reply(session, id, ok)
    }

    async fn window_change_request(
        &mut self,
        id: ChannelId,
        cols: u32,
        rows: u32,
        px_width: u32,
        px_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.conn.window_change(
            id,
            WinSize {
                cols,
                rows,
                px_width,
                px_height,
            },
        );
        reply(session, id, ok)
    }

    async fn x11_request(
        &mut self,
        id: ChannelId,
        _single: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply(session, id, false)
    }

    async fn agent_request(
        &mut self,
        _id: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn signal(
        &mut self,
        id: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.conn.signal(id, &signal);
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn channel_close(
        &mut self,
        id: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.conn.closed(id);
        Ok(())
    }
}
