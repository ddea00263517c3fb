//! Command line of `pico-agent` and the settings derived from it at start-up.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use russh::keys::{PrivateKey, PublicKey};

use crate::sys::{self, Identity};

#[derive(Parser, Debug)]
#[command(
    name = "pico-agent",
    version,
    about = "SSH and SFTP server for a pico sandbox"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve SSH on a TCP address or Unix socket.
    Serve(Box<ServeArgs>),
    /// Copy this binary to DIR/pico-agent (for a Kubernetes init container).
    Install { dir: PathBuf },
    /// Internal: the sftp subsystem, speaking SFTP on stdin/stdout.
    #[command(hide = true)]
    SftpServer(SftpArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// `unix:/path/agent.sock` or `HOST:PORT`.
    #[arg(long, env = "PICO_AGENT_LISTEN", default_value = "0.0.0.0:22")]
    pub listen: String,
    /// OpenSSH-format private host key.
    #[arg(long, env = "PICO_AGENT_HOST_KEY")]
    pub host_key: PathBuf,
    /// authorized_keys file of the session.
    #[arg(long, env = "PICO_AGENT_AUTHORIZED_KEYS")]
    pub authorized_keys: PathBuf,
    /// The only user name clients may log in as.
    #[arg(long, env = "PICO_AGENT_USERNAME", default_value = "sandbox")]
    pub username: String,
    /// When root: numeric uid commands run as.
    #[arg(
        long,
        env = "PICO_AGENT_UID",
        requires = "gid",
        conflicts_with = "user"
    )]
    pub uid: Option<u32>,
    /// When root: numeric gid commands run as.
    #[arg(
        long,
        env = "PICO_AGENT_GID",
        requires = "uid",
        conflicts_with = "user"
    )]
    pub gid: Option<u32>,
    /// When root: run commands as this user from /etc/passwd.
    #[arg(long, env = "PICO_AGENT_USER")]
    pub user: Option<String>,
    /// Home and working directory of commands.
    #[arg(long, env = "PICO_AGENT_HOME")]
    pub home: Option<PathBuf>,
    /// KEY=VALUE lines added to every command's environment.
    #[arg(long, env = "PICO_AGENT_ENV_FILE")]
    pub env_file: Option<PathBuf>,
    /// Run in fresh mount, pid, ipc and uts namespaces (plus a user namespace when not root).
    #[arg(long, env = "PICO_AGENT_ISOLATE")]
    pub isolate: bool,
    /// With --isolate: cover this directory with an empty read-only tmpfs (repeatable).
    #[arg(long, requires = "isolate")]
    pub hide: Vec<PathBuf>,
    /// With --isolate: a network namespace of its own (loopback only), so the sandbox reaches
    /// neither the host's nor other sandboxes' network services.
    #[arg(long, env = "PICO_AGENT_PRIVATE_NETWORK", requires = "isolate")]
    pub private_network: bool,
    /// With --isolate: host name in the new UTS namespace.
    #[arg(long, env = "PICO_AGENT_HOSTNAME", requires = "isolate")]
    pub hostname: Option<String>,
    /// With --isolate: the session's ext4 image, holding its home and every scratch
    /// directory (`/tmp`, `/var/tmp`, `/run/lock`), so its size bounds what it can write.
    #[arg(long, env = "PICO_AGENT_DISK", requires = "isolate")]
    pub disk: Option<PathBuf>,
    /// With --isolate: a file holding the session's expiry (unix seconds); once it is
    /// `--orphan-grace` past and `--heartbeat-file` older than that, the sandbox ends.
    #[arg(long, env = "PICO_AGENT_EXPIRES_FILE", requires = "isolate")]
    pub expires_file: Option<PathBuf>,
    /// With --isolate: a file the server touches while it runs.
    #[arg(long, env = "PICO_AGENT_HEARTBEAT_FILE", requires = "isolate")]
    pub heartbeat_file: Option<PathBuf>,
    /// With --isolate, as root: the sandbox's root is an OCI image. The directory holds
    /// `lower` (the layers' directories, top first, `:`-separated), `upper/` and `work/`
    /// (the session's writable layer) and `merged/` (where the root is assembled).
    #[arg(long, env = "PICO_AGENT_IMAGE_ROOT", requires = "isolate")]
    pub image_root: Option<PathBuf>,
    /// Working directory of commands instead of the home directory (an image's WorkingDir).
    #[arg(long, env = "PICO_AGENT_WORKDIR")]
    pub workdir: Option<PathBuf>,
    /// Seconds a sandbox outlives its expiry while no server is alive to adopt it.
    #[arg(long, env = "PICO_AGENT_ORPHAN_GRACE", default_value_t = 600)]
    pub orphan_grace: u64,
    /// Close connections idle this many seconds (0 = never).
    #[arg(long, env = "PICO_AGENT_IDLE_TIMEOUT", default_value_t = 0)]
    pub idle_timeout: u64,
}

#[derive(Args, Debug)]
pub struct SftpArgs {
    #[arg(long)]
    pub uid: Option<u32>,
    #[arg(long)]
    pub gid: Option<u32>,
    #[arg(long)]
    pub drop_caps: bool,
    #[arg(long)]
    pub home: PathBuf,
}

/// Everything a connection needs, fixed at start-up.
pub struct Settings {
    pub username: String,
    pub host_key: PrivateKey,
    pub authorized: Vec<PublicKey>,
    /// The keys of those marked `pico-server` (the API server's): only they may open the
    /// `pico-processes` subsystem.
    pub server_keys: Vec<PublicKey>,
    /// Home directory as the commands see it.
    pub home: PathBuf,
    pub shell: String,
    /// Where commands start when it exists (else the home directory).
    pub workdir: Option<PathBuf>,
    pub identity: Identity,
    pub env: Vec<(String, String)>,
    /// Names clients may set with `env` requests besides LANG, LC_* and TERM.
    pub env_names: HashSet<String>,
    pub idle_timeout: Option<Duration>,
    /// This binary, re-executed as the sftp server. Opened at start-up: with --isolate its
    /// path may be invisible in the sandbox (under /tmp or a hidden directory).
    pub exe: std::fs::File,
}

/// The shell of a user whose passwd entry names none (or who has no entry): bash where the
/// sandbox has it, as users of an interactive shell expect, else POSIX sh.
pub fn default_shell() -> &'static str {
    if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}

/// The login shell of `name` in this (image's) /etc/passwd, else [`default_shell`].
pub fn shell_of(name: &str) -> String {
    lookup_user(name)
        .ok()
        .map(|u| u.shell)
        .filter(|shell| Path::new(shell).exists())
        .unwrap_or_else(|| default_shell().to_owned())
}

/// A user from /etc/passwd (read directly: a static binary has no NSS).
struct PasswdEntry {
    uid: u32,
    gid: u32,
    home: PathBuf,
    shell: String,
}

fn lookup_user(name: &str) -> anyhow::Result<PasswdEntry> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if let [user, _, uid, gid, _, home, shell] = fields[..]
            && user == name
        {
            return Ok(PasswdEntry {
                uid: uid.parse().context("uid in /etc/passwd")?,
                gid: gid.parse().context("gid in /etc/passwd")?,
                home: PathBuf::from(home),
                shell: if shell.is_empty() {
                    default_shell().to_owned()
                } else {
                    shell.to_owned()
                },
            });
        }
    }
    bail!("--user {name}: no such user in /etc/passwd")
}

pub fn parse_authorized_keys(text: &str) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        // Options may precede the key type; the key is the token after the first type name.
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let key = tokens.windows(2).find_map(|pair| {
            let is_type = pair[0].starts_with("ssh-")
                || pair[0].starts_with("ecdsa-")
                || pair[0].starts_with("sk-");
            if is_type {
                russh::keys::parse_public_key_base64(pair[1]).ok()
            } else {
                None
            }
        });
        match key {
            Some(key) => keys.push(key),
            None => tracing::warn!("ignoring an authorized_keys line that holds no supported key"),
        }
    }
    keys
}

/// The authorized_keys lines whose options include `pico-server`. A user's key never carries
/// options: the API server writes it as `type base64 comment`.
fn server_lines(text: &str) -> String {
    text.lines()
        .filter(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|options| options.split(',').any(|o| o == "pico-server"))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

pub fn parse_env_file(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("env file line {}: expected KEY=VALUE", n + 1);
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("env file line {}: invalid variable name {key:?}", n + 1);
        }
        env.push((key.to_owned(), value.to_owned()));
    }
    Ok(env)
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

impl Settings {
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        let host_key = russh::keys::load_secret_key(&args.host_key, None)
            .with_context(|| format!("loading --host-key {}", args.host_key.display()))?;
        let authorized_text = read(&args.authorized_keys, "--authorized-keys")?;
        let authorized = parse_authorized_keys(&authorized_text);
        let server_keys = parse_authorized_keys(&server_lines(&authorized_text));
        if authorized.is_empty() {
            tracing::warn!(path = %args.authorized_keys.display(), "no usable authorized key: nobody can log in");
        }
        let env = match &args.env_file {
            Some(path) => parse_env_file(&read(path, "--env-file")?)?,
            None => Vec::new(),
        };
        let root = sys::euid() == 0;
        let user = args.user.as_deref().map(lookup_user).transpose()?;
        let identity = if args.isolate && !root {
            Identity::NsRootNoCaps
        } else if let Some(user) = &user {
            if !root {
                bail!("--user needs the agent to run as root");
            }
            Identity::Switch {
                uid: user.uid,
                gid: user.gid,
            }
        } else if let (Some(uid), Some(gid)) = (args.uid, args.gid) {
            if !root {
                bail!("--uid/--gid need the agent to run as root");
            }
            Identity::Switch { uid, gid }
        } else {
            Identity::Inherit
        };
        let home = if args.isolate {
            PathBuf::from("/home").join(&args.username)
        } else if let Some(home) = &args.home {
            home.clone()
        } else if let Some(user) = &user {
            user.home.clone()
        } else {
            std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
        };
        if args.username.is_empty() || args.username.contains(['/', ':', '\0']) {
            bail!("--username {:?} is not a valid user name", args.username);
        }
        Ok(Settings {
            username: args.username.clone(),
            host_key,
            authorized,
            server_keys,
            home,
            shell: user.map_or_else(|| default_shell().to_owned(), |u| u.shell),
            workdir: args.workdir.clone(),
            identity,
            env_names: env.iter().map(|(k, _)| k.clone()).collect(),
            env,
            idle_timeout: (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)),
            exe: std::env::current_exe()
                .and_then(std::fs::File::open)
                .context("opening the pico-agent binary")?,
        })
    }

    /// Whether a client may set `name` with an `env` request.
    pub fn env_allowed(&self, name: &str) -> bool {
        name == "LANG" || name == "TERM" || name.starts_with("LC_") || self.env_names.contains(name)
    }

    /// The base environment of every command.
    pub fn command_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("HOME".to_owned(), self.home.to_string_lossy().into_owned()),
            ("USER".to_owned(), self.username.clone()),
            ("LOGNAME".to_owned(), self.username.clone()),
            ("SHELL".to_owned(), self.shell.clone()),
            (
                "PATH".to_owned(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ),
        ];
        env.extend(self.env.iter().cloned());
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_parses_and_rejects_bad_names() {
        let env = parse_env_file("# c\nA=1\n\nB_2=x=y\n").expect("valid");
        assert_eq!(
            env,
            vec![("A".into(), "1".into()), ("B_2".into(), "x=y".into())]
        );
        assert!(parse_env_file("NOEQUALS\n").is_err());
        assert!(parse_env_file("A-B=1\n").is_err());
    }

    #[test]
    fn authorized_keys_with_options_and_comments() {
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIC59gQWlx76RrJnhP1LSeEsTf16XifyDYYelYYEj3bqw";
        let text = format!(
            "# comment\nssh-ed25519 {key} a@b\nno-pty,command=\"x\" ssh-ed25519 {key}\ngarbage\n"
        );
        assert_eq!(parse_authorized_keys(&text).len(), 2);
    }

    #[test]
    fn only_lines_marked_pico_server_are_server_keys() {
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIC59gQWlx76RrJnhP1LSeEsTf16XifyDYYelYYEj3bqw";
        let text = format!("ssh-ed25519 {key} pico-server\npico-server ssh-ed25519 {key} x\n");
        assert_eq!(parse_authorized_keys(&text).len(), 2);
        assert_eq!(parse_authorized_keys(&server_lines(&text)).len(), 1);
    }
}
