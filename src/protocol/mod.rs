//! Protocol adapters: thin layers that decode Socket.IO events, authorize,
//! call the core and encode replies. [`native`] speaks namespace `/`,
//! [`ysocketio`] the y-socket.io dialect on `/yjs|<id>`. [`Hub`] is the core's
//! [`Fanout`]: it delivers updates to the sockets of both dialects.

pub mod native;
pub mod ysocketio;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketError};
use yrs::sync::awareness::AwarenessUpdate;
use yrs::updates::encoder::Encode;

use crate::auth::User;
use crate::config::Config;
use crate::core::{DocManager, Fanout, SessionDoc, UpdateBudget};
use crate::error::{Error, ErrorCode};
use crate::model::{Role, SessionInfo, validate_session_id};
use crate::store::NewSession;

/// Shared state of every handler (socketioxide `State` and axum state).
#[derive(Clone)]
pub struct AppState {
    pub manager: Arc<DocManager>,
    pub auth: Arc<crate::auth::Auth>,
    pub config: Arc<Config>,
}

/// Room of the native namespace that holds a session's sockets.
pub fn room(session_id: &str) -> String {
    format!("session:{session_id}")
}

/// Namespace of the y-socket.io dialect for a session.
pub fn ysocketio_ns(session_id: &str) -> String {
    format!("/yjs|{session_id}")
}

/// Emits to one socket; a socket whose buffer is full is a slow consumer and
/// is disconnected (it reconnects and resyncs) rather than silently skipped.
pub fn emit_or_kick<A: Adapter, T: Serialize + ?Sized>(s: &SocketRef<A>, event: &str, data: &T) {
    match s.emit(event, data) {
        Ok(()) => {}
        Err(SendError::Socket(SocketError::InternalChannelFull)) => {
            tracing::warn!(socket_id = %s.id, event, "socket buffer full; disconnecting slow consumer");
            metrics::counter!("tandem_slow_consumers_disconnected_total").increment(1);
            kick(s);
        }
        Err(SendError::Socket(SocketError::Closed)) => {}
        Err(e) => tracing::error!(socket_id = %s.id, event, error = %e, "emit failed"),
    }
}

/// Disconnects a socket whose queue is full. `Socket::disconnect` would have
/// to queue a DISCONNECT packet (and gives up when it cannot), so the
/// client's TCP connection is shut down instead (see [`crate::net`]); the
/// client reconnects and resyncs. A long-polling client, and in-process
/// router tests without TCP, only get the namespace disconnect.
fn kick<A: Adapter>(s: &SocketRef<A>) {
    let closed = s.transport_type() == socketioxide::TransportType::Websocket
        && crate::net::closer_for(&s.id.to_string())
            .or_else(|| {
                s.req_parts()
                    .extensions
                    .get::<crate::net::ConnCloser>()
                    .cloned()
            })
            .is_some_and(|c| c.close());
    if !closed {
        tracing::warn!(socket_id = %s.id, "no connection to close; trying a namespace disconnect");
        let _ = s.clone().disconnect();
    }
}

/// Disconnects a socket from its namespace (the client hears DISCONNECT);
/// if its queue has no room for that packet, as a slow consumer.
pub fn disconnect_or_kick<A: Adapter>(s: &SocketRef<A>) {
    if let Err(SocketError::InternalChannelFull) = s.clone().disconnect() {
        kick(s);
    }
}

/// Removes connections whose access to a session was revoked, in both
/// dialects (see [`native::revoke`], [`ysocketio::revoke`]).
pub fn revoke(st: &AppState, io: &SocketIo, session_id: &str, conns: &[String]) {
    native::revoke(io, st, session_id, conns);
    ysocketio::revoke(io, session_id, conns);
}

/// The core's [`Fanout`], delivering to both dialects.
pub struct Hub {
    io: SocketIo,
}

impl Hub {
    pub fn new(io: SocketIo) -> Arc<Self> {
        Arc::new(Self { io })
    }

    fn native_sockets(&self, session_id: &str) -> Vec<SocketRef> {
        self.io.to(room(session_id)).sockets()
    }

    fn ysocketio_sockets(&self, session_id: &str) -> Vec<SocketRef> {
        self.io
            .of(ysocketio_ns(session_id))
            .map(|ns| ns.sockets())
            .unwrap_or_default()
    }

    fn each(&self, sockets: Vec<SocketRef>, except: Option<&str>, mut f: impl FnMut(&SocketRef)) {
        for s in sockets {
            if except.is_some_and(|e| e == s.id.as_str()) {
                continue;
            }
            f(&s);
        }
    }
}

impl Fanout for Hub {
    fn doc_update(&self, session_id: &str, update: &Bytes, except: Option<&str>) {
        let native = (session_id, update);
        let mut n = 0u64;
        self.each(self.native_sockets(session_id), except, |s| {
            n += 1;
            emit_or_kick(s, "yjs-update", &native)
        });
        self.each(self.ysocketio_sockets(session_id), except, |s| {
            n += 1;
            emit_or_kick(s, "sync-update", update)
        });
        metrics::counter!("tandem_update_deliveries_total").increment(n);
        metrics::counter!("tandem_update_bytes_out_total").increment(n * update.len() as u64);
    }

    fn awareness(&self, session_id: &str, update: &Bytes, except: Option<&str>) {
        let native = (session_id, update);
        self.each(self.native_sockets(session_id), except, |s| {
            emit_or_kick(s, "yjs-awareness", &native)
        });
        self.each(self.ysocketio_sockets(session_id), except, |s| {
            emit_or_kick(s, "awareness-update", update)
        });
    }

    fn user_joined(
        &self,
        session_id: &str,
        user: &crate::model::Participant,
        except: Option<&str>,
    ) {
        let msg = serde_json::json!({ "sessionId": session_id, "user": user });
        self.each(self.native_sockets(session_id), except, |s| {
            emit_or_kick(s, "user-joined", &msg)
        });
    }

    fn user_left(&self, session_id: &str, user_id: &str) {
        let msg = serde_json::json!({ "sessionId": session_id, "userId": user_id });
        self.each(self.native_sockets(session_id), None, |s| {
            emit_or_kick(s, "user-left", &msg)
        });
    }

    fn typing_stopped(&self, session_id: &str, user_id: &str) {
        let msg = serde_json::json!({ "sessionId": session_id, "userId": user_id });
        self.each(self.native_sockets(session_id), None, |s| {
            emit_or_kick(s, "user-stopped-typing", &msg)
        });
    }

    fn unloaded(&self, session_id: &str) {
        let ns = ysocketio_ns(session_id);
        if self.io.of(&ns).is_some() {
            self.io.delete_ns(&ns);
        }
        count_namespaces(&self.io);
    }
}

/// Publishes how many y-socket.io document namespaces exist: it rises as
/// providers connect to new documents and falls back as documents unload.
pub fn count_namespaces(io: &SocketIo) {
    let n = io
        .nsps()
        .iter()
        .filter(|ns| ns.ns_path() != "/" && ns.ns_path() != ysocketio::EMPTY_ROOM_NS)
        .count();
    metrics::gauge!("tandem_ysocketio_namespaces").set(n as f64);
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

/// Authenticates a handshake `auth` object (PROTOCOL.md, "Authentication").
pub fn authenticate(
    state: &AppState,
    auth: Option<&serde_json::Value>,
    socket_id: &str,
) -> Result<User, Error> {
    let unauthorized = |m: &str| Error::new(ErrorCode::Unauthorized, m);
    match auth.and_then(|a| a.get("token")).and_then(|t| t.as_str()) {
        Some(token) => state.auth.verify(token).map_err(|e| {
            tracing::debug!(socket_id, error = %e, "token refused");
            unauthorized("invalid or expired token")
        }),
        None => match state.config.anonymous.cap() {
            Some(cap) => {
                let name = auth
                    .and_then(|a| a.get("name"))
                    .and_then(|n| n.as_str())
                    .map(|n| n.trim().chars().take(64).collect::<String>())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "Guest".to_owned());
                Ok(User::guest(format!("anon:{socket_id}"), name, cap))
            }
            None => Err(unauthorized("missing token")),
        },
    }
}

/// Finds (or, with on-demand sessions, creates) a session and the caller's role.
pub async fn resolve_session(
    state: &AppState,
    user: &User,
    session_id: &str,
) -> Result<(SessionInfo, Role), Error> {
    validate_session_id(session_id)?;
    let store = state.manager.store();
    let session = match store.get_session(session_id).await? {
        Some(s) => s,
        None if state.config.on_demand_sessions => {
            let created = store
                .create_session(&NewSession {
                    id: session_id.to_owned(),
                    title: session_id.to_owned(),
                    language: "plaintext".to_owned(),
                    owner_id: user.id.clone(),
                    owner_name: user.name.clone(),
                    public: true,
                    public_role: Role::Editor,
                })
                .await?;
            match created {
                Some(s) => s,
                // Someone else created it a moment ago.
                None => store
                    .get_session(session_id)
                    .await?
                    .ok_or_else(|| Error::new(ErrorCode::SessionNotFound, "no such session"))?,
            }
        }
        None => return Err(Error::new(ErrorCode::SessionNotFound, "no such session")),
    };
    let role = role_in(state, user, &session).await?;
    Ok((session, role))
}

/// The caller's role in an existing session, `FORBIDDEN` if none.
pub async fn role_in(state: &AppState, user: &User, session: &SessionInfo) -> Result<Role, Error> {
    let row_role = if user.guest_cap.is_some() {
        None
    } else {
        state
            .manager
            .store()
            .participant(&session.id, &user.id)
            .await?
            .and_then(|p| p.role)
    };
    user.role_in(session, row_role)
        .ok_or_else(|| Error::new(ErrorCode::Forbidden, "no role in this session"))
}

/// Joins connection `conn` to a leased document: presence bookkeeping,
/// `user-joined` for a user's first connection, the participants row.
pub fn join_presence(
    state: &AppState,
    doc: &crate::core::DocLease,
    conn: &str,
    user: &User,
    role: Role,
) {
    let outcome = doc.join(conn, user, role);
    if outcome.first_for_user {
        if let Some(f) = state.manager.fanout() {
            f.user_joined(&doc.id, &outcome.participant, Some(conn));
        }
        record_presence(state, &doc.id, user, true);
    }
}

/// Removes connection `conn` from a document: its awareness states (removal
/// broadcast at once), typing flag, `user-left` for the user's last connection.
pub fn leave_presence(state: &AppState, doc: &crate::core::SessionDoc, conn: &str, user: &User) {
    let out = doc.leave(conn);
    let Some(f) = state.manager.fanout() else {
        return;
    };
    if let Some(removal) = &out.awareness_removal {
        f.awareness(&doc.id, removal, Some(conn));
    }
    if out.stopped_typing {
        f.typing_stopped(&doc.id, &user.id);
    }
    if let Some(user_id) = &out.user_left {
        f.user_left(&doc.id, user_id);
        record_presence(state, &doc.id, user, false);
    }
}

/// Records a join or leave in the participants table without delaying the caller.
fn record_presence(state: &AppState, session_id: &str, user: &User, joined: bool) {
    if user.guest_cap.is_some() {
        return;
    }
    let store = state.manager.store().clone();
    let (sid, uid, name) = (session_id.to_owned(), user.id.clone(), user.name.clone());
    tokio::spawn(async move {
        if let Err(e) = store.record_presence(&sid, &uid, &name, joined).await {
            tracing::warn!(session_id = %sid, error = %e, "recording presence failed");
        }
    });
}

/// Which dialect a socket speaks: decides event names and argument shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Native,
    YSocketIo,
}

/// What every connection has, whatever its dialect.
pub struct ConnState {
    pub user: User,
    budget: UpdateBudget,
    /// Sessions with a resync already scheduled after a rate-limit refusal.
    healing: Mutex<HashSet<Arc<str>>>,
    awareness_budget: UpdateBudget,
    /// Per session, the merged awareness states held back by the budget.
    held_awareness: Mutex<HashMap<Arc<str>, AwarenessUpdate>>,
}

impl ConnState {
    pub fn new(user: User, config: &Config) -> Arc<Self> {
        let aw = config.awareness_per_second.max(1);
        Arc::new(Self {
            user,
            budget: UpdateBudget::new(config.updates_per_second, config.update_burst),
            healing: Mutex::new(HashSet::new()),
            awareness_budget: UpdateBudget::new(aw, aw.saturating_mul(2)),
            held_awareness: Mutex::new(HashMap::new()),
        })
    }
}

/// An awareness update from a socket: applied at once (so joiners see the
/// newest states), broadcast within the socket's awareness budget. Above it
/// the states are merged, newest clock per client, and broadcast as one
/// update when the budget allows: a flood of cursor moves costs the others
/// a few messages per second, and the last position still arrives.
pub fn relay_awareness(
    s: &SocketRef,
    st: &AppState,
    conn: &Arc<ConnState>,
    doc: &Arc<SessionDoc>,
    bytes: Bytes,
) -> Result<(), Error> {
    doc.apply_awareness(s.id.as_str(), &bytes)?;
    let Some(fanout) = st.manager.fanout() else {
        return Ok(());
    };
    let mut held = conn
        .held_awareness
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(pending) = held.get_mut(&doc.id) {
        // A flush is already scheduled: it will carry these states too.
        merge_awareness(pending, crate::core::decode_awareness(&bytes)?);
        metrics::counter!("tandem_awareness_coalesced_total").increment(1);
        return Ok(());
    }
    let wait = match conn.awareness_budget.check() {
        Ok(()) => {
            drop(held);
            fanout.awareness(&doc.id, &bytes, Some(s.id.as_str()));
            return Ok(());
        }
        Err(wait) => wait,
    };
    held.insert(doc.id.clone(), crate::core::decode_awareness(&bytes)?);
    drop(held);
    metrics::counter!("tandem_awareness_coalesced_total").increment(1);
    let (s, conn, doc, fanout) = (s.clone(), conn.clone(), doc.clone(), fanout.clone());
    tokio::spawn(async move {
        let mut wait = wait;
        loop {
            tokio::time::sleep(wait).await;
            match conn.awareness_budget.check() {
                Ok(()) => break,
                Err(w) => wait = w,
            }
        }
        let merged = conn
            .held_awareness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&doc.id);
        if let Some(update) = merged.filter(|_| s.connected()) {
            let bytes = Bytes::from(update.encode_v1());
            fanout.awareness(&doc.id, &bytes, Some(s.id.as_str()));
        }
    });
    Ok(())
}

/// Folds `newer` into `into`, keeping each client's highest clock (a removal,
/// `null`, wins a tie, as in y-protocols).
fn merge_awareness(into: &mut AwarenessUpdate, newer: AwarenessUpdate) {
    for (id, entry) in newer.clients {
        match into.clients.get(&id) {
            Some(old)
                if old.clock > entry.clock
                    || (old.clock == entry.clock && &*entry.json != "null") => {}
            _ => {
                into.clients.insert(id, entry);
            }
        }
    }
}

/// A document update from a socket: role, size and budget checks, then the
/// core. With `want_ack`, returns once the update is durably logged.
pub async fn accept_update(
    s: &SocketRef,
    st: &AppState,
    conn: &Arc<ConnState>,
    doc: &Arc<SessionDoc>,
    update: Bytes,
    want_ack: bool,
    dialect: Dialect,
) -> Result<(), Error> {
    let len = update.len();
    let result = check_and_submit(s, st, conn, doc, update, want_ack, dialect).await;
    crate::telemetry::update_received(len, result.as_ref().err());
    result
}

async fn check_and_submit(
    s: &SocketRef,
    st: &AppState,
    conn: &Arc<ConnState>,
    doc: &Arc<SessionDoc>,
    update: Bytes,
    want_ack: bool,
    dialect: Dialect,
) -> Result<(), Error> {
    if !doc.role_of(s.id.as_str()).is_some_and(Role::can_edit) {
        return Err(Error::new(ErrorCode::Forbidden, "viewers cannot edit"));
    }
    st.manager.limits().check_update_size(update.len())?;
    if let Err(wait) = conn.budget.check() {
        metrics::counter!("tandem_updates_rate_limited_total").increment(1);
        schedule_heal(s, st, conn, doc, wait, dialect);
        return Err(Error::rate_limited(wait.as_millis().max(1) as u64));
    }
    st.manager
        .submit(doc, update, Some(s.id.as_str()), want_ack)
        .await
}

/// After a rate-limit refusal: once the budget allows, ask the socket for
/// what the server lacks, so replicas converge without client cooperation.
fn schedule_heal(
    s: &SocketRef,
    st: &AppState,
    conn: &Arc<ConnState>,
    doc: &Arc<SessionDoc>,
    wait: Duration,
    dialect: Dialect,
) {
    if !conn
        .healing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(doc.id.clone())
    {
        return;
    }
    let (s, st, conn, doc) = (s.clone(), st.clone(), conn.clone(), doc.clone());
    tokio::spawn(async move {
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
        conn.healing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&doc.id);
        if s.connected() && doc.role_of(s.id.as_str()).is_some() {
            request_client_diff(s, st, doc, dialect);
        }
    });
}

/// Sends sync step 1 (the server's state vector) with an ack and applies the
/// client's diff from the reply. The diff is a resync, so it bypasses the
/// budget; a viewer's diff is not applied.
pub fn request_client_diff(s: SocketRef, st: AppState, doc: Arc<SessionDoc>, dialect: Dialect) {
    let sv = doc.state_vector();
    let sent = match dialect {
        Dialect::Native => s.emit_with_ack::<_, Bytes>("yjs-sync-step-1", &(&*doc.id, sv)),
        Dialect::YSocketIo => s.emit_with_ack::<_, Bytes>("sync-step-1", &sv),
    };
    let stream = match sent {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(socket_id = %s.id, error = %e, "sync-step-1 not sent");
            return;
        }
    };
    tokio::spawn(async move {
        match stream.await {
            Ok(diff) => {
                if !doc.role_of(s.id.as_str()).is_some_and(Role::can_edit) {
                    return;
                }
                if let Err(e) = st
                    .manager
                    .submit_update(&doc, diff, Some(s.id.as_str()), false)
                    .await
                {
                    emit_or_kick(&s, "error", &e.with_session(&doc.id));
                }
            }
            Err(e) => tracing::debug!(socket_id = %s.id, error = %e, "no sync-step-1 reply"),
        }
    });
}
