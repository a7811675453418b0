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
use crate::model::{now_ms, rfc3339};

macro_rules! session_columns {
    () => {
        "s.id, s.title, s.language, s.owner_id, s.public, s.public_role, s.created_at, s.updated_at"
    };
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
    ($store:ident, $db:ty, $backend:literal, $begin_compaction:literal, $lock_row:literal, $delete_folded:literal, $bind_seqs:path) => {
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

            async fn try_write_snapshot(&self, session_id: &str, live_state: &[u8]) -> StoreResult<Option<SnapshotOutcome>> {
                let mut tx = self.pool.begin_with($begin_compaction).await?;
                let q = concat!("SELECT yjs_state FROM sessions WHERE id = $1", $lock_row);
                let Some(row) = sqlx::query(q).bind(session_id).fetch_optional(&mut *tx).await? else {
                    return Ok(None);
                };
                let stored: Option<Vec<u8>> = row.try_get("yjs_state")?;
                let rows = sqlx::query("SELECT seq, payload FROM document_updates WHERE session_id = $1 ORDER BY seq")
                    .bind(session_id)
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
                let inputs = stored.iter().map(|v| v.as_slice()).chain(std::iter::once(live_state)).chain(payloads.iter().map(|v| v.as_slice()));
                let (state, text) = merge_state(inputs)?;
                sqlx::query("UPDATE sessions SET yjs_state = $2, last_snapshot = $3, state_through_seq = CASE WHEN $4 > state_through_seq THEN $4 ELSE state_through_seq END, updated_at = $5 WHERE id = $1")
                    .bind(session_id)
                    .bind(&state)
                    .bind(&text)
                    .bind(max_seq)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                let deleted = if rows.is_empty() {
                    0
                } else {
                    // Exactly the rows merged above: a log row committed
                    // meanwhile stays for the next compaction.
                    $bind_seqs(sqlx::query($delete_folded).bind(session_id).bind(max_seq), &seqs)
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
                .execute(&self.pool)
                .await?;
                self.get_session(id).await
            }

            async fn delete_session(&self, id: &str) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                for q in [
                    "DELETE FROM document_updates WHERE session_id = $1",
                    "DELETE FROM chat_messages WHERE session_id = $1",
                    "DELETE FROM participants WHERE session_id = $1",
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

            async fn append_updates(&self, batch: &[LogEntry]) -> StoreResult<()> {
                if batch.is_empty() {
                    return Ok(());
                }
                let now = now_ms();
                let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO document_updates (session_id, payload, created_at) ");
                qb.push_values(batch, |mut b, e| {
                    b.push_bind(e.session_id.to_string()).push_bind(e.update.to_vec()).push_bind(now);
                });
                match qb.build().execute(&self.pool).await {
                    Ok(_) => Ok(()),
                    // A session deleted while its updates were queued fails the
                    // whole batch on the foreign key: write the rest one by one.
                    Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() && batch.len() > 1 => {
                        for e in batch {
                            let r = sqlx::query("INSERT INTO document_updates (session_id, payload, created_at) VALUES ($1, $2, $3)")
                                .bind(&*e.session_id)
                                .bind(&e.update[..])
                                .bind(now)
                                .execute(&self.pool)
                                .await;
                            match r {
                                Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                                    tracing::debug!(session_id = %e.session_id, "dropping log row of a deleted session");
                                }
                                other => { other?; }
                            }
                        }
                        Ok(())
                    }
                    Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }

            async fn load_document(&self, session_id: &str) -> StoreResult<Option<StoredDocument>> {
                // Log rows first, snapshot second: a compaction committing in
                // between folds the rows we read into the snapshot we then read,
                // so nothing is missed without a transaction.
                let rows = sqlx::query("SELECT payload FROM document_updates WHERE session_id = $1 ORDER BY seq")
                    .bind(session_id)
                    .fetch_all(&self.pool)
                    .await?;
                let Some(row) = sqlx::query("SELECT yjs_state FROM sessions WHERE id = $1")
                    .bind(session_id)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                let updates = rows.iter().map(|r| r.try_get::<Vec<u8>, _>("payload")).collect::<Result<_, _>>()?;
                Ok(Some(StoredDocument { snapshot: row.try_get("yjs_state")?, updates }))
            }

            async fn write_snapshot(&self, session_id: &str, live_state: &[u8]) -> StoreResult<Option<SnapshotOutcome>> {
                let mut attempt = 0;
                loop {
                    match self.try_write_snapshot(session_id, live_state).await {
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

            async fn stored_text(&self, session_id: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query("SELECT last_snapshot FROM sessions WHERE id = $1")
                    .bind(session_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.try_get::<Option<String>, _>("last_snapshot")).transpose()?.flatten())
            }

            async fn storage_stats(&self) -> StoreResult<StorageStats> {
                let s = sqlx::query("SELECT CAST(COALESCE(SUM(LENGTH(yjs_state)), 0) AS BIGINT) AS b FROM sessions")
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
// commit during a compaction and the range delete is exact.
sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    "sqlite",
    "BEGIN IMMEDIATE",
    "",
    "DELETE FROM document_updates WHERE session_id = $1 AND seq <= $2",
    no_seq_list
);
// PostgreSQL: READ COMMITTED with the session row locked `FOR UPDATE`, so
// concurrent compactions of one document wait for each other instead of
// failing; the delete names exactly the rows that were merged.
sql_store!(
    PostgresStore,
    sqlx::Postgres,
    "postgres",
    "BEGIN",
    " FOR UPDATE",
    "DELETE FROM document_updates WHERE session_id = $1 AND seq <= $2 AND seq = ANY($3)",
    bind_seq_list
);
