//! Durable storage behind one trait, [`Store`]: sessions, participants, chat,
//! workspace files, the append-only update log and compacted snapshots.
//! [`connect`] picks the backend from the URL (SQLite embedded default,
//! PostgreSQL for production). The store knows SQL and nothing about sockets
//! or live documents.
//!
//! **Documents.** The log and snapshot methods work on *documents*, named by
//! document id (see [`DocId`]): the session id is the session's main file,
//! `<session-id>~<file-id>` any other file. The main file's content lives in
//! the `sessions` row (`yjs_state`, `last_snapshot`, as before workspaces);
//! every other file's in its `files` row. Every session has a `files` row
//! with id `main` for the main file's metadata (path, language, size, …).
//! A malformed document id is treated as a document that does not exist.

mod snapshot;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use crate::model::DocId;
use crate::model::{ChatMessage, File, PathError, Role, SessionInfo};

pub use snapshot::{initial_state, merge_state};
pub use sql::{PostgresStore, SqliteStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored document is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL `{0}` (use sqlite://… or postgres://…)")]
    UnsupportedUrl(String),
    /// A file path breaks the path rules (wire: `INVALID_PATH`, 400).
    #[error("invalid path: {0}")]
    InvalidPath(#[from] PathError),
    /// The path equals another file's path, is a folder of one, or has one
    /// as a folder (wire: `PATH_EXISTS`, 409). `existing` is that other path.
    #[error("path `{path}` conflicts with the existing `{existing}`")]
    PathExists { path: String, existing: String },
    /// `delete_file` of the main file (wire: `FORBIDDEN`, 403).
    #[error("the main file cannot be deleted")]
    MainFileUndeletable,
    /// `create_file` past [`NewFile::max_files`] (wire: `TOO_MANY_FILES`, 400).
    #[error("a session holds at most {max} files")]
    TooManyFiles { max: usize },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Fields of a new session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub title: String,
    pub language: String,
    pub owner_id: String,
    pub owner_name: String,
    pub public: bool,
    pub public_role: Role,
    /// The main file's path (`mainPath`); `None` = `main.<ext>` from the
    /// language ([`crate::model::default_main_path`]). Checked like any path.
    pub main_path: Option<String>,
}

/// Fields of a new file.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub path: String,
    pub language: String,
    /// The initial text; `None` = empty.
    pub content: Option<String>,
    /// User id, stored as `updated_by`.
    pub created_by: String,
    /// The session's file limit, the main file included: creating one more
    /// is [`StoreError::TooManyFiles`]. Checked inside the creating
    /// transaction, so concurrent creates cannot pass it together.
    pub max_files: usize,
}

/// What [`Store::rename_file`] changed: the file as it is now, plus its
/// previous path and language (for `file:renamed|moved|updated` events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenamedFile {
    pub file: File,
    pub old_path: String,
    pub old_language: String,
}

/// A partial update of session metadata (`None` = unchanged).
#[derive(Debug, Clone, Default)]
pub struct SessionPatch {
    pub title: Option<String>,
    pub language: Option<String>,
    pub public: Option<bool>,
    pub public_role: Option<Role>,
}

/// A participant row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRow {
    pub user_id: String,
    pub user_name: String,
    pub role: Option<Role>,
    pub joined_at: Option<i64>,
    pub left_at: Option<i64>,
}

/// One accepted update waiting for the log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// The document id (`<session-id>` or `<session-id>~<file-id>`).
    pub doc_id: Arc<str>,
    pub update: Bytes,
}

/// What a load reads: the compacted snapshot plus every log row not yet folded in.
#[derive(Debug, Default)]
pub struct StoredDocument {
    pub snapshot: Option<Vec<u8>>,
    pub updates: Vec<Vec<u8>>,
    /// The document's log head when the load began: every row with
    /// `doc_seq <= head` is in `snapshot` or `updates`.
    pub head: i64,
}

/// What a node that fell behind reads back ([`Store::read_log_since`]).
#[derive(Debug, Default)]
pub struct LogTail {
    /// The log head when the read began: everything through it is below.
    pub head: i64,
    /// Rows after the asked position, `(doc_seq, update)`, in order.
    pub updates: Vec<(i64, Vec<u8>)>,
    /// The compacted state, present only when rows after the asked position
    /// were already folded into it (apply it too: merging is idempotent).
    pub snapshot: Option<Vec<u8>>,
}

/// Result of a compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOutcome {
    /// Size of the stored state in bytes.
    pub state_bytes: usize,
    /// Log rows folded in and deleted.
    pub compacted_rows: u64,
}

/// On-disk footprint of the document tables (benchmarks, `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct StorageStats {
    pub state_bytes: i64,
    pub log_rows: i64,
    pub log_bytes: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Creates a session, its owner's participant row and its main file row
    /// (path `main_path` or `main.<ext>`). `Ok(None)` if the id exists;
    /// `Err(InvalidPath)` for a bad `main_path`.
    async fn create_session(&self, s: &NewSession) -> StoreResult<Option<SessionInfo>>;
    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionInfo>>;
    /// Sessions where the user has a participant row, newest first.
    async fn list_sessions_for_user(&self, user_id: &str) -> StoreResult<Vec<SessionInfo>>;
    /// Changing `language` changes the main file's language too.
    async fn update_session(
        &self,
        id: &str,
        patch: &SessionPatch,
    ) -> StoreResult<Option<SessionInfo>>;
    /// Deletes the session and every row that belongs to it (every file,
    /// every document's log rows). `false` if absent.
    async fn delete_session(&self, id: &str) -> StoreResult<bool>;

    async fn participant(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<ParticipantRow>>;
    async fn list_participants(&self, session_id: &str) -> StoreResult<Vec<ParticipantRow>>;
    /// Grants, changes (`Some`) or removes (`None`) an explicit role.
    async fn set_role(
        &self,
        session_id: &str,
        user_id: &str,
        user_name: &str,
        role: Option<Role>,
    ) -> StoreResult<()>;
    /// Upserts the participant row with a join (`joined`) or leave time.
    async fn record_presence(
        &self,
        session_id: &str,
        user_id: &str,
        user_name: &str,
        joined: bool,
    ) -> StoreResult<()>;

    async fn insert_chat(
        &self,
        session_id: &str,
        user_id: &str,
        user_name: &str,
        content: &str,
    ) -> StoreResult<ChatMessage>;
    /// Up to `limit` messages with `id < before`, oldest first.
    async fn list_chat(
        &self,
        session_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<ChatMessage>>;

    /// Appends a batch to the update log in one transaction (group commit).
    /// Each row gets its document's next sequence number (`doc_seq`: 1, 2, 3,
    /// … per document, gap-free and in commit order, also across nodes
    /// sharing one database); the result gives each entry's number, `None`
    /// for rows of documents that no longer exist (deleted session or file)
    /// or whose id is malformed: those are dropped, not errors.
    async fn append_updates(&self, batch: &[LogEntry]) -> StoreResult<Vec<Option<i64>>>;
    /// The log rows of a document after `doc_seq` `after` (a node catching
    /// up on what it missed); `None` if the document does not exist.
    async fn read_log_since(&self, doc_id: &str, after: i64) -> StoreResult<Option<LogTail>>;
    /// The log head (latest `doc_seq`) of every document of these sessions,
    /// as `(document id, head)`; unknown sessions have none.
    async fn log_heads(&self, session_ids: &[String]) -> StoreResult<Vec<(String, i64)>>;
    /// Snapshot plus remaining log rows of a document; `None` if the
    /// document (its session, or its file) does not exist.
    async fn load_document(&self, doc_id: &str) -> StoreResult<Option<StoredDocument>>;
    /// Merges `live_state` with the stored snapshot and every log row of the
    /// document, stores the result (binary + `monaco` text) and deletes the
    /// rows folded in, in one transaction. Safe with several writers. Also
    /// sets the file's `size` to the text's UTF-8 length, and its
    /// `updated_at` to now if the text changed. `None` if the document does
    /// not exist.
    async fn write_snapshot(
        &self,
        doc_id: &str,
        live_state: &[u8],
    ) -> StoreResult<Option<SnapshotOutcome>>;
    /// The document's text as of its latest snapshot (`last_snapshot`);
    /// `None` if the document does not exist or (main file only) was never
    /// snapshotted.
    async fn stored_text(&self, doc_id: &str) -> StoreResult<Option<String>>;

    /// The session's files, sorted by path (byte order); empty if the
    /// session does not exist (every session has its main file).
    async fn list_files(&self, session_id: &str) -> StoreResult<Vec<File>>;
    /// One file (`"main"` is the main file); `None` if absent.
    async fn get_file(&self, session_id: &str, file_id: &str) -> StoreResult<Option<File>>;
    /// Creates a file with a fresh server-chosen id; its content becomes a
    /// Yjs state (root `Y.Text` `monaco`) and its stored text. `Ok(None)` if
    /// the session does not exist; `Err(InvalidPath)` / `Err(PathExists)` by
    /// the path rules; `Err(TooManyFiles)` past `f.max_files`. The caller
    /// checks the size limits.
    async fn create_file(&self, session_id: &str, f: &NewFile) -> StoreResult<Option<File>>;
    /// Renames / moves (`path`) and/or changes the language of a file, and
    /// sets `updated_by`/`updated_at`. The main file's language is the
    /// session's language: changing one changes both. `Ok(None)` if the file
    /// does not exist; `Err(InvalidPath)` / `Err(PathExists)` by the path rules
    /// (a file's own current path is no conflict).
    async fn rename_file(
        &self,
        session_id: &str,
        file_id: &str,
        path: Option<&str>,
        language: Option<&str>,
        by: &str,
    ) -> StoreResult<Option<RenamedFile>>;
    /// Records `by` as the last editor of a file (`updatedBy`), as of a
    /// snapshot of its live edits. Nothing happens for an unknown file.
    async fn touch_file(&self, session_id: &str, file_id: &str, by: &str) -> StoreResult<()>;
    /// Deletes a file and its log rows; returns the deleted row, `None` if
    /// absent. `Err(MainFileUndeletable)` for `"main"`.
    async fn delete_file(&self, session_id: &str, file_id: &str) -> StoreResult<Option<File>>;
    /// Sum of the files' sizes (total-bytes limit); 0 for an unknown session.
    async fn workspace_bytes(&self, session_id: &str) -> StoreResult<i64>;
    async fn storage_stats(&self) -> StoreResult<StorageStats>;
}

/// Opens the backend named by `url` and runs its migrations.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
