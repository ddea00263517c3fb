//! One SSH connection's state: who may log in, and its session channels with their pending
//! env/pty settings and running command.

use std::collections::HashMap;
use std::sync::Arc;

use russh::keys::PublicKey;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelId, Sig};

use crate::config::Settings;
use crate::exec::{self, ProcessCtl, Program, PtySpec};
use crate::proc_protocol;
use crate::proc_table::ProcTable;
use crate::reaper::Reaper;
use crate::sys::WinSize;

/// Client requests (env variables) are bounded so a client cannot grow our memory.
const MAX_ENV_VARS: usize = 256;

struct SessionChannel {
    /// Taken when a command starts on the channel.
    channel: Option<Channel<Msg>>,
    env: Vec<(String, String)>,
    pty: Option<PtySpec>,
    ctl: Arc<ProcessCtl>,
}

pub struct Connection {
    settings: Arc<Settings>,
    reaper: Arc<Reaper>,
    procs: Arc<ProcTable>,
    peer: String,
    channels: HashMap<ChannelId, SessionChannel>,
    /// Logged in with the API server's key (see [`Connection::login`]).
    server: bool,
}

impl Connection {
    pub fn new(
        settings: Arc<Settings>,
        reaper: Arc<Reaper>,
        procs: Arc<ProcTable>,
        peer: String,
    ) -> Self {
        Self {
            settings,
            reaper,
            procs,
            peer,
            channels: HashMap::new(),
            server: false,
        }
    }

    /// [`Connection::authorize`] for a verified key, remembering whether it is the server's.
    pub fn login(&mut self, user: &str, key: &PublicKey) -> bool {
        let ok = self.authorize(user, key);
        self.server = ok
            && self
                .settings
                .server_keys
                .iter()
                .any(|k| k.key_data() == key.key_data());
        ok
    }

    /// Serves the `pico-processes` subsystem on the channel: the server's connection only.
    pub fn start_procs(&mut self, id: ChannelId) -> bool {
        if !self.server {
            tracing::info!(peer = %self.peer, "pico-processes refused to a non-server key");
            return false;
        }
        let Some(channel) = self.channels.get_mut(&id).and_then(|c| c.channel.take()) else {
            return false;
        };
        tokio::spawn(proc_protocol::serve(channel, self.procs.clone()));
        true
    }

    /// Whether `user` with `key` may log in. Every key is compared, whatever matched, so the
    /// time taken does not depend on which key (russh pads rejections to a fixed time).
    pub fn authorize(&self, user: &str, key: &PublicKey) -> bool {
        let known = self
            .settings
            .authorized
            .iter()
            .fold(false, |found, candidate| {
                found | (candidate.key_data() == key.key_data())
            });
        let user_ok = user == self.settings.username;
        if !(known && user_ok) {
            tracing::info!(peer = %self.peer, user, key_known = known, "public key rejected");
        }
        known & user_ok
    }

    pub fn open_session(&mut self, channel: Channel<Msg>) {
        let entry = SessionChannel {
            channel: None,
            env: Vec::new(),
            pty: None,
            ctl: Arc::default(),
        };
        let id = channel.id();
        self.channels.entry(id).or_insert(entry).channel = Some(channel);
    }

    pub fn set_env(&mut self, id: ChannelId, name: &str, value: &str) -> bool {
        let allowed = self.settings.env_allowed(name);
        match self.channels.get_mut(&id) {
            Some(chan) if allowed && chan.env.len() < MAX_ENV_VARS && !value.contains('\0') => {
                chan.env.push((name.to_owned(), value.to_owned()));
                true
            }
            _ => false,
        }
    }

    pub fn set_pty(&mut self, id: ChannelId, spec: PtySpec) -> bool {
        match self.channels.get_mut(&id) {
            Some(chan) if chan.channel.is_some() && !spec.term.contains('\0') => {
                chan.pty = Some(spec);
                true
            }
            _ => false,
        }
    }

    /// Starts `program` on the channel; false when there is no such idle channel or the
    /// spawn failed (the client then sees a failure reply).
    pub fn start(&mut self, id: ChannelId, program: Program, handle: Handle) -> bool {
        let Some(chan) = self.channels.get_mut(&id) else {
            return false;
        };
        let Some(channel) = chan.channel.take() else {
            return false;
        };
        match exec::spawn(
            &self.settings,
            &self.reaper,
            &chan.ctl,
            &program,
            &chan.env,
            chan.pty.as_ref(),
        ) {
            Ok(running) => {
                tokio::spawn(exec::drive(channel, handle, running, chan.ctl.clone()));
                true
            }
            Err(err) => {
                tracing::warn!(peer = %self.peer, error = %err, "could not start the command");
                chan.channel = Some(channel);
                false
            }
        }
    }

    pub fn window_change(&self, id: ChannelId, size: WinSize) -> bool {
        self.channels
            .get(&id)
            .is_some_and(|chan| chan.ctl.resize(size))
    }

    pub fn signal(&self, id: ChannelId, signal: &Sig) {
        if let Some(chan) = self.channels.get(&id) {
            chan.ctl.signal(signal);
        }
    }

    pub fn closed(&mut self, id: ChannelId) {
        if let Some(chan) = self.channels.remove(&id) {
            chan.ctl.hangup();
        }
    }
}

impl Drop for Connection {
    /// The connection is gone: every command it started is hung up.
    fn drop(&mut self) {
        for chan in self.channels.values() {
            chan.ctl.hangup();
        }
        tracing::info!(peer = %self.peer, "connection closed");
    }
}
