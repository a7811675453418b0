//! Durability (issue 3), on every backend: restarts, `kill -9`, compaction,
//! LRU eviction and reload, debounced snapshots, joins racing eviction.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::peer::{Peer, edit_and_ack, eventually};
use common::{Backend, TestServer, backends, fresh_database_url};
use tandem::core::{DocManager, ManagerConfig};
use tandem::error::ErrorCode;
use tandem::model::{ChatMessage, Role, SessionInfo};
use tandem::store::{
    LogEntry, LogTail, NewSession, ParticipantRow, SessionPatch, SnapshotOutcome, StorageStats,
    Store, StoreError, StoreResult, StoredDocument,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use yrs::{Doc, GetString, Text, Transact};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_survive_a_clean_restart() {
    for b in backends() {
        let srv = TestServer::start(b, |c| c.on_demand_sessions = true).await;
        let p = Peer::connect(&srv.url, Some(&srv.token("a", &[])))
            .await
            .unwrap();
        p.join("doc").await;
        edit_and_ack(&p, "doc", 80, 1).await;
        let before = p.text();
        let (config, dir) = (srv.config.clone(), srv.dir.clone());
        srv.stop().await.unwrap();

        // Shutdown flushed a snapshot whose text is the document's.
        let store = tandem::store::connect(&config.database_url).await.unwrap();
        assert_eq!(
            store.stored_text("doc").await.unwrap().as_deref(),
            Some(before.as_str()),
            "{b:?}"
        );

        let srv = TestServer::start_with(config, dir).await;
        let q = Peer::connect(&srv.url, Some(&srv.token("b", &[])))
            .await
            .unwrap();
        q.join("doc").await;
        assert_eq!(q.text(), before, "{b:?}");
        srv.stop().await.unwrap();
    }
}

/// The real binary as a child process.
struct Child {
    child: tokio::process::Child,
    url: String,
}

async fn spawn_server(database_url: &str, dir: &std::path::Path) -> Child {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            database_url,
            "--secret",
            common::SECRET,
            "--on-demand-sessions",
        ])
        .arg("--data-dir")
        .arg(dir)
        // Snapshots far away: what survives must come from the update log.
        .args([
            "--snapshot-debounce-ms",
            "600000",
            "--snapshot-max-delay-ms",
            "600000",
        ])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tandem");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(i) = line.find("listening on http://") {
                return line[i + "listening on ".len()..].trim().to_owned();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server start timed out");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Child { child, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_edits_survive_kill_9() {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = fresh_database_url(b, dir.path()).await;
        let mut srv = spawn_server(&db, dir.path()).await;
        let auth = tandem::auth::Auth::new(common::SECRET.as_bytes());
        let token = auth.issue("a", "A", Default::default(), 3600);
        let p = Peer::connect(&srv.url, Some(&token)).await.unwrap();
        p.join("k9").await;
        edit_and_ack(&p, "k9", 200, 9).await;
        let acked = p.text();

        srv.child.kill().await.unwrap(); // SIGKILL: no flush, no goodbye
        let status = srv.child.wait().await.unwrap();
        assert!(
            !status.success(),
            "{b:?}: the server was killed, not stopped"
        );

        let srv = spawn_server(&db, dir.path()).await;
        let q = Peer::connect(
            &srv.url,
            Some(&auth.issue("b", "B", Default::default(), 3600)),
        )
        .await
        .unwrap();
        q.join("k9").await;
        assert_eq!(
            q.text().as_bytes(),
            acked.as_bytes(),
            "{b:?}: acknowledged edits lost by kill -9"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_every_document_before_exit() {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = fresh_database_url(b, dir.path()).await;
        let mut srv = spawn_server(&db, dir.path()).await;
        let auth = tandem::auth::Auth::new(common::SECRET.as_bytes());
        let p = Peer::connect(
            &srv.url,
            Some(&auth.issue("a", "A", Default::default(), 3600)),
        )
        .await
        .unwrap();
        p.join("term").await;
        edit_and_ack(&p, "term", 50, 4).await;
        let text = p.text();
        let store = tandem::store::connect(&db).await.unwrap();
        assert_eq!(
            store.stored_text("term").await.unwrap(),
            None,
            "{b:?}: snapshots are far away in this server"
        );

        let pid = srv.child.id().unwrap() as i32;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(Duration::from_secs(10), srv.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(
            status.success(),
            "{b:?}: clean exit on SIGTERM, got {status:?}"
        );
        // The shutdown flush wrote the snapshot and folded the log into it.
        assert_eq!(
            store.stored_text("term").await.unwrap().as_deref(),
            Some(text.as_str()),
            "{b:?}"
        );
        assert!(
            store
                .load_document("term")
                .await
                .unwrap()
                .unwrap()
                .updates
                .is_empty(),
            "{b:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_editors_are_compacted_and_reload_identically() {
    for b in backends() {
        let srv = TestServer::start(b, |c| {
            c.on_demand_sessions = true;
            c.snapshot_debounce_ms = 100;
        })
        .await;
        let p = Peer::connect(&srv.url, Some(&srv.token("a", &[])))
            .await
            .unwrap();
        let q = Peer::connect(&srv.url, Some(&srv.token("b", &[])))
            .await
            .unwrap();
        p.join("cmp").await;
        q.join("cmp").await;
        let (pe, qe) = tokio::join!(
            edit_and_ack(&p, "cmp", 60, 1),
            edit_and_ack(&q, "cmp", 60, 2)
        );
        let _ = (pe, qe);
        eventually(Duration::from_secs(5), "replicas equal", || {
            p.text() == q.text()
        })
        .await;
        let text = p.text();

        let store = tandem::store::connect(&srv.database_url).await.unwrap();
        let mut compacted = false;
        for _ in 0..250 {
            let stats = store.storage_stats().await.unwrap();
            if stats.log_rows == 0
                && store.stored_text("cmp").await.unwrap().as_deref() == Some(text.as_str())
            {
                compacted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            compacted,
            "{b:?}: log rows folded into a snapshot with the live text"
        );
        let loaded = store.load_document("cmp").await.unwrap().unwrap();
        assert!(loaded.updates.is_empty(), "{b:?}");
        let (config, dir) = (srv.config.clone(), srv.dir.clone());
        drop((p, q));
        srv.stop().await.unwrap();
        let srv = TestServer::start_with(config, dir).await;
        let r = Peer::connect(&srv.url, Some(&srv.token("c", &[])))
            .await
            .unwrap();
        r.join("cmp").await;
        assert_eq!(r.text(), text, "{b:?}");
        srv.stop().await.unwrap();
    }
}

async fn manager(
    b: Backend,
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut ManagerConfig),
) -> Arc<DocManager> {
    let url = fresh_database_url(b, dir).await;
    let store = tandem::store::connect(&url).await.unwrap();
    for id in ["d1", "d2", "d3", "race"] {
        store
            .create_session(&NewSession {
                id: id.into(),
                title: id.into(),
                language: "plaintext".into(),
                owner_id: "o".into(),
                owner_name: "O".into(),
                public: true,
                public_role: Role::Editor,
                main_path: None,
            })
            .await
            .unwrap();
    }
    let config = common::test_config(dir, &url);
    let mut mc = ManagerConfig::from_config(&config);
    tweak(&mut mc);
    DocManager::new(store, mc)
}

/// An insert of `s` by a fresh client, as one update.
fn insert(s: &str) -> Bytes {
    let d = Doc::new();
    let t = d.get_or_insert_text("monaco");
    let mut txn = d.transact_mut();
    t.insert(&mut txn, 0, s);
    Bytes::from(txn.encode_update_v1())
}

async fn submit_durably(m: &DocManager, id: &str, u: Bytes) {
    let lease = m.open(id).await.unwrap();
    if let Some(done) = m.submit_update(&lease, u, None, true).await.unwrap() {
        assert!(done.await.unwrap(), "logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lru_eviction_and_reload_give_the_same_document() {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(b, dir.path(), |c| c.max_loaded_documents = 1).await;
        for i in 0..20 {
            submit_durably(&m, "d1", insert(&format!("<{i}>"))).await;
        }
        let original = m.get_loaded("d1").unwrap().text();
        assert_eq!(m.loaded(), 1);
        // A held lease pins d1: opening d2 may not evict it.
        let pin = m.open("d1").await.unwrap();
        let d2 = m.open("d2").await.unwrap();
        assert!(
            m.get_loaded("d1").is_some(),
            "{b:?}: a document in use is never evicted"
        );
        drop(pin);
        drop(d2);
        let _d3 = m.open("d3").await.unwrap();
        assert!(
            m.get_loaded("d1").is_none(),
            "{b:?}: idle d1 evicted for d3"
        );
        assert!(m.loaded() <= 2);
        let again = m.open("d1").await.unwrap();
        assert_eq!(again.text(), original, "{b:?}");
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_snapshot_equals_the_live_text_after_the_debounce() {
    // A real clock with a short window, polled (the store's I/O runs on other
    // threads, which a paused tokio clock would race with its timeouts).
    let window = Duration::from_millis(300);
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(b, dir.path(), |c| {
            c.snapshot_debounce = window;
            c.snapshot_max_delay = Duration::from_secs(60);
        })
        .await;
        let lease = m.open("d1").await.unwrap();
        for i in 0..30 {
            m.submit_update(&lease, insert(&format!("[{i}]")), None, false)
                .await
                .unwrap();
        }
        let last_edit = std::time::Instant::now();
        let text = lease.text();
        m.tick().await;
        assert_eq!(
            m.store().stored_text("d1").await.unwrap(),
            None,
            "{b:?}: no snapshot inside the debounce window"
        );
        let deadline = last_edit + Duration::from_secs(10);
        loop {
            m.tick().await;
            if m.store().stored_text("d1").await.unwrap().as_deref() == Some(text.as_str()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{b:?}: no snapshot after the window"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(last_edit.elapsed() >= window, "{b:?}: snapshot came early");
        m.shutdown().await;
    }
}

/// Continuous editing never lets the debounce expire: the maximum delay
/// forces a snapshot anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_editing_is_snapshotted_after_the_max_delay() {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(b, dir.path(), |c| {
            c.snapshot_debounce = Duration::from_millis(300);
            c.snapshot_max_delay = Duration::from_millis(400);
        })
        .await;
        let lease = m.open("d1").await.unwrap();
        let started = std::time::Instant::now();
        let mut i = 0;
        let snapshot = loop {
            // An edit every 20 ms: the 300 ms debounce never expires.
            m.submit_update(&lease, insert(&format!("[{i}]")), None, false)
                .await
                .unwrap();
            i += 1;
            m.tick().await;
            if let Some(t) = m.store().stored_text("d1").await.unwrap() {
                break t;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{b:?}: continuous editing was never snapshotted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(started.elapsed() >= Duration::from_millis(400), "{b:?}");
        assert!(snapshot.contains("[0]"), "{b:?}: {snapshot}");
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_racing_eviction_neither_lose_edits_nor_duplicate_the_document() {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(b, dir.path(), |c| {
            c.max_loaded_documents = 1;
            c.idle_unload = Duration::ZERO;
        })
        .await;
        let mut tasks = Vec::new();
        for w in 0..4 {
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                let mut copies: Vec<Arc<tandem::core::SessionDoc>> = Vec::new();
                for i in 0..30 {
                    // Each join leases the document, edits, and lets go.
                    let lease = m.open("race").await.unwrap();
                    // One copy: a leased document is the one the manager serves.
                    let served = m.get_loaded("race").expect("leased, so loaded");
                    assert!(Arc::ptr_eq(&served, &lease), "two copies of `race`");
                    if !copies.iter().any(|c| Arc::ptr_eq(c, &lease)) {
                        copies.push(Arc::clone(&lease));
                    }
                    // Durable, so the document is evictable as soon as the lease goes.
                    m.submit(&lease, insert(&format!("(w{w}i{i})")), None, true)
                        .await
                        .unwrap();
                    drop(lease);
                    // Short, staggered gaps: moments when nobody holds `race`.
                    tokio::time::sleep(Duration::from_millis((w + i) % 4)).await;
                }
                copies
            }));
        }
        // Meanwhile other documents and idle unloading push `race` out.
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (m, stop) = (m.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let _ = m.open(if i % 2 == 0 { "d1" } else { "d2" }).await.unwrap();
                    m.tick().await;
                    i += 1;
                }
            })
        };
        // Kept alive (not leased) so distinct loads have distinct addresses.
        let mut copies: Vec<Arc<tandem::core::SessionDoc>> = Vec::new();
        for t in tasks {
            for c in t.await.unwrap() {
                if !copies.iter().any(|k| Arc::ptr_eq(k, &c)) {
                    copies.push(c);
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        churn.await.unwrap();
        assert!(
            copies.len() >= 2,
            "{b:?}: `race` was never evicted and reloaded; the test raced nothing"
        );
        eprintln!(
            "{b:?}: `race` loaded {} times while being edited",
            copies.len()
        );
        // Eviction waits for committed log rows, so a reload sees every edit.
        let text = m.open("race").await.unwrap().text();
        for w in 0..4 {
            for i in 0..30 {
                assert!(
                    text.contains(&format!("(w{w}i{i})")),
                    "{b:?}: edit w{w}i{i} lost"
                );
            }
        }
        // And the store alone agrees (no second copy wrote over the first).
        m.shutdown().await;
        let stored = m.store().load_document("race").await.unwrap().unwrap();
        let d = Doc::new();
        let t = d.get_or_insert_text("monaco");
        {
            let mut txn = d.transact_mut();
            for u in stored.snapshot.iter().chain(stored.updates.iter()) {
                txn.apply_update(yrs::updates::decoder::Decode::decode_v1(u).unwrap())
                    .unwrap();
            }
        }
        assert_eq!(t.get_string(&d.transact()), text, "{b:?}");
    }
}

/// A store that delegates to a real one, with faults to inject: failing log
/// appends (a database outage) and slow snapshots (a busy database).
struct FaultyStore {
    inner: Arc<dyn Store>,
    fail_appends: AtomicBool,
    /// The log writer task panics on its next commit.
    panic_appends: AtomicBool,
    /// This many next loads fail (after `load_delay_ms`).
    fail_loads: AtomicU64,
    load_delay_ms: AtomicU64,
    snapshot_delay_ms: AtomicU64,
    snapshots: AtomicU64,
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn create_session(&self, s: &NewSession) -> StoreResult<Option<SessionInfo>> {
        self.inner.create_session(s).await
    }
    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionInfo>> {
        self.inner.get_session(id).await
    }
    async fn list_sessions_for_user(&self, user_id: &str) -> StoreResult<Vec<SessionInfo>> {
        self.inner.list_sessions_for_user(user_id).await
    }
    async fn update_session(
        &self,
        id: &str,
        patch: &SessionPatch,
    ) -> StoreResult<Option<SessionInfo>> {
        self.inner.update_session(id, patch).await
    }
    async fn delete_session(&self, id: &str) -> StoreResult<bool> {
        self.inner.delete_session(id).await
    }
    async fn participant(&self, s: &str, u: &str) -> StoreResult<Option<ParticipantRow>> {
        self.inner.participant(s, u).await
    }
    async fn list_participants(&self, s: &str) -> StoreResult<Vec<ParticipantRow>> {
        self.inner.list_participants(s).await
    }
    async fn set_role(&self, s: &str, u: &str, n: &str, role: Option<Role>) -> StoreResult<()> {
        self.inner.set_role(s, u, n, role).await
    }
    async fn record_presence(&self, s: &str, u: &str, n: &str, joined: bool) -> StoreResult<()> {
        self.inner.record_presence(s, u, n, joined).await
    }
    async fn insert_chat(&self, s: &str, u: &str, n: &str, c: &str) -> StoreResult<ChatMessage> {
        self.inner.insert_chat(s, u, n, c).await
    }
    async fn list_chat(
        &self,
        s: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<ChatMessage>> {
        self.inner.list_chat(s, before, limit).await
    }
    async fn append_updates(&self, batch: &[LogEntry]) -> StoreResult<Vec<Option<i64>>> {
        if self.panic_appends.load(Ordering::SeqCst) {
            panic!("injected: the log writer dies");
        }
        if self.fail_appends.load(Ordering::SeqCst) {
            return Err(StoreError::Db(sqlx::Error::PoolTimedOut));
        }
        self.inner.append_updates(batch).await
    }
    async fn read_log_since(&self, id: &str, after: i64) -> StoreResult<Option<LogTail>> {
        self.inner.read_log_since(id, after).await
    }
    async fn log_heads(&self, s: &[String]) -> StoreResult<Vec<(String, i64)>> {
        self.inner.log_heads(s).await
    }
    async fn load_document(&self, id: &str) -> StoreResult<Option<StoredDocument>> {
        let delay = self.load_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let fail = self
            .fail_loads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(StoreError::Db(sqlx::Error::PoolTimedOut));
        }
        self.inner.load_document(id).await
    }
    async fn touch_file(&self, s: &str, f: &str, by: &str) -> StoreResult<()> {
        self.inner.touch_file(s, f, by).await
    }
    async fn write_snapshot(&self, id: &str, live: &[u8]) -> StoreResult<Option<SnapshotOutcome>> {
        self.snapshots.fetch_add(1, Ordering::SeqCst);
        let delay = self.snapshot_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.inner.write_snapshot(id, live).await
    }
    async fn stored_text(&self, id: &str) -> StoreResult<Option<String>> {
        self.inner.stored_text(id).await
    }
    async fn storage_stats(&self) -> StoreResult<StorageStats> {
        self.inner.storage_stats().await
    }
    async fn list_files(&self, s: &str) -> StoreResult<Vec<tandem::model::File>> {
        self.inner.list_files(s).await
    }
    async fn get_file(&self, s: &str, f: &str) -> StoreResult<Option<tandem::model::File>> {
        self.inner.get_file(s, f).await
    }
    async fn create_file(
        &self,
        s: &str,
        f: &tandem::store::NewFile,
    ) -> StoreResult<Option<tandem::model::File>> {
        self.inner.create_file(s, f).await
    }
    async fn rename_file(
        &self,
        s: &str,
        f: &str,
        path: Option<&str>,
        language: Option<&str>,
        by: &str,
    ) -> StoreResult<Option<tandem::store::RenamedFile>> {
        self.inner.rename_file(s, f, path, language, by).await
    }
    async fn delete_file(&self, s: &str, f: &str) -> StoreResult<Option<tandem::model::File>> {
        self.inner.delete_file(s, f).await
    }
    async fn workspace_bytes(&self, s: &str) -> StoreResult<i64> {
        self.inner.workspace_bytes(s).await
    }
}

/// A manager over a [`FaultyStore`] with sessions d1 and d2.
async fn faulty_manager(
    b: Backend,
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut ManagerConfig),
) -> (Arc<DocManager>, Arc<FaultyStore>) {
    let m = manager(b, dir, |_| {}).await;
    let faulty = Arc::new(FaultyStore {
        inner: m.store().clone(),
        fail_appends: AtomicBool::new(false),
        panic_appends: AtomicBool::new(false),
        fail_loads: AtomicU64::new(0),
        load_delay_ms: AtomicU64::new(0),
        snapshot_delay_ms: AtomicU64::new(0),
        snapshots: AtomicU64::new(0),
    });
    m.shutdown().await;
    let config = common::test_config(dir, "sqlite::memory:");
    let mut mc = ManagerConfig::from_config(&config);
    tweak(&mut mc);
    (DocManager::new(faulty.clone(), mc), faulty)
}

fn stored_text_of(stored: &StoredDocument) -> String {
    let d = Doc::new();
    let t = d.get_or_insert_text("monaco");
    {
        let mut txn = d.transact_mut();
        for u in stored.snapshot.iter().chain(stored.updates.iter()) {
            txn.apply_update(yrs::updates::decoder::Decode::decode_v1(u).unwrap())
                .unwrap();
        }
    }
    t.get_string(&d.transact())
}

/// A client that re-sends an update (its first ack was lost, or another
/// replica relayed it) and asks for an ack must get it only once the content
/// is committed, not as soon as the server finds the update already applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_resend_is_durable() {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(b, dir.path(), |c| {
            c.log_batch_rows = 10_000;
            c.log_batch_delay = Duration::from_millis(400);
        })
        .await;
        let lease = m.open("d1").await.unwrap();
        let u = insert("resent");
        // Applied and queued for the log, not committed yet (400 ms batch window).
        assert!(
            m.submit_update(&lease, u.clone(), None, false)
                .await
                .unwrap()
                .is_none()
        );
        m.submit(&lease, u, None, true).await.unwrap();
        let stored = m.store().load_document("d1").await.unwrap().unwrap();
        assert_eq!(
            stored_text_of(&stored),
            "resent",
            "{b:?}: acknowledged before the content was committed"
        );
        m.shutdown().await;
    }
}

/// The LRU may unload a dirty document only when the log already holds all
/// of it; otherwise a reload right away would miss edits the spawned
/// snapshot has not written yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lru_never_unloads_changes_the_log_does_not_hold() {
    for b in backends() {
        for case in ["log off", "log commit failed"] {
            let dir = tempfile::tempdir().unwrap();
            let (m, faulty) = faulty_manager(b, dir.path(), |c| {
                c.max_loaded_documents = 1;
                c.update_log = case != "log off";
            })
            .await;
            faulty.snapshot_delay_ms.store(300, Ordering::SeqCst);
            faulty
                .fail_appends
                .store(case == "log commit failed", Ordering::SeqCst);
            {
                let lease = m.open("d1").await.unwrap();
                let done = m
                    .submit_update(&lease, insert("precious"), None, true)
                    .await
                    .unwrap();
                if let Some(done) = done {
                    assert!(!done.await.unwrap(), "{b:?}: the log commit failed");
                }
            }
            faulty.fail_appends.store(false, Ordering::SeqCst);
            drop(m.open("d2").await.unwrap());
            let again = m.open("d1").await.unwrap();
            assert_eq!(
                again.text(),
                "precious",
                "{b:?} {case}: edit lost by eviction"
            );
            drop(again);
            m.shutdown().await;
            let stored = faulty.load_document("d1").await.unwrap().unwrap();
            assert_eq!(stored_text_of(&stored), "precious", "{b:?} {case}");
        }
    }
}

/// Under continuous editing, edits land while a snapshot is being written.
/// The next forced snapshot is due a full max delay later, not at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_editing_snapshots_at_most_once_per_max_delay() {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (m, faulty) = faulty_manager(b, dir.path(), |c| {
            c.snapshot_debounce = Duration::from_secs(60);
            c.snapshot_max_delay = Duration::from_millis(300);
        })
        .await;
        // Slow snapshots: every one overlaps edits.
        faulty.snapshot_delay_ms.store(30, Ordering::SeqCst);
        let lease = m.open("d1").await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let editor = {
            let (m, stop, doc) = (m.clone(), stop.clone(), lease.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    m.submit_update(&doc, insert(&format!("[{i}]")), None, false)
                        .await
                        .unwrap();
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let run = Duration::from_millis(1500);
        let started = std::time::Instant::now();
        while started.elapsed() < run {
            m.tick().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, Ordering::SeqCst);
        editor.await.unwrap();
        let n = faulty.snapshots.load(Ordering::SeqCst);
        // 1.5 s / 300 ms = 5 windows; allow slack for scheduling.
        assert!(
            (2..=7).contains(&n),
            "{b:?}: {n} snapshots in 1.5 s with a 300 ms max delay"
        );
        drop(lease);
        m.shutdown().await;
    }
}

/// Issue 10, defect 5: when the first load of a document fails, a caller
/// that was waiting on the same load must not end up holding a copy that is
/// not the loaded one (its acknowledged edits would be invisible to joiners
/// and never snapshotted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_load_leaves_no_orphan_copy() {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (m, faulty) = faulty_manager(b, dir.path(), |_| {}).await;
        faulty.load_delay_ms.store(150, Ordering::SeqCst);
        faulty.fail_loads.store(1, Ordering::SeqCst);
        let first = {
            let m = m.clone();
            tokio::spawn(async move { m.open("d1").await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(40)).await;
        let waiter = m.open("d1").await.expect("the waiter's own load succeeds");
        assert!(
            first.await.unwrap().is_err(),
            "{b:?}: the first load failed"
        );
        faulty.load_delay_ms.store(0, Ordering::SeqCst);
        m.submit(&waiter, insert("seen by all"), None, true)
            .await
            .unwrap();
        let loaded = m.get_loaded("d1").expect("the document is loaded");
        assert!(
            Arc::ptr_eq(&loaded, &waiter),
            "{b:?}: the waiter holds a copy that is not the loaded one"
        );
        let third = m.open("d1").await.unwrap();
        assert_eq!(third.text(), "seen by all", "{b:?}");
        drop((waiter, third));
        m.shutdown().await;
    }
}

/// Issue 10, defect 8: an update is acknowledged only with a log row behind
/// it. Once shutdown took the log, or the log writer died, updates are
/// refused and nothing is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ack_without_a_log_row() {
    for b in backends() {
        // The writer task dies (a panic inside a commit).
        let dir = tempfile::tempdir().unwrap();
        let (m, faulty) = faulty_manager(b, dir.path(), |_| {}).await;
        let lease = m.open("d1").await.unwrap();
        m.submit(&lease, insert("a"), None, true).await.unwrap();
        faulty.panic_appends.store(true, Ordering::SeqCst);
        let err = m.submit(&lease, insert("b"), None, true).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Internal, "{b:?}: acked without a row");
        // The writer is gone now: refused before anything is applied.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = lease.text();
        let err = m.submit(&lease, insert("c"), None, true).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Internal, "{b:?}");
        assert_eq!(lease.text(), before, "{b:?}: a refused update was applied");
        drop(lease);

        // Shutdown took the log: refused too.
        let dir = tempfile::tempdir().unwrap();
        let m = manager(b, dir.path(), |_| {}).await;
        let lease = m.open("d1").await.unwrap();
        m.shutdown().await;
        let err = m
            .submit(&lease, insert("late"), None, true)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Internal, "{b:?}: acked after shutdown");
        assert_eq!(lease.text(), "", "{b:?}");
    }
}
