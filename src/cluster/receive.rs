//! [`Receiver`]: what this node does with what other nodes publish, one
//! message at a time in the order they were published. A role change reads
//! the database before the next message is handled, so the `role:changed`
//! that follows it never reaches a socket before the role applies.

use std::sync::Arc;

use socketioxide::SocketIo;

use super::Cluster;
use super::fanout::publish_presence;
use super::wire::{self, Msg};
use crate::core::{DocManager, Fanout, RemotePresence};
use crate::protocol::AppState;

pub struct Receiver {
    cluster: Arc<Cluster>,
    app: AppState,
    io: SocketIo,
    /// Local delivery only (the [`Hub`](crate::protocol::Hub)).
    local: Arc<dyn Fanout>,
}

impl Receiver {
    pub fn new(
        cluster: Arc<Cluster>,
        app: AppState,
        io: SocketIo,
        local: Arc<dyn Fanout>,
    ) -> Arc<Self> {
        Arc::new(Self {
            cluster,
            app,
            io,
            local,
        })
    }

    pub fn manager(&self) -> &Arc<DocManager> {
        &self.app.manager
    }

    /// Handles one Redis message.
    pub async fn handle(&self, bytes: &[u8]) {
        let Some((header, payload)) = wire::decode(bytes) else {
            metrics::counter!("tandem_cluster_malformed_total").increment(1);
            return;
        };
        if header.node == self.cluster.node {
            return;
        }
        metrics::counter!("tandem_cluster_received_total").increment(1);
        let node = header.node.as_str();
        if matches!(header.msg, Msg::Bye) {
            tracing::info!(node_id = %node, "node left the cluster");
            self.cluster.forget(node);
            self.drop_node(node);
            return;
        }
        if self.cluster.heard(node) {
            // A node this one did not know (new, or back after a silence):
            // it may hold documents loaded here.
            tracing::info!(node_id = %node, "node joined the cluster");
            self.announce_all();
        }
        let manager = &self.app.manager;
        match header.msg {
            Msg::Updates { rows } => {
                let lag = crate::model::now_ms() as u64;
                metrics::histogram!("tandem_cluster_lag_seconds")
                    .record(lag.saturating_sub(header.at) as f64 / 1000.0);
                let mut rest = payload;
                for (doc, seq, len) in rows {
                    let Some((update, tail)) = rest.split_at_checked(len) else {
                        metrics::counter!("tandem_cluster_malformed_total").increment(1);
                        return;
                    };
                    rest = tail;
                    manager.apply_logged(&doc, seq, update);
                }
            }
            Msg::Awareness { doc } => {
                let Some(d) = manager.get_loaded(&doc) else {
                    return;
                };
                match d.apply_node_awareness(node, payload) {
                    Ok(Some(changed)) => self.local.awareness(&doc, &changed, None),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(doc_id = %doc, error = %e, "awareness from another node refused")
                    }
                }
            }
            Msg::Emit {
                rooms,
                except,
                event,
                data,
            } => {
                crate::protocol::broadcast_local(&self.io, rooms, except.as_deref(), &event, &data)
            }
            Msg::Presence { doc, users } => {
                if let Some(d) = manager.get_loaded(&doc) {
                    let change = d.set_node_presence(node, &users);
                    self.announce_presence(&doc, change);
                }
            }
            Msg::Hello { doc } => {
                if let Some(d) = manager.get_loaded(&doc) {
                    self.announce(&doc, &d);
                }
            }
            Msg::Heartbeat | Msg::Bye => {}
            Msg::Roles { session, only } => {
                let reapply =
                    crate::protocol::roles::reapply(&self.app, &self.io, &session, only.as_deref());
                if let Err(e) = reapply.await {
                    tracing::warn!(session_id = %session, error = %e, "re-applying roles failed");
                }
            }
            Msg::Close { doc, error } => {
                crate::protocol::close_document(&self.app, &self.io, &doc, &error);
                manager.discard(&doc);
            }
        }
    }

    /// `user-joined`/`user-left` for local sockets after another node's
    /// presence changed what this copy holds.
    fn announce_presence(&self, doc: &str, change: RemotePresence) {
        for p in &change.joined {
            self.local.user_joined(doc, p, None);
        }
        for u in &change.left {
            self.local.user_left(doc, u);
        }
    }

    /// Tells the other nodes who is connected to `doc` here, and their cursors.
    fn announce(&self, doc_id: &str, doc: &crate::core::SessionDoc) {
        publish_presence(&self.cluster, &self.app.manager, doc_id);
        if let Some(states) = doc.local_awareness_states() {
            self.cluster.publish(
                Msg::Awareness {
                    doc: doc_id.to_owned(),
                },
                &states,
            );
        }
    }

    /// [`announce`](Self::announce) for every loaded document, and a
    /// `Hello` for each so the others answer with theirs.
    fn announce_all(&self) {
        for d in self.app.manager.loaded_docs() {
            self.announce(&d.id, &d);
            self.cluster.publish(
                Msg::Hello {
                    doc: d.id.to_string(),
                },
                &[],
            );
        }
    }

    /// After (re)subscribing: catch every loaded document up from the log
    /// and exchange presence again.
    pub async fn resync(self: Arc<Self>) {
        self.announce_all();
        self.app.manager.catch_up_all().await;
    }

    /// Node `node` is gone: its users leave, its cursors go.
    pub fn drop_node(&self, node: &str) {
        for d in self.app.manager.loaded_docs() {
            let (change, removal) = d.drop_node(node);
            if let Some(removal) = removal {
                self.local.awareness(&d.id, &removal, None);
            }
            self.announce_presence(&d.id, change);
        }
    }
}
