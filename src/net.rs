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
//! request's head in engine.io, so the WebSocket request that upgrades
//! session `sid` registers its closer under that id ([`ConnCloser::register`],
//! [`closer_for`]); engine.io's session id is also the Socket.IO socket id.

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

    /// Records that this connection upgrades engine.io session `sid`, so
    /// [`closer_for`] finds it until the connection ends.
    pub fn register(&self, sid: &str) {
        let mut slot = lock(&self.0);
        if slot.fd.is_none() {
            return;
        }
        slot.sid = Some(sid.to_owned());
        lock(&UPGRADED).insert(sid.to_owned(), self.clone());
    }
}

/// A connection stream that a [`ConnCloser`] can shut down.
pub struct Conn<T> {
    io: T,
    slot: Arc<Mutex<Slot>>,
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
            },
            ConnCloser(slot),
        )
    }
}

impl<T> Drop for Conn<T> {
    fn drop(&mut self) {
        // Runs before `io` is dropped (and its descriptor closed).
        let mut slot = lock(&self.slot);
        slot.fd = None;
        if let Some(sid) = slot.sid.take() {
            lock(&UPGRADED).remove(&sid);
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
        drop(conn);
        assert!(!closer.close(), "never touches a descriptor after drop");
        assert!(
            closer_for("sid-under-test").is_none(),
            "unregistered on drop"
        );
    }
}
