//! Command line and environment configuration: one [`Config`] for `serve`,
//! [`TokenArgs`] for `token`. Every flag has a `TANDEM_*` environment fallback
//! and a `///` doc that `--help` prints.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::Role;
pub use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "tandem",
    version,
    about = "Real-time collaborative code-editing server (Yjs over Socket.IO)",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve` options, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: Config,
}

// Parsed once at start-up: the size of the `Serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Config),
    /// Print a JWT signed with the server secret, for tests and scripts.
    Token(TokenArgs),
    /// Keep a local folder and a session in sync (pair from your own editor).
    #[command(long_about = crate::sync::LONG_ABOUT)]
    Sync(crate::sync::SyncArgs),
}

/// Who may connect without a token (PROTOCOL.md, "Authentication").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Anonymous {
    Off,
    Viewer,
    Editor,
}

impl Anonymous {
    /// The highest role a guest may hold, if guests are allowed.
    pub fn cap(self) -> Option<Role> {
        match self {
            Anonymous::Off => None,
            Anonymous::Viewer => Some(Role::Viewer),
            Anonymous::Editor => Some(Role::Editor),
        }
    }
}

/// Options shared by `serve` and `token`: where the secret comes from.
#[derive(Debug, Clone, Args)]
pub struct SecretArgs {
    /// HS256 secret for JWTs. If unset, one is generated on first start and
    /// kept in `<data-dir>/secret`.
    #[arg(long, env = "TANDEM_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Directory for the SQLite database (default URL) and the generated secret.
    #[arg(long, env = "TANDEM_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on (HTTP, WebSocket and long-polling on one port).
    /// Use port 0 for any free port.
    #[arg(long, env = "TANDEM_BIND", default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,

    /// Database URL: `sqlite://path/file.db` (created if missing) or
    /// `postgres://user@host:port/db`.
    #[arg(
        long,
        env = "TANDEM_DATABASE_URL",
        default_value = "sqlite://data/tandem.db"
    )]
    pub database_url: String,

    #[command(flatten)]
    pub secret: SecretArgs,

    /// Accept token-less connections as guests holding at most this role, in
    /// public sessions only.
    #[arg(long, env = "TANDEM_ANONYMOUS", value_enum, default_value = "off")]
    pub anonymous: Anonymous,

    /// Joining an unknown, well-formed session id creates it (public,
    /// public role editor, the joiner owns it).
    #[arg(long, env = "TANDEM_ON_DEMAND_SESSIONS")]
    pub on_demand_sessions: bool,

    /// Largest single Yjs update accepted, in bytes (UPDATE_TOO_LARGE above).
    #[arg(long, env = "TANDEM_MAX_UPDATE_BYTES", default_value_t = 1 << 20)]
    pub max_update_bytes: usize,

    /// Largest document, in bytes of encoded state (DOCUMENT_TOO_LARGE above).
    #[arg(long, env = "TANDEM_MAX_DOCUMENT_BYTES", default_value_t = 64 << 20)]
    pub max_document_bytes: usize,

    /// Most nested shared types (Y.Map/Y.Array/Y.Text/Y.Xml inside another
    /// type) one document may hold; bounds nesting depth, which yrs handles
    /// recursively. Code documents need a root text and little else.
    #[arg(long, env = "TANDEM_MAX_NESTED_TYPES", default_value_t = crate::core::DEFAULT_MAX_NESTED_TYPES)]
    pub max_nested_types: usize,

    /// `join-session` requests per second allowed per socket (burst: twice
    /// that); above it a join is refused with RATE_LIMITED.
    #[arg(long, env = "TANDEM_JOINS_PER_SECOND", default_value_t = 5)]
    pub joins_per_second: u32,

    /// Most simultaneous TCP connections from one client IP (0 = no limit).
    /// Connections above it are closed at once.
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS_PER_IP", default_value_t = 512)]
    pub max_connections_per_ip: usize,

    /// Seconds a client has, after the Engine.IO handshake, to connect to a
    /// namespace; sessions that never do are closed (long-polling
    /// handshakes without a follow-up hold memory until then).
    #[arg(long, env = "TANDEM_CONNECT_TIMEOUT_SECS", default_value_t = 10)]
    pub connect_timeout_secs: u64,

    /// Sustained document updates per second allowed per socket.
    #[arg(long, env = "TANDEM_UPDATES_PER_SECOND", default_value_t = 100)]
    pub updates_per_second: u32,

    /// Burst of document updates allowed per socket above the sustained rate.
    #[arg(long, env = "TANDEM_UPDATE_BURST", default_value_t = 200)]
    pub update_burst: u32,

    /// Awareness (cursor, presence) broadcasts per second per socket. Above
    /// it, a socket's states are merged and only the newest go out, once
    /// per interval: nothing is refused and no cursor stays stale.
    #[arg(long, env = "TANDEM_AWARENESS_PER_SECOND", default_value_t = 20)]
    pub awareness_per_second: u32,

    /// Most documents kept in memory; idle ones are flushed and unloaded
    /// first. Documents with connected sockets are never unloaded.
    #[arg(long, env = "TANDEM_MAX_LOADED_DOCUMENTS", default_value_t = 1000)]
    pub max_loaded_documents: usize,

    /// Seconds a document without connections stays loaded.
    #[arg(long, env = "TANDEM_IDLE_UNLOAD_SECS", default_value_t = 60)]
    pub idle_unload_secs: u64,

    /// Snapshot a changed document this many milliseconds after its last change.
    #[arg(long, env = "TANDEM_SNAPSHOT_DEBOUNCE_MS", default_value_t = 2000)]
    pub snapshot_debounce_ms: u64,

    /// Snapshot a continuously edited document at least this often (milliseconds).
    #[arg(long, env = "TANDEM_SNAPSHOT_MAX_DELAY_MS", default_value_t = 10_000)]
    pub snapshot_max_delay_ms: u64,

    /// Most updates committed to the update log in one transaction.
    #[arg(long, env = "TANDEM_LOG_BATCH_ROWS", default_value_t = 512)]
    pub log_batch_rows: usize,

    /// How long the log writer waits for more updates before committing a
    /// batch, in milliseconds (0 = commit whatever is queued at once). Relays
    /// to peers never wait for it; acks (and GET text) do. Each commit costs
    /// an fsync: at everyday load 2 ms meant about one commit per update,
    /// and 10 ms cuts the server's CPU per delivery by a third
    /// (BENCHMARKS.md, "Three dialects").
    #[arg(long, env = "TANDEM_LOG_BATCH_DELAY_MS", default_value_t = 10)]
    pub log_batch_delay_ms: u64,

    /// Append every accepted update to the durable log. Turning this off
    /// (benchmarks only) leaves durability to the debounced snapshots.
    #[arg(long, env = "TANDEM_UPDATE_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub update_log: bool,

    /// Redis URL (`redis://host:port[/db]`, `rediss://` for TLS, verified
    /// against the system's roots or `SSL_CERT_FILE`): turns cluster mode on. Several
    /// nodes sharing one PostgreSQL database and one Redis serve the same
    /// sessions (README, "Running a cluster"). Requires a `postgres://`
    /// database URL and the update log. Unset: single node, no Redis.
    #[arg(long, env = "TANDEM_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// This node's name in a cluster (logs, metrics, presence); each run
    /// adds `#<random>` so a restarted node is a new one to the others.
    /// Default: the host name plus a random suffix.
    #[arg(long, env = "TANDEM_NODE_ID", value_parser = parse_node_id)]
    pub node_id: Option<String>,

    /// Cluster mode: how often this node tells the others it is alive.
    #[arg(long, env = "TANDEM_CLUSTER_HEARTBEAT_MS", default_value_t = 1000)]
    pub cluster_heartbeat_ms: u64,

    /// Cluster mode: a node not heard from for this long is taken for dead:
    /// its users leave and their cursors go.
    #[arg(long, env = "TANDEM_CLUSTER_NODE_TIMEOUT_MS", default_value_t = 5000)]
    pub cluster_node_timeout_ms: u64,

    /// Cluster mode: how often every loaded document's log head is compared
    /// with what the node holds (a catch-up from the database when behind,
    /// whatever Redis delivered).
    #[arg(long, env = "TANDEM_CLUSTER_CHECK_MS", default_value_t = 2000)]
    pub cluster_check_ms: u64,

    /// Packets queued per socket before it counts as a slow consumer and is
    /// disconnected (it reconnects and resyncs).
    #[arg(long, env = "TANDEM_SOCKET_BUFFER", default_value_t = 4096)]
    pub socket_buffer: usize,

    /// Allow `POST /api/auth/guest` (rate limited per client IP).
    #[arg(long, env = "TANDEM_GUEST_SIGN_IN", default_value_t = true, action = clap::ArgAction::Set)]
    pub guest_sign_in: bool,

    /// Trust `X-Forwarded-For` / `X-Real-IP` for the client IP (only behind a proxy).
    #[arg(long, env = "TANDEM_TRUST_PROXY_HEADERS")]
    pub trust_proxy_headers: bool,

    /// Directory of a built web editor (`make web`) to serve at `/` and
    /// `/s/<session-id>` instead of the one built into the binary; when it
    /// holds no index.html, those pages say how to build it. Unset: the
    /// editor built into the binary (release builds made after `make web`),
    /// else `web/dist`.
    #[arg(long, env = "TANDEM_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// Log output: `pretty` (human-readable lines) or `json` (one object per line).
    #[arg(long, env = "TANDEM_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    /// Origin allowed to call the HTTP API and Socket.IO long-polling from a
    /// browser page of another origin (CORS), e.g. `https://app.example.com`;
    /// repeatable or comma-separated, `*` for any. Default: none, same origin only.
    #[arg(long = "cors-origin", env = "TANDEM_CORS_ORIGIN", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// URL path of the Socket.IO endpoint (both dialects), e.g. `/api/socket/io`
    /// behind a proxy that serves everything under `/api`.
    #[arg(long, env = "TANDEM_SOCKETIO_PATH", default_value = "/socket.io", value_parser = parse_socketio_path)]
    pub socketio_path: String,

    /// Public base URL of this server, as browsers reach it (printed at
    /// start-up, used for invite links). Default: `http://<bind address>`.
    #[arg(long, env = "TANDEM_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// Most files one session's workspace may hold, the main file included
    /// (creating one more is TOO_MANY_FILES).
    #[arg(long, env = "TANDEM_MAX_FILES_PER_SESSION", default_value_t = 5000)]
    pub max_files_per_session: usize,

    /// Most bytes of text (UTF-8, every file's size as of its latest
    /// snapshot) one session's workspace may hold. Creating a file or
    /// replacing a file's content over HTTP beyond it is DOCUMENT_TOO_LARGE;
    /// live edits are bounded per document by --max-document-bytes.
    #[arg(long, env = "TANDEM_MAX_WORKSPACE_BYTES", default_value_t = 64 << 20)]
    pub max_workspace_bytes: u64,
}

impl Config {
    /// The public base URL (no trailing slash): `--public-url`, else
    /// `http://` and the bind address (an unspecified address such as
    /// `0.0.0.0` shows as `localhost`). [`crate::server::run`] replaces a
    /// bind port 0 with the port actually bound.
    pub fn public_url(&self) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let addr = self.bind;
        if addr.ip().is_unspecified() {
            format!("http://localhost:{}", addr.port())
        } else {
            format!("http://{addr}")
        }
    }
}

/// A CORS origin: `*`, or `scheme://host[:port]` (a trailing `/` is dropped).
fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if s == "*" {
        return Ok(s.to_owned());
    }
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("`{s}`: an origin is `*` or `http(s)://host[:port]`"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', ',']) {
        return Err(format!(
            "`{s}`: an origin is `http(s)://host[:port]`, without a path"
        ));
    }
    Ok(s.to_owned())
}

/// A Socket.IO path: starts with `/`, no trailing `/` (dropped), no query.
fn parse_socketio_path(s: &str) -> Result<String, String> {
    let p = s.trim().trim_end_matches('/');
    if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
        return Err(format!(
            "`{s}`: expected a path such as `/socket.io` or `/api/socket/io`"
        ));
    }
    Ok(p.to_owned())
}

/// A node id: 1–64 of `A-Za-z0-9._-`.
fn parse_node_id(s: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}`: a node id is 1 to 64 of A-Z a-z 0-9 . _ -"))
    }
}

/// A public URL: `http(s)://…`, without a trailing `/`.
fn parse_public_url(s: &str) -> Result<String, String> {
    let u = s.trim().trim_end_matches('/');
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .unwrap_or_default();
    if rest.is_empty() || rest.contains([' ', '?', '#']) {
        return Err(format!(
            "`{s}`: expected a URL such as `https://tandem.example.com`"
        ));
    }
    Ok(u.to_owned())
}

impl Default for Config {
    fn default() -> Self {
        Cli::parse_from(["tandem"]).serve
    }
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// User id (`sub`).
    #[arg(long)]
    pub user: String,
    /// Display name (`name`).
    #[arg(long)]
    pub name: String,
    /// Grant a role in a session without a database row: `ID=ROLE`, repeatable.
    #[arg(long = "session", value_parser = parse_session_role)]
    pub sessions: Vec<(String, Role)>,
    /// Lifetime in seconds (negative values make an already expired token).
    #[arg(long, default_value_t = 86_400, allow_hyphen_values = true)]
    pub ttl_secs: i64,
    #[command(flatten)]
    pub secret: SecretArgs,
}

fn parse_session_role(s: &str) -> Result<(String, Role), String> {
    let (id, role) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=ROLE, got `{s}`"))?;
    crate::model::validate_session_id(id).map_err(|e| e.message)?;
    Ok((id.to_owned(), role.parse()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_defaults_match_the_issue() {
        Cli::command().debug_assert();
        let c = Config::default();
        assert_eq!(c.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(c.max_update_bytes, 1 << 20);
        assert_eq!(c.updates_per_second, 100);
        assert_eq!(c.update_burst, 200);
        assert_eq!(c.anonymous, Anonymous::Off);
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert!(c.cors_origins.is_empty());
        assert_eq!(c.socketio_path, "/socket.io");
        assert_eq!(c.public_url(), "http://127.0.0.1:3000");
        assert_eq!(c.max_files_per_session, 5000);
        assert_eq!(c.max_workspace_bytes, 64 << 20);
        let cli = Cli::parse_from([
            "tandem",
            "token",
            "--user",
            "u",
            "--name",
            "U",
            "--session",
            "a=viewer",
        ]);
        match cli.command {
            Some(Command::Token(t)) => assert_eq!(t.sessions, vec![("a".into(), Role::Viewer)]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn operability_flags_parse_and_validate() {
        let c = Cli::try_parse_from([
            "tandem",
            "--log-format",
            "json",
            "--cors-origin",
            "https://a.example,http://b.example:8080/",
            "--cors-origin",
            "https://c.example",
            "--socketio-path",
            "/api/socket/io/",
            "--public-url",
            "https://tandem.example.com/",
        ])
        .unwrap()
        .serve;
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.cors_origins,
            [
                "https://a.example",
                "http://b.example:8080",
                "https://c.example"
            ]
        );
        assert_eq!(c.socketio_path, "/api/socket/io");
        assert_eq!(c.public_url(), "https://tandem.example.com");
        for bad in [
            ["--cors-origin", "example.com"],
            ["--cors-origin", "https://a.example/path"],
            ["--socketio-path", "socket.io"],
            ["--socketio-path", "/"],
            ["--public-url", "tandem.example.com"],
            ["--log-format", "xml"],
        ] {
            assert!(
                Cli::try_parse_from(["tandem", bad[0], bad[1]]).is_err(),
                "{bad:?} accepted"
            );
        }
        let any = Cli::parse_from(["tandem", "--bind", "0.0.0.0:8080"]).serve;
        assert_eq!(any.public_url(), "http://localhost:8080");
    }
}
