//! Durable storage behind one trait, [`Store`]: sessions, participants, chat,
//! the append-only update log and compacted snapshots. [`connect`] picks the
//! backend from the URL (SQLite embedded default, PostgreSQL for production).
//! The store knows SQL and nothing about sockets or live documents.

mod snapshot;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::model::{ChatMessage, Role, SessionInfo};

pub use snapshot::merge_state;
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
    pub session_id: Arc<str>,
    pub update: Bytes,
}

/// What a load reads: the compacted snapshot plus every log row not yet folded in.
#[derive(Debug, Default)]
pub struct StoredDocument {
    pub snapshot: Option<Vec<u8>>,
    pub updates: Vec<Vec<u8>>,
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

    /// Creates a session and its owner's participant row. `Ok(None)` if the id exists.
    async fn create_session(&self, s: &NewSession) -> StoreResult<Option<SessionInfo>>;
    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionInfo>>;
    /// Sessions where the user has a participant row, newest first.
    async fn list_sessions_for_user(&self, user_id: &str) -> StoreResult<Vec<SessionInfo>>;
    async fn update_session(
        &self,
        id: &str,
        patch: &SessionPatch,
    ) -> StoreResult<Option<SessionInfo>>;
    /// Deletes the session and every row that belongs to it. `false` if absent.
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
    async fn append_updates(&self, batch: &[LogEntry]) -> StoreResult<()>;
    /// Snapshot plus remaining log rows; `None` if the session does not exist.
    async fn load_document(&self, session_id: &str) -> StoreResult<Option<StoredDocument>>;
    /// Merges `live_state` with the stored snapshot and every log row of the
    /// session, stores the result (binary + `monaco` text) and deletes the rows
    /// folded in, in one transaction. Safe with several writers.
    async fn write_snapshot(
        &self,
        session_id: &str,
        live_state: &[u8],
    ) -> StoreResult<Option<SnapshotOutcome>>;
    /// The stored plain text (`last_snapshot`).
    async fn stored_text(&self, session_id: &str) -> StoreResult<Option<String>>;
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
