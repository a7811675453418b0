//! A minimal Socket.IO v4 client over WebSocket (Engine.IO 4), for the
//! integration tests and the load generator. It speaks one namespace per
//! connection, binary attachments in both directions, acks both ways, and
//! answers pings. It deliberately does not do long-polling, reconnection or
//! several namespaces on one connection.
//!
//! One task owns the socket: it reads frames, reassembles binary events,
//! routes ack replies and forwards events; writes go through a channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// One event argument: JSON or a binary attachment.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Json(Value),
    Bin(Bytes),
}

impl Arg {
    pub fn json(v: impl serde::Serialize) -> Self {
        Arg::Json(serde_json::to_value(v).expect("serializable"))
    }
    pub fn bin(b: impl Into<Bytes>) -> Self {
        Arg::Bin(b.into())
    }
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            Arg::Json(v) => Some(v),
            Arg::Bin(_) => None,
        }
    }
    pub fn as_bin(&self) -> Option<&Bytes> {
        match self {
            Arg::Bin(b) => Some(b),
            Arg::Json(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the namespace connection (`connect_error`).
    #[error("connection refused: {message}")]
    ConnectRefused { message: String },
    #[error("websocket error: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("timed out")]
    Timeout,
    #[error("connection closed")]
    Closed,
}

/// An event from the server. `ack` is set when the server expects a reply.
#[derive(Debug)]
pub struct Event {
    pub name: String,
    pub args: Vec<Arg>,
    pub ack: Option<AckReplier>,
    /// When the packet's last frame came off the socket (before any queueing
    /// towards the application): what latency measurements should use.
    pub received: std::time::Instant,
}

/// What the receiver yields.
#[derive(Debug)]
pub enum Incoming {
    Event(Event),
    Disconnected { reason: String },
}

/// Replies to a server-initiated ack request.
#[derive(Debug)]
pub struct AckReplier {
    id: u64,
    out: mpsc::UnboundedSender<Out>,
    nsp: Arc<str>,
    yws: Option<yws::Framing>,
}

impl AckReplier {
    pub fn reply(self, args: Vec<Arg>) -> Result<(), ClientError> {
        if let Some(f) = &self.yws {
            // The only request a y-websocket server makes: sync step 1.
            return yws::send(&self.out, f, yws::SYNC, Some(yws::STEP_2), args);
        }
        send_packet(&self.out, &self.nsp, PacketKind::Ack(self.id), None, args)
    }
}

enum Out {
    Frame(Message),
    /// A packet's text header and its attachments: queued as one item so no
    /// other packet can slip between them.
    Packet(Vec<Message>),
    Kill,
}

#[derive(Clone, Copy)]
enum PacketKind {
    Event,
    Ack(u64),
}

type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Vec<Arg>>>>>;

/// A connected client. Cloning shares the connection.
#[derive(Clone)]
pub struct Client {
    sid: Arc<str>,
    nsp: Arc<str>,
    out: mpsc::UnboundedSender<Out>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    /// Speaks the y-websocket framing instead of Socket.IO
    /// ([`Client::connect_ywebsocket`], [`Client::connect_hocuspocus`]).
    yws: Option<yws::Framing>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("sid", &self.sid)
            .field("nsp", &self.nsp)
            .finish()
    }
}

impl Client {
    /// Connects to `base_url` (`http://host:port`), namespace `nsp` (`/` or
    /// `/yjs|doc`), with the handshake `auth` object.
    pub async fn connect(
        base_url: &str,
        nsp: &str,
        auth: Option<Value>,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Incoming>), ClientError> {
        Self::connect_at(base_url, "/socket.io", nsp, auth).await
    }

    /// [`connect`](Self::connect) to a server whose Socket.IO endpoint is
    /// at `path` (its `--socketio-path`, e.g. `/api/socket/io`).
    pub async fn connect_at(
        base_url: &str,
        path: &str,
        nsp: &str,
        auth: Option<Value>,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Incoming>), ClientError> {
        let (ws_base, tcp) = dial(base_url).await?;
        let path = path.trim_end_matches('/');
        let url = format!("{ws_base}{path}/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::client_async_tls(url, tcp).await?;
        let (mut sink, mut stream) = ws.split();

        // Engine.IO open packet.
        match stream.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected engine.io open, got {other:?}"
                )));
            }
        }
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        let connect = match &auth {
            Some(a) => format!("40{prefix}{a}"),
            None => format!("40{prefix}"),
        };
        sink.send(Message::text(connect)).await?;
        // Namespace answer (skipping pings).
        let sid = loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str();
                    if t == "2" {
                        sink.send(Message::text("3")).await?;
                        continue;
                    }
                    let body = strip_nsp(&t[1..], nsp).1;
                    if let Some(rest) = body.strip_prefix('0') {
                        let v: Value = serde_json::from_str(strip_nsp(rest, nsp).1)
                            .map_err(|e| ClientError::Protocol(e.to_string()))?;
                        break v
                            .get("sid")
                            .and_then(|s| s.as_str())
                            .unwrap_or_default()
                            .to_owned();
                    }
                    if let Some(rest) = body.strip_prefix('4') {
                        let v: Value =
                            serde_json::from_str(strip_nsp(rest, nsp).1).unwrap_or(Value::Null);
                        let message = v
                            .get("message")
                            .and_then(|m| m.as_str())
                            .unwrap_or_default()
                            .to_owned();
                        return Err(ClientError::ConnectRefused { message });
                    }
                    return Err(ClientError::Protocol(format!(
                        "unexpected packet before connect: {t}"
                    )));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(ClientError::Closed),
            }
        };

        let (out_tx, out_rx) = mpsc::unbounded_channel::<Out>();
        let (in_tx, in_rx) = mpsc::unbounded_channel::<Incoming>();
        let pending: Pending = Arc::default();
        let nsp: Arc<str> = nsp.into();

        spawn_writer(sink, out_rx);

        // Reader.
        {
            let pending = pending.clone();
            let out = out_tx.clone();
            let nsp = nsp.clone();
            tokio::spawn(async move {
                let reason = read_loop(&mut stream, &out, &in_tx, &pending, &nsp).await;
                pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
                let _ = in_tx.send(Incoming::Disconnected { reason });
                let _ = out.send(Out::Kill);
            });
        }

        Ok((
            Client {
                sid: sid.into(),
                nsp,
                out: out_tx,
                pending,
                next_id: Arc::new(AtomicU64::new(1)),
                yws: None,
            },
            in_rx,
        ))
    }

    /// Connects to the y-websocket dialect (PROTOCOL.md): a plain WebSocket
    /// at `<base_url>/ws/<doc_id>?token=…`. The same API as over Socket.IO,
    /// in the y-socket.io dialect's event names: `emit("sync-update", [u])`,
    /// `emit("awareness-update", [a])`, `emit_with_ack("sync-step-1", [sv])`
    /// (resolves with the server's step 2); the server's step 1 arrives as a
    /// `sync-step-1` event whose ack sends step 2, its updates (and a step 2
    /// nobody waits for) as `sync-update`, awareness as `awareness-update`.
    /// A refusal before the upgrade is `ConnectRefused` with the HTTP status.
    pub async fn connect_ywebsocket(
        base_url: &str,
        doc_id: &str,
        token: Option<&str>,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Incoming>), ClientError> {
        let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
        Self::connect_yprotocols(
            base_url,
            &format!("/ws/{doc_id}{query}"),
            doc_id,
            yws::Framing { prefix: None },
        )
        .await
    }

    /// Connects to a Hocuspocus server (3.x): the y-websocket messages, each
    /// prefixed with the document name, after an auth message with `token`
    /// (Hocuspocus queues everything else until it answers). Same API as
    /// [`connect_ywebsocket`](Self::connect_ywebsocket); its sync-status
    /// acks are not surfaced.
    pub async fn connect_hocuspocus(
        base_url: &str,
        doc_id: &str,
        token: &str,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Incoming>), ClientError> {
        let framing = yws::Framing {
            prefix: Some(doc_id.into()),
        };
        let (c, rx) = Self::connect_yprotocols(base_url, "/", doc_id, framing.clone()).await?;
        yws::send_auth(&c.out, &framing, token)?;
        Ok((c, rx))
    }

    async fn connect_yprotocols(
        base_url: &str,
        path_and_query: &str,
        doc_id: &str,
        framing: yws::Framing,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Incoming>), ClientError> {
        let (ws_base, tcp) = dial(base_url).await?;
        let url = format!("{ws_base}{path_and_query}");
        let ws = match tokio_tungstenite::client_async_tls(url, tcp).await {
            Ok((ws, _)) => ws,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                return Err(ClientError::ConnectRefused {
                    message: resp.status().as_u16().to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let (sink, mut stream) = ws.split();
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Out>();
        let (in_tx, in_rx) = mpsc::unbounded_channel::<Incoming>();
        let pending: Pending = Arc::default();
        spawn_writer(sink, out_rx);
        {
            let (pending, out, framing) = (pending.clone(), out_tx.clone(), framing.clone());
            tokio::spawn(async move {
                let reason = yws::read_loop(&mut stream, &out, &in_tx, &pending, &framing).await;
                pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
                let _ = in_tx.send(Incoming::Disconnected { reason });
                let _ = out.send(Out::Kill);
            });
        }
        Ok((
            Client {
                sid: doc_id.into(),
                nsp: doc_id.into(),
                out: out_tx,
                pending,
                next_id: Arc::new(AtomicU64::new(1)),
                yws: Some(framing),
            },
            in_rx,
        ))
    }

    /// The socket id the server assigned in this namespace.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Sends an event without an ack.
    pub fn emit(&self, event: &str, args: Vec<Arg>) -> Result<(), ClientError> {
        if let Some(f) = &self.yws {
            let (kind, sub) = yws::event_kind(event)?;
            return yws::send(&self.out, f, kind, sub, args);
        }
        send_packet(&self.out, &self.nsp, PacketKind::Event, Some(event), args)
    }

    /// Sends an event and waits for its ack.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Arg>,
        timeout: Duration,
    ) -> Result<Vec<Arg>, ClientError> {
        let id = if self.yws.is_some() {
            // Step 1 is the only request; its answer is the next step 2.
            if event != "sync-step-1" {
                return Err(ClientError::Protocol(format!(
                    "no ack for {event} in y-websocket"
                )));
            }
            yws::STEP_2_WAITER
        } else {
            self.next_id.fetch_add(1, Ordering::Relaxed)
        };
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        if let Some(f) = &self.yws {
            yws::send(&self.out, f, yws::SYNC, Some(yws::STEP_1), args)?;
        } else {
            send_event_with_id(&self.out, &self.nsp, id, event, args)?;
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                Err(ClientError::Timeout)
            }
        }
    }

    /// Leaves the namespace and closes the websocket cleanly.
    pub fn close(&self) {
        if self.yws.is_some() {
            let _ = self.out.send(Out::Frame(Message::Close(None)));
            return;
        }
        let _ = self.out.send(Out::Frame(Message::text(format!(
            "41{}",
            nsp_prefix(&self.nsp)
        ))));
        let _ = self.out.send(Out::Frame(Message::Close(None)));
    }

    /// Drops the TCP connection without a goodbye (a killed client).
    pub fn kill(&self) {
        let _ = self.out.send(Out::Kill);
    }
}

/// A TCP connection (no Nagle) to `http://host:port` or `ws://host:port`.
/// Opens the TCP connection to `base_url` and returns the WebSocket URL
/// prefix for it: `http://` and `ws://` (or no scheme) are plain
/// (`ws://host:port`), `https://` and `wss://` are TLS (`wss://host:port`,
/// verified against the system's roots; `SSL_CERT_FILE` names another
/// bundle). A missing port is the scheme's (80 or 443).
async fn dial(base_url: &str) -> Result<(String, tokio::net::TcpStream), ClientError> {
    let tls_rest = base_url
        .strip_prefix("https://")
        .or_else(|| base_url.strip_prefix("wss://"));
    let tls = tls_rest.is_some();
    let rest = tls_rest.unwrap_or_else(|| {
        base_url
            .trim_start_matches("http://")
            .trim_start_matches("ws://")
    });
    let hostport = rest.trim_end_matches('/');
    let has_port = hostport
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let addr = if has_port {
        hostport.to_owned()
    } else {
        format!("{hostport}:{}", if tls { 443 } else { 80 })
    };
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    tcp.set_nodelay(true)?;
    let scheme = if tls { "wss" } else { "ws" };
    Ok((format!("{scheme}://{hostport}"), tcp))
}

/// Sends queued frames until the connection goes or [`Out::Kill`].
fn spawn_writer<S>(mut sink: S, mut out_rx: mpsc::UnboundedReceiver<Out>)
where
    S: futures::Sink<Message> + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            match o {
                Out::Frame(m) => {
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
                Out::Packet(frames) => {
                    let mut ok = true;
                    for m in frames {
                        if sink.feed(m).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    if !ok || sink.flush().await.is_err() {
                        break;
                    }
                }
                Out::Kill => break, // dropping the sink and stream drops the TCP connection
            }
        }
        let _ = sink.close().await;
    });
}

/// The y-websocket framing (y-protocols) behind [`Client`]'s event API.
mod yws {
    use super::*;
    use yrs::encoding::read::{Cursor, Read};
    use yrs::encoding::write::Write;

    pub use crate::protocol::ywebsocket::{
        MSG_AUTH as AUTH, MSG_AWARENESS as AWARENESS, MSG_SYNC as SYNC, SYNC_STEP_1 as STEP_1,
        SYNC_STEP_2 as STEP_2, SYNC_UPDATE as UPDATE, encode_message,
    };
    /// Hocuspocus: a sync message answering the server's own step 1.
    pub const SYNC_REPLY: u32 = 4;
    /// The pending-ack slot of a `sync-step-1` request (one at a time).
    pub const STEP_2_WAITER: u64 = 0;

    pub fn event_kind(event: &str) -> Result<(u32, Option<u32>), ClientError> {
        match event {
            "sync-update" => Ok((SYNC, Some(UPDATE))),
            "sync-step-1" => Ok((SYNC, Some(STEP_1))),
            "awareness-update" => Ok((AWARENESS, None)),
            other => Err(ClientError::Protocol(format!("no {other} in y-websocket"))),
        }
    }

    /// How messages are framed: y-websocket's, or Hocuspocus's (each
    /// message prefixed with its document's name).
    #[derive(Debug, Clone)]
    pub struct Framing {
        pub prefix: Option<Arc<str>>,
    }

    /// Hocuspocus' auth message (token), the first thing it waits for.
    pub fn send_auth(
        out: &mpsc::UnboundedSender<Out>,
        f: &Framing,
        token: &str,
    ) -> Result<(), ClientError> {
        let mut v = Vec::with_capacity(token.len() + 32);
        if let Some(p) = &f.prefix {
            v.write_string(p);
        }
        v.write_var(AUTH);
        v.write_var(0u32);
        v.write_string(token);
        out.send(Out::Frame(Message::Binary(v.into())))
            .map_err(|_| ClientError::Closed)
    }

    pub fn send(
        out: &mpsc::UnboundedSender<Out>,
        f: &Framing,
        kind: u32,
        sub: Option<u32>,
        args: Vec<Arg>,
    ) -> Result<(), ClientError> {
        let Some(Arg::Bin(payload)) = args.into_iter().next() else {
            return Err(ClientError::Protocol(
                "y-websocket messages carry one binary".into(),
            ));
        };
        let frame = encode_message(f.prefix.as_deref(), kind, sub, &payload);
        out.send(Out::Frame(Message::Binary(frame)))
            .map_err(|_| ClientError::Closed)
    }

    pub async fn read_loop<S>(
        stream: &mut S,
        out: &mpsc::UnboundedSender<Out>,
        in_tx: &mpsc::UnboundedSender<Incoming>,
        pending: &Pending,
        framing: &Framing,
    ) -> String
    where
        S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    {
        loop {
            let frame = match stream.next().await {
                Some(Ok(Message::Binary(b))) => b,
                Some(Ok(Message::Close(c))) => {
                    return c.map_or("closed".into(), |c| format!("closed {}", u16::from(c.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e.to_string(),
                None => return "closed".into(),
            };
            let received = std::time::Instant::now();
            let mut d = Cursor::new(&frame);
            if framing.prefix.is_some() && d.read_string().is_err() {
                return "bad frame".into();
            }
            let Ok(kind) = d.read_var::<u32>() else {
                return "bad frame".into();
            };
            let kind = if kind == SYNC_REPLY { SYNC } else { kind };
            let (name, sub) = match kind {
                SYNC => match d.read_var::<u32>() {
                    Ok(STEP_1) => ("sync-step-1", STEP_1),
                    Ok(STEP_2) => ("sync-update", STEP_2),
                    Ok(UPDATE) => ("sync-update", UPDATE),
                    _ => return "bad sync frame".into(),
                },
                AWARENESS => ("awareness-update", 0),
                _ => continue, // auth, query-awareness: nothing a load client needs
            };
            let Ok(payload) = d.read_buf() else {
                return "bad frame".into();
            };
            let payload = Bytes::copy_from_slice(payload);
            if kind == SYNC && sub == STEP_2 {
                let waiter = pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&STEP_2_WAITER);
                if let Some(w) = waiter {
                    let _ = w.send(vec![Arg::Bin(payload)]);
                    continue;
                }
            }
            let ack = (kind == SYNC && sub == STEP_1).then(|| AckReplier {
                id: 0,
                out: out.clone(),
                nsp: Arc::from(""),
                yws: Some(framing.clone()),
            });
            let ev = Event {
                name: name.to_owned(),
                args: vec![Arg::Bin(payload)],
                ack,
                received,
            };
            if in_tx.send(Incoming::Event(ev)).is_err() {
                return "receiver dropped".into();
            }
        }
    }
}

fn nsp_prefix(nsp: &str) -> String {
    if nsp == "/" {
        String::new()
    } else {
        format!("{nsp},")
    }
}

/// Splits an optional `/nsp,` prefix off a packet body.
fn strip_nsp<'a>(body: &'a str, nsp: &str) -> (bool, &'a str) {
    if nsp != "/"
        && let Some(rest) = body.strip_prefix(nsp).and_then(|r| r.strip_prefix(','))
    {
        return (true, rest);
    }
    (false, body)
}

/// Replaces binary args by placeholders; returns the JSON array and attachments.
fn encode_args(event: Option<&str>, args: Vec<Arg>) -> (String, Vec<Bytes>) {
    let mut bins = Vec::new();
    let mut arr = Vec::with_capacity(args.len() + 1);
    if let Some(e) = event {
        arr.push(Value::String(e.to_owned()));
    }
    for a in args {
        match a {
            Arg::Json(v) => arr.push(v),
            Arg::Bin(b) => {
                arr.push(serde_json::json!({ "_placeholder": true, "num": bins.len() }));
                bins.push(b);
            }
        }
    }
    (Value::Array(arr).to_string(), bins)
}

fn send_packet(
    out: &mpsc::UnboundedSender<Out>,
    nsp: &str,
    kind: PacketKind,
    event: Option<&str>,
    args: Vec<Arg>,
) -> Result<(), ClientError> {
    let (json, bins) = encode_args(event, args);
    let (plain, binary, id) = match kind {
        PacketKind::Event => ('2', '5', String::new()),
        PacketKind::Ack(id) => ('3', '6', id.to_string()),
    };
    let header = if bins.is_empty() {
        format!("4{plain}{}{id}{json}", nsp_prefix(nsp))
    } else {
        format!("4{binary}{}-{}{id}{json}", bins.len(), nsp_prefix(nsp))
    };
    queue(out, header, bins)
}

fn queue(
    out: &mpsc::UnboundedSender<Out>,
    header: String,
    bins: Vec<Bytes>,
) -> Result<(), ClientError> {
    let item = if bins.is_empty() {
        Out::Frame(Message::text(header))
    } else {
        let mut frames = Vec::with_capacity(bins.len() + 1);
        frames.push(Message::text(header));
        frames.extend(bins.into_iter().map(Message::Binary));
        Out::Packet(frames)
    };
    out.send(item).map_err(|_| ClientError::Closed)
}

fn send_event_with_id(
    out: &mpsc::UnboundedSender<Out>,
    nsp: &str,
    id: u64,
    event: &str,
    args: Vec<Arg>,
) -> Result<(), ClientError> {
    let (json, bins) = encode_args(Some(event), args);
    let header = if bins.is_empty() {
        format!("42{}{id}{json}", nsp_prefix(nsp))
    } else {
        format!("45{}-{}{id}{json}", bins.len(), nsp_prefix(nsp))
    };
    queue(out, header, bins)
}

/// A parsed Socket.IO packet waiting for its attachments.
struct Partial {
    kind: char,
    id: Option<u64>,
    json: Value,
    needed: usize,
    bins: Vec<Bytes>,
}

/// Parses `<type>[<n>-][/nsp,][<id>]<json>` (the leading engine.io `4` removed).
fn parse_packet(s: &str, nsp: &str) -> Option<Partial> {
    let mut chars = s.chars();
    let kind = chars.next()?;
    let mut rest = &s[1..];
    let mut needed = 0;
    if kind == '5' || kind == '6' {
        let dash = rest.find('-')?;
        needed = rest[..dash].parse().ok()?;
        rest = &rest[dash + 1..];
    }
    rest = strip_nsp(rest, nsp).1;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 {
        rest[..digits].parse().ok()
    } else {
        None
    };
    rest = &rest[digits..];
    let json = if rest.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(rest).ok()?
    };
    Some(Partial {
        kind,
        id,
        json,
        needed,
        bins: Vec::with_capacity(needed),
    })
}

/// Puts attachments back in place of their placeholders.
fn fill(v: Value, bins: &[Bytes]) -> Arg {
    if let Value::Object(m) = &v
        && m.get("_placeholder").and_then(Value::as_bool) == Some(true)
        && let Some(b) = m
            .get("num")
            .and_then(Value::as_u64)
            .and_then(|n| bins.get(n as usize))
    {
        return Arg::Bin(b.clone());
    }
    Arg::Json(v)
}

async fn read_loop<S>(
    stream: &mut S,
    out: &mpsc::UnboundedSender<Out>,
    in_tx: &mpsc::UnboundedSender<Incoming>,
    pending: &Pending,
    nsp: &Arc<str>,
) -> String
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut partial: Option<Partial> = None;
    loop {
        let msg = match stream.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return format!("transport error: {e}"),
            None => return "transport closed".into(),
        };
        match msg {
            Message::Text(t) => {
                let t = t.as_str();
                match t.as_bytes().first() {
                    Some(b'2') => {
                        let _ = out.send(Out::Frame(Message::text("3")));
                    }
                    Some(b'1') => return "server closed the connection".into(),
                    Some(b'4') => {
                        let Some(p) = parse_packet(&t[1..], nsp) else {
                            tracing::warn!(packet = t, "unparsable socket.io packet");
                            continue;
                        };
                        if p.kind == '1' {
                            return "server disconnected the socket".into();
                        }
                        if p.needed > 0 {
                            partial = Some(p);
                        } else {
                            dispatch(p, out, in_tx, pending, nsp);
                        }
                    }
                    _ => {}
                }
            }
            Message::Binary(b) => {
                if let Some(p) = partial.as_mut() {
                    p.bins.push(b);
                    if p.bins.len() >= p.needed {
                        let p = partial.take().expect("just matched");
                        dispatch(p, out, in_tx, pending, nsp);
                    }
                }
            }
            Message::Close(_) => return "websocket closed".into(),
            _ => {}
        }
    }
}

fn dispatch(
    p: Partial,
    out: &mpsc::UnboundedSender<Out>,
    in_tx: &mpsc::UnboundedSender<Incoming>,
    pending: &Pending,
    nsp: &Arc<str>,
) {
    let received = std::time::Instant::now();
    let items = match p.json {
        Value::Array(a) => a,
        other => vec![other],
    };
    match p.kind {
        '2' | '5' => {
            let mut it = items.into_iter();
            let name = match it.next() {
                Some(Value::String(s)) => s,
                _ => return,
            };
            let args = it.map(|v| fill(v, &p.bins)).collect();
            let ack = p.id.map(|id| AckReplier {
                id,
                out: out.clone(),
                nsp: nsp.clone(),
                yws: None,
            });
            let _ = in_tx.send(Incoming::Event(Event {
                name,
                args,
                ack,
                received,
            }));
        }
        '3' | '6' => {
            let args = items.into_iter().map(|v| fill(v, &p.bins)).collect();
            match p.id.and_then(|id| {
                pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id)
            }) {
                Some(tx) => {
                    let _ = tx.send(args);
                }
                None => tracing::warn!(id = ?p.id, "ack for no pending request"),
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_events_with_namespace_and_ack_id() {
        let p = parse_packet(
            r#"51-/yjs|d,7["sync-step-1",{"_placeholder":true,"num":0}]"#,
            "/yjs|d",
        )
        .unwrap();
        assert_eq!((p.kind, p.id, p.needed), ('5', Some(7), 1));
        let p = parse_packet(r#"2["user-joined",{"a":1}]"#, "/").unwrap();
        assert_eq!((p.kind, p.id, p.needed), ('2', None, 0));
        let p = parse_packet(r#"312[{"ok":true}]"#, "/").unwrap();
        assert_eq!((p.kind, p.id), ('3', Some(12)));
    }

    #[test]
    fn encodes_placeholders() {
        let (json, bins) = encode_args(
            Some("yjs-update"),
            vec![Arg::json("s1"), Arg::bin(vec![1u8, 2])],
        );
        assert_eq!(json, r#"["yjs-update","s1",{"_placeholder":true,"num":0}]"#);
        assert_eq!(bins.len(), 1);
        assert_eq!(
            fill(serde_json::json!({"_placeholder": true, "num": 0}), &bins),
            Arg::Bin(Bytes::from_static(&[1, 2]))
        );
    }
}
