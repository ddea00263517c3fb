//! The command line: clap definitions of every `pico` subcommand and flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "pico",
    version,
    about = "Command-line client of pico sandbox sessions",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Server URL (default from the config file, else http://127.0.0.1:8080).
    #[arg(long, global = true, env = "PICO_URL")]
    pub url: Option<String>,
    /// Bearer token (default from the config file; none when the server has auth disabled).
    #[arg(long, global = true, env = "PICO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Extra CA certificates (PEM) to trust for an https:// server.
    #[arg(long, global = true, env = "PICO_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Reach sessions through the WebSocket tunnel instead of CONNECT (for proxies that
    /// strip CONNECT).
    #[arg(long, global = true, env = "PICO_WEBSOCKET")]
    pub websocket: bool,
    /// Config file (default $XDG_CONFIG_HOME/pico/config.toml or ~/.config/pico/config.toml).
    #[arg(long, global = true, env = "PICO_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Readable text.
    #[default]
    Text,
    /// The server's JSON.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a session and print its id.
    Create(CreateArgs),
    /// List your sessions.
    #[command(alias = "ls")]
    List {
        #[arg(long, default_value_t = pico_wire::DEFAULT_LIMIT)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// List the server's image cache (local runtime): references, sizes, sessions using them.
    Images {
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// Show one session (and pin its host key).
    Get {
        id: String,
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete sessions.
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Extend a session: it expires TTL seconds from now.
    Extend {
        id: String,
        #[arg(long)]
        ttl: u64,
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// Pause a session: its processes stop, its files (and, locally, its memory) stay.
    Pause {
        id: String,
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// Resume a paused session (any ssh, exec or cp to it resumes it too).
    Resume {
        id: String,
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// Open a shell in a session, or run one command when one is given: `pico ssh ID`,
    /// `pico ssh ID 'echo hi; exit 4'` (as with OpenSSH), `pico ssh ID -- ls -la`.
    Ssh {
        /// Force a pseudo-terminal even for a command.
        #[arg(short = 't', long)]
        tty: bool,
        id: String,
        /// Command to run instead of the login shell; one argument is passed to the
        /// sandbox's shell as written, several are quoted word by word.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run a command in a session; its exit code becomes pico's.
    Exec {
        /// Start it in the background and print its pid (see `pico ps`, `logs`, `kill`).
        #[arg(long, short = 'd')]
        detach: bool,
        id: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List a session's background processes (`pico exec --detach`).
    Ps {
        id: String,
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },
    /// Print a background process's output (`-f`: follow it until the process ends).
    Logs {
        id: String,
        pid: i32,
        #[arg(long, short = 'f')]
        follow: bool,
        /// Start at this byte offset of stdout (the `end` of the last output seen).
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Send a signal to a background process's group.
    Kill {
        id: String,
        pid: i32,
        /// TERM, KILL, INT, HUP, …
        #[arg(long, short = 's', default_value = "TERM")]
        signal: String,
    },
    /// Run a program file in a session with its interpreter (over the HTTP API).
    Run {
        id: String,
        /// python, javascript or bash.
        #[arg(long, default_value = "python")]
        lang: String,
        /// The program; `-` reads it from stdin.
        file: PathBuf,
    },
    /// Copy files to or from a session: `pico cp ./a ID:b`, `pico cp ID:b ./a`.
    Cp {
        /// Copy directories recursively.
        #[arg(short = 'r', long)]
        recursive: bool,
        src: String,
        dst: String,
    },
    /// Relay stdin/stdout to a session's SSH server (for OpenSSH's ProxyCommand).
    Proxy {
        /// Session id (`%h` in ProxyCommand); a trailing `:22` is ignored.
        id: String,
    },
    /// Print an OpenSSH config stanza so that `ssh sandbox@SESSION_ID` works.
    SshConfig {
        /// Instead of printing it, write it to pico's config directory and include it from
        /// ~/.ssh/config (made, mode 0700, when missing); run again, it only refreshes the stanza.
        #[arg(long)]
        install: bool,
    },
    /// Serve the Model Context Protocol on stdin/stdout for agent frameworks: tools to
    /// create and delete sessions, run commands and code, read, write and list files.
    Mcp,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Lifetime in seconds.
    #[arg(long)]
    pub ttl: Option<u64>,
    /// Container image.
    #[arg(long)]
    pub image: Option<String>,
    /// Seconds without traffic after which the session is deleted or paused (0 = never).
    #[arg(long)]
    pub idle_timeout: Option<u64>,
    /// What the idle timeout does: delete (default) or pause.
    #[arg(long, value_parser = parse_idle_action)]
    pub idle_action: Option<pico_wire::IdleAction>,
    /// A label `key=value`; repeatable.
    #[arg(long = "metadata", short = 'm', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub metadata: Vec<(String, String)>,
    /// Wait until the session's SSH server answers (the default).
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,
    /// Return as soon as the server has answered.
    #[arg(long, overrides_with = "wait")]
    pub no_wait: bool,
    #[arg(long, short, value_enum, default_value_t)]
    pub output: Output,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn parse_idle_action(text: &str) -> Result<pico_wire::IdleAction, String> {
    match text {
        "delete" => Ok(pico_wire::IdleAction::Delete),
        "pause" => Ok(pico_wire::IdleAction::Pause),
        _ => Err(format!("{text:?}: use delete or pause")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn metadata_and_trailing_commands() {
        let cli = Cli::parse_from(["pico", "create", "-m", "a=b=c", "--no-wait"]);
        let Command::Create(args) = cli.command else {
            panic!("not create")
        };
        assert_eq!(args.metadata, vec![("a".into(), "b=c".into())]);
        assert!(args.no_wait);
        let cli = Cli::parse_from(["pico", "exec", "ID", "--", "sh", "-c", "exit 3"]);
        let Command::Exec { command, .. } = cli.command else {
            panic!("not exec")
        };
        assert_eq!(command, ["sh", "-c", "exit 3"]);
        assert!(parse_key_value("=x").is_err());
    }
}
