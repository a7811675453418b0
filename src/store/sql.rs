//! The SQL [`Store`]: one body of queries, expanded for SQLite and PostgreSQL
//! by `sql_store!`. Both accept `$N` placeholders, `RETURNING` and
//! `ON CONFLICT`, so the statements are shared; only connecting and the
//! compaction transaction's isolation differ.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::*;
use crate::model::{MAIN_FILE_ID, default_main_path, now_ms, path_folders, rfc3339, validate_path};

macro_rules! session_columns {
    () => {
        "s.id, s.title, s.language, s.owner_id, s.public, s.public_role, s.created_at, s.updated_at"
    };
}

macro_rules! file_columns {
    () => {
        "id, path, language, size, created_at, updated_at, updated_by"
    };
}

/// A fresh file id: 12 characters of `[A-Za-z0-9]` (within `^[A-Za-z0-9_-]{1,64}$`).
fn new_file_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// SQLite store: WAL mode, `synchronous = FULL` so a committed batch survives
/// a crash, foreign keys on.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

/// PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

fn role_col(s: Option<String>) -> Option<Role> {
    s.as_deref().and_then(Role::parse)
}

macro_rules! sql_store {
    ($store:ident, $db:ty, $backend:literal, $begin_write:literal, $lock_row:literal, $lock_key_share:literal, $delete_folded:literal, $bind_seqs:path) => {
        impl $store {
            fn session_from_row(row: &<$db as sqlx::Database>::Row) -> StoreResult<SessionInfo> {
                Ok(SessionInfo {
                    id: row.try_get("id")?,
                    title: row.try_get("title")?,
                    language: row.try_get("language")?,
                    owner_id: row.try_get("owner_id")?,
                    public: row.try_get("public")?,
                    public_role: role_col(row.try_get("public_role")?).unwrap_or(Role::Viewer),
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }

            fn participant_from_row(row: &<$db as sqlx::Database>::Row) -> StoreResult<ParticipantRow> {
                Ok(ParticipantRow {
                    user_id: row.try_get("user_id")?,
                    user_name: row.try_get("user_name")?,
                    role: role_col(row.try_get("role")?),
                    joined_at: row.try_get("joined_at")?,
                    left_at: row.try_get("left_at")?,
                })
            }

            fn chat_from_row(row: &<$db as sqlx::Database>::Row) -> StoreResult<ChatMessage> {
                Ok(ChatMessage {
                    id: row.try_get("id")?,
                    session_id: row.try_get("session_id")?,
                    user_id: row.try_get("user_id")?,
                    user_name: row.try_get("user_name")?,
                    content: row.try_get("content")?,
                    created_at: rfc3339(row.try_get("created_at")?),
                })
            }

            fn file_from_row(row: &<$db as sqlx::Database>::Row) -> StoreResult<File> {
                Ok(File {
                    id: row.try_get("id")?,
                    path: row.try_get("path")?,
                    language: row.try_get("language")?,
                    size: row.try_get("size")?,
                    created_at: rfc3339(row.try_get("created_at")?),
                    updated_at: rfc3339(row.try_get("updated_at")?),
                    updated_by: row.try_get("updated_by")?,
                })
            }

            /// Another file's path that `path` would collide with (equal, a
            /// folder of it, or it a folder of `path`), ignoring file `except_id`.
            async fn path_conflict(
                conn: &mut <$db as sqlx::Database>::Connection,
                session_id: &str,
                except_id: &str,
                path: &str,
            ) -> StoreResult<Option<String>> {
                let prefix = format!("{path}/");
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT path FROM files WHERE session_id = ");
                qb.push_bind(session_id.to_owned())
                    .push(" AND id <> ")
                    .push_bind(except_id.to_owned())
                    .push(" AND (path = ")
                    .push_bind(path.to_owned())
                    // substr counts characters on both backends (and needs no collation).
                    .push(" OR substr(path, 1, ")
                    .push_bind(prefix.chars().count() as i32)
                    .push(") = ")
                    .push_bind(prefix);
                for folder in path_folders(path) {
                    qb.push(" OR path = ").push_bind(folder.to_owned());
                }
                qb.push(") LIMIT 1");
                let row = qb.build().fetch_optional(&mut *conn).await?;
                Ok(row.map(|r| r.try_get::<String, _>("path")).transpose()?)
            }

            /// Locks the session row against concurrent path changes (SQLite:
            /// the write transaction already excludes them). `false` if absent.
            async fn lock_session(conn: &mut <$db as sqlx::Database>::Connection, session_id: &str) -> StoreResult<bool> {
                let q = concat!("SELECT id FROM sessions WHERE id = $1", $lock_row);
                Ok(sqlx::query(q).bind(session_id).fetch_optional(&mut *conn).await?.is_some())
            }

            /// Appends a batch in one write transaction and numbers each
            /// document's rows (`doc_seq`, see [`Store::append_updates`]).
            /// Locks, in the order `delete_session` takes them (sessions
            /// first, then files, each sorted): the sessions named (key
            /// share), then each document's files row, whose `log_head` it
            /// advances. Rows of documents that no longer exist are dropped;
            /// a file deleted meanwhile waits for this transaction and then
            /// deletes these rows with it.
            async fn append_numbered(&self, batch: &[LogEntry]) -> StoreResult<Vec<Option<i64>>> {
                use std::collections::{BTreeMap, BTreeSet};
                let docs: Vec<Option<DocId>> = batch.iter().map(|e| DocId::parse(&e.doc_id).ok()).collect();
                let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
                for d in docs.iter().flatten() {
                    *counts.entry((d.session.as_str(), d.file_id())).or_default() += 1;
                }
                let sessions: BTreeSet<&str> = counts.keys().map(|(s, _)| *s).collect();
                let mut tx = self.pool.begin_with($begin_write).await?;
                let mut live_sessions = BTreeSet::new();
                for sid in sessions {
                    let q = concat!("SELECT id FROM sessions WHERE id = $1", $lock_key_share);
                    if sqlx::query(q).bind(sid).fetch_optional(&mut *tx).await?.is_some() {
                        live_sessions.insert(sid);
                    }
                }
                // Next doc_seq to hand out, per live document.
                let mut next: BTreeMap<(&str, &str), i64> = BTreeMap::new();
                for (&(sid, fid), &n) in &counts {
                    if !live_sessions.contains(sid) {
                        continue;
                    }
                    let head: Option<i64> = sqlx::query_scalar("UPDATE files SET log_head = log_head + $3 WHERE session_id = $1 AND id = $2 RETURNING log_head")
                        .bind(sid)
                        .bind(fid)
                        .bind(n)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(head) = head {
                        next.insert((sid, fid), head - n + 1);
                    }
                }
                let mut seqs = Vec::with_capacity(batch.len());
                let mut keep: Vec<(&LogEntry, &DocId, i64)> = Vec::with_capacity(batch.len());
                for (e, d) in batch.iter().zip(&docs) {
                    let slot = d.as_ref().and_then(|d| next.get_mut(&(d.session.as_str(), d.file_id())).map(|s| (d, s)));
                    match slot {
                        Some((d, s)) => {
                            keep.push((e, d, *s));
                            seqs.push(Some(*s));
                            *s += 1;
                        }
                        None => seqs.push(None),
                    }
                }
                if keep.len() < batch.len() {
                    tracing::debug!(dropped = batch.len() - keep.len(), "dropping log rows of deleted or malformed documents");
                }
                if !keep.is_empty() {
                    let now = now_ms();
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO document_updates (session_id, doc_id, doc_seq, payload, created_at) ");
                    qb.push_values(&keep, |mut b, (e, d, seq)| {
                        b.push_bind(d.session.clone()).push_bind(e.doc_id.to_string()).push_bind(*seq).push_bind(e.update.to_vec()).push_bind(now);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(seqs)
            }

            /// The document's log head: the `doc_seq` of its latest row.
            async fn head_of(&self, doc: &DocId) -> StoreResult<Option<i64>> {
                Ok(sqlx::query_scalar("SELECT log_head FROM files WHERE session_id = $1 AND id = $2")
                    .bind(&doc.session)
                    .bind(doc.file_id())
                    .fetch_optional(&self.pool)
                    .await?)
            }

            /// The compacted state of a document (`Ok(None)`: no such document).
            async fn stored_state(&self, doc: &DocId) -> StoreResult<Option<Option<Vec<u8>>>> {
                let row = match &doc.file {
                    None => sqlx::query("SELECT yjs_state FROM sessions WHERE id = $1").bind(&doc.session),
                    Some(f) => sqlx::query("SELECT yjs_state FROM files WHERE session_id = $1 AND id = $2").bind(&doc.session).bind(f.as_str()),
                }
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| r.try_get::<Option<Vec<u8>>, _>("yjs_state")).transpose().map_err(Into::into)
            }

            async fn try_write_snapshot(&self, doc: &DocId, live_state: &[u8]) -> StoreResult<Option<SnapshotOutcome>> {
                let key = doc.to_string();
                let mut tx = self.pool.begin_with($begin_write).await?;
                let row = match &doc.file {
                    None => sqlx::query(concat!("SELECT yjs_state, last_snapshot FROM sessions WHERE id = $1", $lock_row)).bind(&doc.session),
                    Some(f) => sqlx::query(concat!("SELECT yjs_state, last_snapshot FROM files WHERE session_id = $1 AND id = $2", $lock_row))
                        .bind(&doc.session)
                        .bind(f.as_str()),
                }
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let stored: Option<Vec<u8>> = row.try_get("yjs_state")?;
                let stored_text: Option<String> = row.try_get("last_snapshot")?;
                let rows = sqlx::query("SELECT seq, payload FROM document_updates WHERE doc_id = $1 ORDER BY seq")
                    .bind(&key)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut max_seq: i64 = 0;
                let mut seqs = Vec::with_capacity(rows.len());
                let mut payloads = Vec::with_capacity(rows.len());
                for r in &rows {
                    let seq = r.try_get::<i64, _>("seq")?;
                    max_seq = max_seq.max(seq);
                    seqs.push(seq);
                    payloads.push(r.try_get::<Vec<u8>, _>("payload")?);
                }
                // The merge is CPU work (hundreds of KiB decoded, applied and
                // encoded): on a blocking thread, never on the async workers.
                let had_stored = stored.is_some();
                let live = live_state.to_vec();
                let (state, text, waiting) = tokio::task::spawn_blocking(move || {
                    let inputs = stored.iter().map(|v| v.as_slice()).chain(std::iter::once(live.as_slice())).chain(payloads.iter().map(|v| v.as_slice()));
                    merge_state(inputs)
                })
                .await
                .map_err(|e| StoreError::Corrupt(format!("snapshot merge panicked: {e}")))??;
                // A row whose structs still wait for predecessors is not in
                // the state: it and every row after it stay in the log (the
                // ones merged anyway merge again harmlessly).
                let first_row = usize::from(had_stored) + 1;
                if let Some(keep_from) = waiting.iter().filter_map(|i| i.checked_sub(first_row)).min() {
                    seqs.truncate(keep_from);
                    max_seq = seqs.last().copied().unwrap_or(0);
                }
                let now = now_ms();
                let changed = stored_text.as_deref() != Some(text.as_str());
                let size = text.len() as i64;
                match &doc.file {
                    None => {
                        sqlx::query("UPDATE sessions SET yjs_state = $2, last_snapshot = $3, state_through_seq = CASE WHEN $4 > state_through_seq THEN $4 ELSE state_through_seq END, updated_at = $5 WHERE id = $1")
                            .bind(&doc.session)
                            .bind(&state)
                            .bind(&text)
                            .bind(max_seq)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        let q = if changed {
                            "UPDATE files SET size = $3, updated_at = $4 WHERE session_id = $1 AND id = $2"
                        } else {
                            "UPDATE files SET size = $3 WHERE session_id = $1 AND id = $2"
                        };
                        let mut q = sqlx::query(q).bind(&doc.session).bind(MAIN_FILE_ID).bind(size);
                        if changed {
                            q = q.bind(now);
                        }
                        q.execute(&mut *tx).await?;
                    }
                    Some(f) => {
                        let q = if changed {
                            "UPDATE files SET yjs_state = $3, last_snapshot = $4, state_through_seq = CASE WHEN $5 > state_through_seq THEN $5 ELSE state_through_seq END, size = $6, updated_at = $7 WHERE session_id = $1 AND id = $2"
                        } else {
                            "UPDATE files SET yjs_state = $3, last_snapshot = $4, state_through_seq = CASE WHEN $5 > state_through_seq THEN $5 ELSE state_through_seq END, size = $6 WHERE session_id = $1 AND id = $2"
                        };
                        let mut q = sqlx::query(q).bind(&doc.session).bind(f.as_str()).bind(&state).bind(&text).bind(max_seq).bind(size);
                        if changed {
                            q = q.bind(now);
                        }
                        q.execute(&mut *tx).await?;
                    }
                }
                let deleted = if seqs.is_empty() {
                    0
                } else {
                    // Exactly the rows merged above: a log row committed
                    // meanwhile stays for the next compaction.
                    $bind_seqs(sqlx::query($delete_folded).bind(&key).bind(max_seq), &seqs)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                };
                tx.commit().await?;
                Ok(Some(SnapshotOutcome { state_bytes: state.len(), compacted_rows: deleted }))
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_session(&self, s: &NewSession) -> StoreResult<Option<SessionInfo>> {
                let main_path = match &s.main_path {
                    Some(p) => {
                        validate_path(p)?;
                        p.clone()
                    }
                    None => default_main_path(&s.language),
                };
                let now = now_ms();
                let mut tx = self.pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO sessions (id, title, language, owner_id, public, public_role, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&s.id)
                .bind(&s.title)
                .bind(&s.language)
                .bind(&s.owner_id)
                .bind(s.public)
                .bind(s.public_role.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    return Ok(None);
                }
                sqlx::query(
                    "INSERT INTO participants (session_id, user_id, user_name, role) VALUES ($1, $2, $3, 'owner') \
                     ON CONFLICT (session_id, user_id) DO UPDATE SET role = 'owner'",
                )
                .bind(&s.id)
                .bind(&s.owner_id)
                .bind(&s.owner_name)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO files (session_id, id, path, language, size, created_at, updated_at, updated_by) \
                     VALUES ($1, $2, $3, $4, 0, $5, $5, $6)",
                )
                .bind(&s.id)
                .bind(MAIN_FILE_ID)
                .bind(&main_path)
                .bind(&s.language)
                .bind(now)
                .bind(&s.owner_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                self.get_session(&s.id).await
            }

            async fn get_session(&self, id: &str) -> StoreResult<Option<SessionInfo>> {
                let q = concat!("SELECT ", session_columns!(), " FROM sessions s WHERE s.id = $1");
                let row = sqlx::query(q).bind(id).fetch_optional(&self.pool).await?;
                row.as_ref().map(Self::session_from_row).transpose()
            }

            async fn list_sessions_for_user(&self, user_id: &str) -> StoreResult<Vec<SessionInfo>> {
                let q = concat!(
                    "SELECT ", session_columns!(), " FROM sessions s JOIN participants p ON p.session_id = s.id ",
                    "WHERE p.user_id = $1 ORDER BY s.updated_at DESC, s.id"
                );
                let rows = sqlx::query(q).bind(user_id).fetch_all(&self.pool).await?;
                rows.iter().map(Self::session_from_row).collect()
            }

            async fn update_session(&self, id: &str, p: &SessionPatch) -> StoreResult<Option<SessionInfo>> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "UPDATE sessions SET title = COALESCE($2, title), language = COALESCE($3, language), \
                     public = COALESCE($4, public), public_role = COALESCE($5, public_role), updated_at = $6 WHERE id = $1",
                )
                .bind(id)
                .bind(p.title.as_deref())
                .bind(p.language.as_deref())
                .bind(p.public)
                .bind(p.public_role.map(Role::as_str))
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                if let Some(language) = &p.language {
                    // The main file's language is the session's language.
                    sqlx::query("UPDATE files SET language = $3 WHERE session_id = $1 AND id = $2")
                        .bind(id)
                        .bind(MAIN_FILE_ID)
                        .bind(language)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                self.get_session(id).await
            }

            async fn delete_session(&self, id: &str) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                for q in [
                    "DELETE FROM document_updates WHERE session_id = $1",
                    "DELETE FROM chat_messages WHERE session_id = $1",
                    "DELETE FROM participants WHERE session_id = $1",
                    "DELETE FROM files WHERE session_id = $1",
                ] {
                    sqlx::query(q).bind(id).execute(&mut *tx).await?;
                }
                let n = sqlx::query("DELETE FROM sessions WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                Ok(n > 0)
            }

            async fn participant(&self, session_id: &str, user_id: &str) -> StoreResult<Option<ParticipantRow>> {
                let row = sqlx::query("SELECT * FROM participants WHERE session_id = $1 AND user_id = $2")
                    .bind(session_id)
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::participant_from_row).transpose()
            }

            async fn list_participants(&self, session_id: &str) -> StoreResult<Vec<ParticipantRow>> {
                let rows = sqlx::query("SELECT * FROM participants WHERE session_id = $1 ORDER BY user_id")
                    .bind(session_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::participant_from_row).collect()
            }

            async fn set_role(&self, session_id: &str, user_id: &str, user_name: &str, role: Option<Role>) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO participants (session_id, user_id, user_name, role) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (session_id, user_id) DO UPDATE SET role = excluded.role, \
                     user_name = CASE WHEN participants.user_name = '' THEN excluded.user_name ELSE participants.user_name END",
                )
                .bind(session_id)
                .bind(user_id)
                .bind(user_name)
                .bind(role.map(Role::as_str))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn record_presence(&self, session_id: &str, user_id: &str, user_name: &str, joined: bool) -> StoreResult<()> {
                let q = if joined {
                    "INSERT INTO participants (session_id, user_id, user_name, joined_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (session_id, user_id) DO UPDATE SET user_name = excluded.user_name, joined_at = excluded.joined_at, left_at = NULL"
                } else {
                    "UPDATE participants SET left_at = $4, user_name = $3 WHERE session_id = $1 AND user_id = $2"
                };
                sqlx::query(q).bind(session_id).bind(user_id).bind(user_name).bind(now_ms()).execute(&self.pool).await?;
                Ok(())
            }

            async fn insert_chat(&self, session_id: &str, user_id: &str, user_name: &str, content: &str) -> StoreResult<ChatMessage> {
                let row = sqlx::query(
                    "INSERT INTO chat_messages (session_id, user_id, user_name, content, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id, session_id, user_id, user_name, content, created_at",
                )
                .bind(session_id)
                .bind(user_id)
                .bind(user_name)
                .bind(content)
                .bind(now_ms())
                .fetch_one(&self.pool)
                .await?;
                Self::chat_from_row(&row)
            }

            async fn list_chat(&self, session_id: &str, before: Option<i64>, limit: i64) -> StoreResult<Vec<ChatMessage>> {
                let rows = sqlx::query(
                    "SELECT id, session_id, user_id, user_name, content, created_at FROM chat_messages \
                     WHERE session_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .bind(session_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                let mut out = rows.iter().map(Self::chat_from_row).collect::<StoreResult<Vec<_>>>()?;
                out.reverse();
                Ok(out)
            }

            async fn append_updates(&self, batch: &[LogEntry]) -> StoreResult<Vec<Option<i64>>> {
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                self.append_numbered(batch).await
            }

            async fn load_document(&self, doc_id: &str) -> StoreResult<Option<StoredDocument>> {
                let Ok(doc) = DocId::parse(doc_id) else {
                    return Ok(None);
                };
                // Head first, then log rows, then the snapshot: every row up
                // to the head is committed before the rows are read, and a
                // compaction committing in between folds the rows we read
                // into the snapshot we then read, so nothing up to `head` is
                // missed without a transaction.
                let Some(head) = self.head_of(&doc).await? else {
                    return Ok(None);
                };
                let rows = sqlx::query("SELECT payload FROM document_updates WHERE doc_id = $1 ORDER BY seq")
                    .bind(doc_id)
                    .fetch_all(&self.pool)
                    .await?;
                let Some(snapshot) = self.stored_state(&doc).await? else {
                    return Ok(None);
                };
                let updates = rows.iter().map(|r| r.try_get::<Vec<u8>, _>("payload")).collect::<Result<_, _>>()?;
                Ok(Some(StoredDocument { snapshot, updates, head }))
            }

            async fn read_log_since(&self, doc_id: &str, after: i64) -> StoreResult<Option<LogTail>> {
                let Ok(doc) = DocId::parse(doc_id) else {
                    return Ok(None);
                };
                // Same order as a load: head, rows, then (only if rows after
                // `after` were compacted away) the snapshot.
                let Some(head) = self.head_of(&doc).await? else {
                    return Ok(None);
                };
                if head <= after {
                    return Ok(Some(LogTail { head, ..LogTail::default() }));
                }
                let rows = sqlx::query("SELECT doc_seq, payload FROM document_updates WHERE doc_id = $1 AND doc_seq > $2 ORDER BY doc_seq")
                    .bind(doc_id)
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await?;
                let mut updates = Vec::with_capacity(rows.len());
                for r in &rows {
                    updates.push((r.try_get::<i64, _>("doc_seq")?, r.try_get::<Vec<u8>, _>("payload")?));
                }
                let complete = updates.first().is_some_and(|(s, _)| *s == after + 1);
                let snapshot = if complete {
                    None
                } else {
                    match self.stored_state(&doc).await? {
                        Some(s) => s,
                        None => return Ok(None),
                    }
                };
                Ok(Some(LogTail { head, updates, snapshot }))
            }

            async fn log_heads(&self, session_ids: &[String]) -> StoreResult<Vec<(String, i64)>> {
                let mut out = Vec::new();
                // One query per 500 sessions (bind-parameter limits).
                for chunk in session_ids.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT session_id, id, log_head FROM files WHERE session_id IN (");
                    let mut list = qb.separated(", ");
                    for sid in chunk {
                        list.push_bind(sid.as_str());
                    }
                    qb.push(")");
                    for r in qb.build().fetch_all(&self.pool).await? {
                        let sid: String = r.try_get("session_id")?;
                        let id: String = r.try_get("id")?;
                        let head: i64 = r.try_get("log_head")?;
                        if let Some(d) = DocId::for_file(&sid, &id) {
                            out.push((d.to_string(), head));
                        }
                    }
                }
                Ok(out)
            }

            async fn write_snapshot(&self, doc_id: &str, live_state: &[u8]) -> StoreResult<Option<SnapshotOutcome>> {
                let Ok(doc) = DocId::parse(doc_id) else {
                    return Ok(None);
                };
                let mut attempt = 0;
                loop {
                    match self.try_write_snapshot(&doc, live_state).await {
                        // Serialization failure / busy: another writer compacted concurrently; merge again.
                        Err(StoreError::Db(sqlx::Error::Database(e)))
                            if attempt < 5 && matches!(e.code().as_deref(), Some("40001") | Some("40P01") | Some("5") | Some("517")) =>
                        {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(5 * attempt)).await;
                        }
                        other => return other,
                    }
                }
            }

            async fn stored_text(&self, doc_id: &str) -> StoreResult<Option<String>> {
                let Ok(doc) = DocId::parse(doc_id) else {
                    return Ok(None);
                };
                let row = match &doc.file {
                    None => sqlx::query("SELECT last_snapshot FROM sessions WHERE id = $1").bind(&doc.session),
                    Some(f) => sqlx::query("SELECT last_snapshot FROM files WHERE session_id = $1 AND id = $2").bind(&doc.session).bind(f.as_str()),
                }
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|r| r.try_get::<Option<String>, _>("last_snapshot")).transpose()?.flatten())
            }

            async fn list_files(&self, session_id: &str) -> StoreResult<Vec<File>> {
                let q = concat!("SELECT ", file_columns!(), " FROM files WHERE session_id = $1");
                let rows = sqlx::query(q).bind(session_id).fetch_all(&self.pool).await?;
                let mut files = rows.iter().map(Self::file_from_row).collect::<StoreResult<Vec<_>>>()?;
                // Byte order on both backends (a PostgreSQL collation may differ).
                files.sort_by(|a, b| a.path.cmp(&b.path));
                Ok(files)
            }

            async fn get_file(&self, session_id: &str, file_id: &str) -> StoreResult<Option<File>> {
                let q = concat!("SELECT ", file_columns!(), " FROM files WHERE session_id = $1 AND id = $2");
                let row = sqlx::query(q).bind(session_id).bind(file_id).fetch_optional(&self.pool).await?;
                row.as_ref().map(Self::file_from_row).transpose()
            }

            async fn create_file(&self, session_id: &str, f: &NewFile) -> StoreResult<Option<File>> {
                validate_path(&f.path)?;
                let content = f.content.as_deref().unwrap_or("");
                let state = initial_state(content);
                let now = now_ms();
                let mut tx = self.pool.begin_with($begin_write).await?;
                if !Self::lock_session(&mut *tx, session_id).await? {
                    return Ok(None);
                }
                // Under the session lock that every create and path change
                // takes: no concurrent create can count the same room.
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files WHERE session_id = $1")
                    .bind(session_id)
                    .fetch_one(&mut *tx)
                    .await?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= f.max_files {
                    return Err(StoreError::TooManyFiles { max: f.max_files });
                }
                if let Some(existing) = Self::path_conflict(&mut *tx, session_id, "", &f.path).await? {
                    return Err(StoreError::PathExists { path: f.path.clone(), existing });
                }
                let q = concat!(
                    "INSERT INTO files (session_id, id, path, language, size, created_at, updated_at, updated_by, yjs_state, last_snapshot) ",
                    "VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9) ON CONFLICT (session_id, id) DO NOTHING RETURNING ",
                    file_columns!()
                );
                for _ in 0..8 {
                    let row = sqlx::query(q)
                        .bind(session_id)
                        .bind(new_file_id())
                        .bind(&f.path)
                        .bind(&f.language)
                        .bind(content.len() as i64)
                        .bind(now)
                        .bind(&f.created_by)
                        .bind(&state)
                        .bind(content)
                        .fetch_optional(&mut *tx)
                        .await?;
                    // None: the random id was taken; draw again.
                    if let Some(row) = row {
                        let file = Self::file_from_row(&row)?;
                        tx.commit().await?;
                        return Ok(Some(file));
                    }
                }
                Err(StoreError::Corrupt("could not draw a free file id".into()))
            }

            async fn rename_file(
                &self,
                session_id: &str,
                file_id: &str,
                path: Option<&str>,
                language: Option<&str>,
                by: &str,
            ) -> StoreResult<Option<RenamedFile>> {
                if let Some(p) = path {
                    validate_path(p)?;
                }
                let mut tx = self.pool.begin_with($begin_write).await?;
                if !Self::lock_session(&mut *tx, session_id).await? {
                    return Ok(None);
                }
                let q = concat!("SELECT ", file_columns!(), " FROM files WHERE session_id = $1 AND id = $2");
                let Some(old) = sqlx::query(q).bind(session_id).bind(file_id).fetch_optional(&mut *tx).await? else {
                    return Ok(None);
                };
                let old = Self::file_from_row(&old)?;
                if let Some(p) = path
                    && p != old.path
                    && let Some(existing) = Self::path_conflict(&mut *tx, session_id, file_id, p).await?
                {
                    return Err(StoreError::PathExists { path: p.to_owned(), existing });
                }
                let now = now_ms();
                let q = concat!(
                    "UPDATE files SET path = COALESCE($3, path), language = COALESCE($4, language), updated_at = $5, updated_by = $6 ",
                    "WHERE session_id = $1 AND id = $2 RETURNING ",
                    file_columns!()
                );
                let row = sqlx::query(q).bind(session_id).bind(file_id).bind(path).bind(language).bind(now).bind(by).fetch_one(&mut *tx).await?;
                let file = Self::file_from_row(&row)?;
                if file_id == MAIN_FILE_ID
                    && let Some(language) = language
                {
                    sqlx::query("UPDATE sessions SET language = $2, updated_at = $3 WHERE id = $1")
                        .bind(session_id)
                        .bind(language)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(Some(RenamedFile { file, old_path: old.path, old_language: old.language }))
            }

            async fn touch_file(&self, session_id: &str, file_id: &str, by: &str) -> StoreResult<()> {
                sqlx::query("UPDATE files SET updated_by = $3 WHERE session_id = $1 AND id = $2")
                    .bind(session_id)
                    .bind(file_id)
                    .bind(by)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_file(&self, session_id: &str, file_id: &str) -> StoreResult<Option<File>> {
                if file_id == MAIN_FILE_ID {
                    return Err(StoreError::MainFileUndeletable);
                }
                let Some(doc) = DocId::for_file(session_id, file_id) else {
                    return Ok(None);
                };
                let mut tx = self.pool.begin_with($begin_write).await?;
                let q = concat!("DELETE FROM files WHERE session_id = $1 AND id = $2 RETURNING ", file_columns!());
                let Some(row) = sqlx::query(q).bind(session_id).bind(file_id).fetch_optional(&mut *tx).await? else {
                    return Ok(None);
                };
                let file = Self::file_from_row(&row)?;
                sqlx::query("DELETE FROM document_updates WHERE doc_id = $1").bind(doc.to_string()).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(Some(file))
            }

            async fn workspace_bytes(&self, session_id: &str) -> StoreResult<i64> {
                let row = sqlx::query("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS b FROM files WHERE session_id = $1")
                    .bind(session_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get("b")?)
            }

            async fn storage_stats(&self) -> StoreResult<StorageStats> {
                let s = sqlx::query(
                    "SELECT CAST((SELECT COALESCE(SUM(LENGTH(yjs_state)), 0) FROM sessions) \
                     + (SELECT COALESCE(SUM(LENGTH(yjs_state)), 0) FROM files) AS BIGINT) AS b",
                )
                    .fetch_one(&self.pool)
                    .await?;
                let l = sqlx::query("SELECT COUNT(*) AS n, CAST(COALESCE(SUM(LENGTH(payload)), 0) AS BIGINT) AS b FROM document_updates")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(StorageStats { state_bytes: s.try_get("b")?, log_rows: l.try_get("n")?, log_bytes: l.try_get("b")? })
            }
        }
    };
}

type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>;

/// SQLite has no arrays; its range delete needs no seq list.
fn no_seq_list<'q>(q: Query<'q, sqlx::Sqlite>, _: &'q [i64]) -> Query<'q, sqlx::Sqlite> {
    q
}

fn bind_seq_list<'q>(q: Query<'q, sqlx::Postgres>, seqs: &'q [i64]) -> Query<'q, sqlx::Postgres> {
    q.bind(seqs)
}

// SQLite: `BEGIN IMMEDIATE` takes the write lock up front, so no log row can
// commit during a compaction and the range delete is exact, and every write
// transaction (appends of file rows, path changes) excludes the others: no
// row locks needed.
sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    "sqlite",
    "BEGIN IMMEDIATE",
    "",
    "",
    "DELETE FROM document_updates WHERE doc_id = $1 AND seq <= $2",
    no_seq_list
);
// PostgreSQL: READ COMMITTED with the document's row (sessions or files)
// locked `FOR NO KEY UPDATE`, so concurrent compactions of one document wait
// for each other instead of failing; the delete names exactly the rows that
// were merged. Path changes take the same lock on the session row, so they
// serialise per session. Appends of file rows hold `FOR KEY SHARE` on the
// rows they checked, which only a delete waits for.
sql_store!(
    PostgresStore,
    sqlx::Postgres,
    "postgres",
    "BEGIN",
    " FOR NO KEY UPDATE",
    " FOR KEY SHARE",
    "DELETE FROM document_updates WHERE doc_id = $1 AND seq <= $2 AND seq = ANY($3)",
    bind_seq_list
);
