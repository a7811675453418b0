//! Delivery to sockets: [`Hub`] is the core's [`Fanout`] for both dialects,
//! and a socket whose queue is full is disconnected as a slow consumer rather
//! than silently skipped (PROTOCOL.md, "Convergence rules").

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};

use super::{room, ysocketio, ysocketio_ns};
use crate::core::Fanout;

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
/// to queue a DISCONNECT packet (and gives up when it cannot), so:
/// - a WebSocket client's TCP connection is shut down (see [`crate::net`]);
/// - a long-polling client's engine.io session is closed by handing
///   engine.io a CLOSE packet for it, as if the client had sent one.
///
/// Either way engine.io closes the session at once, the disconnect handlers
/// run, and the client reconnects and resyncs. Only in-process router tests
/// (no TCP, no engine handle) fall back to the namespace disconnect.
fn kick<A: Adapter>(s: &SocketRef<A>) {
    let sid = s.id.to_string();
    let parts = s.req_parts();
    let closed = match s.transport_type() {
        socketioxide::TransportType::Websocket => crate::net::closer_for(&sid)
            .or_else(|| parts.extensions.get::<crate::net::ConnCloser>().cloned())
            .is_some_and(|c| c.close()),
        socketioxide::TransportType::Polling => parts
            .extensions
            .get::<crate::net::EngineCloser>()
            .is_some_and(|c| c.close_session(parts.uri.path(), &sid)),
    };
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

/// The core's [`Fanout`], delivering to every dialect.
pub struct Hub {
    io: SocketIo,
    ywebsocket: Arc<super::ywebsocket::Rooms>,
}

impl Hub {
    pub fn new(io: SocketIo, ywebsocket: Arc<super::ywebsocket::Rooms>) -> Arc<Self> {
        Arc::new(Self { io, ywebsocket })
    }

    fn native_sockets(&self, session_id: &str) -> Vec<SocketRef> {
        // `io.to` panics once the namespaces are gone (shutdown), and
        // connections of the other dialects may still leave after that.
        self.io
            .of("/")
            .map(|ns| ns.to(room(session_id)).sockets())
            .unwrap_or_default()
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
        n += self.ywebsocket.doc_update(session_id, update, except);
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
        self.ywebsocket.awareness(session_id, update, except);
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
/// providers connect to new documents and falls back as documents unload
/// (or as refused connects remove theirs).
pub fn count_namespaces(io: &SocketIo) {
    let n = io
        .nsps()
        .iter()
        .filter(|ns| ns.ns_path() != "/" && ns.ns_path() != ysocketio::EMPTY_ROOM_NS)
        .count();
    metrics::gauge!("tandem_ysocketio_namespaces").set(n as f64);
}
