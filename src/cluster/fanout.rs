//! [`ClusterFanout`]: the core's [`Fanout`] in cluster mode. Local sockets
//! are served by the wrapped [`Hub`](crate::protocol::Hub) as on one node;
//! what other nodes must hear is published besides. What comes in from
//! other nodes goes to the inner fan-out directly (see [`super::Receiver`]),
//! so nothing is echoed back.

use std::sync::Arc;

use bytes::Bytes;

use super::Cluster;
use super::wire::Msg;
use crate::core::{DocManager, Fanout};
use crate::model::{DocId, Participant};

/// Updates per message stop growing past this many bytes.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

pub struct ClusterFanout {
    inner: Arc<dyn Fanout>,
    cluster: Arc<Cluster>,
    manager: std::sync::Weak<DocManager>,
}

impl ClusterFanout {
    pub fn new(
        inner: Arc<dyn Fanout>,
        cluster: Arc<Cluster>,
        manager: &Arc<DocManager>,
    ) -> Arc<Self> {
        Arc::new(Self {
            inner,
            cluster,
            manager: Arc::downgrade(manager),
        })
    }
}

/// Publishes the presence of `doc`'s local users (main documents only:
/// files carry no participant list).
pub(super) fn publish_presence(cluster: &Cluster, manager: &DocManager, doc_id: &str) {
    if !DocId::is_main_id(doc_id) {
        return;
    }
    let users: Vec<Participant> = manager
        .get_loaded(doc_id)
        .map(|d| d.local_participants())
        .unwrap_or_default();
    cluster.publish(
        Msg::Presence {
            doc: doc_id.to_owned(),
            users,
        },
        &[],
    );
}

impl Fanout for ClusterFanout {
    fn doc_update(&self, session_id: &str, update: &Bytes, except: Option<&str>) {
        // Other nodes hear of it once its row committed (`committed`).
        self.inner.doc_update(session_id, update, except);
    }

    fn awareness(&self, session_id: &str, update: &Bytes, except: Option<&str>) {
        self.inner.awareness(session_id, update, except);
        self.cluster.publish(
            Msg::Awareness {
                doc: session_id.to_owned(),
            },
            update,
        );
    }

    fn user_joined(&self, session_id: &str, user: &Participant, except: Option<&str>) {
        self.inner.user_joined(session_id, user, except);
    }

    fn user_left(&self, session_id: &str, user_id: &str) {
        self.inner.user_left(session_id, user_id);
    }

    fn typing_stopped(&self, session_id: &str, user_id: &str) {
        self.inner.typing_stopped(session_id, user_id);
        self.cluster.publish(
            Msg::Emit {
                rooms: vec![crate::protocol::room(session_id)],
                except: None,
                event: "user-stopped-typing".into(),
                data: serde_json::json!({ "sessionId": session_id, "userId": user_id }),
            },
            &[],
        );
    }

    fn unloaded(&self, session_id: &str) {
        self.inner.unloaded(session_id);
    }

    fn loaded(&self, doc_id: &str) {
        self.cluster.publish(
            Msg::Hello {
                doc: doc_id.to_owned(),
            },
            &[],
        );
        // A row committed elsewhere between the load's read and the copy
        // going live was announced to nobody here: read it back at once
        // rather than at the next periodic check.
        let (manager, doc) = (self.manager.clone(), doc_id.to_owned());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(super::GAP_GRACE).await;
                let Some(m) = manager.upgrade() else { return };
                if let Some(d) = m.get_loaded(&doc)
                    && let Err(e) = m.catch_up(&d).await
                {
                    tracing::warn!(doc_id = %doc, error = %e, "catching up after a load failed");
                }
            });
        }
    }

    fn presence_changed(&self, doc_id: &str) {
        if let Some(m) = self.manager.upgrade() {
            publish_presence(&self.cluster, &m, doc_id);
        }
    }

    fn committed(&self, rows: &[(&str, i64, &Bytes)]) {
        // One message per commit, split where its payload passes
        // MAX_MESSAGE_BYTES (a commit holds up to --log-batch-rows updates
        // of up to --max-update-bytes each).
        let mut payload = Vec::new();
        let mut batch = Vec::new();
        for (doc, seq, update) in rows {
            if !batch.is_empty() && payload.len() + update.len() > MAX_MESSAGE_BYTES {
                let rows = std::mem::take(&mut batch);
                self.cluster.publish(Msg::Updates { rows }, &payload);
                payload.clear();
            }
            payload.extend_from_slice(update);
            batch.push(((*doc).to_owned(), *seq, update.len()));
        }
        self.cluster.publish(Msg::Updates { rows: batch }, &payload);
    }
}
