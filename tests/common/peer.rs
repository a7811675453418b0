//! A native-dialect peer for tests: a real Socket.IO connection plus a local
//! yrs document kept in sync the way the web editor does (answers the
//! server's sync-step-1, applies incoming updates, sends its own edits).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tandem::client::{Arg, Client, ClientError, Event, Incoming};
use tokio::sync::mpsc;
use yrs::sync::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, TextRef, Transact, Update};

pub const T: Duration = Duration::from_secs(5);

pub struct Peer {
    pub client: Client,
    pub doc: Doc,
    pub text: TextRef,
    /// Awareness states as this peer sees them.
    pub awareness: Arc<Mutex<Awareness>>,
    /// Every event other than Yjs sync traffic, for assertions.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// `yjs-update` events received.
    pub received: Arc<std::sync::atomic::AtomicUsize>,
}

impl Peer {
    /// Connects to `/` with `{ token }` (or no auth).
    pub async fn connect(url: &str, token: Option<&str>) -> Result<Peer, ClientError> {
        let auth = token.map(|t| json!({ "token": t }));
        let (client, rx) = Client::connect(url, "/", auth).await?;
        Ok(Self::spawn(client, rx, Doc::new()))
    }

    /// Like [`connect`](Self::connect) with a document that already has content (offline edits).
    pub async fn connect_with_doc(url: &str, token: &str, doc: Doc) -> Result<Peer, ClientError> {
        let (client, rx) = Client::connect(url, "/", Some(json!({ "token": token }))).await?;
        Ok(Self::spawn(client, rx, doc))
    }

    fn spawn(client: Client, mut rx: mpsc::UnboundedReceiver<Incoming>, doc: Doc) -> Peer {
        let text = doc.get_or_insert_text("monaco");
        let awareness = Arc::new(Mutex::new(Awareness::new(Doc::new())));
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (d, a) = (doc.clone(), awareness.clone());
        let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let recv = received.clone();
        tokio::spawn(async move {
            while let Some(inc) = rx.recv().await {
                let ev = match inc {
                    Incoming::Event(ev) => ev,
                    Incoming::Disconnected { reason } => {
                        eprintln!("peer disconnected: {reason}");
                        break;
                    }
                };
                match ev.name.as_str() {
                    "yjs-update" => {
                        recv.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Some(b) = ev.args.get(1).and_then(Arg::as_bin) {
                            d.transact_mut()
                                .apply_update(Update::decode_v1(b).unwrap())
                                .unwrap();
                        }
                    }
                    "yjs-sync-step-1" => {
                        let sv = ev
                            .args
                            .get(1)
                            .and_then(Arg::as_bin)
                            .cloned()
                            .unwrap_or_default();
                        let diff = d
                            .transact()
                            .encode_state_as_update_v1(&StateVector::decode_v1(&sv).unwrap());
                        if let Some(ack) = ev.ack {
                            let _ = ack.reply(vec![Arg::bin(diff)]);
                        }
                        let _ = ev_tx.send(Event {
                            name: ev.name,
                            args: vec![],
                            ack: None,
                            received: ev.received,
                        });
                    }
                    "yjs-awareness" => {
                        if let Some(b) = ev.args.get(1).and_then(Arg::as_bin) {
                            let u = AwarenessUpdate::decode_v1(b).unwrap();
                            a.lock().unwrap().apply_update(u).unwrap();
                        }
                        let _ = ev_tx.send(ev);
                    }
                    _ => {
                        let _ = ev_tx.send(ev);
                    }
                }
            }
        });
        Peer {
            client,
            doc,
            text,
            awareness,
            events,
            received,
        }
    }

    /// `join-session`, then fetch the server's state (own sync step 1). Returns the ack.
    /// Users `a` and `b`, connected to `srv` and joined to `session`.
    pub async fn pair(srv: &super::TestServer, session: &str) -> (Peer, Peer) {
        let mut peers = Vec::new();
        for user in ["a", "b"] {
            let p = Peer::connect(&srv.url, Some(&srv.token(user, &[])))
                .await
                .unwrap();
            p.join(session).await;
            peers.push(p);
        }
        let b = peers.pop().unwrap();
        (peers.pop().unwrap(), b)
    }

    pub async fn join(&self, session: &str) -> Value {
        let ack = self
            .client
            .emit_with_ack(
                "join-session",
                vec![Arg::json(json!({ "sessionId": session }))],
                T,
            )
            .await
            .unwrap();
        let reply = ack[0].as_json().unwrap().clone();
        if reply["ok"] == true {
            self.pull(session).await;
        }
        reply
    }

    /// Asks the server for what this peer lacks and applies it.
    pub async fn pull(&self, session: &str) {
        let sv = self.doc.transact().state_vector().encode_v1();
        let ack = self
            .client
            .emit_with_ack("yjs-sync-step-1", vec![Arg::json(session), Arg::bin(sv)], T)
            .await
            .unwrap();
        if let Some(b) = ack[0].as_bin() {
            self.doc
                .transact_mut()
                .apply_update(Update::decode_v1(b).unwrap())
                .unwrap();
        }
    }

    /// Makes a local edit and returns its update (not sent).
    pub fn edit(&self, f: impl FnOnce(&TextRef, &mut yrs::TransactionMut)) -> Bytes {
        let mut txn = self.doc.transact_mut();
        f(&self.text, &mut txn);
        Bytes::from(txn.encode_update_v1())
    }

    /// A random insert or delete (deterministic from `r`).
    pub fn random_edit(&self, r: u64) -> Bytes {
        self.edit(|t, txn| {
            let len = t.len(txn);
            if len > 10 && r.is_multiple_of(3) {
                let pos = (r / 7) as u32 % (len - 1);
                t.remove_range(txn, pos, 1 + (r as u32 % 3).min(len - pos - 1));
            } else {
                let pos = if len == 0 {
                    0
                } else {
                    (r / 5) as u32 % (len + 1)
                };
                t.insert(txn, pos, &format!("{}", (b'a' + (r % 26) as u8) as char));
            }
        })
    }

    /// Sends an update; with `ack`, returns the reply.
    pub async fn send_update(&self, session: &str, update: Bytes, ack: bool) -> Option<Value> {
        let args = vec![Arg::json(session), Arg::bin(update)];
        if ack {
            let r = self
                .client
                .emit_with_ack("yjs-update", args, T)
                .await
                .unwrap();
            Some(r[0].as_json().cloned().unwrap_or(Value::Null))
        } else {
            self.client.emit("yjs-update", args).unwrap();
            None
        }
    }

    /// `chat-message` with an ack: the reply.
    pub async fn chat(&self, session: &str, content: &str) -> Value {
        let r = self
            .client
            .emit_with_ack(
                "chat-message",
                vec![Arg::json(
                    json!({ "sessionId": session, "content": content }),
                )],
                T,
            )
            .await
            .unwrap();
        r[0].as_json().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// Waits for the next event named `name` (others are dropped).
    pub async fn expect_event(&mut self, name: &str) -> Event {
        self.expect_event_within(name, T).await
    }

    /// Like [`expect_event`](Self::expect_event) with its own time limit.
    pub async fn expect_event_within(&mut self, name: &str, limit: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if e.name == name => return e,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("connection ended while waiting for {name}"),
                Err(_) => panic!("no {name} event within {limit:?}"),
            }
        }
    }

    /// Asserts that no event named `name` arrives within `d`.
    pub async fn expect_no_event(&mut self, name: &str, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if e.name == name => panic!("unexpected {name}: {:?}", e.args),
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    }
}

/// `n` random edits (deterministic from `seed`), each sent with an ack and
/// waited for; every ack must be `ok`.
pub async fn edit_and_ack(p: &Peer, session: &str, n: usize, seed: u64) {
    let mut rng = Rng(seed);
    for _ in 0..n {
        let u = p.random_edit(rng.next());
        let reply = p.send_update(session, u, true).await.unwrap();
        assert_eq!(reply["ok"], true, "{reply}");
    }
}

/// Polls `f` every 20 ms until it is true, or panics after `within`.
pub async fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `error.code` of an `{ ok: false, error }` reply or an `error` event payload.
pub fn code(v: &Value) -> &str {
    v.get("error")
        .unwrap_or(v)
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A tiny deterministic PRNG (splitmix64) for reproducible random edits.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
