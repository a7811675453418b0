//! [`DocManager`]: the LRU of loaded documents, loading (one load per
//! document however many joins race it), leases that pin a document in
//! memory, the update path (limits → apply → fan-out → log), debounced
//! snapshots, idle unload and the final flush.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lru::LruCache;
use tokio::sync::{OnceCell, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::log::UpdateLog;
use super::{Applied, Fanout, Limits, SessionDoc};
use crate::error::{Error, ErrorCode};
use crate::store::Store;

type Slot = Arc<OnceCell<Arc<SessionDoc>>>;

/// Tuning of the manager (from `Config`).
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub limits: Limits,
    pub max_loaded_documents: usize,
    pub idle_unload: Duration,
    pub snapshot_debounce: Duration,
    pub snapshot_max_delay: Duration,
    pub update_log: bool,
    pub log_batch_rows: usize,
    pub log_batch_delay: Duration,
    /// Cluster mode: other nodes append to the same log.
    pub replicated: bool,
}

impl ManagerConfig {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            limits: Limits {
                max_update_bytes: c.max_update_bytes,
                max_document_bytes: c.max_document_bytes,
                max_nested_types: c.max_nested_types,
            },
            max_loaded_documents: c.max_loaded_documents.max(1),
            idle_unload: Duration::from_secs(c.idle_unload_secs),
            snapshot_debounce: Duration::from_millis(c.snapshot_debounce_ms),
            snapshot_max_delay: Duration::from_millis(c.snapshot_max_delay_ms),
            update_log: c.update_log,
            log_batch_rows: c.log_batch_rows,
            log_batch_delay: Duration::from_millis(c.log_batch_delay_ms),
            replicated: c.redis_url.is_some(),
        }
    }
}

/// A document pinned in memory. While any lease exists the document is never
/// evicted; dropping the last one makes it eligible for idle unload.
///
/// This is the one rule for every holder (both socket dialects, HTTP, the
/// background resync tasks): only a lease gives access to a document's update
/// path ([`DocManager::submit`] takes a lease), so no update can land in a
/// copy that eviction already dropped. Cloning takes another lease.
pub struct DocLease {
    doc: Arc<SessionDoc>,
}

impl Clone for DocLease {
    fn clone(&self) -> Self {
        self.doc.with_life(|l| l.leases += 1);
        Self {
            doc: self.doc.clone(),
        }
    }
}

impl std::ops::Deref for DocLease {
    type Target = Arc<SessionDoc>;
    fn deref(&self) -> &Arc<SessionDoc> {
        &self.doc
    }
}

impl Drop for DocLease {
    fn drop(&mut self) {
        self.doc.with_life(|l| {
            l.leases -= 1;
            l.last_used = Instant::now();
        });
    }
}

/// Owns every loaded document.
pub struct DocManager {
    docs: Mutex<LruCache<Arc<str>, Slot>>,
    store: Arc<dyn Store>,
    log: Mutex<Option<UpdateLog>>,
    log_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    fanout: super::log::FanoutCell,
    cfg: ManagerConfig,
    /// Documents were unloaded since freed memory was last handed back.
    trim_due: std::sync::atomic::AtomicBool,
    last_trim: Mutex<Option<Instant>>,
}

impl DocManager {
    /// Must be called inside a tokio runtime (starts the log writer).
    pub fn new(store: Arc<dyn Store>, cfg: ManagerConfig) -> Arc<Self> {
        let fanout = super::log::FanoutCell::default();
        let (log, task) = if cfg.update_log {
            let (l, t) = UpdateLog::start(
                store.clone(),
                fanout.clone(),
                cfg.log_batch_rows,
                cfg.log_batch_delay,
            );
            (Some(l), Some(t))
        } else {
            (None, None)
        };
        Arc::new(Self {
            docs: Mutex::new(LruCache::unbounded()),
            store,
            log: Mutex::new(log),
            log_task: Mutex::new(task),
            fanout,
            cfg,
            trim_due: std::sync::atomic::AtomicBool::new(false),
            last_trim: Mutex::new(None),
        })
    }

    /// Connects the manager to the protocol layer (once, at start-up).
    pub fn set_fanout(&self, fanout: Arc<dyn Fanout>) {
        let _ = self.fanout.set(fanout);
    }

    /// The fan-out set at start-up (absent in core-only tests and benches).
    pub fn fanout(&self) -> Option<&Arc<dyn Fanout>> {
        self.fanout.get()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn limits(&self) -> &Limits {
        &self.cfg.limits
    }

    fn docs(&self) -> std::sync::MutexGuard<'_, LruCache<Arc<str>, Slot>> {
        self.docs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of loaded documents.
    pub fn loaded(&self) -> usize {
        self.docs().iter().filter(|(_, s)| s.initialized()).count()
    }

    /// Every loaded document.
    pub fn loaded_docs(&self) -> Vec<Arc<SessionDoc>> {
        self.docs()
            .iter()
            .filter_map(|(_, s)| s.get().cloned())
            .collect()
    }

    /// The loaded documents of a session: its main document and its files.
    pub fn loaded_of_session(&self, session_id: &str) -> Vec<Arc<SessionDoc>> {
        self.docs()
            .iter()
            .filter(|(id, _)| crate::model::DocId::in_session(id, session_id))
            .filter_map(|(_, s)| s.get().cloned())
            .collect()
    }

    /// The loaded document, if it is in memory (no load, no lease).
    pub fn get_loaded(&self, id: &str) -> Option<Arc<SessionDoc>> {
        self.docs().peek(id).and_then(|s| s.get().cloned())
    }

    /// Leases the document, loading it if needed. Concurrent callers share one
    /// load; a failed load is an error (never an empty document).
    pub async fn open(&self, id: &str) -> Result<DocLease, Error> {
        loop {
            let slot = {
                let mut docs = self.docs();
                match docs.get(id) {
                    Some(s) => s.clone(),
                    None => {
                        let s: Slot = Arc::new(OnceCell::new());
                        docs.put(Arc::from(id), s.clone());
                        s
                    }
                }
            };
            let loaded = slot
                .get_or_try_init(|| async {
                    let started = std::time::Instant::now();
                    let stored = self.store.load_document(id).await?;
                    let Some(stored) = stored else {
                        return Err(match crate::model::DocId::parse(id) {
                            Ok(d) if !d.is_main() => {
                                Error::new(ErrorCode::FileNotFound, "no such file")
                            }
                            _ => Error::new(ErrorCode::SessionNotFound, "no such session"),
                        });
                    };
                    // Decoding and applying a large stored document is CPU
                    // work: off the async workers, so relays never wait on it.
                    let (key, limits) = (id.to_owned(), self.cfg.limits);
                    let rows = stored.updates.len();
                    let doc = tokio::task::spawn_blocking(move || {
                        SessionDoc::load(&key, &stored, &limits).map_err(Error::from)
                    })
                    .await
                    .map_err(|_| Error::internal())??;
                    metrics::histogram!("tandem_document_load_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("tandem_documents_loaded_total").increment(1);
                    tracing::debug!(session_id = id, rows, "document loaded");
                    if let Some(f) = self.fanout.get() {
                        f.loaded(id);
                    }
                    Ok::<_, Error>(Arc::new(doc))
                })
                .await;
            let doc = match loaded {
                Ok(d) => d.clone(),
                Err(e) => {
                    self.remove_slot(id, &slot);
                    return Err(e);
                }
            };
            // The slot must still be the one in the LRU: when a first load
            // fails, its caller removes the slot and a waiter on the same
            // cell loads again into a slot nobody else can see. Holding that
            // copy would split the document in two.
            let current = self.docs().peek(id).is_some_and(|s| Arc::ptr_eq(s, &slot));
            if !current {
                continue;
            }
            let acquired = doc.with_life(|l| {
                if l.evicted {
                    false
                } else {
                    l.leases += 1;
                    l.last_used = Instant::now();
                    true
                }
            });
            if acquired {
                self.enforce_capacity();
                return Ok(DocLease { doc });
            }
            // Lost a race with eviction: that copy is gone, load again.
            self.remove_slot(id, &slot);
        }
    }

    fn remove_slot(&self, id: &str, slot: &Slot) {
        let mut docs = self.docs();
        if docs.peek(id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            docs.pop(id);
        }
    }

    /// Applies an update from any source and fans it out to every other
    /// replica. With `want_ack` the returned receiver resolves once the update
    /// is durably logged; `Ok(None)` when there is nothing to wait for (an
    /// empty or already-known update, or the log is off).
    ///
    /// With the log on, an update is refused (`INTERNAL`, nothing applied)
    /// once the log is gone (shutdown) or its writer died: an acknowledged
    /// update always has a row behind it.
    pub async fn submit_update(
        &self,
        doc: &DocLease,
        update: Bytes,
        origin: Option<&str>,
        want_ack: bool,
    ) -> Result<Option<oneshot::Receiver<bool>>, Error> {
        let started = std::time::Instant::now();
        let log = if self.cfg.update_log {
            let log = self.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match log.filter(|l| !l.is_closed()) {
                Some(l) => Some(l),
                None => {
                    tracing::warn!(session_id = %doc.id, "update refused: the update log is not running");
                    return Err(Error::new(
                        ErrorCode::Internal,
                        "the server cannot store updates right now",
                    ));
                }
            }
        } else {
            None
        };
        // Peers hear what the document integrated, in the order it did, from
        // under its lock: an update held back for its predecessors is
        // relayed when it is applied, not when it comes (a yrs peer would
        // integrate it with a hole in its clocks).
        let fanout = self.fanout.get();
        let mut relay = |b: &Bytes, except: Option<&str>| {
            if let Some(f) = fanout {
                f.doc_update(&doc.id, b, except);
            }
        };
        let (applied, update, failure) =
            match doc.apply_update_relaying(&update, &self.cfg.limits, origin, &mut relay)? {
                Applied::Partial { effective, error } => (Applied::Changed, effective, Some(error)),
                // Held back until its predecessors arrive: durable now, like
                // any change, and relayed once applied.
                Applied::Parked => (Applied::Changed, update, None),
                applied => (applied, update, None),
            };
        if applied == Applied::Empty {
            return Ok(None);
        }
        if applied == Applied::Changed
            && let Some((user_id, _)) = origin.and_then(|conn| doc.user_of(conn))
        {
            doc.with_life(|l| l.last_editor = Some(user_id));
        }
        metrics::counter!("tandem_updates_applied_total").increment(1);
        metrics::histogram!("tandem_update_apply_seconds").record(started.elapsed().as_secs_f64());
        // A re-sent update changes nothing, but its first copy may still be
        // queued (or its commit may have failed): an ack must wait for a
        // committed row, so log the duplicate (merging is idempotent).
        if applied == Applied::Known && !want_ack {
            return Ok(None);
        }
        let done = match log {
            Some(log) => match log.append(doc, update, want_ack).await {
                Ok(done) => done,
                Err(()) => {
                    // Applied and relayed but not logged: only a snapshot
                    // makes the store whole, and the sender hears an error.
                    doc.with_life(|l| l.unlogged_through = l.generation);
                    return Err(Error::new(
                        ErrorCode::Internal,
                        "the server cannot store updates right now",
                    ));
                }
            },
            None => None,
        };
        match failure {
            Some(error) => Err(error),
            None => Ok(done),
        }
    }

    /// [`submit_update`](Self::submit_update) and, with `durable`, wait until
    /// the update is committed to the log (`INTERNAL` if that failed).
    pub async fn submit(
        &self,
        doc: &DocLease,
        update: Bytes,
        origin: Option<&str>,
        durable: bool,
    ) -> Result<(), Error> {
        if let Some(done) = self.submit_update(doc, update, origin, durable).await?
            && !done.await.unwrap_or(false)
        {
            return Err(Error::internal());
        }
        Ok(())
    }

    /// Opens a document to show its state to someone (a join, HTTP reads,
    /// an HTTP content replace): in cluster mode the copy first applies
    /// every row other nodes committed, so whichever node answers shows
    /// every acknowledged edit (a client of a node that died reconnects
    /// anywhere and gets all it had acknowledged at once).
    pub async fn open_fresh(&self, id: &str) -> Result<DocLease, Error> {
        let lease = self.open(id).await?;
        self.refresh(&lease).await?;
        Ok(lease)
    }

    /// [`open_fresh`](Self::open_fresh) for a document already in hand: in
    /// cluster mode, apply what other nodes committed; otherwise nothing.
    pub async fn refresh(&self, doc: &Arc<SessionDoc>) -> Result<(), Error> {
        if !self.cfg.replicated {
            return Ok(());
        }
        self.catch_up(doc).await.map(drop).map_err(|e| {
            tracing::warn!(doc_id = %doc.id, error = %e, "catching up before a read failed");
            Error::internal()
        })
    }

    /// Whether other nodes append to the same log (cluster mode).
    pub fn replicated(&self) -> bool {
        self.cfg.replicated
    }

    /// Deletes a document from memory without flushing (its session is gone).
    pub fn discard(&self, id: &str) {
        let slot = self.docs().pop(id);
        if let Some(doc) = slot.and_then(|s| s.get().cloned()) {
            doc.with_life(|l| l.evicted = true);
        }
        if let Some(f) = self.fanout.get() {
            f.unloaded(id);
        }
    }

    /// Waits until everything applied to `doc` so far is in the store: the
    /// log rows queued until now committed, or (log off, or a commit failed)
    /// a snapshot. Readers that show state to people call it before answering,
    /// so what they showed survives a crash (a `kill -9`) right after.
    pub async fn durable(&self, doc: &Arc<SessionDoc>) -> bool {
        let log = if self.cfg.update_log {
            self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
        } else {
            None
        };
        if let Some(log) = log
            && log.barrier(doc).await
        {
            return true;
        }
        self.flush(doc).await
    }

    /// Snapshots the document if it changed since the last snapshot.
    /// Returns whether the store now holds everything the document held.
    pub async fn flush(&self, doc: &Arc<SessionDoc>) -> bool {
        let claim = doc.with_life(|l| {
            if l.snapshotting || !l.dirty() {
                None
            } else {
                l.snapshotting = true;
                Some((l.generation, l.last_editor.take()))
            }
        });
        let Some((generation, editor)) = claim else {
            return !doc.with_life(|l| l.dirty());
        };
        let claimed_at = Instant::now();
        let started = std::time::Instant::now();
        // Encoding a large document is CPU work: off the async workers.
        let encoding = doc.clone();
        let encoded = tokio::task::spawn_blocking(move || encoding.encode_state())
            .await
            .unwrap_or_else(|_| Err(Error::internal()));
        let result = match encoded {
            Ok(state) => self.store.write_snapshot(&doc.id, &state).await,
            Err(_) => Err(crate::store::StoreError::Corrupt(format!(
                "document {} could not be encoded",
                doc.id
            ))),
        };
        metrics::histogram!("tandem_snapshot_seconds").record(started.elapsed().as_secs_f64());
        doc.with_life(|l| {
            l.snapshotting = false;
            match &result {
                Ok(Some(out)) => {
                    l.stored_generation = generation;
                    // What the snapshot missed changed after the claim: the
                    // max delay counts from there, not from the first change
                    // it already stored (else a busy document is snapshotted
                    // on every tick).
                    l.dirty_since = l.dirty().then_some(claimed_at);
                    l.approx_size = out.state_bytes.max(l.approx_size.min(out.state_bytes * 2));
                }
                // The session was deleted: nothing to keep.
                Ok(None) => l.stored_generation = l.generation,
                Err(_) => {}
            }
        });
        match result {
            Ok(Some(out)) => {
                tracing::debug!(session_id = %doc.id, bytes = out.state_bytes, rows = out.compacted_rows, "snapshot written");
                // The file's `updatedBy` follows live edits as of its
                // latest snapshot (PROTOCOL.md, "Workspaces").
                if let (Some(by), Ok(d)) = (editor, crate::model::DocId::parse(&doc.id))
                    && let Err(e) = self.store.touch_file(&d.session, d.file_id(), &by).await
                {
                    tracing::warn!(doc_id = %doc.id, error = %e, "recording the last editor failed");
                }
                true
            }
            Ok(None) => true,
            Err(e) => {
                tracing::error!(session_id = %doc.id, error = %e, "snapshot failed; will retry");
                false
            }
        }
    }

    fn snapshot_due(&self, doc: &SessionDoc, now: Instant) -> bool {
        doc.with_life(|l| {
            l.dirty()
                && !l.snapshotting
                && (now.duration_since(l.last_change) >= self.cfg.snapshot_debounce
                    || l.dirty_since
                        .is_some_and(|t| now.duration_since(t) >= self.cfg.snapshot_max_delay))
        })
    }

    /// Marks `doc` evicted if nobody holds it and the store already holds
    /// every change: its log rows are committed and, if it is dirty, the log
    /// is on and no commit of its rows failed since the last snapshot.
    fn try_mark_evicted(&self, doc: &SessionDoc) -> bool {
        doc.with_life(|l| {
            let stored =
                !l.dirty() || (self.cfg.update_log && l.stored_generation >= l.unlogged_through);
            if l.leases == 0 && !l.evicted && stored && doc.pending_log.load(Ordering::Acquire) == 0
            {
                l.evicted = true;
                true
            } else {
                false
            }
        })
    }

    /// Unloads least-recently-used idle documents above the capacity. The
    /// store already holds all their updates (log committed), so a join that
    /// reloads one right away sees everything; the snapshot is compaction.
    /// A dirty document the log does not cover waits for the idle unload,
    /// which snapshots before it unloads.
    fn enforce_capacity(&self) {
        let mut victims = Vec::new();
        {
            let mut docs = self.docs();
            let over = docs.len().saturating_sub(self.cfg.max_loaded_documents);
            if over == 0 {
                return;
            }
            let ids: Vec<Arc<str>> = docs.iter().rev().map(|(k, _)| k.clone()).collect();
            for id in ids {
                if victims.len() >= over {
                    break;
                }
                let Some(doc) = docs.peek(&id).and_then(|s| s.get().cloned()) else {
                    continue;
                };
                if self.try_mark_evicted(&doc) {
                    docs.pop(&id);
                    victims.push(doc);
                }
            }
        }
        for doc in victims {
            self.after_evict(doc);
        }
    }

    fn after_evict(&self, doc: Arc<SessionDoc>) {
        metrics::counter!("tandem_documents_unloaded_total").increment(1);
        self.trim_due.store(true, Ordering::Release);
        if let Some(f) = self.fanout.get() {
            f.unloaded(&doc.id);
        }
        if doc.with_life(|l| l.dirty()) {
            // Compaction only: the log already holds every update.
            let store = self.store.clone();
            tokio::spawn(async move {
                let Ok(state) = doc.encode_state() else {
                    return;
                };
                if let Err(e) = store.write_snapshot(&doc.id, &state).await {
                    tracing::error!(session_id = %doc.id, error = %e, "snapshot of an unloaded document failed");
                }
            });
        }
    }

    /// One maintenance pass: due snapshots, awareness and typing sweeps, idle unload.
    pub async fn tick(&self) {
        let now = Instant::now();
        let now_ms = crate::model::now_ms() as u64;
        let docs = self.loaded_docs();
        for doc in docs {
            if self.snapshot_due(&doc, now) {
                self.flush(&doc).await;
            }
            if let Some(f) = self.fanout.get() {
                if let Some(removal) = doc.sweep_awareness(now_ms) {
                    f.awareness(&doc.id, &removal, None);
                }
                for user in doc.expire_typing(now) {
                    f.typing_stopped(&doc.id, &user);
                }
            }
            let idle = doc.with_life(|l| {
                l.leases == 0 && now.duration_since(l.last_used) >= self.cfg.idle_unload
            });
            if idle && self.flush(&doc).await && self.try_mark_evicted(&doc) {
                let popped = {
                    let mut docs = self.docs();
                    let same = docs
                        .peek(&*doc.id)
                        .and_then(|s| s.get())
                        .is_some_and(|d| Arc::ptr_eq(d, &doc));
                    if same {
                        docs.pop(&*doc.id);
                    }
                    same
                };
                if popped {
                    tracing::debug!(session_id = %doc.id, "idle document unloaded");
                    self.after_evict(doc);
                }
            }
        }
        metrics::gauge!("tandem_documents_loaded").set(self.loaded() as f64);
        self.release_free_memory(now).await;
    }

    /// Hands memory that unloaded documents freed back to the OS, at most
    /// every 5 s. glibc's allocator keeps freed memory in its per-thread
    /// arenas, so without this a server's RSS stays at its busiest
    /// documents' size long after they were unloaded (BENCHMARKS.md, "Soak").
    async fn release_free_memory(&self, now: Instant) {
        const EVERY: Duration = Duration::from_secs(5);
        {
            let mut last = self.last_trim.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now.duration_since(t) < EVERY)
                || !self.trim_due.swap(false, Ordering::AcqRel)
            {
                return;
            }
            *last = Some(now);
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: malloc_trim only returns free memory of the allocator's
            // own arenas to the OS; it is thread-safe.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    }

    /// Runs [`tick`](Self::tick) every `period` until `shutdown`.
    pub async fn run_maintenance(self: Arc<Self>, period: Duration, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => self.tick().await,
            }
        }
    }

    /// Drains the update log and snapshots every dirty document (shutdown).
    pub async fn shutdown(&self) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).take();
        let task = self
            .log_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let docs = self.loaded_docs();
        let mut flushed = 0;
        for doc in docs {
            for _ in 0..3 {
                // Wait out a snapshot already running, then write ours.
                while doc.with_life(|l| l.snapshotting) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let dirty = doc.with_life(|l| l.dirty());
                if !dirty || self.flush(&doc).await {
                    flushed += usize::from(dirty);
                    break;
                }
            }
        }
        tracing::info!(flushed, "all documents flushed");
    }
}
