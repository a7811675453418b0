//! `tandem sync`: keeps a local folder and a session's workspace in sync, so
//! people pair from their own editor (vim, VS Code, …) while others use the
//! web editor or their own folder.
//!
//! - [`tree`]: the folder — ignore rules, text/binary, CRLF, atomic writes.
//! - [`replica`]: one file's Yjs document and the three-way merge.
//! - [`state`]: what is remembered in `<dir>/.tandem/` between runs.
//! - [`api`]: the HTTP routes for tree changes.
//! - [`agent`]: the one task that owns it all and decides.
//!
//! This module wires them to the terminal: the watcher, the reconnect loop,
//! Ctrl-C.

pub mod agent;
pub mod api;
pub mod replica;
pub mod state;
pub mod tree;

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::client::Incoming;
use agent::{Agent, Fatal, is_transient, say};
use tree::Tree;

pub const LONG_ABOUT: &str =
    "Keep a local folder and a session in sync, so you can pair from your own editor.

Every text file in DIR (minus .git/, .tandem/ and what .gitignore or .tandemignore \
files exclude) is a file of the session: saves show up in the browser and in other synced \
folders within a second, and their edits land on disk. Edits made while the agent was \
stopped are merged on the next start. State lives in DIR/.tandem/.

Examples:
  tandem sync ./project --server http://localhost:3000 --session Hx3kP9mQa2Zr --token $TOKEN
  TANDEM_TOKEN=$TOKEN tandem sync ./project --server http://localhost:3000 --create \"Pairing\"
  tandem sync ./project --server https://tandem.example.com --session Hx3kP9mQa2Zr --token $TOKEN
  tandem sync ./project --token $TOKEN     # later: server and session are remembered";

/// `tandem sync` options.
#[derive(Debug, Clone, Args)]
#[command(long_about = LONG_ABOUT)]
pub struct SyncArgs {
    /// The folder to sync (created if missing).
    pub dir: PathBuf,

    /// The server's URL: http://host:port, or https://host[:port] behind TLS
    /// (verified against the system's certificate roots; SSL_CERT_FILE names
    /// another bundle). Remembered after the first run.
    #[arg(long, env = "TANDEM_SERVER")]
    pub server: Option<String>,

    /// The session to sync with. Remembered after the first run.
    #[arg(long, conflicts_with = "create")]
    pub session: Option<String>,

    /// Create a new session with this title from the folder (one of its
    /// files becomes the main file) and print its link.
    #[arg(long, value_name = "TITLE")]
    pub create: Option<String>,

    /// Your token (a JWT from the server's sign-in or `tandem token`).
    #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Allow deleting more than half of the synced files at once (otherwise
    /// such a mass deletion is refused and the files are restored).
    #[arg(long)]
    pub allow_mass_delete: bool,

    /// Files larger than this are left alone (with a log line).
    #[arg(long, default_value_t = 512 * 1024, value_name = "BYTES")]
    pub max_file_bytes: u64,

    /// How long the folder must be quiet before changes are picked up.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub debounce_ms: u64,
}

/// How long to wait for the server to acknowledge edits on the way out.
const FINISH_WAIT: Duration = Duration::from_secs(10);
/// A full look at the folder even without watcher events (a safety net for
/// events the platform dropped).
const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// Runs the agent until `shutdown` resolves (Ctrl-C, SIGTERM) or a fatal
/// error (bad token, unknown or deleted session, access removed).
pub async fn run(args: SyncArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let root = std::path::absolute(&args.dir)?;
    let tree = Tree {
        root: root.clone(),
        max_file_bytes: args.max_file_bytes,
    };
    let store = state::Store::open(&tree.state_dir())?;
    let remembered = store.load_index()?.map(|i| i.server);
    let server = args
        .server
        .or(remembered)
        .ok_or_else(|| Fatal("name the server with --server http://host:port".into()))?;
    anyhow::ensure!(
        server.starts_with("http://") || server.starts_with("https://"),
        Fatal(format!(
            "--server must be an http:// or https:// URL (got {server})"
        ))
    );
    let mut agent = Agent::new(
        store,
        agent::Options {
            tree: tree.clone(),
            server: server.trim_end_matches('/').to_owned(),
            token: args.token,
            session: args.session,
            create: args.create,
            allow_mass_delete: args.allow_mass_delete,
        },
    )
    .await?;

    // The watcher feeds paths into a channel; the loop below drains it.
    let (fs_tx, mut fs_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut watcher = notify_debouncer_full::new_debouncer(
        Duration::from_millis(args.debounce_ms),
        None,
        move |res: notify_debouncer_full::DebounceEventResult| match res {
            Ok(events) => {
                // Opening and reading files (ours included) is no change:
                // counting it would make every read trigger another look.
                let paths: Vec<PathBuf> = events
                    .into_iter()
                    .filter(|e| !e.event.kind.is_access())
                    .flat_map(|e| e.event.paths)
                    .collect();
                if paths.is_empty() {
                    return;
                }
                let _ = fs_tx.send(paths);
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!(error = %e, "file watcher");
                }
            }
        },
    )?;
    watcher.watch(&root, notify::RecursiveMode::Recursive)?;

    tokio::pin!(shutdown);
    // A stop asked for while the first connection is still being made (a
    // slow or stalled server) is honoured at once: nothing is half-done that
    // the next start does not redo, as after a crash.
    tokio::select! {
        biased;
        () = &mut shutdown => {
            say("stopped before the first sync");
            return Ok(());
        }
        connected = agent.connect() => connected?,
    }
    let mut rescan = tokio::time::interval(RESCAN_EVERY);
    rescan.reset();
    loop {
        let write_due = agent.write_due();
        let result: anyhow::Result<()> = tokio::select! {
            biased;
            () = &mut shutdown => break,
            incoming = agent.next_incoming() => match incoming {
                Some(Incoming::Event(ev)) => agent.on_event(ev).await,
                Some(Incoming::Disconnected { reason }) => Err(anyhow::anyhow!(crate::client::ClientError::Protocol(reason))),
                None => Err(anyhow::anyhow!(crate::client::ClientError::Closed)),
            },
            () = sleep_until(write_due), if write_due.is_some() => agent.write_pending().await,
            paths = fs_rx.recv() => {
                let mut touched = HashSet::new();
                let mut batch = paths.unwrap_or_default();
                while let Ok(more) = fs_rx.try_recv() {
                    batch.extend(more);
                }
                for p in batch.iter().filter(|p| tree.is_relevant(p)) {
                    if let Some(sp) = tree.session_path(p) {
                        touched.insert(sp);
                    }
                }
                tracing::debug!(?touched, "folder changed");
                if touched.is_empty() { Ok(()) } else { agent.scan(&touched).await }
            },
            _ = rescan.tick() => agent.scan(&HashSet::new()).await,
        };
        let Err(e) = result else {
            continue;
        };
        if !is_transient(&e) {
            agent.finish(Duration::ZERO).await;
            return Err(e);
        }
        if !agent.is_connected() || is_connection_error(&e) {
            agent.disconnected();
            if !reconnect(&mut agent, &mut shutdown, &e).await? {
                break;
            }
        } else {
            tracing::warn!(error = format!("{e:#}"), "sync step failed; continuing");
        }
    }
    let left = agent.finish(FINISH_WAIT).await;
    if left == 0 {
        say("stopped; every change is synced");
    } else {
        say(format!(
            "stopped with {left} edit(s) not acknowledged; they are sent on the next start"
        ));
    }
    Ok(())
}

fn is_connection_error(e: &anyhow::Error) -> bool {
    e.is::<crate::client::ClientError>() || e.is::<api::ApiError>()
}

/// Reconnects with backoff (0.5 s doubling to 10 s) until it works, a fatal
/// error, or shutdown (`Ok(false)`).
async fn reconnect(
    agent: &mut Agent,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    cause: &anyhow::Error,
) -> anyhow::Result<bool> {
    let mut delay = Duration::from_millis(500);
    say(format!("disconnected ({cause}); reconnecting"));
    loop {
        tokio::select! {
            () = shutdown.as_mut() => return Ok(false),
            () = tokio::time::sleep(delay) => {}
        }
        let attempt = tokio::select! {
            biased;
            () = shutdown.as_mut() => return Ok(false),
            attempt = agent.connect() => attempt,
        };
        match attempt {
            Ok(()) => return Ok(true),
            Err(e) if is_transient(&e) => {
                agent.disconnected();
                delay = (delay * 2).min(Duration::from_secs(10));
                say(format!(
                    "still disconnected ({e:#}); next try in {:.1} s",
                    delay.as_secs_f32()
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}
