//! Closing a client's TCP connection from anywhere in the server.
//!
//! socketioxide can only leave a namespace, and it does that by queueing a
//! DISCONNECT packet: when a slow consumer's queue is full that packet cannot
//! be queued, `Socket::disconnect` gives up, and the client would stay
//! connected and silently behind. So every accepted connection is wrapped in
//! a [`Conn`] whose [`ConnCloser`] (put in each request's extensions, where
//! engine.io keeps it for the life of the socket) shuts the TCP socket down:
//! both transport tasks see it at once, engine.io closes the session, and
//! the client reconnects and resyncs.
//!
//! A client that starts on long-polling and upgrades keeps its first
//! request's head in engine.io, so a WebSocket request that engine.io really
//! upgraded (a `101` answer to a Socket.IO upgrade request for session `sid`)
//! registers its closer under that id ([`ConnCloser::register`],
//! [`closer_for`]); engine.io's session id is also the Socket.IO socket id.
//! A connection removes only its own entry when it ends.
//!
//! A long-polling client has no connection of its own to close; its
//! engine.io session is closed through [`EngineCloser`].

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Closers of upgraded WebSocket connections, by engine.io session id.
static UPGRADED: LazyLock<Mutex<HashMap<String, ConnCloser>>> = LazyLock::new(Default::default);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The closer of the WebSocket connection that upgraded engine.io session `sid`.
pub fn closer_for(sid: &str) -> Option<ConnCloser> {
    lock(&UPGRADED).get(sid).cloned()
}

#[derive(Debug, Default)]
struct Slot {
    /// The open socket's descriptor; `None` once [`Conn`] is dropped.
    fd: Option<RawFd>,
    /// The engine.io session this connection upgraded, if any.
    sid: Option<String>,
}

/// Shuts down the connection it was made for, if that is still open.
#[derive(Clone, Debug)]
pub struct ConnCloser(Arc<Mutex<Slot>>);

impl ConnCloser {
    /// Shuts the socket down in both directions. Returns false if the
    /// connection is already gone (its descriptor may belong to another one
    /// by now, so it is never touched after [`Conn`] is dropped).
    pub fn close(&self) -> bool {
        match lock(&self.0).fd {
            // SAFETY: the descriptor is open: `Conn` clears it (under this
            // lock) before its stream is closed.
            Some(fd) => unsafe { libc::shutdown(fd, libc::SHUT_RDWR) == 0 },
            None => false,
        }
    }

    /// Records that this connection upgraded engine.io session `sid` (call
    /// it only once engine.io answered the upgrade with `101`), so
    /// [`closer_for`] finds it until the connection ends.
    pub fn register(&self, sid: &str) {
        let mut slot = lock(&self.0);
        if slot.fd.is_none() {
            return;
        }
        let mut upgraded = lock(&UPGRADED);
        if let Some(old) = slot.sid.replace(sid.to_owned()) {
            remove_own(&mut upgraded, &old, &self.0);
        }
        upgraded.insert(sid.to_owned(), self.clone());
    }
}

/// Removes `sid`'s entry only if it is this connection's.
fn remove_own(map: &mut HashMap<String, ConnCloser>, sid: &str, own: &Arc<Mutex<Slot>>) {
    if map.get(sid).is_some_and(|c| Arc::ptr_eq(&c.0, own)) {
        map.remove(sid);
    }
}

/// Closes a long-polling client's engine.io session from inside the server.
///
/// socketioxide offers no way to close an engine.io session, and its
/// namespace disconnect needs room in the very queue that is full. So the
/// server hands engine.io a CLOSE packet for the session, exactly as the
/// client would post it: engine.io closes the session at once and every
/// disconnect handler runs. The request is made by a task that owns the
/// router ([`EngineCloser::channel`]); this handle only queues `(path, sid)`.
#[derive(Clone, Debug)]
pub struct EngineCloser(tokio::sync::mpsc::UnboundedSender<(String, String)>);

impl EngineCloser {
    /// A closer and the receiver its task serves.
    pub fn channel() -> (Self, tokio::sync::mpsc::UnboundedReceiver<(String, String)>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Queues the close of session `sid` served at engine.io `path`.
    pub fn close_session(&self, path: &str, sid: &str) -> bool {
        self.0.send((path.to_owned(), sid.to_owned())).is_ok()
    }
}

/// The request that closes engine.io session `sid` at `path` (a polling POST
/// carrying the CLOSE packet, `1`).
pub fn close_request(path: &str, sid: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::post(format!("{path}?EIO=4&transport=polling&sid={sid}"))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(axum::body::Body::from("1"))
        .expect("static request parts are valid")
}

/// A connection stream that a [`ConnCloser`] can shut down.
pub struct Conn<T> {
    io: T,
    slot: Arc<Mutex<Slot>>,
    /// Dropped with the stream (see [`Conn::hold`]).
    _held: Option<Box<dyn Send + Sync>>,
}

impl<T: AsRawFd> Conn<T> {
    pub fn new(io: T) -> (Self, ConnCloser) {
        let slot = Arc::new(Mutex::new(Slot {
            fd: Some(io.as_raw_fd()),
            sid: None,
        }));
        (
            Self {
                io,
                slot: slot.clone(),
                _held: None,
            },
            ConnCloser(slot),
        )
    }
}

impl<T> Conn<T> {
    /// Keeps `guard` alive exactly as long as the stream. An upgraded
    /// connection outlives hyper's connection future (which ends at the
    /// upgrade, handing the stream to the WebSocket), so per-connection
    /// accounting must ride on the stream itself.
    pub fn hold(mut self, guard: impl Send + Sync + 'static) -> Self {
        self._held = Some(Box::new(guard));
        self
    }
}

impl<T> Drop for Conn<T> {
    fn drop(&mut self) {
        // Runs before `io` is dropped (and its descriptor closed).
        let mut slot = lock(&self.slot);
        slot.fd = None;
        if let Some(sid) = slot.sid.take() {
            remove_own(&mut lock(&UPGRADED), &sid, &self.slot);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Conn<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn closer_ends_a_blocked_read_and_is_inert_after_drop() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = l.accept().await.unwrap();
        let (mut conn, closer) = Conn::new(server);
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 8];
            let n = conn.read(&mut b).await.unwrap();
            (n, conn)
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(closer.close());
        let (n, conn) = reader.await.unwrap();
        assert_eq!(n, 0, "a shut-down connection reads EOF");
        let mut b = [0u8; 8];
        assert_eq!(
            client.read(&mut b).await.unwrap(),
            0,
            "the peer sees the close"
        );
        let _ = client.write_all(b"x").await;
        closer.register("sid-under-test");
        assert!(closer_for("sid-under-test").is_some());
        // Another connection that upgraded the same session later owns the
        // entry: this one's end must not remove it.
        let (other_io, _) = {
            let c2 = tokio::net::TcpStream::connect(l.local_addr().unwrap());
            let (a, b) = tokio::join!(c2, l.accept());
            (a.unwrap(), b.unwrap())
        };
        let (other, other_closer) = Conn::new(other_io);
        other_closer.register("sid-taken-over");
        closer.register("sid-taken-over");
        other_closer.register("sid-taken-over");
        drop(conn);
        assert!(
            closer_for("sid-taken-over").is_some_and(|c| Arc::ptr_eq(&c.0, &other_closer.0)),
            "a connection removes only its own entry"
        );
        drop(other);
        assert!(closer_for("sid-taken-over").is_none());
        assert!(!closer.close(), "never touches a descriptor after drop");
        assert!(
            closer_for("sid-under-test").is_none(),
            "unregistered on drop"
        );
    }
}
