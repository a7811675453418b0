//! The agent: one task that owns every file's replica and serialises what
//! happens to them — edits from the session, changes on disk, tree events,
//! reconnects — so no two of them race.
//!
//! **Level-triggered.** A watcher event only says "look again": the agent
//! walks the folder and compares each file with the text it last knew to
//! be on disk (its *base*). Our own writes therefore never come back as
//! edits (the file equals its base), an editor's temp-file-and-rename save
//! is one change, and a missed or merged event cannot lose anything.
//!
//! **Per file** the agent keeps a Yjs replica and the base. A change on
//! disk is diffed against the base and applied to the replica as character
//! edits (merged three ways with session edits not yet written); session
//! edits are applied to the replica and written to disk shortly after.
//!
//! **Crash order.** A file's replica and base are saved together
//! ([`Store::save_file`]) before anything leaves (an update sent, a file
//! written), then again after a write. Whatever the moment of a crash, the
//! next run finds either "disk = base" (nothing local to send; the session's
//! text is written) or "disk = replica" (nothing to do): a change is never
//! applied twice or reverted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::api::{Api, ApiError};
use super::replica::{Replica, merge3};
use super::state::{FileEntry, Index, Store};
use super::tree::{Content, Stamp, Tree};
use crate::client::{Arg, Client, ClientError, Event, Incoming};
use crate::model::{DocId, File};

const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the Socket.IO handshake with the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long session edits wait before being written (they come in bursts).
const WRITE_DELAY: Duration = Duration::from_millis(10);
/// Files opened at once during a (re)sync.
const OPEN_CONCURRENCY: usize = 16;

/// What the agent was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub tree: Tree,
    pub server: String,
    pub token: Option<String>,
    pub session: Option<String>,
    pub create: Option<String>,
    pub allow_mass_delete: bool,
}

/// A failure that ends the agent (as opposed to a lost connection, after
/// which it reconnects).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

struct Tracked {
    path: String,
    replica: Replica,
    /// The text last known to be on disk; `None` until first written or read.
    base: Option<String>,
    crlf: bool,
    /// Disk stamp when last read or written: unchanged means not re-read.
    stamp: Option<Stamp>,
    /// Session edits not yet written to disk.
    dirty: bool,
}

impl Tracked {
    /// A file known from the session, not yet on disk.
    fn fresh(path: &str) -> Tracked {
        Tracked {
            path: path.to_owned(),
            replica: Replica::default(),
            base: None,
            crlf: false,
            stamp: None,
            dirty: false,
        }
    }
}

/// A local file the session does not have yet.
struct NewLocal {
    path: String,
    text: String,
    crlf: bool,
    stamp: Stamp,
}

struct Conn {
    client: Client,
    rx: mpsc::UnboundedReceiver<Incoming>,
}

pub struct Agent {
    opts: Options,
    store: Store,
    api: Api,
    session: String,
    files: BTreeMap<String, Tracked>,
    /// Local paths not synced (binary, too large, refused), with the stamp
    /// they had when said so: mentioned once per change.
    skipped: HashMap<String, Stamp>,
    conn: Option<Conn>,
    can_edit: bool,
    acks: JoinSet<()>,
    write_at: Option<Instant>,
}

/// A status line on the terminal.
pub fn say(msg: impl std::fmt::Display) {
    println!("[{}] {msg}", chrono::Local::now().format("%H:%M:%S"));
}

/// Whether an error means "try again later" rather than "give up".
pub fn is_transient(e: &anyhow::Error) -> bool {
    if e.is::<Fatal>() {
        return false;
    }
    if let Some(c) = e.downcast_ref::<ClientError>() {
        return !matches!(c, ClientError::ConnectRefused { .. });
    }
    if let Some(a) = e.downcast_ref::<ApiError>() {
        return matches!(a, ApiError::Unreachable(_));
    }
    true
}

impl Agent {
    /// Takes the folder's state (`store`, locked) and settles which
    /// session it syncs (creating one with `--create`).
    pub async fn new(store: Store, opts: Options) -> anyhow::Result<Agent> {
        let root = &opts.tree.root;
        let _ = std::fs::write(opts.tree.state_dir().join(".gitignore"), "*\n");
        let index = store.load_index()?;
        let api = Api::new(&opts.server, opts.token.as_deref());
        let session = match (&index, &opts.session, &opts.create) {
            (Some(i), Some(s), _) if &i.session_id != s => bail!(Fatal(format!(
                "{} is synced with session {}, not {s}; remove {} to sync it with another session",
                root.display(),
                i.session_id,
                opts.tree.state_dir().display()
            ))),
            (Some(i), _, Some(_)) => bail!(Fatal(format!(
                "{} is already synced with session {}; --create needs a folder that is not",
                root.display(),
                i.session_id
            ))),
            (Some(i), _, None) => i.session_id.clone(),
            (None, Some(s), _) => {
                crate::model::validate_session_id(s)
                    .map_err(|e| Fatal(format!("--session: {}", e.message)))?;
                s.clone()
            }
            (None, None, Some(title)) => {
                let main = pick_main_path(&opts.tree);
                let id = api
                    .create_session(title, main.as_deref())
                    .await
                    .map_err(|e| refusal("cannot create the session", e))?;
                say(format!("created session {id} — open {}/s/{id}", api.base()));
                id
            }
            (None, None, None) => bail!(Fatal(
                "name the session with --session <id> (or create one with --create <title>)".into()
            )),
        };
        let mut files = BTreeMap::new();
        if let Some(i) = &index {
            for (id, entry) in &i.files {
                let mut t = Tracked::fresh(&entry.path);
                t.crlf = entry.crlf;
                if let Some((doc, base)) = store.load_file(id) {
                    match Replica::load(&doc) {
                        Ok(r) => (t.replica, t.base) = (r, Some(base)),
                        Err(e) => {
                            tracing::warn!(file = %entry.path, error = %e, "saved state unreadable; syncing the file afresh")
                        }
                    }
                }
                files.insert(id.clone(), t);
            }
        }
        let agent = Agent {
            opts,
            store,
            api,
            session,
            files,
            skipped: HashMap::new(),
            conn: None,
            can_edit: true,
            acks: JoinSet::new(),
            write_at: None,
        };
        agent.save_index()?;
        Ok(agent)
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    fn doc_id(&self, file_id: &str) -> String {
        DocId::for_file(&self.session, file_id)
            .map(|d| d.to_string())
            .unwrap_or_default()
    }

    /// The file id of one of this session's documents.
    fn file_of(&self, doc_id: &str) -> Option<String> {
        DocId::parse(doc_id)
            .ok()
            .filter(|d| d.session == self.session)
            .map(|d| d.file_id().to_owned())
    }

    fn save_index(&self) -> anyhow::Result<()> {
        let files = self
            .files
            .iter()
            .map(|(id, t)| {
                (
                    id.clone(),
                    FileEntry {
                        path: t.path.clone(),
                        crlf: t.crlf,
                    },
                )
            })
            .collect();
        self.store.save_index(&Index {
            version: 0,
            server: self.opts.server.clone(),
            session_id: self.session.clone(),
            files,
        })
    }

    fn save_file(&self, id: &str) -> anyhow::Result<()> {
        let t = &self.files[id];
        match &t.base {
            Some(base) => self.store.save_file(id, &t.replica.state(), base),
            None => Ok(()),
        }
    }

    // ---------------------------------------------------------------- connection

    /// Connects, joins the session and brings both sides level. On the
    /// first run any failure is the caller's to report; later, transient
    /// ones are retried ([`is_transient`]).
    pub async fn connect(&mut self) -> anyhow::Result<()> {
        let auth = self.opts.token.as_ref().map(|t| json!({ "token": t }));
        // A server that accepts the connection but never answers must not
        // hold the agent forever: the attempt fails and is retried.
        let handshake = Client::connect(&self.opts.server, "/", auth);
        let (client, rx) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .unwrap_or(Err(ClientError::Timeout))
            .map_err(|e| match e {
                ClientError::ConnectRefused { message } => anyhow!(Fatal(format!(
                    "the server refused the connection: {message} (check --token)"
                ))),
                e => anyhow!(e).context(format!("cannot reach {}", self.opts.server)),
            })?;
        self.api.socket_id = Some(client.sid().to_owned());
        let reply = join(&client, &self.session).await?;
        let role = reply["role"].as_str().unwrap_or("viewer").to_owned();
        self.can_edit = role != "viewer";
        let files: Vec<File> = serde_json::from_value(reply["files"].clone())
            .map_err(|e| anyhow!("unexpected join reply: {e}"))?;
        self.conn = Some(Conn { client, rx });
        self.reconcile(files).await?;
        self.scan(&HashSet::new()).await?;
        let n = self.files.len();
        say(format!(
            "synced {n} file{} with {}/s/{} as {role}{}",
            if n == 1 { "" } else { "s" },
            self.api.base(),
            self.session,
            if self.can_edit {
                ""
            } else {
                " (read-only: local changes are not sent)"
            }
        ));
        Ok(())
    }

    /// The next thing the server sent, or `None` when not connected.
    pub async fn next_incoming(&mut self) -> Option<Incoming> {
        match &mut self.conn {
            Some(c) => c.rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Forgets the connection (after `Disconnected`).
    pub fn disconnected(&mut self) {
        if let Some(c) = self.conn.take() {
            c.client.kill();
        }
        self.api.socket_id = None;
    }

    /// When the next write of session edits is due.
    pub fn write_due(&self) -> Option<Instant> {
        self.write_at
    }

    /// Brings the tracked files in line with the session's list (after a
    /// (re)connect): deletions and renames made there while we were away,
    /// new files; then opens and syncs every document and settles each file.
    async fn reconcile(&mut self, server: Vec<File>) -> anyhow::Result<()> {
        let by_id: HashMap<&str, &File> = server.iter().map(|f| (f.id.as_str(), f)).collect();
        let gone: Vec<String> = self
            .files
            .keys()
            .filter(|id| !by_id.contains_key(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            self.remote_deleted(&id);
        }
        for f in &server {
            match self.files.get(&f.id) {
                Some(t) if t.path != f.path => self.remote_moved(&f.id, &f.path),
                Some(_) => {}
                None => {
                    self.files.insert(f.id.clone(), Tracked::fresh(&f.path));
                }
            }
        }
        let ids: Vec<String> = self.files.keys().cloned().collect();
        self.open(&ids).await?;
        for id in &ids {
            self.settle(id).await?;
        }
        self.save_index()
    }

    /// Opens the documents of `ids` and fetches what the session has that
    /// the replicas lack (the server asks for the converse itself).
    async fn open(&mut self, ids: &[String]) -> anyhow::Result<()> {
        use futures::StreamExt;
        let client = match &self.conn {
            Some(c) => c.client.clone(),
            None => return Ok(()),
        };
        let jobs: Vec<(String, String, Vec<u8>)> = ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    self.doc_id(id),
                    self.files[id].replica.state_vector(),
                )
            })
            .collect();
        let session = self.session.clone();
        let results: Vec<(String, anyhow::Result<Vec<u8>>)> = futures::stream::iter(jobs)
            .map(|(id, doc_id, sv)| {
                let (client, session) = (client.clone(), session.clone());
                async move {
                    let r = open_one(&client, &session, &id, &doc_id, sv).await;
                    (id, r)
                }
            })
            .buffer_unordered(OPEN_CONCURRENCY)
            .collect()
            .await;
        for (id, r) in results {
            match r {
                Ok(diff) => {
                    if let Some(t) = self.files.get(&id) {
                        t.replica.apply(&diff)?;
                    }
                }
                Err(e)
                    if e.downcast_ref::<Refused>()
                        .is_some_and(|r| r.code == "FILE_NOT_FOUND") =>
                {
                    // Deleted in the meantime: its file event follows.
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- one file

    /// Makes one file's disk text, base and replica agree: sends what
    /// changed on disk, writes what changed in the session, merging both.
    async fn settle(&mut self, id: &str) -> anyhow::Result<()> {
        let Some(t) = self.files.get(id) else {
            return Ok(());
        };
        let path = t.path.clone();
        let disk = self.opts.tree.read(&path)?;
        let session_text = t.replica.text();
        let (text, crlf, stamp) = match disk {
            None if t.base.is_none() => {
                // Only in the session (new, or never written): download.
                self.write(id, &session_text)?;
                say(format!("↓ {path}"));
                return Ok(());
            }
            // Deleted here: the scan decides what that means.
            None => return Ok(()),
            Some((Content::Text { text, crlf }, stamp)) => (text, crlf, stamp),
            Some((other, stamp)) => {
                self.skip(&path, stamp, &other);
                return Ok(());
            }
        };
        let t = self.files.get_mut(id).expect("tracked");
        t.crlf = crlf;
        t.stamp = Some(stamp);
        if text == session_text {
            t.dirty = false;
            if t.base.as_deref() != Some(text.as_str()) {
                t.base = Some(text);
                self.save_file(id)?;
            }
            return Ok(());
        }
        match t.base.clone() {
            // No common base: the first sync of a file that exists on both sides.
            None if session_text.is_empty() => {
                t.base = Some(text.clone());
                self.local_edit(id, &text)?;
                say(format!("↑ {path}"));
            }
            None if text.is_empty() => {
                t.base = Some(text);
                self.write(id, &session_text)?;
                say(format!("↓ {path}"));
            }
            None => {
                let conflict = self.opts.tree.conflict_path(&path);
                self.opts.tree.rename(&path, &conflict)?;
                self.write(id, &session_text)?;
                say(format!(
                    "! {path} differs from the session's: kept the session's, yours is {conflict}"
                ));
            }
            Some(base) if base == text => {
                // Only the session changed.
                self.write(id, &session_text)?;
            }
            Some(base) => {
                // Changed here (and maybe there too).
                let merged = if session_text == base {
                    text.clone()
                } else {
                    merge3(&base, &session_text, &text)
                };
                let t = self.files.get_mut(id).expect("tracked");
                t.base = Some(text.clone());
                self.local_edit(id, &merged)?;
                if merged != text {
                    self.write_saved(id, &merged)?;
                }
            }
        }
        Ok(())
    }

    /// Applies a local text to the replica, saves it with the base, and
    /// sends the update.
    fn local_edit(&mut self, id: &str, new_text: &str) -> anyhow::Result<()> {
        let t = &self.files[id];
        let update = if self.can_edit {
            t.replica.set_text(new_text)
        } else {
            tracing::warn!(path = %t.path, "read-only in this session: the local change is not sent");
            None
        };
        self.save_file(id)?;
        let Some(update) = update else {
            return Ok(());
        };
        let Some(conn) = &self.conn else {
            return Ok(());
        };
        let client = conn.client.clone();
        let (doc_id, path) = (self.doc_id(id), t.path.clone());
        self.acks.spawn(async move {
            let r = client
                .emit_with_ack(
                    "yjs-update",
                    vec![Arg::json(&doc_id), Arg::bin(update)],
                    ACK_TIMEOUT,
                )
                .await;
            match r.map(|v| v.into_iter().next()) {
                Ok(Some(Arg::Json(v))) if v["ok"] == true => {}
                // The server asks for a resync itself once the budget allows.
                Ok(Some(Arg::Json(v))) if v["error"]["code"] == "RATE_LIMITED" => {}
                Ok(other) => {
                    tracing::warn!(path = %path, reply = ?other, "edit refused")
                }
                Err(e) => {
                    tracing::debug!(path = %path, error = %e, "edit not acknowledged; resent on reconnect")
                }
            }
        });
        Ok(())
    }

    /// Writes the replica's text (`text`) to disk: saved first with the old
    /// base, then again with the new one (see the module doc).
    fn write(&mut self, id: &str, text: &str) -> anyhow::Result<()> {
        self.save_file(id)?;
        self.write_saved(id, text)
    }

    /// [`write`](Self::write) when the replica and the old base are saved already.
    fn write_saved(&mut self, id: &str, text: &str) -> anyhow::Result<()> {
        let t = self.files.get_mut(id).expect("tracked");
        let stamp = self
            .opts
            .tree
            .write(&t.path, text, t.crlf)
            .with_context(|| format!("cannot write {}", t.path))?;
        t.stamp = Some(stamp);
        t.base = Some(text.to_owned());
        t.dirty = false;
        self.save_file(id)
    }

    fn skip(&mut self, path: &str, stamp: Stamp, why: &Content) {
        if self.skipped.insert(path.to_owned(), stamp) == Some(stamp) {
            return;
        }
        match why {
            Content::Binary => say(format!("· {path}: binary, not synced")),
            Content::TooLarge(n) => say(format!(
                "· {path}: {n} bytes, above --max-file-bytes ({}), not synced",
                self.opts.tree.max_file_bytes
            )),
            Content::Text { .. } => {}
        }
    }

    // ---------------------------------------------------------------- session events

    /// Handles one event from the server.
    pub async fn on_event(&mut self, ev: Event) -> anyhow::Result<()> {
        let first = ev.args.first().and_then(Arg::as_json).cloned();
        let ours = |v: &Value| {
            v["originSocketId"].as_str().is_some()
                && v["originSocketId"].as_str() == self.api.socket_id.as_deref()
        };
        match ev.name.as_str() {
            "yjs-update" => {
                let (Some(doc_id), Some(update)) = (
                    first.as_ref().and_then(Value::as_str),
                    ev.args.get(1).and_then(Arg::as_bin),
                ) else {
                    return Ok(());
                };
                if let Some(id) = self.file_of(doc_id)
                    && let Some(t) = self.files.get_mut(&id)
                {
                    t.replica.apply(update)?;
                    t.dirty = true;
                    self.write_at.get_or_insert(Instant::now() + WRITE_DELAY);
                }
            }
            "yjs-sync-step-1" => {
                let (Some(doc_id), Some(sv), Some(ack)) = (
                    first.as_ref().and_then(Value::as_str),
                    ev.args.get(1).and_then(Arg::as_bin),
                    ev.ack,
                ) else {
                    return Ok(());
                };
                let diff = match self.file_of(doc_id).and_then(|id| self.files.get(&id)) {
                    Some(t) => t.replica.diff(sv)?,
                    None => vec![0, 0],
                };
                let _ = ack.reply(vec![Arg::bin(diff)]);
            }
            "file:created" => {
                let Some(v) = first.filter(|v| !ours(v)) else {
                    return Ok(());
                };
                let file: File = serde_json::from_value(v["file"].clone())?;
                if !self.files.contains_key(&file.id) {
                    self.files
                        .insert(file.id.clone(), Tracked::fresh(&file.path));
                    self.open(std::slice::from_ref(&file.id)).await?;
                    self.settle(&file.id).await?;
                    self.save_index()?;
                }
            }
            "file:renamed" | "file:moved" => {
                let Some(v) = first.filter(|v| !ours(v)) else {
                    return Ok(());
                };
                let file: File = serde_json::from_value(v["file"].clone())?;
                if self.files.contains_key(&file.id) {
                    self.remote_moved(&file.id, &file.path);
                    self.save_index()?;
                }
            }
            "file:deleted" => {
                let Some(v) = first.filter(|v| !ours(v)) else {
                    return Ok(());
                };
                if let Some(id) = v["fileId"].as_str() {
                    self.remote_deleted(id);
                    self.save_index()?;
                }
            }
            "role:changed" => {
                if let Some(v) = first
                    && v["sessionId"] == self.session.as_str()
                {
                    let role = v["role"].as_str().unwrap_or("viewer");
                    self.can_edit = role != "viewer";
                    say(format!("your role is now {role}"));
                }
            }
            "session:removed"
                if first
                    .as_ref()
                    .is_some_and(|v| v["sessionId"] == self.session.as_str()) =>
            {
                bail!(Fatal("the session was deleted".into()));
            }
            "error" => {
                let v = first.unwrap_or(Value::Null);
                match v["code"].as_str().unwrap_or_default() {
                    "SESSION_NOT_FOUND" => bail!(Fatal("the session was deleted".into())),
                    "FORBIDDEN" => {
                        bail!(Fatal("your access to the session was removed".into()))
                    }
                    // A deleted file's document: its file event says the rest.
                    "FILE_NOT_FOUND" | "RATE_LIMITED" => {}
                    code => tracing::warn!(code, message = %v["message"], "server error"),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes the session edits that arrived since the last write.
    pub async fn write_pending(&mut self) -> anyhow::Result<()> {
        self.write_at = None;
        let dirty: Vec<String> = self
            .files
            .iter()
            .filter(|(_, t)| t.dirty)
            .map(|(id, _)| id.clone())
            .collect();
        for id in dirty {
            self.settle(&id).await?;
        }
        Ok(())
    }

    /// A file renamed or moved in the session: move it here too.
    fn remote_moved(&mut self, id: &str, new_path: &str) {
        let tree = self.opts.tree.clone();
        let Some(t) = self.files.get(id) else {
            return;
        };
        let old = t.path.clone();
        let taken = self.files.values().any(|o| o.path == new_path);
        if !taken && tree.abs(new_path).exists() {
            // An untracked local file in the way: keep it beside.
            let conflict = tree.conflict_path(new_path);
            if tree.rename(new_path, &conflict).is_ok() {
                say(format!(
                    "! {new_path} was in the way; yours is now {conflict}"
                ));
            }
        }
        let t = self.files.get_mut(id).expect("tracked");
        if tree.abs(&old).exists() {
            if let Err(e) = tree.rename(&old, new_path) {
                tracing::warn!(from = %old, to = %new_path, error = %e, "cannot move the file");
            }
        } else {
            // Not here: write it at its new place.
            t.base = None;
        }
        t.path = new_path.to_owned();
        t.stamp = None;
        say(format!("→ {old} → {new_path}"));
    }

    /// A file deleted in the session: delete it here unless it holds local
    /// changes the session never saw (then it stays and is offered again).
    fn remote_deleted(&mut self, id: &str) {
        let Some(t) = self.files.remove(id) else {
            return;
        };
        self.store.forget_file(id);
        match self.opts.tree.read(&t.path) {
            Ok(Some((Content::Text { text, .. }, _))) if Some(&text) != t.base.as_ref() => {
                say(format!(
                    "! {}: deleted in the session but changed here; kept, and offered again",
                    t.path
                ));
            }
            Ok(None) => {}
            _ => {
                if let Err(e) = self.opts.tree.remove(&t.path) {
                    tracing::warn!(path = %t.path, error = %e, "cannot delete the file");
                } else {
                    say(format!("✕ {}", t.path));
                }
            }
        }
    }

    // ---------------------------------------------------------------- the folder

    /// Compares the folder with what is tracked: changed files are settled,
    /// new ones created (or recognised as a rename of a vanished one, by
    /// content), vanished ones deleted in the session. `touched`: paths the
    /// watcher named, re-read even if their stamp did not change.
    pub async fn scan(&mut self, touched: &HashSet<String>) -> anyhow::Result<()> {
        if self.conn.is_none() {
            return Ok(());
        }
        // The usual case, a save of a tracked file (maybe through a
        // temporary file that is gone again): only that file is read; a
        // walk of a large tree costs more than the save itself.
        if !touched.is_empty() {
            let mut ids = Vec::new();
            let mut simple = true;
            for p in touched {
                let abs = self.opts.tree.abs(p);
                let (is_file, exists) = (abs.is_file(), abs.exists());
                // A folder renamed, moved or deleted: only a walk tells.
                let folder = format!("{p}/");
                let held_files = self.files.values().any(|t| t.path.starts_with(&folder));
                match self.files.iter().find(|(_, t)| &t.path == p) {
                    Some((id, t)) if is_file && t.base.is_some() => ids.push(id.clone()),
                    None if !exists && !held_files => {
                        // A temporary file renamed over a sibling: look at
                        // the tracked files of its folder whose stamp moved.
                        let dir = p.rsplit_once('/').map_or("", |(d, _)| d);
                        for (id, t) in &self.files {
                            let same_dir = t.path.rsplit_once('/').map_or("", |(d, _)| d) == dir;
                            if same_dir
                                && t.base.is_some()
                                && std::fs::metadata(self.opts.tree.abs(&t.path))
                                    .is_ok_and(|m| Some(Stamp::of(&m)) != t.stamp)
                            {
                                ids.push(id.clone());
                            }
                        }
                    }
                    _ => simple = false,
                }
            }
            ids.sort();
            ids.dedup();
            if simple {
                for id in ids {
                    self.settle(&id).await?;
                }
                return Ok(());
            }
        }
        let local = self.opts.tree.walk();
        let mut missing: Vec<String> = Vec::new();
        let ids: Vec<String> = self.files.keys().cloned().collect();
        for id in ids {
            let t = &self.files[&id];
            match local.get(&t.path) {
                Some(stamp) => {
                    if t.dirty || t.stamp != Some(*stamp) || touched.contains(&t.path) {
                        self.settle(&id).await?;
                    }
                }
                // Not in the walk but on disk: a session file at a path
                // this folder ignores. It stays synced (ignore rules keep
                // local files from leaving, they never delete the
                // session's).
                None if self.opts.tree.abs(&t.path).is_file() => {
                    if t.stamp
                        .is_none_or(|s| Some(s) != stamp_of(&self.opts.tree, &t.path))
                        || touched.contains(&t.path)
                    {
                        self.settle(&id).await?;
                    }
                }
                None if t.base.is_some() => missing.push(id),
                None => self.settle(&id).await?,
            }
        }
        let tracked: HashSet<String> = self.files.values().map(|t| t.path.clone()).collect();
        let mut new = Vec::new();
        for (path, stamp) in &local {
            if tracked.contains(path)
                || (self.skipped.get(path) == Some(stamp) && !touched.contains(path))
            {
                continue;
            }
            let Some((content, stamp)) = self.opts.tree.read(path)? else {
                continue;
            };
            let Content::Text { text, crlf } = content else {
                self.skip(path, stamp, &content);
                continue;
            };
            if let Err(e) = crate::model::validate_path(path) {
                self.skipped.insert(path.clone(), stamp);
                say(format!("· {path}: {e}, not synced"));
                continue;
            }
            // A vanished file with the same text: a rename or move; with
            // mostly the same text: a move plus an edit (the file keeps its
            // id, so edits others make to it meanwhile merge, and their
            // open tabs follow it).
            let renamed = missing
                .iter()
                .position(|id| self.files[id].base.as_deref() == Some(text.as_str()))
                .map(|i| (i, false))
                .or_else(|| {
                    most_similar(
                        &text,
                        missing.iter().map(|id| self.files[id].base.as_deref()),
                    )
                    .map(|i| (i, true))
                });
            if let Some((i, edited)) = renamed {
                let id = missing.remove(i);
                if self.local_moved(&id, path, stamp).await && edited {
                    self.settle(&id).await?;
                }
                continue;
            }
            new.push(NewLocal {
                path: path.clone(),
                text,
                crlf,
                stamp,
            });
        }
        if !new.is_empty() {
            self.local_created(new).await?;
        }
        if !missing.is_empty() {
            self.local_deleted(missing).await?;
        }
        Ok(())
    }

    /// A tracked file found at `path`: moved in the session. `true` if the
    /// session took the move.
    async fn local_moved(&mut self, id: &str, path: &str, stamp: Stamp) -> bool {
        let old = self.files[id].path.clone();
        match self.api.move_file(&self.session, id, path).await {
            Ok(_) => {
                let t = self.files.get_mut(id).expect("tracked");
                t.path = path.to_owned();
                t.stamp = Some(stamp);
                say(format!("↑ {old} → {path}"));
                if let Err(e) = self.save_index() {
                    tracing::warn!(error = %e, "cannot save the index");
                }
                true
            }
            Err(e) => {
                self.skipped.insert(path.to_owned(), stamp);
                say(format!("· {old} → {path} not synced: {e}"));
                false
            }
        }
    }

    /// New local files: created in the session with their text (a few
    /// requests at a time), then opened.
    async fn local_created(&mut self, new: Vec<NewLocal>) -> anyhow::Result<()> {
        use futures::StreamExt;
        if !self.can_edit {
            for n in new {
                say(format!("· {}: read-only in this session, not sent", n.path));
                self.skipped.insert(n.path, n.stamp);
            }
            return Ok(());
        }
        let (api, session) = (self.api.clone(), self.session.clone());
        let results: Vec<(NewLocal, Result<File, ApiError>)> = futures::stream::iter(new)
            .map(|n| {
                let (api, session) = (api.clone(), session.clone());
                async move {
                    let r = api.create_file(&session, &n.path, &n.text).await;
                    (n, r)
                }
            })
            .buffer_unordered(OPEN_CONCURRENCY)
            .collect()
            .await;
        let mut ids = Vec::new();
        let mut unreachable = None;
        for (n, r) in results {
            match r {
                Ok(file) => {
                    say(format!("↑ {} (new)", n.path));
                    let mut t = Tracked::fresh(&n.path);
                    (t.base, t.crlf, t.stamp) = (Some(n.text), n.crlf, Some(n.stamp));
                    self.files.insert(file.id.clone(), t);
                    ids.push(file.id);
                }
                Err(e @ ApiError::Unreachable(_)) => unreachable = Some(e),
                // PATH_EXISTS: created elsewhere at the same moment; its
                // file event settles it. Others (limits) are said once.
                Err(e) if e.code() == Some("PATH_EXISTS") => {}
                Err(e) => {
                    say(format!("· {} not synced: {e}", n.path));
                    self.skipped.insert(n.path, n.stamp);
                }
            }
        }
        self.open(&ids).await?;
        for id in &ids {
            self.save_file(id)?;
        }
        self.save_index()?;
        match unreachable {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Tracked files gone from the folder: deleted in the session, unless
    /// that is the main file (cannot be) or more than half of the tree at
    /// once without `--allow-mass-delete` (then they are restored).
    async fn local_deleted(&mut self, missing: Vec<String>) -> anyhow::Result<()> {
        let total = self.files.len();
        let mass = missing.len() > 1 && missing.len() * 2 > total;
        if mass && !self.opts.allow_mass_delete {
            say(format!(
                "! refusing to delete {} of {total} files at once (more than half the tree); restored them — run with --allow-mass-delete to delete",
                missing.len()
            ));
            for id in &missing {
                self.restore(id)?;
            }
            return Ok(());
        }
        for id in missing {
            let path = self.files[&id].path.clone();
            if id == "main" {
                say(format!(
                    "! {path} is the session's main file and cannot be deleted; restored"
                ));
                self.restore(&id)?;
                continue;
            }
            if !self.can_edit {
                self.restore(&id)?;
                continue;
            }
            match self.api.delete_file(&self.session, &id).await {
                Ok(()) | Err(ApiError::Refused { status: 404, .. }) => {
                    self.files.remove(&id);
                    self.store.forget_file(&id);
                    say(format!("✕ {path} (deleted in the session)"));
                }
                Err(e @ ApiError::Unreachable(_)) => return Err(e.into()),
                Err(e) => {
                    say(format!(
                        "! cannot delete {path} in the session: {e}; restored"
                    ));
                    self.restore(&id)?;
                }
            }
        }
        self.save_index()
    }

    fn restore(&mut self, id: &str) -> anyhow::Result<()> {
        let text = self.files[id].replica.text();
        self.write(id, &text)
    }

    // ---------------------------------------------------------------- shutdown

    /// Flushes before exit: a last look at the folder, pending writes, and
    /// up to `wait` for the server to acknowledge every edit sent. Returns
    /// the number of edits still unacknowledged (they are in the saved
    /// replicas and go out on the next start).
    pub async fn finish(&mut self, wait: Duration) -> usize {
        if let Err(e) = self.scan(&HashSet::new()).await {
            tracing::warn!(error = %e, "last scan failed");
        }
        if let Err(e) = self.write_pending().await {
            tracing::warn!(error = %e, "last write failed");
        }
        let deadline = tokio::time::Instant::now() + wait;
        while !self.acks.is_empty() {
            match tokio::time::timeout_at(deadline, self.acks.join_next()).await {
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let left = self.acks.len();
        if let Err(e) = self.save_index() {
            tracing::warn!(error = %e, "cannot save the index");
        }
        if let Some(c) = self.conn.take() {
            c.client.close();
        }
        left
    }
}

fn stamp_of(tree: &Tree, path: &str) -> Option<Stamp> {
    std::fs::metadata(tree.abs(path))
        .ok()
        .map(|m| Stamp::of(&m))
}

/// A refusal in an ack reply.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
struct Refused {
    code: String,
    message: String,
    retry_after_ms: Option<u64>,
}

/// How alike two texts must be (the share of lines they have in common,
/// as `git` judges renames) for a vanished file and a new one to count as
/// one file moved and edited.
const MOVE_SIMILARITY: f32 = 0.5;

/// The candidate (a vanished file's last synced text) most like `text`, if
/// any is at least [`MOVE_SIMILARITY`] alike. Texts of very different sizes
/// are not compared, and each comparison is bounded in time.
fn most_similar<'a>(
    text: &str,
    candidates: impl Iterator<Item = Option<&'a str>>,
) -> Option<usize> {
    let comparable = |a: usize, b: usize| a.max(b) <= 2 * a.min(b).max(1);
    candidates
        .enumerate()
        .filter_map(|(i, base)| {
            let base = base.filter(|b| !b.is_empty() && comparable(b.len(), text.len()))?;
            let ratio = similar::TextDiff::configure()
                .timeout(Duration::from_millis(20))
                .diff_lines(base, text)
                .ratio();
            (ratio >= MOVE_SIMILARITY).then_some((i, ratio))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

fn refused(v: &Value) -> Refused {
    Refused {
        code: v["error"]["code"].as_str().unwrap_or("ERROR").to_owned(),
        message: v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        retry_after_ms: v["error"]["retryAfterMs"].as_u64(),
    }
}

fn refusal(what: &str, e: ApiError) -> anyhow::Error {
    match e {
        ApiError::Refused { code, message, .. } => {
            let hint = match code.as_str() {
                "UNAUTHORIZED" => " (check --token)",
                _ => "",
            };
            anyhow!(Fatal(format!("{what}: {code}: {message}{hint}")))
        }
        e => anyhow!(e).context(what.to_owned()),
    }
}

/// `join-session`, waiting out rate limits.
async fn join(client: &Client, session: &str) -> anyhow::Result<Value> {
    loop {
        let reply = client
            .emit_with_ack(
                "join-session",
                vec![Arg::json(json!({ "sessionId": session }))],
                ACK_TIMEOUT,
            )
            .await?;
        let v = reply
            .into_iter()
            .next()
            .and_then(|a| a.as_json().cloned())
            .unwrap_or(Value::Null);
        if v["ok"] == true {
            return Ok(v);
        }
        let r = refused(&v);
        match r.code.as_str() {
            "RATE_LIMITED" => {
                tokio::time::sleep(Duration::from_millis(r.retry_after_ms.unwrap_or(500))).await;
            }
            "SESSION_NOT_FOUND" => bail!(Fatal(format!("no session {session} on this server"))),
            "FORBIDDEN" => bail!(Fatal(format!(
                "you may not join session {session} (FORBIDDEN: {})",
                r.message
            ))),
            _ => bail!(Fatal(format!("cannot join session {session}: {r}"))),
        }
    }
}

/// `open-file` (not needed for `main`) and our sync step 1: the session's
/// diff against `sv`.
async fn open_one(
    client: &Client,
    session: &str,
    id: &str,
    doc_id: &str,
    sv: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    if id != "main" {
        let reply = client
            .emit_with_ack(
                "open-file",
                vec![Arg::json(json!({ "sessionId": session, "fileId": id }))],
                ACK_TIMEOUT,
            )
            .await?;
        let v = reply
            .first()
            .and_then(Arg::as_json)
            .cloned()
            .unwrap_or(Value::Null);
        if v["ok"] != true {
            return Err(refused(&v).into());
        }
    }
    let reply = client
        .emit_with_ack(
            "yjs-sync-step-1",
            vec![Arg::json(doc_id), Arg::bin(sv)],
            ACK_TIMEOUT,
        )
        .await?;
    match reply.into_iter().next() {
        Some(Arg::Bin(b)) => Ok(b.to_vec()),
        Some(Arg::Json(v)) => Err(refused(&v).into()),
        None => Err(anyhow!("empty sync reply")),
    }
}

/// For `--create`: the file the session's main file should be. A usual
/// entry point if there is one, else the first file by path.
fn pick_main_path(tree: &Tree) -> Option<String> {
    const ENTRY_POINTS: &[&str] = &[
        "src/main.rs",
        "src/lib.rs",
        "main.py",
        "main.go",
        "src/index.ts",
        "index.ts",
        "src/index.js",
        "index.js",
        "src/main.c",
        "main.c",
        "README.md",
    ];
    let files = tree.walk();
    ENTRY_POINTS
        .iter()
        .find(|p| files.contains_key(**p))
        .map(|p| p.to_string())
        .or_else(|| {
            files.into_iter().find_map(|(p, _)| {
                let text = matches!(tree.read(&p), Ok(Some((Content::Text { .. }, _))));
                (text && crate::model::validate_path(&p).is_ok()).then_some(p)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::most_similar;

    #[test]
    fn a_moved_file_is_matched_by_most_lines_in_common() {
        let base = "a\nb\nc\nd\ne\nf\n";
        let edited = "A\nb\nc\nd\ne\nf\n";
        // The closest of several; none when nothing is half alike, when
        // sizes differ too much, or when the old text is empty.
        let others = [
            Some("x\ny\nz\n"),
            None,
            Some(base),
            Some("a\nb\nX\nY\nZ\nW\n"),
        ];
        assert_eq!(most_similar(edited, others.into_iter()), Some(2));
        assert_eq!(
            most_similar("p\nq\nr\ns\nt\nu\n", [Some(base)].into_iter()),
            None
        );
        assert_eq!(
            most_similar(&base.repeat(3), [Some(base)].into_iter()),
            None
        );
        assert_eq!(most_similar("", [Some("")].into_iter()), None);
    }
}
