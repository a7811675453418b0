//! Keeping a loaded document in step with rows other nodes append to the
//! shared log (cluster mode, see `crate::cluster`). The log is the truth:
//! a row heard of through Redis is applied at once ([`DocManager::apply_logged`]);
//! a row never heard of is read back ([`DocManager::catch_up`]) once a gap
//! has been open for a while, when the log head moved past the copy, or
//! after a Redis reconnect. Applying a row twice changes nothing (Yjs), so
//! either path may run first.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{DocManager, Limits, SessionDoc};
use crate::store::StoreResult;

impl DocManager {
    /// Applies row `seq` of `doc_id`, committed by another node, if this
    /// node has the document loaded and lacks the row; relays what it
    /// changed to local connections. Returns whether it was applied.
    pub fn apply_logged(&self, doc_id: &str, seq: i64, update: &[u8]) -> bool {
        let Some(doc) = self.get_loaded(doc_id) else {
            return false;
        };
        if doc.has_seq(seq) {
            return false;
        }
        self.apply_stored(&doc, update);
        doc.note_seq(seq);
        true
    }

    /// Applies bytes that are already in the log: another node checked them
    /// against the limits when it accepted them, so only the nesting limit
    /// (a safety limit) applies; relayed to every local connection.
    fn apply_stored(&self, doc: &SessionDoc, update: &[u8]) {
        let limits = Limits {
            max_update_bytes: usize::MAX,
            max_document_bytes: usize::MAX,
            max_nested_types: self.limits().max_nested_types,
        };
        let fanout = self.fanout();
        let mut relay = |b: &Bytes, _: Option<&str>| {
            if let Some(f) = fanout {
                f.doc_update(&doc.id, b, None);
            }
        };
        if let Err(e) = doc.apply_update_relaying(update, &limits, None, &mut relay) {
            tracing::warn!(doc_id = %doc.id, error = %e, "a logged update did not apply");
        }
    }

    /// Reads back every log row of `doc` after the copy's position and
    /// applies those it lacks. One catch-up per document at a time: a second
    /// caller waits for the running one, then reads what was committed
    /// since, so every caller sees at least the rows committed before it
    /// called (a read that returned early while another catch-up was still
    /// reading would show stale text). Returns how many rows it applied.
    pub async fn catch_up(&self, doc: &Arc<SessionDoc>) -> StoreResult<usize> {
        let _one_at_a_time = doc.catching_up.lock().await;
        let after = doc.log_through();
        let Some(tail) = self.store().read_log_since(&doc.id, after).await? else {
            return Ok(0);
        };
        let mut applied = 0;
        if let Some(state) = &tail.snapshot {
            self.apply_stored(doc, state);
            applied += 1;
        }
        for (seq, update) in &tail.updates {
            if !doc.has_seq(*seq) {
                self.apply_stored(doc, update);
                doc.note_seq(*seq);
                applied += 1;
            }
        }
        doc.caught_up_to(tail.head);
        if applied > 0 {
            metrics::counter!("tandem_cluster_catchups_total").increment(1);
            metrics::counter!("tandem_cluster_catchup_rows_total").increment(applied as u64);
            tracing::debug!(doc_id = %doc.id, from = after, to = tail.head, applied, "caught up from the log");
        }
        Ok(applied)
    }

    /// Catches up every loaded document whose gap has been open longer than
    /// `grace` (the missing row's notification is late or lost).
    pub async fn catch_up_gaps(&self, grace: Duration) {
        let now = tokio::time::Instant::now();
        for doc in self.loaded_docs() {
            if doc
                .log_gap_since()
                .is_some_and(|t| now.duration_since(t) >= grace)
            {
                self.catch_up_logged(&doc).await;
            }
        }
    }

    /// Catches up every loaded document whose log head moved past its copy
    /// (one query for all of them): the periodic check that does not rely
    /// on notifications at all.
    pub async fn check_heads(&self) {
        let docs = self.loaded_docs();
        let sessions: BTreeSet<String> = docs
            .iter()
            .filter_map(|d| crate::model::DocId::parse(&d.id).ok())
            .map(|d| d.session)
            .collect();
        if sessions.is_empty() {
            return;
        }
        let sessions: Vec<String> = sessions.into_iter().collect();
        let heads: HashMap<String, i64> = match self.store().log_heads(&sessions).await {
            Ok(h) => h.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading log heads failed");
                return;
            }
        };
        for doc in docs {
            if heads.get(&*doc.id).is_some_and(|h| *h > doc.log_through()) {
                self.catch_up_logged(&doc).await;
            }
        }
    }

    /// Catches up every loaded document (after a Redis reconnect).
    pub async fn catch_up_all(&self) {
        for doc in self.loaded_docs() {
            self.catch_up_logged(&doc).await;
        }
    }

    async fn catch_up_logged(&self, doc: &Arc<SessionDoc>) {
        if let Err(e) = self.catch_up(doc).await {
            tracing::warn!(doc_id = %doc.id, error = %e, "catching up from the log failed");
        }
    }
}
