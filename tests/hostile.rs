//! Issue 10's reproduced defects, each through the real interfaces (sockets
//! of both dialects, HTTP, the Engine.IO transports) against a real server on
//! port 0. Every test here failed on the code before the fixes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::peer::{Peer, T, code, eventually};
use common::{Backend, TestServer};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tandem::client::{Arg, Client};
use tandem::model::Role;
use tokio_tungstenite::tungstenite::Message;
use yrs::sync::Awareness;
use yrs::updates::encoder::Encode;
use yrs::{Doc, Map, MapPrelim, Text, Transact, WriteTxn};

// ---- helpers -------------------------------------------------------------

async fn http_json(
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A public session owned by `owner`, with the given public role.
async fn public_session(srv: &TestServer, owner: &str, public_role: &str) -> String {
    let (status, s) = http_json(
        reqwest::Method::POST,
        &format!("{}/api/sessions", srv.url),
        &srv.token(owner, &[]),
        Some(json!({ "public": true, "publicRole": public_role })),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    s["id"].as_str().unwrap().to_owned()
}

async fn post_update(
    srv: &TestServer,
    token: &str,
    session: &str,
    update: Vec<u8>,
) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/sessions/{session}/update", srv.url))
        .bearer_auth(token)
        .body(update)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Users listed as online in the session.
async fn online(srv: &TestServer, token: &str, session: &str) -> Vec<String> {
    let (_, s) = http_json(
        reqwest::Method::GET,
        &format!("{}/api/sessions/{session}", srv.url),
        token,
        None,
    )
    .await;
    s["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["online"] == true)
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

/// An update creating a chain of `depth` nested `Y.Map`s under root map
/// `m`, and the update deleting its outermost map.
fn nested_chain(depth: usize, client: u64) -> (Vec<u8>, Vec<u8>) {
    // Built on a big stack: yrs itself recurses over the chain.
    std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || {
            let d = Doc::with_client_id(client);
            let chain = {
                let mut txn = d.transact_mut();
                let root = txn.get_or_insert_map("m");
                let mut cur = root.insert(&mut txn, "k", MapPrelim::default());
                for _ in 1..depth {
                    cur = cur.insert(&mut txn, "k", MapPrelim::default());
                }
                txn.encode_update_v1()
            };
            let delete = {
                let mut txn = d.transact_mut();
                txn.get_or_insert_map("m").remove(&mut txn, "k");
                txn.encode_update_v1()
            };
            (chain, delete)
        })
        .unwrap()
        .join()
        .unwrap()
}

// ---- defect 1: nesting that overflows the stack --------------------------

/// A 10,000-level chain of nested maps, sent over HTTP and over a native
/// socket, followed by the delete of its outermost map, used to abort the
/// process. It is refused, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_refused_and_the_server_survives() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let id = public_session(&srv, "owner", "editor").await;
    let token = srv.token("owner", &[]);
    let (chain, delete) = nested_chain(10_000, 41);
    let (status, body) = post_update(&srv, &token, &id, chain.clone()).await;
    assert_eq!((status, code(&body)), (400, "INVALID_UPDATE"), "{body}");
    let (status, body) = post_update(&srv, &token, &id, delete.clone()).await;
    assert!(status < 500, "{status} {body}");

    let peer = Peer::connect(&srv.url, Some(&token)).await.unwrap();
    peer.join(&id).await;
    let r = peer
        .send_update(&id, Bytes::from(chain), true)
        .await
        .unwrap();
    assert_eq!(code(&r), "INVALID_UPDATE", "{r}");
    peer.send_update(&id, Bytes::from(delete), true).await;

    // The chain built over many small updates stops at the limit (256).
    let d = Doc::with_client_id(42);
    let root = d.get_or_insert_map("n");
    let mut cur: Option<yrs::MapRef> = None;
    let mut refused_at = None;
    for level in 0..300 {
        let u = {
            let mut txn = d.transact_mut();
            let next = match &cur {
                None => root.insert(&mut txn, "k", MapPrelim::default()),
                Some(m) => m.insert(&mut txn, "k", MapPrelim::default()),
            };
            cur = Some(next);
            txn.encode_update_v1()
        };
        let r = peer.send_update(&id, Bytes::from(u), true).await.unwrap();
        if r["ok"] != true {
            assert_eq!(code(&r), "INVALID_UPDATE", "{r}");
            refused_at = Some(level);
            break;
        }
    }
    let level = refused_at.expect("a 300-level chain was accepted");
    assert!((200..=256).contains(&level), "refused at level {level}");

    // Deep JSON content (yrs decodes it recursively) is refused too.
    let mut deep_json = vec![1u8, 1, 9, 0, 8, 1, 1, b'x', 1];
    deep_json.extend(std::iter::repeat_n([117u8, 1], 200_000).flatten());
    deep_json.extend([126, 0]);
    let (status, body) = post_update(&srv, &token, &id, deep_json).await;
    assert_eq!((status, code(&body)), (400, "INVALID_UPDATE"), "{body}");

    // Still serving, and a normal edit goes through.
    let edit = peer.edit(|t, txn| t.insert(txn, 0, "alive"));
    let r = peer.send_update(&id, edit, true).await.unwrap();
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(srv.get_text(&id, &token).await, "alive");
}

// ---- defect 3: the closer registry ---------------------------------------

/// Engine.IO handshake over long-polling; returns the session id.
async fn polling_handshake(url: &str) -> String {
    let body = reqwest::get(format!("{url}/socket.io/?EIO=4&transport=polling"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

/// A request naming another client's engine.io session on any path must not
/// take over that client's entry: a later slow-consumer kick of the client
/// must still close the client's own connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_sid_does_not_take_over_the_closer() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let sid = polling_handshake(&srv.url).await;
    let hostport = srv.url.trim_start_matches("http://").to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{hostport}/socket.io/?EIO=4&transport=websocket&sid={sid}"
    ))
    .await
    .unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) if t.as_str() == "3probe" => break,
            _ => continue,
        }
    }
    ws.send(Message::text("5")).await.unwrap();
    eventually(T, "the upgrade registers its closer", || {
        tandem::net::closer_for(&sid).is_some()
    })
    .await;

    // The attacker names the victim's sid, on a keep-alive connection.
    let attacker = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()
        .unwrap();
    for path in ["/healthz", "/socket.io/", "/api/sessions"] {
        let _ = attacker
            .get(format!(
                "{}{path}?EIO=4&transport=websocket&sid={sid}",
                srv.url
            ))
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .send()
            .await;
    }
    assert!(tandem::net::closer_for(&sid).unwrap().close());
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the kick closed someone else's connection");
}

// ---- defect 4: ghost participants ----------------------------------------

/// Joins followed at once by a disconnect (native), and y-socket.io
/// connections dropped while their connect middleware awaits the database,
/// leave nobody listed as online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ghost_participants_after_joins_racing_disconnects() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let id = public_session(&srv, "owner", "editor").await;
    let owner = srv.token("owner", &[]);
    for i in 0..40 {
        let c = Peer::connect(&srv.url, Some(&srv.token(&format!("n{i}"), &[])))
            .await
            .unwrap();
        c.client
            .emit("join-session", vec![Arg::json(json!({ "sessionId": id }))])
            .unwrap();
        c.client.kill();
    }
    let hostport = srv.url.trim_start_matches("http://").to_owned();
    for i in 0..40 {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!(
            "ws://{hostport}/socket.io/?EIO=4&transport=websocket"
        ))
        .await
        .unwrap();
        let _open = ws.next().await;
        let auth = json!({ "token": srv.token(&format!("y{i}"), &[]) });
        ws.send(Message::text(format!("40/yjs|{id},{auth}")))
            .await
            .unwrap();
        drop(ws);
    }
    let mut last = Vec::new();
    for _ in 0..100 {
        last = online(&srv, &owner, &id).await;
        if last.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last.is_empty(), "ghosts listed as online: {last:?}");
    // The document still serves a real client, who is listed.
    let p = Peer::connect(&srv.url, Some(&owner)).await.unwrap();
    p.join(&id).await;
    assert_eq!(online(&srv, &owner, &id).await, vec!["owner".to_string()]);
}

// ---- defect 7: partial apply ---------------------------------------------

/// yrs integrates the first struct of this update and fails on the second
/// (its parent is a text run, not a type): the change that did happen is
/// relayed and logged, the sender still hears INVALID_UPDATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partially_applied_update_is_relayed_and_logged() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let id = public_session(&srv, "owner", "editor").await;
    let token = srv.token("owner", &[]);
    let mut watcher = Peer::connect(&srv.url, Some(&srv.token("w", &[])))
        .await
        .unwrap();
    watcher.join(&id).await;
    let x = {
        let d = Doc::with_client_id(7);
        let t = d.get_or_insert_text("monaco");
        let mut txn = d.transact_mut();
        t.insert(&mut txn, 0, "x");
        txn.encode_update_v1()
    };
    assert_eq!(post_update(&srv, &token, &id, x).await.0, 200);
    // client 99: "V" after (7,0), then "W" whose parent is (7,0).
    let crafted = vec![
        1, 2, 99, 0, // one client, two structs, client 99 from clock 0
        0x84, 7, 0, 1, b'V', // origin (7,0), string "V"
        0x04, 0, 7, 0, 1, b'W', // parent id (7,0), string "W"
        0,    // empty delete set
    ];
    let (status, body) = post_update(&srv, &token, &id, crafted).await;
    assert_eq!((status, code(&body)), (400, "INVALID_UPDATE"), "{body}");
    let text = srv.get_text(&id, &token).await;
    assert_eq!(text, "xV", "the part yrs applied");
    eventually(T, "the watcher receives the applied part", || {
        watcher.text() == text
    })
    .await;
    let _ = watcher
        .expect_no_event("nothing", Duration::from_millis(1))
        .await;
    // Logged: it survives a restart.
    let config = srv.config.clone();
    let dir = srv.dir.clone();
    drop(watcher);
    srv.stop().await.unwrap();
    let srv = TestServer::start_with(config, dir).await;
    assert_eq!(srv.get_text(&id, &token).await, "xV");
}

// ---- defect 9: guest impersonation ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_ids_are_not_socket_ids() {
    let srv = TestServer::start(Backend::Sqlite, |c| {
        c.anonymous = tandem::config::Anonymous::Editor;
    })
    .await;
    let id = public_session(&srv, "owner", "editor").await;
    let guest = Peer::connect(&srv.url, None).await.unwrap();
    let ack = guest.join(&id).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ids: Vec<&str> = ack["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(ids[0].starts_with("anon:"), "{ids:?}");
    assert!(
        !ids[0].contains(guest.client.sid()),
        "the guest's id reveals its socket id: {ids:?}"
    );
}

// ---- defect 10: roles ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_reapplied_per_connection() {
    let srv = TestServer::start(Backend::Sqlite, |c| {
        c.anonymous = tandem::config::Anonymous::Editor;
    })
    .await;
    let id = public_session(&srv, "owner", "editor").await;
    let owner = srv.token("owner", &[]);
    let session_url = format!("{}/api/sessions/{id}", srv.url);

    // publicRole owner is not a thing.
    let (status, body) = http_json(
        reqwest::Method::PATCH,
        &session_url,
        &owner,
        Some(json!({ "publicRole": "owner" })),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "INVALID_PAYLOAD"), "{body}");

    // A guest follows the public role.
    let guest = Peer::connect(&srv.url, None).await.unwrap();
    guest.join(&id).await;
    let e = guest.edit(|t, txn| t.insert(txn, 0, "g"));
    assert_eq!(guest.send_update(&id, e, true).await.unwrap()["ok"], true);
    let (status, _) = http_json(
        reqwest::Method::PATCH,
        &session_url,
        &owner,
        Some(json!({ "publicRole": "viewer" })),
    )
    .await;
    assert_eq!(status, 200);
    let e = guest.edit(|t, txn| t.insert(txn, 0, "h"));
    let r = guest.send_update(&id, e, true).await.unwrap();
    assert_eq!(code(&r), "FORBIDDEN", "the guest kept editing: {r}");

    // One user, two connections: a token pinning viewer, and a normal one
    // with an editor row. Each keeps its own role, in either order.
    let (status, _) = http_json(
        reqwest::Method::PUT,
        &format!("{session_url}/participants/pat"),
        &owner,
        Some(json!({ "role": "editor" })),
    )
    .await;
    assert_eq!(status, 204);
    let pinned = Peer::connect(&srv.url, Some(&srv.token("pat", &[(&id, Role::Viewer)])))
        .await
        .unwrap();
    pinned.join(&id).await;
    let normal = Peer::connect(&srv.url, Some(&srv.token("pat", &[])))
        .await
        .unwrap();
    normal.join(&id).await;
    let e = pinned.edit(|t, txn| t.insert(txn, 0, "p"));
    let r = pinned.send_update(&id, e, true).await.unwrap();
    assert_eq!(
        code(&r),
        "FORBIDDEN",
        "a pinned viewer connection edited: {r}"
    );
    let e = normal.edit(|t, txn| t.insert(txn, 0, "n"));
    let r = normal.send_update(&id, e, true).await.unwrap();
    assert_eq!(r["ok"], true, "{r}");
    // Rejoining the pinned connection after the normal one changes nothing.
    pinned.join(&id).await;
    let r = normal
        .send_update(&id, normal.edit(|t, txn| t.insert(txn, 0, "m")), true)
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r}");
}

// ---- defect 11: awareness abuse ------------------------------------------

fn awareness_update(client: u64, state: &str) -> Bytes {
    let mut a = Awareness::new(Doc::with_client_id(client));
    a.set_local_state_raw(state);
    Bytes::from(a.update().unwrap().encode_v1())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awareness_is_limited_and_cannot_be_forged() {
    let srv = TestServer::start(Backend::Sqlite, |c| c.awareness_per_second = 1000).await;
    let id = public_session(&srv, "owner", "viewer").await;
    let (a, b) = Peer::pair(&srv, &id).await;
    let send = |p: &Peer, bytes: Bytes| {
        let c = p.client.clone();
        let id = id.clone();
        async move {
            let r = c
                .emit_with_ack("yjs-awareness", vec![Arg::json(&id), Arg::bin(bytes)], T)
                .await
                .unwrap();
            r[0].as_json().cloned().unwrap()
        }
    };
    // At most 8 client ids per connection.
    let mut refused = None;
    for client in 1000..1020u64 {
        let r = send(&a, awareness_update(client, r#"{"user":"a"}"#)).await;
        if r["ok"] != true {
            assert_eq!(code(&r), "INVALID_UPDATE", "{r}");
            refused = Some(client - 1000);
            break;
        }
    }
    assert_eq!(refused, Some(8), "client ids accepted beyond the limit");
    // At most 8 KiB per state.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(10_000));
    let r = send(&b, awareness_update(2000, &big)).await;
    assert_eq!(
        code(&r),
        "INVALID_UPDATE",
        "a 10 KB state was accepted: {r}"
    );
    // b cannot overwrite or remove a's client 1000.
    let mut forged = Awareness::new(Doc::with_client_id(1000));
    for _ in 0..5 {
        forged.set_local_state_raw(r#"{"user":"forged"}"#);
    }
    let r = send(&b, Bytes::from(forged.update().unwrap().encode_v1())).await;
    assert_eq!(
        code(&r),
        "INVALID_UPDATE",
        "a forged state was accepted: {r}"
    );
    b.client.close();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = Peer::connect(&srv.url, Some(&srv.token("c", &[])))
        .await
        .unwrap();
    c.join(&id).await;
    eventually(T, "a's states reach a late joiner, unforged", || {
        let aw = c.awareness.lock().unwrap();
        aw.iter().any(|(id, st)| {
            id == yrs::ClientID::new(1000)
                && st.data.as_deref().is_some_and(|d| d.contains("\"a\""))
        })
    })
    .await;
}

// ---- defect 12: re-join floods -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoins_are_throttled_and_resyncs_count_against_the_budget() {
    // Joins throttled per socket.
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let id = public_session(&srv, "owner", "editor").await;
    let p = Peer::connect(&srv.url, Some(&srv.token("j", &[])))
        .await
        .unwrap();
    let mut limited = 0;
    for _ in 0..40 {
        let ack = p
            .client
            .emit_with_ack(
                "join-session",
                vec![Arg::json(json!({ "sessionId": id }))],
                T,
            )
            .await
            .unwrap();
        let ack = ack[0].as_json().unwrap();
        if code(ack) == "RATE_LIMITED" {
            assert!(ack["error"]["retryAfterMs"].as_u64().unwrap() > 0);
            limited += 1;
        }
    }
    assert!(
        limited >= 20,
        "only {limited} of 40 instant re-joins throttled"
    );

    // Every resync reply that the server applies counts against the update
    // budget (2/s here): re-joins do not open a side door.
    let srv = TestServer::start(Backend::Sqlite, |c| {
        c.updates_per_second = 2;
        c.update_burst = 2;
        c.joins_per_second = 10_000;
    })
    .await;
    let id = public_session(&srv, "owner", "editor").await;
    let (a, b) = Peer::pair(&srv, &id).await;
    // Local content the server lacks: every sync-step-1 reply carries it.
    a.edit(|t, txn| t.insert(txn, 0, "unsent"));
    let before = b.received.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..40 {
        a.client
            .emit_with_ack(
                "join-session",
                vec![Arg::json(json!({ "sessionId": id }))],
                T,
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let relayed = b.received.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        (1..=8).contains(&relayed),
        "{relayed} resync replies applied in ~1.5 s against a budget of 2/s"
    );
    eventually(T, "b converges", || b.text() == "unsent").await;
}

// ---- defect 13: long-polling handshakes without a follow-up ---------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_polling_handshakes_are_released() {
    let srv = TestServer::start(Backend::Sqlite, |c| c.connect_timeout_secs = 1).await;
    let mut sids = Vec::new();
    for _ in 0..100 {
        sids.push(polling_handshake(&srv.url).await);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut alive = 0;
    for sid in &sids {
        let r = http
            .get(format!(
                "{}/socket.io/?EIO=4&transport=polling&sid={sid}",
                srv.url
            ))
            .send()
            .await;
        if !matches!(r, Ok(ref r) if r.status() == 400) {
            alive += 1;
        }
    }
    assert_eq!(alive, 0, "{alive} of 100 idle handshakes still held");
}

// ---- defect 14: long-polling slow consumers ------------------------------

/// A long-polling client that stops polling while its session keeps
/// receiving edits: once its queue is full, its engine.io session is closed
/// (the others hear `user-left`), instead of the client silently missing
/// updates while still connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_polling_client_is_disconnected() {
    let srv = TestServer::start(Backend::Sqlite, |c| {
        c.socket_buffer = 16;
        c.updates_per_second = 10_000;
        c.update_burst = 10_000;
    })
    .await;
    let id = public_session(&srv, "owner", "editor").await;
    let http = reqwest::Client::new();
    let sid = polling_handshake(&srv.url).await;
    let poll_url = format!("{}/socket.io/?EIO=4&transport=polling&sid={sid}", srv.url);
    let post = |body: String| {
        let (http, url) = (http.clone(), poll_url.clone());
        async move {
            let r = http
                .post(url)
                .header("content-type", "text/plain;charset=UTF-8")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
        }
    };
    let auth = json!({ "token": srv.token("slow", &[]) });
    // Polls until a packet matching `want` arrives, answering pings (on a
    // busy machine a ping may come first).
    let poll_for = async |want: &dyn Fn(&str) -> bool| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = common::get_text(&http, &poll_url).await;
            if got.split('\x1e').any(want) {
                return;
            }
            if got.split('\x1e').any(|p| p == "2") {
                post("3".into()).await;
            }
            assert!(tokio::time::Instant::now() < deadline, "last poll: {got}");
        }
    };
    post(format!("40{auth}")).await;
    poll_for(&|p| p.starts_with("40{")).await;
    post(format!(r#"420["join-session",{{"sessionId":"{id}"}}]"#)).await;
    poll_for(&|p| p.contains("\"ok\":true")).await;

    let mut editor = Peer::connect(&srv.url, Some(&srv.token("fast", &[])))
        .await
        .unwrap();
    editor.join(&id).await;
    // The polling client now stops reading; edits keep coming.
    for i in 0..200u32 {
        let e = editor.edit(|t, txn| t.insert(txn, 0, &format!("{i}")));
        editor.send_update(&id, e, false).await;
    }
    let left = editor
        .expect_event_within("user-left", Duration::from_secs(5))
        .await;
    assert_eq!(left.args[0].as_json().unwrap()["userId"], "slow");
    let r = http.get(&poll_url).send().await.unwrap();
    assert_eq!(r.status(), 400, "the engine.io session is gone");
}

// ---- defect 15: the minor ones -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minor_defects() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let http = reqwest::Client::new();
    // The guest sign-in limit says what it limits.
    let mut last = None;
    for _ in 0..8 {
        let r = http
            .post(format!("{}/api/auth/guest", srv.url))
            .json(&json!({ "name": "g" }))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            last = Some(r.json::<Value>().await.unwrap());
            break;
        }
    }
    let body = last.expect("guest sign-in is rate limited");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(!msg.contains("update"), "{msg}");

    // `nbf` is checked.
    let claims = json!({ "sub": "u", "name": "U", "exp": chrono::Utc::now().timestamp() + 3600,
        "nbf": chrono::Utc::now().timestamp() + 600 });
    let early = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(common::SECRET.as_bytes()),
    )
    .unwrap();
    let (status, _) = http_json(
        reqwest::Method::GET,
        &format!("{}/api/sessions", srv.url),
        &early,
        None,
    )
    .await;
    assert_eq!(status, 401, "a token used before its nbf was accepted");
    assert!(
        Peer::connect(&srv.url, Some(&early)).await.is_err(),
        "socket accepted a token before its nbf"
    );

    // INVALID_PAYLOAD messages carry no serde internals.
    let owner = srv.token("owner", &[]);
    let (status, body) = http_json(
        reqwest::Method::POST,
        &format!("{}/api/sessions", srv.url),
        &owner,
        Some(json!({ "title": 5 })),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "INVALID_PAYLOAD"));
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        !msg.contains("invalid type") && !msg.contains("line") && !msg.contains("column"),
        "{msg}"
    );

    // Earlier visitors of a public session are not listed with its role;
    // a user granted a role before ever joining has a name.
    let id = public_session(&srv, "owner", "editor").await;
    let visitor = Peer::connect(&srv.url, Some(&srv.token("visitor", &[])))
        .await
        .unwrap();
    visitor.join(&id).await;
    visitor.client.close();
    let (status, _) = http_json(
        reqwest::Method::PUT,
        &format!("{}/api/sessions/{id}/participants/newbie", srv.url),
        &owner,
        Some(json!({ "role": "viewer" })),
    )
    .await;
    assert_eq!(status, 204);
    let mut listed = Value::Null;
    for _ in 0..50 {
        let (_, s) = http_json(
            reqwest::Method::GET,
            &format!("{}/api/sessions/{id}", srv.url),
            &owner,
            None,
        )
        .await;
        listed = s["participants"].clone();
        if listed
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["online"] != true)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["newbie", "owner"], "{listed}");
    assert_eq!(listed[0]["name"], "newbie", "{listed}");
}

/// A y-socket.io client connects over the project's own client (drop-in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ysocketio_refusals_keep_their_codes() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let id = public_session(&srv, "owner", "editor").await;
    let long = format!("/yjs|{}", "a".repeat(100_000));
    for (ns, token, want) in [
        (
            long.as_str(),
            Some(srv.token("u", &[])),
            "INVALID_SESSION_ID",
        ),
        (
            "/yjs|no-such-session",
            Some(srv.token("u", &[])),
            "SESSION_NOT_FOUND",
        ),
        (&format!("/yjs|{id}") as &str, None, "UNAUTHORIZED"),
    ] {
        let err = Client::connect(&srv.url, ns, token.map(|t| json!({ "token": t })))
            .await
            .unwrap_err();
        assert!(err.to_string().ends_with(want), "{ns:.40}: {err}");
    }
}

// ---- defect 6: an update racing a leave and eviction ----------------------

/// A native `yjs-update` racing the socket's own `leave-session` while
/// another session's load evicts the document: an acknowledged update must
/// be in the document whoever loads it next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_updates_survive_a_leave_racing_eviction() {
    let srv = TestServer::start(Backend::Sqlite, |c| {
        c.max_loaded_documents = 1;
        c.joins_per_second = 10_000;
    })
    .await;
    let s1 = public_session(&srv, "owner", "editor").await;
    let s2 = public_session(&srv, "owner", "editor").await;
    let p = Peer::connect(&srv.url, Some(&srv.token("p", &[])))
        .await
        .unwrap();
    let q = Client::connect(&srv.url, "/", Some(json!({ "token": srv.token("q", &[]) })))
        .await
        .unwrap()
        .0;
    let mut acked = Vec::new();
    for i in 0..60 {
        p.join(&s1).await;
        let e = p.edit(|t, txn| {
            let n = t.len(txn);
            t.insert(txn, n, &format!("<{i}>"))
        });
        let update = p
            .client
            .emit_with_ack("yjs-update", vec![Arg::json(&s1), Arg::bin(e)], T);
        p.client
            .emit("leave-session", vec![Arg::json(json!({ "sessionId": s1 }))])
            .unwrap();
        let evict = q.emit_with_ack(
            "join-session",
            vec![Arg::json(json!({ "sessionId": s2 }))],
            T,
        );
        let (r, _) = tokio::join!(update, evict);
        q.emit("leave-session", vec![Arg::json(json!({ "sessionId": s2 }))])
            .unwrap();
        if r.unwrap()[0].as_json().unwrap()["ok"] == true {
            acked.push(i);
        }
    }
    assert!(!acked.is_empty());
    let text = srv.get_text(&s1, &srv.token("owner", &[])).await;
    for i in acked {
        assert!(
            text.contains(&format!("<{i}>")),
            "acked edit {i} lost: {text}"
        );
    }
}
