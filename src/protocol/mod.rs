//! Protocol adapters: thin layers that decode Socket.IO events, authorize,
//! call the core and encode replies. [`native`] speaks namespace `/`,
//! [`ysocketio`] the y-socket.io dialect on `/yjs|<id>`, [`ywebsocket`] the
//! y-websocket framing on a plain WebSocket at `/ws/<id>`. Shared by all:
//! - [`access`]: authentication of a handshake and the caller's role;
//! - [`presence`]: a connection's membership of a document (lease + presence),
//!   undone however the connection ends;
//! - [`updates`]: the update path of a socket (role, size, budget, healing);
//! - [`awareness`]: awareness relay within a per-socket budget;
//! - [`events`]: file and per-user events the HTTP API sends;
//! - [`fanout`]: [`Hub`], the core's [`Fanout`](crate::core::Fanout), and
//!   slow-consumer handling.

pub mod access;
pub mod awareness;
pub mod events;
pub mod fanout;
pub mod native;
pub mod presence;
pub mod roles;
pub mod updates;
pub mod ysocketio;
pub mod ywebsocket;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use yrs::sync::awareness::AwarenessUpdate;

use crate::auth::User;
use crate::config::Config;
use crate::core::{DocManager, UpdateBudget};

pub use access::{authenticate, resolve_session, role_in};
pub use awareness::relay_awareness;
pub use fanout::{Hub, count_namespaces, disconnect_or_kick, emit_or_kick};
pub use presence::Presence;
pub use updates::{SioPeer, accept_update, request_client_diff};

/// A connection of any dialect, as the shared update and awareness paths see
/// it: an id (presence, roles, the origin an update is not echoed to), whether
/// it is still there, and how to ask it for what the server lacks.
pub trait Peer: Clone + Send + Sync + 'static {
    fn id(&self) -> &str;
    fn connected(&self) -> bool;
    /// Sends the server's state vector (sync step 1) so that the client
    /// answers with what the server lacks; the answer counts against the
    /// connection's update budget.
    fn request_diff(&self, st: &AppState, conn: &Arc<ConnState>, doc: &crate::core::DocLease);
}

/// Shared state of every handler (socketioxide `State` and axum state).
#[derive(Clone)]
pub struct AppState {
    pub manager: Arc<DocManager>,
    pub auth: Arc<crate::auth::Auth>,
    pub config: Arc<Config>,
    /// y-socket.io connects whose middleware is still running, per
    /// namespace: a refused connect may remove its namespace only when no
    /// other connect to it is in flight.
    pub ysocketio_pending: Arc<Mutex<HashMap<String, usize>>>,
    /// The y-websocket dialect's open connections per document.
    pub ywebsocket: Arc<ywebsocket::Rooms>,
    /// The other nodes (cluster mode).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl AppState {
    pub fn new(
        manager: Arc<DocManager>,
        auth: Arc<crate::auth::Auth>,
        config: Arc<Config>,
    ) -> Self {
        Self {
            manager,
            auth,
            config,
            ysocketio_pending: Arc::default(),
            ywebsocket: Arc::default(),
            cluster: None,
        }
    }

    /// Cluster mode: room events and document closes reach other nodes too.
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }
}

/// Room events of the native namespace (chat, typing, file and per-user
/// events): to the local sockets of some rooms and, in cluster mode, through
/// every other node to theirs. One per handler or request; cheap to make.
#[derive(Clone)]
pub struct Broadcast {
    pub io: SocketIo,
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Broadcast {
    pub fn new(st: &AppState, io: &SocketIo) -> Self {
        Self {
            io: io.clone(),
            cluster: st.cluster.clone(),
        }
    }

    /// Emits `event` to every socket in any of `rooms` (once each) but `except`.
    pub fn emit<T: serde::Serialize + ?Sized>(
        &self,
        rooms: Vec<String>,
        except: Option<&str>,
        event: &str,
        data: &T,
    ) {
        if rooms.is_empty() {
            return;
        }
        let Some(cluster) = &self.cluster else {
            broadcast_local(&self.io, rooms, except, event, data);
            return;
        };
        let Ok(data) = serde_json::to_value(data) else {
            return;
        };
        broadcast_local(&self.io, rooms.clone(), except, event, &data);
        cluster.publish(
            crate::cluster::wire::Msg::Emit {
                rooms,
                except: except.map(str::to_owned),
                event: event.to_owned(),
                data,
            },
            &[],
        );
    }
}

/// [`Broadcast::emit`] to this node's sockets only.
pub fn broadcast_local<T: serde::Serialize + ?Sized>(
    io: &SocketIo,
    rooms: Vec<String>,
    except: Option<&str>,
    event: &str,
    data: &T,
) {
    let Some(ns) = io.of("/") else {
        return;
    };
    for s in ns.to(rooms).sockets() {
        if except.is_some_and(|e| e == s.id.as_str()) {
            continue;
        }
        emit_or_kick(&s, event, data);
    }
}

/// Room of the native namespace that holds a session's sockets.
pub fn room(session_id: &str) -> String {
    format!("session:{session_id}")
}

/// Room of the native namespace that holds every socket of a user
/// (PROTOCOL.md, "Per-user events"); sockets join it when they connect.
pub fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// Closes a document for every connection of every dialect that has it open
/// (its session or file was deleted): Socket.IO sockets hear `error` `err`,
/// y-websocket connections are closed with 4404.
pub fn close_document(st: &AppState, io: &SocketIo, doc_id: &str, err: &crate::error::Error) {
    native::close_document(io, doc_id, err);
    ysocketio::close_document(io, doc_id, err);
    st.ywebsocket.close_document(doc_id);
}

/// A document was deleted (its session or file): every connection that
/// has it open hears `err` ([`close_document`]) and it leaves memory; in
/// cluster mode on every node.
pub fn document_deleted(st: &AppState, io: &SocketIo, doc_id: &str, err: &crate::error::Error) {
    close_document(st, io, doc_id, err);
    st.manager.discard(doc_id);
    if let Some(c) = &st.cluster {
        c.publish(
            crate::cluster::wire::Msg::Close {
                doc: doc_id.to_owned(),
                error: err.clone(),
            },
            &[],
        );
    }
}

/// Namespace of the y-socket.io dialect for a session.
pub fn ysocketio_ns(session_id: &str) -> String {
    format!("/yjs|{session_id}")
}

/// Removes connections whose access to a document was revoked, in every
/// dialect: native sockets leave the whole session (its files too) when
/// it is the session's main document (see [`native::revoke`]); y-socket.io
/// sockets of that document are disconnected ([`ysocketio::revoke`]) and
/// y-websocket connections closed with 4403.
pub fn revoke(st: &AppState, io: &SocketIo, doc_id: &str, conns: &[String]) {
    if crate::model::DocId::is_main_id(doc_id) {
        native::revoke(io, doc_id, conns);
    }
    ysocketio::revoke(io, doc_id, conns);
    st.ywebsocket.revoke(doc_id, conns);
}

/// Extractor: did the client ask for an ack? (`AckSender::send` is a silent
/// no-op otherwise, and an update only waits for the log when asked.)
pub struct WantsAck(pub bool);

impl<A: Adapter> FromMessageParts<A> for WantsAck {
    type Error = std::convert::Infallible;
    fn from_message_parts(
        _: &Arc<Socket<A>>,
        _: &mut socketioxide_core::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        Ok(WantsAck(ack_id.is_some()))
    }
}

/// Which dialect a socket speaks: decides event names and argument shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Native,
    YSocketIo,
}

/// What every connection has, whatever its dialect.
pub struct ConnState {
    pub user: Arc<User>,
    /// Document updates, every applied one counted (resync replies too).
    budget: UpdateBudget,
    /// `join-session` requests (each queries the database).
    join_budget: UpdateBudget,
    /// Documents with a resync already scheduled after a rate-limit refusal.
    healing: Mutex<HashSet<Arc<str>>>,
    awareness_budget: UpdateBudget,
    /// Per document, the merged awareness states held back by the budget.
    held_awareness: Mutex<HashMap<Arc<str>, AwarenessUpdate>>,
}

impl ConnState {
    pub fn new(user: User, config: &Config) -> Arc<Self> {
        let aw = config.awareness_per_second.max(1);
        let joins = config.joins_per_second.max(1);
        Arc::new(Self {
            user: Arc::new(user),
            budget: UpdateBudget::new(config.updates_per_second, config.update_burst),
            join_budget: UpdateBudget::new(joins, joins.saturating_mul(2)),
            healing: Mutex::new(HashSet::new()),
            awareness_budget: UpdateBudget::new(aw, aw.saturating_mul(2)),
            held_awareness: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one join from the budget, or `RATE_LIMITED` with the wait.
    pub fn check_join(&self) -> Result<(), crate::error::Error> {
        self.join_budget.check().map_err(|wait| {
            metrics::counter!("tandem_joins_rate_limited_total").increment(1);
            crate::error::Error::rate_limited_with(
                wait.as_millis().max(1) as u64,
                "too many joins; slow down",
            )
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
