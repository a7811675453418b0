//! The y-websocket dialect (PROTOCOL.md, "y-websocket dialect"): a plain
//! WebSocket at `/ws/<document-id>` speaking the framing of the npm
//! `y-websocket` provider (y-protocols: a varUint message type, then sync
//! step 1 / step 2 / update, awareness, auth or query-awareness).
//!
//! Everything is decided before the upgrade (token, document id, session,
//! role, the document's load), so a refusal is an HTTP status with the API's
//! error body. After it, one task per connection reads frames in order and
//! writes what a bounded queue holds; updates and awareness go through the
//! same core path as the Socket.IO dialects ([`accept_update`],
//! [`relay_awareness`], [`Presence`]). Broadcast frames are encoded once per
//! room and shared (`Bytes`) by every connection. [`Rooms`] is this
//! dialect's part of the fan-out; it owns no document state.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio::sync::Notify;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;

use super::{AppState, ConnState, Peer, Presence, accept_update, lock, relay_awareness};
use crate::core::DocLease;
use crate::error::{Error, ErrorCode};
use crate::model::DocId;

/// y-protocols message types (also used by the project's client).
pub const MSG_SYNC: u32 = 0;
pub const MSG_AWARENESS: u32 = 1;
pub const MSG_AUTH: u32 = 2;
pub const MSG_QUERY_AWARENESS: u32 = 3;
/// Sync message kinds.
pub const SYNC_STEP_1: u32 = 0;
pub const SYNC_STEP_2: u32 = 1;
pub const SYNC_UPDATE: u32 = 2;

/// Close codes (PROTOCOL.md).
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_INVALID: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_INTERNAL: u16 = 1011;
pub const CLOSE_SLOW_CONSUMER: u16 = 1013;
pub const CLOSE_REVOKED: u16 = 4403;
pub const CLOSE_DELETED: u16 = 4404;

/// The dialect's route, merged into the server's router.
pub fn router(st: AppState) -> Router {
    Router::new()
        .route("/ws/{*doc}", get(upgrade))
        .with_state(st)
}

/// The open connections of each document.
#[derive(Default)]
pub struct Rooms {
    docs: std::sync::Mutex<HashMap<Arc<str>, Room>>,
}

/// One document's connections by connection id.
type Room = HashMap<Arc<str>, Conn>;

/// What the fan-out needs of a connection: a handle on its [`Outbox`].
#[derive(Clone)]
struct Conn {
    out: Arc<Outbox>,
}

/// A connection's outbound frames and its close request, behind one wake-up.
/// A plain deque instead of a channel: an idle connection holds no buffer
/// (a bounded tokio channel allocates a block of slots up front, ≈ 1.5 KiB).
struct Outbox {
    frames: std::sync::Mutex<std::collections::VecDeque<Bytes>>,
    /// Most frames queued before the connection is a slow consumer.
    limit: usize,
    /// 0 while open; the close code once a close was asked for (first wins).
    code: AtomicU16,
    wake: Notify,
}

impl Outbox {
    fn new(limit: usize) -> Self {
        Self {
            frames: Default::default(),
            limit,
            code: AtomicU16::new(0),
            wake: Notify::new(),
        }
    }

    fn close(&self, code: u16) {
        if self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.wake.notify_one();
        }
    }

    fn closing(&self) -> u16 {
        self.code.load(Ordering::Acquire)
    }

    /// The next queued frame; gives back the memory of a drained burst.
    fn pop(&self) -> Option<Bytes> {
        let mut q = lock(&self.frames);
        let f = q.pop_front();
        if q.is_empty() && q.capacity() > 16 {
            q.shrink_to_fit();
        }
        f
    }
}

impl Conn {
    /// Queues a frame; a full queue closes the connection as a slow consumer
    /// (it reconnects and resyncs) instead of skipping the frame.
    fn send(&self, frame: Bytes) {
        let out = &self.out;
        if out.closing() != 0 {
            return;
        }
        {
            let mut q = lock(&out.frames);
            if q.len() < out.limit {
                q.push_back(frame);
                drop(q);
                out.wake.notify_one();
                return;
            }
        }
        tracing::warn!("y-websocket queue full; closing slow consumer");
        metrics::counter!("tandem_slow_consumers_disconnected_total").increment(1);
        out.close(CLOSE_SLOW_CONSUMER);
    }
}

impl Rooms {
    fn add(&self, doc: &Arc<str>, id: &Arc<str>, conn: Conn) {
        lock(&self.docs)
            .entry(doc.clone())
            .or_default()
            .insert(id.clone(), conn);
    }

    fn remove(&self, doc: &str, id: &str) {
        let mut docs = lock(&self.docs);
        if let Some(room) = docs.get_mut(doc) {
            room.remove(id);
            if room.is_empty() {
                docs.remove(doc);
            }
        }
    }

    fn conns(&self, doc: &str, except: Option<&str>) -> Vec<Conn> {
        lock(&self.docs)
            .get(doc)
            .map(|room| {
                room.iter()
                    .filter(|(id, _)| except != Some(&***id))
                    .map(|(_, c)| c.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends a document update to every connection of `doc` but `except`;
    /// returns how many got it. The frame is encoded once.
    pub fn doc_update(&self, doc: &str, update: &[u8], except: Option<&str>) -> u64 {
        let conns = self.conns(doc, except);
        if conns.is_empty() {
            return 0;
        }
        let frame = sync_frame(SYNC_UPDATE, update);
        for c in &conns {
            c.send(frame.clone());
        }
        conns.len() as u64
    }

    /// Sends an awareness update to every connection of `doc` but `except`.
    pub fn awareness(&self, doc: &str, update: &[u8], except: Option<&str>) {
        let conns = self.conns(doc, except);
        if conns.is_empty() {
            return;
        }
        let frame = awareness_frame(update);
        for c in &conns {
            c.send(frame.clone());
        }
    }

    /// Closes every connection of a deleted document (4404).
    pub fn close_document(&self, doc: &str) {
        for c in self.conns(doc, None) {
            c.out.close(CLOSE_DELETED);
        }
    }

    /// Closes the given connections of a document whose access was revoked (4403).
    pub fn revoke(&self, doc: &str, conns: &[String]) {
        let room = lock(&self.docs).get(doc).cloned().unwrap_or_default();
        for (id, c) in room {
            if conns.iter().any(|r| **r == *id) {
                c.out.close(CLOSE_REVOKED);
            }
        }
    }

    /// Closes every connection (1001, the server is shutting down).
    pub fn close_all(&self) {
        for room in lock(&self.docs).values() {
            for c in room.values() {
                c.out.close(CLOSE_GOING_AWAY);
            }
        }
    }

    /// Open connections (all documents), for tests and metrics.
    pub fn connections(&self) -> usize {
        lock(&self.docs).values().map(HashMap::len).sum()
    }
}

/// One y-protocols message: message type, sync kind (for sync messages),
/// payload as a varUint8Array. Hocuspocus prefixes each message with its
/// document's name (`prefix`; the server never does, the client may).
pub fn encode_message(prefix: Option<&str>, kind: u32, sub: Option<u32>, payload: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(payload.len() + 8 + prefix.map_or(0, |p| p.len() + 4));
    if let Some(p) = prefix {
        v.write_string(p);
    }
    v.write_var(kind);
    if let Some(sub) = sub {
        v.write_var(sub);
    }
    v.write_buf(payload);
    Bytes::from(v)
}

fn sync_frame(kind: u32, payload: &[u8]) -> Bytes {
    encode_message(None, MSG_SYNC, Some(kind), payload)
}

fn awareness_frame(update: &[u8]) -> Bytes {
    encode_message(None, MSG_AWARENESS, None, update)
}

/// y-protocols' "permission denied" auth message.
fn permission_denied(reason: &str) -> Bytes {
    let mut v = Vec::with_capacity(reason.len() + 4);
    v.write_var(MSG_AUTH);
    v.write_var(0u32);
    v.write_string(reason);
    Bytes::from(v)
}

/// Token, document id, session, role and load, in PROTOCOL.md's order, all
/// before the upgrade: a refusal is the API's error with its status.
async fn upgrade(
    ws: WebSocketUpgrade,
    Path(doc): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    State(st): State<AppState>,
) -> Response {
    match admit(&st, &doc, &query).await {
        Ok((conn, role, lease)) => {
            let limit = st.config.max_update_bytes.saturating_mul(4) + (64 << 10);
            ws.max_message_size(limit)
                .max_frame_size(limit)
                .read_buffer_size(256)
                .on_upgrade(move |socket| serve(socket, st, conn, role, lease))
        }
        Err(e) => {
            tracing::debug!(doc_id = %doc, code = %e.code, "y-websocket connection refused");
            crate::http::ApiError::from(e).into_response()
        }
    }
}

async fn admit(
    st: &AppState,
    doc: &str,
    query: &HashMap<String, String>,
) -> Result<(Arc<ConnState>, crate::model::Role, DocLease), Error> {
    // The provider's `params` arrive as query parameters: `token`, and for
    // guests (with --anonymous) an optional `name`.
    let auth = query
        .get("token")
        .map(|t| serde_json::json!({ "token": t }));
    let auth = auth.or_else(|| query.get("name").map(|n| serde_json::json!({ "name": n })));
    let user = super::authenticate(st, auth.as_ref())?;
    let doc_id = DocId::parse(doc)?;
    let (_session, role) = super::resolve_session(st, &user, &doc_id.session).await?;
    let lease = st.manager.open_fresh(doc).await?;
    Ok((ConnState::new(user, &st.config), role, lease))
}

/// One connection of this dialect as a [`Peer`].
#[derive(Clone)]
struct YwsPeer {
    id: Arc<str>,
    conn: Conn,
}

impl Peer for YwsPeer {
    fn id(&self) -> &str {
        &self.id
    }

    fn connected(&self) -> bool {
        self.conn.out.closing() == 0
    }

    fn request_diff(&self, _st: &AppState, _conn: &Arc<ConnState>, doc: &DocLease) {
        // The client answers with sync step 2, which comes back through
        // the update path (and its budget).
        self.conn.send(sync_frame(SYNC_STEP_1, &doc.state_vector()));
    }
}

/// A plain fn returning an `async move` block rather than an `async fn`:
/// an `async fn` keeps its arguments twice in its state (as captured and
/// as moved-into locals, rust-lang/rust#62958), ≈ 430 bytes per idle
/// connection here, most of it the 368-byte socket.
fn serve(
    socket: WebSocket,
    st: AppState,
    conn: Arc<ConnState>,
    role: crate::model::Role,
    lease: DocLease,
) -> impl std::future::Future<Output = ()> {
    let mut socket = socket;
    async move {
        let id: Arc<str> = format!("yws-{}", uuid::Uuid::new_v4().simple()).into();
        let out = Arc::new(Outbox::new(st.config.socket_buffer.max(16)));
        let peer = YwsPeer {
            id: id.clone(),
            conn: Conn { out: out.clone() },
        };
        let doc_id = lease.id.clone();
        let presence = Presence::join(&st, lease, &id, conn.user.clone(), role);
        st.ywebsocket.add(&doc_id, &id, peer.conn.clone());
        crate::telemetry::connection_opened("ywebsocket");
        tracing::debug!(conn = %id, doc_id = %doc_id, "y-websocket connected");

        // As y-websocket's own server: our state vector, then who is here.
        peer.conn
            .send(sync_frame(SYNC_STEP_1, &presence.state_vector()));
        if let Some(states) = presence.awareness_states() {
            peer.conn.send(awareness_frame(&states));
        }

        let denied = AtomicBool::new(false);
        // One task reads and writes the socket (no split: reading is
        // cancel-safe, and a frame is handled before the next is read anyway).
        let close_code = 'conn: loop {
            // Everything queued goes out first; a close request ends it.
            while let Some(frame) = out.pop() {
                if out.closing() != 0 {
                    break;
                }
                if socket.send(Message::Binary(frame)).await.is_err() {
                    break 'conn 0;
                }
            }
            if out.closing() != 0 {
                break out.closing();
            }
            tokio::select! {
                biased;
                _ = out.wake.notified() => {}
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        // Boxed: the update path's future is large, and inline it
                        // would size every idle connection's task for it.
                        if let Err(code) =
                            Box::pin(handle(&peer, &st, &conn, &presence, b, &denied)).await
                        {
                            break code;
                        }
                    }
                    Some(Ok(Message::Text(_))) => break CLOSE_INVALID,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break 0,
                },
            }
        };
        st.ywebsocket.remove(&doc_id, &id);
        // Leaves: awareness removal broadcast at once, user-left if last.
        drop(presence);
        crate::telemetry::connection_closed("ywebsocket");
        if close_code != 0 {
            tracing::debug!(conn = %id, code = close_code, "closing y-websocket connection");
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: close_code,
                    reason: close_reason(close_code).into(),
                })))
                .await;
        }
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        CLOSE_INVALID => "INVALID_UPDATE",
        CLOSE_TOO_BIG => "UPDATE_TOO_LARGE",
        CLOSE_SLOW_CONSUMER => "slow consumer",
        CLOSE_REVOKED => "FORBIDDEN",
        CLOSE_DELETED => "deleted",
        CLOSE_GOING_AWAY => "server shutting down",
        _ => "INTERNAL",
    }
}

/// One client frame. `Err(code)` closes the connection with that code.
async fn handle(
    peer: &YwsPeer,
    st: &AppState,
    conn: &Arc<ConnState>,
    doc: &Presence,
    frame: Bytes,
    denied: &AtomicBool,
) -> Result<(), u16> {
    let mut d = Cursor::new(&frame);
    let kind: u32 = d.read_var().map_err(|_| CLOSE_INVALID)?;
    match kind {
        MSG_SYNC => {
            let sub: u32 = d.read_var().map_err(|_| CLOSE_INVALID)?;
            let payload = d.read_buf().map_err(|_| CLOSE_INVALID)?;
            match sub {
                SYNC_STEP_1 => {
                    let diff = doc.diff(payload).map_err(|_| CLOSE_INVALID)?;
                    peer.conn.send(sync_frame(SYNC_STEP_2, &diff));
                    Ok(())
                }
                SYNC_STEP_2 | SYNC_UPDATE => {
                    update(peer, st, conn, doc, Bytes::copy_from_slice(payload), denied).await
                }
                _ => Err(CLOSE_INVALID),
            }
        }
        MSG_AWARENESS => {
            let payload = d.read_buf().map_err(|_| CLOSE_INVALID)?;
            match relay_awareness(peer, st, conn, doc, Bytes::copy_from_slice(payload)) {
                Ok(()) => Ok(()),
                // Bytes that are no awareness update at all.
                Err(_) if crate::core::decode_awareness(payload).is_err() => Err(CLOSE_INVALID),
                Err(e) => {
                    // Not applied, not fatal: the npm provider re-broadcasts
                    // every awareness change it hears, other clients' states
                    // included, which the core refuses (only the connection
                    // that introduced a client id may change it); also states
                    // over the per-connection limits.
                    tracing::trace!(conn = %peer.id, code = %e.code, "awareness not applied");
                    Ok(())
                }
            }
        }
        MSG_QUERY_AWARENESS => {
            if let Some(states) = doc.awareness_states() {
                peer.conn.send(awareness_frame(&states));
            }
            Ok(())
        }
        // Auth messages from a client carry nothing the server uses.
        MSG_AUTH => Ok(()),
        _ => Err(CLOSE_INVALID),
    }
}

async fn update(
    peer: &YwsPeer,
    st: &AppState,
    conn: &Arc<ConnState>,
    doc: &Presence,
    update: Bytes,
    denied: &AtomicBool,
) -> Result<(), u16> {
    // An empty step 2 (a client with nothing new) is not an edit: a viewer's
    // provider sends one on every connect.
    if update.len() <= 2 && update.iter().all(|b| *b == 0) {
        return Ok(());
    }
    match accept_update(peer, st, conn, doc, update, false).await {
        Ok(()) => Ok(()),
        Err(e) => match e.code {
            ErrorCode::Forbidden => {
                if !denied.swap(true, Ordering::AcqRel) {
                    peer.conn.send(permission_denied("FORBIDDEN"));
                }
                Ok(())
            }
            // Healed: sync step 1 follows once the budget allows.
            ErrorCode::RateLimited => Ok(()),
            ErrorCode::UpdateTooLarge | ErrorCode::DocumentTooLarge => Err(CLOSE_TOO_BIG),
            ErrorCode::InvalidUpdate | ErrorCode::InvalidPayload => Err(CLOSE_INVALID),
            _ => Err(CLOSE_INTERNAL),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_y_protocols() {
        // messageSync, messageYjsUpdate, varUint8Array.
        assert_eq!(&sync_frame(SYNC_UPDATE, &[7, 8])[..], &[0, 2, 2, 7, 8]);
        assert_eq!(&sync_frame(SYNC_STEP_1, &[0])[..], &[0, 0, 1, 0]);
        assert_eq!(&awareness_frame(&[1, 2, 3])[..], &[1, 3, 1, 2, 3]);
        // messageAuth, messagePermissionDenied, varString.
        assert_eq!(&permission_denied("no")[..], &[2, 0, 2, b'n', b'o']);
    }
}
