//! The y-socket.io dialect (PROTOCOL.md): namespace `/yjs|<session-id>`,
//! events `sync-step-1`, `sync-update`, `awareness-update`, exactly as the npm
//! package `y-socket.io` 1.1.x. Auth, authorization and the document load
//! happen in the connect middleware; everything else is the shared core path.

use std::sync::Arc;

use bytes::Bytes;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;

use super::native::Refusal;
use super::{
    AppState, ConnState, Dialect, Presence, SioPeer, accept_update, authenticate,
    disconnect_or_kick, emit_or_kick, lock, relay_awareness, request_client_diff, resolve_session,
};
use crate::error::{Error, ErrorCode};
use crate::model::DocId;

/// Per-socket state: one socket, one session. Dropped with the socket (or
/// by the disconnect handler), which removes its presence.
struct YSocket {
    conn: Arc<ConnState>,
    doc: Presence,
    /// Counts this connect as in flight until the socket is connected.
    pending: std::sync::Mutex<Option<PendingConnect>>,
}

/// A y-socket.io connect in flight for one namespace (see
/// [`AppState::ysocketio_pending`]): counted while it lives.
struct PendingConnect {
    st: AppState,
    ns: String,
}

impl PendingConnect {
    fn new(st: &AppState, ns: &str) -> Self {
        *lock(&st.ysocketio_pending)
            .entry(ns.to_owned())
            .or_default() += 1;
        Self {
            st: st.clone(),
            ns: ns.to_owned(),
        }
    }

    /// Ends a refused connect: its namespace goes too unless another connect
    /// to it is in flight or a socket is connected there. socketioxide
    /// creates a dynamic namespace before the middleware runs, so without
    /// this every refused name (no token, unknown session, junk) would stay.
    fn refused(self, io: &SocketIo) {
        let last = {
            let pending = lock(&self.st.ysocketio_pending);
            pending.get(&self.ns).copied() == Some(1)
        };
        if last && io.of(&self.ns).is_some_and(|ns| ns.sockets().is_empty()) {
            io.delete_ns(&self.ns);
        }
        drop(self);
        super::count_namespaces(io);
    }
}

impl Drop for PendingConnect {
    fn drop(&mut self) {
        let mut pending = lock(&self.st.ysocketio_pending);
        if let Some(n) = pending.get_mut(&self.ns) {
            *n -= 1;
            if *n == 0 {
                pending.remove(&self.ns);
            }
        }
    }
}

fn session_id_of(ns: &str) -> &str {
    ns.strip_prefix("/yjs|").unwrap_or_default()
}

async fn connect_mw(
    s: SocketRef,
    TryData(auth): TryData<serde_json::Value>,
    io: SocketIo,
    State(st): State<AppState>,
) -> Result<(), Refusal> {
    let pending = PendingConnect::new(&st, s.ns());
    match connect(&s, auth.ok().as_ref(), &st, pending).await {
        Ok(()) => {
            super::count_namespaces(&io);
            Ok(())
        }
        Err((e, pending)) => {
            tracing::debug!(socket_id = %s.id, ns = %s.ns(), code = %e.code, "y-socket.io connection refused");
            pending.refused(&io);
            Err(Refusal(e.code))
        }
    }
}

async fn connect(
    s: &SocketRef,
    auth: Option<&serde_json::Value>,
    st: &AppState,
    pending: PendingConnect,
) -> Result<(), (Error, PendingConnect)> {
    let id = session_id_of(s.ns()).to_owned();
    // Junk names (too long, bad characters) are refused before anything
    // else. The room name is a document id: a session, or `<sid>~<fid>`.
    let doc_id = match DocId::parse(&id) {
        Ok(d) => d,
        Err(e) => return Err((e, pending)),
    };
    if let Some(key) = foreign_query_key(s.req_parts().uri.query()) {
        // socket.io-client turns `/yjs|a?b` into namespace `/yjs|a` plus a
        // handshake query `b`: refuse instead of joining session `a`.
        tracing::debug!(socket_id = %s.id, session_id = %id, key, "room name cut at '?'; refused");
        return Err((
            Error::new(ErrorCode::InvalidSessionId, "room name cut at '?'"),
            pending,
        ));
    }
    let user = match authenticate(st, auth) {
        Ok(u) => u,
        Err(e) => return Err((e, pending)),
    };
    let (_session, role) = match resolve_session(st, &user, &doc_id.session).await {
        Ok(r) => r,
        Err(e) => return Err((e, pending)),
    };
    // A missing file is FILE_NOT_FOUND from the load itself.
    let lease = match st.manager.open_fresh(&id).await {
        Ok(l) => l,
        Err(e) => return Err((e, pending)),
    };
    let conn = ConnState::new(user, &st.config);
    // If the client is gone before socketioxide connects the socket, the
    // socket (and this state with its presence) is dropped: no ghost.
    let doc = Presence::join(st, lease, s.id.as_str(), conn.user.clone(), role);
    s.extensions.insert(Arc::new(YSocket {
        conn,
        doc,
        pending: std::sync::Mutex::new(Some(pending)),
    }));
    // Handlers go on before CONNECT is sent (see native.rs).
    register_handlers(s);
    Ok(())
}

/// The first handshake query key that engine.io does not use: what is left
/// of a room name containing `?` (a `#` and what follows never reach the
/// server at all).
fn foreign_query_key(query: Option<&str>) -> Option<&str> {
    const ENGINE_IO: [&str; 6] = ["EIO", "transport", "sid", "t", "j", "b64"];
    query?
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(k, _)| k))
        .find(|k| !k.is_empty() && !ENGINE_IO.contains(k))
}

/// The socket's state: set by the connect middleware, removed by the
/// disconnect handler. An event still in flight when the socket
/// disconnects finds none and is dropped (it used to panic here).
fn ctx(s: &SocketRef) -> Option<Arc<YSocket>> {
    s.extensions.get::<Arc<YSocket>>()
}

/// Closes document `doc_id` (a deleted session or file): each socket on its
/// namespace hears `error` (`err`) and gets a DISCONNECT packet.
/// (`SocketIo::delete_ns` alone drops the sockets without telling the
/// clients, which then keep sending into a namespace that no longer exists.)
pub fn close_document(io: &SocketIo, doc_id: &str, err: &Error) {
    let Some(ns) = io.of(super::ysocketio_ns(doc_id)) else {
        return;
    };
    for s in ns.sockets() {
        emit_or_kick(&s, "error", err);
        disconnect_or_kick(&s);
    }
}

/// Disconnects the given sockets of a document whose access was revoked,
/// after an `error` `FORBIDDEN`; reconnecting is refused the same way.
pub fn revoke(io: &SocketIo, doc_id: &str, conns: &[String]) {
    let Some(ns) = io.of(super::ysocketio_ns(doc_id)) else {
        return;
    };
    let err = Error::new(
        ErrorCode::Forbidden,
        "your access to this session was removed",
    )
    .with_doc(doc_id);
    for s in ns.sockets() {
        if conns.iter().any(|c| c == s.id.as_str()) {
            emit_or_kick(&s, "error", &err);
            disconnect_or_kick(&s);
        }
    }
}

/// Registers the dynamic namespace.
pub fn register(io: &SocketIo) {
    io.dyn_ns("/yjs|{*session}", on_connect.with(connect_mw))
        .expect("static namespace pattern is valid");
    // An empty room name does not match the pattern: refuse it with the
    // protocol's code instead of socketioxide's "Invalid namespace".
    io.ns(EMPTY_ROOM_NS, (async || {}).with(refuse_empty_room));
}

/// The namespace of a y-socket.io provider with an empty room name.
pub const EMPTY_ROOM_NS: &str = "/yjs|";

async fn refuse_empty_room() -> Result<(), Refusal> {
    Err(Refusal(ErrorCode::InvalidSessionId))
}

/// After CONNECT: the server's sync step 1 and everyone's presence, as y-socket.io does.
async fn on_connect(s: SocketRef, State(st): State<AppState>) {
    let Some(c) = ctx(&s) else { return };
    // Connected: no longer in flight.
    lock(&c.pending).take();
    crate::telemetry::connection_opened("ysocketio");
    request_client_diff(
        s.clone(),
        st.clone(),
        c.conn.clone(),
        c.doc.lease().clone(),
        Dialect::YSocketIo,
    );
    if let Some(states) = c.doc.awareness_states() {
        emit_or_kick(&s, "awareness-update", &states);
    }
}

fn register_handlers(s: &SocketRef) {
    s.on(
        "sync-step-1",
        async |s: SocketRef, TryData(sv): TryData<Bytes>, ack: AckSender| {
            let Some(c) = ctx(&s) else { return };
            match sv
                .map_err(|_| {
                    Error::new(ErrorCode::InvalidPayload, "expected a binary state vector")
                })
                .and_then(|sv| c.doc.diff(&sv))
            {
                Ok(diff) => {
                    let _ = ack.send(&diff);
                }
                Err(e) => emit_or_kick(&s, "error", &e.with_doc(session_id_of(s.ns()))),
            }
        },
    );
    s.on(
        "sync-update",
        async |s: SocketRef, TryData(u): TryData<Bytes>, State(st): State<AppState>| {
            let Some(c) = ctx(&s) else { return };
            let result = match u {
                Ok(u) => {
                    accept_update(
                        &SioPeer(s.clone(), Dialect::YSocketIo),
                        &st,
                        &c.conn,
                        &c.doc,
                        u,
                        false,
                    )
                    .await
                }
                Err(_) => Err(Error::new(
                    ErrorCode::InvalidPayload,
                    "expected a binary update",
                )),
            };
            if let Err(e) = result {
                emit_or_kick(&s, "error", &e.with_doc(&c.doc.id));
            }
        },
    );
    s.on(
        "awareness-update",
        async |s: SocketRef, TryData(u): TryData<Bytes>, State(st): State<AppState>| {
            let Some(c) = ctx(&s) else { return };
            let result = u
                .map_err(|_| {
                    Error::new(
                        ErrorCode::InvalidPayload,
                        "expected a binary awareness update",
                    )
                })
                .and_then(|u| {
                    relay_awareness(
                        &SioPeer(s.clone(), Dialect::YSocketIo),
                        &st,
                        &c.conn,
                        &c.doc,
                        u,
                    )
                });
            if let Err(e) = result {
                emit_or_kick(&s, "error", &e.with_doc(&c.doc.id));
            }
        },
    );
    s.on_disconnect(async |s: SocketRef| {
        crate::telemetry::connection_closed("ysocketio");
        // Dropping the state removes the presence (awareness, user-left).
        s.extensions.remove::<Arc<YSocket>>();
    });
}

#[cfg(test)]
mod tests {
    use super::foreign_query_key;

    #[test]
    fn a_cut_room_name_leaves_a_foreign_query_key() {
        assert_eq!(foreign_query_key(None), None);
        assert_eq!(foreign_query_key(Some("EIO=4&transport=websocket")), None);
        assert_eq!(
            foreign_query_key(Some("EIO=4&transport=polling&t=PZ1x&sid=abc")),
            None
        );
        assert_eq!(
            foreign_query_key(Some("rest=&EIO=4&transport=websocket")),
            Some("rest")
        );
        assert_eq!(
            foreign_query_key(Some("EIO=4&transport=websocket&b")),
            Some("b")
        );
    }
}
