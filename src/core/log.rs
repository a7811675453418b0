//! The durable update log writer: one task, group commit. Every accepted
//! update is queued here; the task commits whatever is queued (up to
//! `batch_rows`, waiting at most `batch_delay` for more) in one transaction and
//! then tells each submitter its row is durable.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Fanout, SessionDoc};
use crate::store::{LogEntry, Store};

/// Where the writer reports committed rows (set once at start-up).
pub type FanoutCell = Arc<std::sync::OnceLock<Arc<dyn Fanout>>>;

struct Item {
    /// `None`: a barrier, answered once every row queued before it committed.
    entry: Option<LogEntry>,
    doc: Arc<SessionDoc>,
    done: Option<oneshot::Sender<bool>>,
}

/// Handle to the writer task; cloning shares the queue.
#[derive(Clone)]
pub struct UpdateLog {
    tx: mpsc::Sender<Item>,
}

impl UpdateLog {
    /// Starts the writer. It ends once every handle is dropped and the queue drained.
    pub fn start(
        store: Arc<dyn Store>,
        fanout: FanoutCell,
        batch_rows: usize,
        batch_delay: Duration,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(65_536);
        let task = tokio::spawn(writer(store, fanout, rx, batch_rows.max(1), batch_delay));
        (Self { tx }, task)
    }

    /// Whether the writer is gone (it panicked, or shutdown drained it).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queues an update. The receiver (if asked for) resolves to `true` once
    /// the row is committed, `false` if the write failed. `Err` when the
    /// writer is gone: the update has no row and never will.
    pub async fn append(
        &self,
        doc: &Arc<SessionDoc>,
        update: bytes::Bytes,
        want_ack: bool,
    ) -> Result<Option<oneshot::Receiver<bool>>, ()> {
        let (done, rx) = if want_ack {
            let (t, r) = oneshot::channel();
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        doc.pending_log.fetch_add(1, Ordering::AcqRel);
        let item = Item {
            entry: Some(LogEntry {
                // The document id: the session id for the main file.
                doc_id: doc.id.clone(),
                update,
            }),
            doc: doc.clone(),
            done,
        };
        if let Err(e) = self.tx.send(item).await {
            e.0.doc.pending_log.fetch_sub(1, Ordering::AcqRel);
            tracing::error!(session_id = %doc.id, "update log writer is gone");
            return Err(());
        }
        Ok(rx)
    }

    /// Resolves `true` once every row queued before this call is committed
    /// (rows are committed in order), `false` if a commit failed or the
    /// writer is gone.
    pub async fn barrier(&self, doc: &Arc<SessionDoc>) -> bool {
        let (done, rx) = oneshot::channel();
        let item = Item {
            entry: None,
            doc: doc.clone(),
            done: Some(done),
        };
        if self.tx.send(item).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

async fn writer(
    store: Arc<dyn Store>,
    fanout: FanoutCell,
    mut rx: mpsc::Receiver<Item>,
    batch_rows: usize,
    batch_delay: Duration,
) {
    let mut batch: Vec<Item> = Vec::with_capacity(batch_rows);
    let mut entries: Vec<LogEntry> = Vec::with_capacity(batch_rows);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + batch_delay;
        while batch.len() < batch_rows {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if batch_delay.is_zero() {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(item)) => batch.push(item),
                        _ => break,
                    }
                }
            }
        }
        entries.extend(batch.iter().filter_map(|i| i.entry.clone()));
        if entries.is_empty() {
            // Only barriers: everything before them is already committed.
            for item in batch.drain(..) {
                if let Some(done) = item.done {
                    let _ = done.send(true);
                }
            }
            continue;
        }
        let started = std::time::Instant::now();
        let mut ok = false;
        let mut seqs = Vec::new();
        for attempt in 0..3u32 {
            match store.append_updates(&entries).await {
                Ok(numbered) => {
                    ok = true;
                    seqs = numbered;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, rows = entries.len(), attempt, "update log commit failed");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        metrics::counter!("tandem_log_rows_total").increment(entries.len() as u64);
        metrics::counter!("tandem_log_commits_total").increment(1);
        metrics::histogram!("tandem_log_batch_rows").record(entries.len() as f64);
        metrics::histogram!("tandem_log_commit_seconds").record(started.elapsed().as_secs_f64());
        // Each committed row's number: this copy holds it, and (cluster
        // mode) the other nodes hear of it.
        let mut seqs = seqs.into_iter();
        let mut rows = Vec::with_capacity(batch.len());
        for item in &batch {
            let Some(entry) = &item.entry else { continue };
            if let Some(Some(seq)) = seqs.next() {
                item.doc.note_seq(seq);
                rows.push((&*entry.doc_id, seq, &entry.update));
            }
        }
        if let Some(f) = fanout.get()
            && !rows.is_empty()
        {
            f.committed(&rows);
        }
        drop(rows);
        entries.clear();
        for item in batch.drain(..) {
            if item.entry.is_none() {
                if let Some(done) = item.done {
                    let _ = done.send(ok);
                }
                continue;
            }
            if !ok {
                // The document stays dirty until a snapshot of its full state
                // commits; until then the LRU may not unload it (recorded
                // before `pending_log` drops, which is what eviction checks).
                item.doc.with_life(|l| l.unlogged_through = l.generation);
            }
            item.doc.pending_log.fetch_sub(1, Ordering::AcqRel);
            if let Some(done) = item.done {
                let _ = done.send(ok);
            }
        }
    }
}
