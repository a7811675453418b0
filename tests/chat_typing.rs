//! Sessions, people and chat over real sockets (issue 5): chat reach and
//! history, typing indicators, and role changes / deletion reaching sockets
//! that are already connected.

mod common;

use std::time::{Duration, Instant};

use common::peer::{Peer, code};
use common::{Backend, TestServer};
use serde_json::{Value, json};
use tandem::client::Arg;
use tandem::client::{Client, ClientError, Incoming};
use yrs::Text;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reaches_members_only_and_survives_a_restart() {
    for b in common::backends() {
        chat_round(b).await;
    }
}

async fn chat_round(backend: Backend) {
    let srv = TestServer::start(backend, |c| c.on_demand_sessions = true).await;
    let mut a = Peer::connect(&srv.url, Some(&srv.token("a", &[])))
        .await
        .unwrap();
    let mut b = Peer::connect(&srv.url, Some(&srv.token("b", &[])))
        .await
        .unwrap();
    let mut outsider = Peer::connect(&srv.url, Some(&srv.token("o", &[])))
        .await
        .unwrap();
    a.join("room").await;
    b.join("room").await;
    outsider.join("elsewhere").await;

    let evil = "<script>alert('x')</script> & \"quotes\" ünïcödé";
    let reply = a.chat("room", &format!("  {evil}\n")).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        reply["message"]["content"], evil,
        "trimmed, otherwise byte-identical"
    );
    assert_eq!(reply["message"]["userName"], "A");
    for p in [&mut a, &mut b] {
        let e = p.expect_event("chat-message").await;
        assert_eq!(e.args[0].as_json().unwrap()["content"], evil);
    }
    outsider
        .expect_no_event("chat-message", Duration::from_millis(300))
        .await;

    // History comes back in the join ack, after a restart too.
    let (config, dir) = (srv.config.clone(), srv.dir.clone());
    drop((a, b, outsider));
    srv.stop().await.unwrap();
    let srv = TestServer::start_with(config, dir).await;
    let c = Peer::connect(&srv.url, Some(&srv.token("c", &[])))
        .await
        .unwrap();
    let joined = c.join("room").await;
    let history = joined["chat"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{backend:?}");
    assert_eq!(
        history[0]["content"].as_str().unwrap().as_bytes(),
        evil.as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_clears_after_five_seconds_and_on_disconnect() {
    let srv = TestServer::start(Backend::Sqlite, |c| c.on_demand_sessions = true).await;
    let (a, mut b) = Peer::pair(&srv, "t").await;
    a.client
        .emit("typing", vec![Arg::json(json!({ "sessionId": "t" }))])
        .unwrap();
    let e = b.expect_event("user-typing").await;
    assert_eq!(e.args[0].as_json().unwrap()["userName"], "A");
    let started = Instant::now();
    let e = b
        .expect_event_within("user-stopped-typing", Duration::from_secs(7))
        .await;
    assert_eq!(e.args[0].as_json().unwrap()["userId"], "a");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_millis(6000),
        "cleared after {took:?}"
    );

    // Explicit stop, then typing again and a disconnect clears it at once.
    a.client
        .emit("typing", vec![Arg::json(json!({ "sessionId": "t" }))])
        .unwrap();
    b.expect_event("user-typing").await;
    a.client
        .emit("stop-typing", vec![Arg::json(json!({ "sessionId": "t" }))])
        .unwrap();
    b.expect_event("user-stopped-typing").await;
    a.client
        .emit("typing", vec![Arg::json(json!({ "sessionId": "t" }))])
        .unwrap();
    b.expect_event("user-typing").await;
    a.client.kill();
    let t = Instant::now();
    b.expect_event("user-stopped-typing").await;
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_changes_and_deletion_reach_connected_sockets() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let http = reqwest::Client::new();
    let owner = srv.token("owner", &[]);
    let id = common::create_session(&srv.url, &owner, json!({ "title": "t" })).await;
    let role = |r: &'static str| {
        let (http, url, owner) = (
            http.clone(),
            format!("{}/api/sessions/{id}/participants/ed", srv.url),
            owner.clone(),
        );
        async move {
            let s = http
                .put(url)
                .bearer_auth(owner)
                .json(&json!({ "role": r }))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(s, 204);
        }
    };
    role("editor").await;
    let mut ed = Peer::connect(&srv.url, Some(&srv.token("ed", &[])))
        .await
        .unwrap();
    assert_eq!(ed.join(&id).await["role"], "editor");
    let u = ed.edit(|t, txn| t.insert(txn, 0, "allowed "));
    assert_eq!(ed.send_update(&id, u, true).await.unwrap()["ok"], true);

    // Demoted while connected: the very next update is refused.
    role("viewer").await;
    let u = ed.edit(|t, txn| t.insert(txn, 0, "refused "));
    let r = ed.send_update(&id, u, true).await.unwrap();
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    assert_eq!(srv.get_text(&id, &owner).await, "allowed ");

    // Deleted while connected: the socket hears SESSION_NOT_FOUND and is out.
    let s = http
        .delete(format!("{}/api/sessions/{id}", srv.url))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 204);
    let e = ed.expect_event("error").await;
    assert_eq!(code(e.args[0].as_json().unwrap()), "SESSION_NOT_FOUND");
    let u = ed.edit(|t, txn| t.insert(txn, 0, "late "));
    assert_eq!(
        code(&ed.send_update(&id, u, true).await.unwrap()),
        "NOT_JOINED"
    );
    assert_eq!(code(&ed.join(&id).await), "SESSION_NOT_FOUND");
}

async fn http_status(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Value,
) -> reqwest::StatusCode {
    reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
}

/// Visibility changes (`PATCH public` / `publicRole`) re-evaluate users who
/// are connected through the public role, in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_changes_reach_connected_sockets() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let owner = srv.token("owner", &[]);
    let id = common::create_session(
        &srv.url,
        &owner,
        json!({ "public": true, "publicRole": "editor" }),
    )
    .await;
    let session_url = format!("{}/api/sessions/{id}", srv.url);
    let patch =
        |body: Value| http_status(reqwest::Method::PATCH, session_url.clone(), &owner, body);

    let mut visitor = Peer::connect(&srv.url, Some(&srv.token("v", &[])))
        .await
        .unwrap();
    assert_eq!(visitor.join(&id).await["role"], "editor");
    let u = visitor.edit(|t, txn| t.insert(txn, 0, "a"));
    assert_eq!(visitor.send_update(&id, u, true).await.unwrap()["ok"], true);

    assert_eq!(patch(json!({ "publicRole": "viewer" })).await, 200);
    let u = visitor.edit(|t, txn| t.insert(txn, 0, "b"));
    assert_eq!(
        code(&visitor.send_update(&id, u, true).await.unwrap()),
        "FORBIDDEN"
    );

    assert_eq!(patch(json!({ "publicRole": "editor" })).await, 200);
    let u = visitor.edit(|t, txn| t.insert(txn, 0, "c"));
    // "c" follows the refused "b" in the visitor's clock: the server holds
    // it back until "b" arrives (durably logged, so acknowledged).
    assert_eq!(visitor.send_update(&id, u, true).await.unwrap()["ok"], true);

    // Private again: no role left, so the visitor is removed at once: it
    // hears FORBIDDEN, stops receiving edits, and cannot rejoin.
    let owner_peer = Peer::connect(&srv.url, Some(&owner)).await.unwrap();
    owner_peer.join(&id).await;
    assert_eq!(patch(json!({ "public": false })).await, 200);
    assert_removed(&mut visitor, &id).await;
    let seen = visitor.text();
    let u = owner_peer.edit(|t, txn| t.insert(txn, 0, "secret "));
    assert_eq!(
        owner_peer.send_update(&id, u, true).await.unwrap()["ok"],
        true
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        visitor.text(),
        seen,
        "a removed visitor no longer reads the document"
    );
    let again = Peer::connect(&srv.url, Some(&srv.token("v", &[])))
        .await
        .unwrap();
    assert_eq!(code(&again.join(&id).await), "FORBIDDEN");
}

/// Deleting a session also ends y-socket.io connections to it: the
/// namespace goes away and reconnecting is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_disconnects_ysocketio_clients() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let owner = srv.token("owner", &[]);
    let id = common::create_session(&srv.url, &owner, json!({})).await;
    let ns = format!("/yjs|{id}");
    let auth = json!({ "token": srv.token("owner", &[]) });
    let (_client, mut rx) = Client::connect(&srv.url, &ns, Some(auth.clone()))
        .await
        .unwrap();
    // Connected: the server opens with its sync-step-1.
    let first = tokio::time::timeout(common::peer::T, rx.recv())
        .await
        .unwrap();
    assert!(
        matches!(&first, Some(Incoming::Event(e)) if e.name == "sync-step-1"),
        "{first:?}"
    );

    let s = http_status(
        reqwest::Method::DELETE,
        format!("{}/api/sessions/{id}", srv.url),
        &owner,
        Value::Null,
    )
    .await;
    assert_eq!(s, 204);
    let heard = error_then_disconnect(&mut rx).await;
    assert_eq!(
        heard.as_deref(),
        Some("SESSION_NOT_FOUND"),
        "told why first"
    );
    match Client::connect(&srv.url, &ns, Some(auth)).await {
        Err(ClientError::ConnectRefused { message }) => assert_eq!(message, "SESSION_NOT_FOUND"),
        other => panic!("reconnect after deletion: {other:?}"),
    }
}

/// Removing a participant while connected takes their access away at once,
/// in both dialects: a native socket leaves the room, a y-socket.io client
/// is disconnected, both after hearing `FORBIDDEN`; neither can come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_participant_removes_their_connections() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let owner = srv.token("owner", &[]);
    let id = common::create_session(&srv.url, &owner, json!({})).await;
    let participant = format!("{}/api/sessions/{id}/participants/ed", srv.url);
    let put = http_status(
        reqwest::Method::PUT,
        participant.clone(),
        &owner,
        json!({ "role": "editor" }),
    );
    assert_eq!(put.await, 204);

    let ed_token = srv.token("ed", &[]);
    let mut native = Peer::connect(&srv.url, Some(&ed_token)).await.unwrap();
    assert_eq!(native.join(&id).await["role"], "editor");
    let ns = format!("/yjs|{id}");
    let auth = json!({ "token": ed_token });
    let (_yclient, mut rx) = Client::connect(&srv.url, &ns, Some(auth.clone()))
        .await
        .unwrap();

    let removed = http_status(reqwest::Method::DELETE, participant, &owner, Value::Null);
    assert_eq!(removed.await, 204);

    assert_removed(&mut native, &id).await;
    assert_eq!(code(&native.join(&id).await), "FORBIDDEN");

    let heard = error_then_disconnect(&mut rx).await;
    assert_eq!(heard.as_deref(), Some("FORBIDDEN"), "told why first");
    match Client::connect(&srv.url, &ns, Some(auth)).await {
        Err(ClientError::ConnectRefused { message }) => assert_eq!(message, "FORBIDDEN"),
        other => panic!("reconnect after removal: {other:?}"),
    }
}

/// Waits for the server to drop a y-socket.io client; returns the code of
/// the last `error` it heard before that.
async fn error_then_disconnect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Incoming>,
) -> Option<String> {
    let mut heard = None;
    tokio::time::timeout(common::peer::T, async {
        while let Some(i) = rx.recv().await {
            match i {
                Incoming::Event(e) if e.name == "error" => {
                    heard = e.args[0].as_json().map(|v| code(v).to_owned());
                }
                Incoming::Disconnected { .. } => return,
                Incoming::Event(_) => {}
            }
        }
        panic!("the connection ended without a disconnect");
    })
    .await
    .expect("the y-socket.io client is disconnected");
    heard
}

/// The peer was told FORBIDDEN and is out of the session: updates are NOT_JOINED.
async fn assert_removed(peer: &mut Peer, id: &str) {
    let e = peer.expect_event("error").await;
    let err = e.args[0].as_json().unwrap();
    assert_eq!(code(err), "FORBIDDEN", "{err}");
    let u = peer.edit(|t, txn| t.insert(txn, 0, "after removal "));
    assert_eq!(
        code(&peer.send_update(id, u, true).await.unwrap()),
        "NOT_JOINED"
    );
}
