//! The native dialect end to end (issue 2): real server on port 0, real
//! Socket.IO connections, real yrs replicas.

mod common;

use std::time::{Duration, Instant};

use common::peer::{Peer, Rng, T, code, eventually};
use common::{Backend, TestServer};
use serde_json::json;
use tandem::auth::Auth;
use tandem::client::{Arg, Client, ClientError};
use tandem::model::Role;
use yrs::Text;
use yrs::updates::encoder::Encode;

async fn on_demand() -> TestServer {
    TestServer::start(Backend::Sqlite, |c| c.on_demand_sessions = true).await
}

async fn editors_converge(n: usize, edits: usize, seed: u64) {
    let srv = on_demand().await;
    let mut peers = Vec::new();
    for i in 0..n {
        let p = Peer::connect(&srv.url, Some(&srv.token(&format!("u{i}"), &[])))
            .await
            .unwrap();
        assert_eq!(p.join("conv").await["ok"], true);
        peers.push(p);
    }
    // Everyone edits at once, in random order, some updates acked, some not.
    let mut rng = Rng(seed);
    for _ in 0..edits {
        for p in &peers {
            let r = rng.next();
            let u = p.random_edit(r);
            p.send_update("conv", u, r.is_multiple_of(4)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let texts: Vec<String> = peers.iter().map(Peer::text).collect();
        if !texts[0].is_empty() && texts.iter().all(|t| *t == texts[0]) {
            break;
        }
        if Instant::now() > deadline {
            let received: Vec<usize> = peers
                .iter()
                .map(|p| p.received.load(std::sync::atomic::Ordering::Relaxed))
                .collect();
            let check = Peer::connect(&srv.url, Some(&srv.token("checker", &[])))
                .await
                .unwrap();
            check.join("conv").await;
            panic!(
                "replicas still differ after 10 s: {texts:#?}, server: {:?}, updates received: {received:?}",
                check.text()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A fresh replica built only from the server agrees too.
    let check = Peer::connect(&srv.url, Some(&srv.token("checker", &[])))
        .await
        .unwrap();
    check.join("conv").await;
    assert_eq!(check.text(), peers[0].text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_editors_converge() {
    editors_converge(2, 50, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_editors_converge() {
    editors_converge(5, 60, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_and_offline_edits() {
    let srv = on_demand().await;
    let a = Peer::connect(&srv.url, Some(&srv.token("a", &[])))
        .await
        .unwrap();
    a.join("doc").await;
    let mut rng = Rng(7);
    for _ in 0..100 {
        let u = a.random_edit(rng.next());
        a.send_update("doc", u, false).await;
    }
    a.send_update("doc", a.edit(|t, txn| t.insert(txn, 0, "END")), true)
        .await;

    // Late joiner: the join alone brings the whole document.
    let b = Peer::connect(&srv.url, Some(&srv.token("b", &[])))
        .await
        .unwrap();
    b.join("doc").await;
    assert_eq!(b.text(), a.text());

    // Offline edits: made before connecting, they reach the others on join
    // (the server's sync-step-1 asks for them).
    let offline = yrs::Doc::new();
    offline.get_or_insert_text("monaco").insert(
        &mut yrs::Transact::transact_mut(&offline),
        0,
        "OFFLINE-",
    );
    let c = Peer::connect_with_doc(&srv.url, &srv.token("c", &[]), offline)
        .await
        .unwrap();
    c.join("doc").await;
    eventually(T, "offline edit reaches a", || {
        a.text().contains("OFFLINE-")
    })
    .await;
    eventually(T, "all equal", || {
        a.text() == b.text() && b.text() == c.text()
    })
    .await;
}

#[tokio::test]
async fn bad_tokens_are_unauthorized() {
    let srv = on_demand().await;
    let expired = srv.auth.issue("u", "U", Default::default(), -10);
    let wrong_key = Auth::new(b"another secret").issue("u", "U", Default::default(), 3600);
    for (what, auth) in [
        ("no token", None),
        ("expired", Some(json!({ "token": expired }))),
        ("wrong signature", Some(json!({ "token": wrong_key }))),
        ("garbage", Some(json!({ "token": "abc.def.ghi" }))),
    ] {
        match Client::connect(&srv.url, "/", auth).await {
            Err(ClientError::ConnectRefused { message }) => {
                assert_eq!(message, "UNAUTHORIZED", "{what}")
            }
            other => panic!("{what}: expected UNAUTHORIZED, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_updates_are_forbidden_and_change_nothing() {
    let srv = on_demand().await;
    let owner = Peer::connect(&srv.url, Some(&srv.token("owner", &[])))
        .await
        .unwrap();
    owner.join("v").await;
    owner
        .send_update("v", owner.edit(|t, txn| t.insert(txn, 0, "hello")), true)
        .await;

    let mut viewer = Peer::connect(&srv.url, Some(&srv.token("viewer", &[("v", Role::Viewer)])))
        .await
        .unwrap();
    let joined = viewer.join("v").await;
    assert_eq!(joined["role"], "viewer");
    assert_eq!(viewer.text(), "hello", "viewers receive the document");
    let u = viewer.edit(|t, txn| t.insert(txn, 0, "EVIL "));
    let reply = viewer.send_update("v", u.clone(), true).await.unwrap();
    assert_eq!(
        (reply["ok"].clone(), code(&reply)),
        (json!(false), "FORBIDDEN")
    );
    viewer.send_update("v", u, false).await;
    let e = viewer.expect_event("error").await;
    assert_eq!(code(e.args[0].as_json().unwrap()), "FORBIDDEN");
    // Nothing reached the server or the owner.
    let check = Peer::connect(&srv.url, Some(&srv.token("checker", &[])))
        .await
        .unwrap();
    check.join("v").await;
    assert_eq!(check.text(), "hello");
    assert_eq!(owner.text(), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_code() {
    let srv = TestServer::start(Backend::Sqlite, |c| {
        c.max_update_bytes = 1000;
        c.max_document_bytes = 3000;
    })
    .await;
    // A session created by an owner (no on-demand sessions here).
    srv_session(&srv, "s1").await;
    let mut p = Peer::connect(&srv.url, Some(&srv.token("u", &[("s1", Role::Editor)])))
        .await
        .unwrap();

    let r = p.join("nope").await;
    assert_eq!(code(&r), "SESSION_NOT_FOUND");
    assert_eq!(r["error"]["sessionId"], "nope");
    assert_eq!(code(&p.join("bad id!").await), "INVALID_SESSION_ID");
    assert_eq!(code(&p.join(&"x".repeat(65)).await), "INVALID_SESSION_ID");
    let r = p
        .client
        .emit_with_ack(
            "join-session",
            vec![Arg::json(json!({ "sessionId": 42 }))],
            T,
        )
        .await
        .unwrap();
    assert_eq!(code(r[0].as_json().unwrap()), "INVALID_PAYLOAD");
    let r = p
        .client
        .emit_with_ack("yjs-update", vec![Arg::json(7), Arg::json("not binary")], T)
        .await
        .unwrap();
    assert_eq!(code(r[0].as_json().unwrap()), "INVALID_PAYLOAD");

    // NOT_JOINED, with and without an ack.
    let u = p.edit(|t, txn| t.insert(txn, 0, "x"));
    assert_eq!(
        code(&p.send_update("s1", u.clone(), true).await.unwrap()),
        "NOT_JOINED"
    );
    p.client
        .emit("typing", vec![Arg::json(json!({ "sessionId": "s1" }))])
        .unwrap();
    assert_eq!(
        code(p.expect_event("error").await.args[0].as_json().unwrap()),
        "NOT_JOINED"
    );

    assert_eq!(p.join("s1").await["ok"], true);
    assert_eq!(
        code(
            &p.send_update("s1", bytes::Bytes::from_static(b"\x07garbage\xff"), true)
                .await
                .unwrap()
        ),
        "INVALID_UPDATE"
    );
    let r = p
        .client
        .emit_with_ack(
            "yjs-awareness",
            vec![Arg::json("s1"), Arg::bin(&b"\x01\xff\xff"[..])],
            T,
        )
        .await
        .unwrap();
    assert_eq!(code(r[0].as_json().unwrap()), "INVALID_UPDATE");
    let big = p.edit(|t, txn| t.insert(txn, 0, &"y".repeat(2000)));
    assert_eq!(
        code(&p.send_update("s1", big, true).await.unwrap()),
        "UPDATE_TOO_LARGE"
    );
    // Each 800-byte insert fits the update limit; together they exceed the document limit.
    let mut last = json!(null);
    for _ in 0..5 {
        let u = p.edit(|t, txn| t.insert(txn, 0, &"z".repeat(800)));
        last = p.send_update("s1", u, true).await.unwrap();
        if last["ok"] != true {
            break;
        }
    }
    assert_eq!(code(&last), "DOCUMENT_TOO_LARGE");

    let r = p
        .client
        .emit_with_ack(
            "chat-message",
            vec![Arg::json(json!({ "sessionId": "s1", "content": "  \n " }))],
            T,
        )
        .await
        .unwrap();
    assert_eq!(code(r[0].as_json().unwrap()), "MESSAGE_EMPTY");
    let r = p
        .client
        .emit_with_ack(
            "chat-message",
            vec![Arg::json(
                json!({ "sessionId": "s1", "content": "é".repeat(1001) }),
            )],
            T,
        )
        .await
        .unwrap();
    assert_eq!(code(r[0].as_json().unwrap()), "MESSAGE_TOO_LONG");
    let r = p
        .client
        .emit_with_ack(
            "chat-message",
            vec![Arg::json(
                json!({ "sessionId": "s1", "content": "é".repeat(1000) }),
            )],
            T,
        )
        .await
        .unwrap();
    assert_eq!(r[0].as_json().unwrap()["ok"], true);

    // INTERNAL: the database loses a table under the server; the client gets
    // the code and no details.
    let pool = sqlx::SqlitePool::connect(&srv.database_url).await.unwrap();
    sqlx::query("DROP TABLE chat_messages")
        .execute(&pool)
        .await
        .unwrap();
    let other = Peer::connect(&srv.url, Some(&srv.token("w", &[("s1", Role::Editor)])))
        .await
        .unwrap();
    let r = other.join("s1").await;
    assert_eq!(code(&r), "INTERNAL");
    assert!(
        !r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chat_messages"),
        "no internals leak: {r}"
    );
}

/// Creates session `id` owned by `owner` directly in the store.
async fn srv_session(srv: &TestServer, id: &str) {
    let store = tandem::store::connect(&srv.database_url).await.unwrap();
    store
        .create_session(&tandem::store::NewSession {
            id: id.into(),
            title: id.into(),
            language: "rust".into(),
            owner_id: "owner".into(),
            owner_name: "Owner".into(),
            public: false,
            public_role: Role::Viewer,
            main_path: None,
        })
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_is_rate_limited_and_replicas_still_converge() {
    let srv = TestServer::start(Backend::Sqlite, |c| {
        c.on_demand_sessions = true;
        c.updates_per_second = 5;
        c.update_burst = 5;
    })
    .await;
    let (mut a, b) = Peer::pair(&srv, "flood").await;
    let mut rng = Rng(9);
    for _ in 0..40 {
        let u = a.random_edit(rng.next());
        a.send_update("flood", u, false).await;
    }
    let e = a.expect_event("error").await;
    let err = e.args[0].as_json().unwrap();
    assert_eq!(code(err), "RATE_LIMITED");
    assert!(err["retryAfterMs"].as_u64().unwrap() > 0, "{err}");
    // The server heals the gap by itself: it asks `a` for what it lacks.
    a.expect_event("yjs-sync-step-1").await;
    eventually(
        Duration::from_secs(5),
        "b converges with a after the flood",
        || a.text() == b.text(),
    )
    .await;
    assert_eq!(a.text().len(), b.text().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awareness_of_a_killed_client_disappears_within_a_second() {
    let srv = on_demand().await;
    let (a, b) = Peer::pair(&srv, "aw").await;
    let mut aw = yrs::sync::Awareness::new(yrs::Doc::with_client_id(4242));
    aw.set_local_state_raw(
        r##"{"user":{"name":"A","color":"#ff0000"},"cursor":{"anchor":1,"head":1}}"##,
    );
    let bytes = aw.update().unwrap().encode_v1();
    a.client
        .emit("yjs-awareness", vec![Arg::json("aw"), Arg::bin(bytes)])
        .unwrap();
    let id = yrs::ClientID::new(4242);
    eventually(T, "b sees a's cursor", || {
        b.awareness
            .lock()
            .unwrap()
            .state::<serde_json::Value>(id)
            .is_some()
    })
    .await;

    a.client.kill();
    let killed = Instant::now();
    eventually(Duration::from_secs(1), "a's cursor gone at b", || {
        b.awareness
            .lock()
            .unwrap()
            .state::<serde_json::Value>(id)
            .is_none()
    })
    .await;
    assert!(killed.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awareness_flood_is_coalesced_and_the_last_state_still_arrives() {
    let srv = TestServer::start(Backend::Sqlite, |c| {
        c.on_demand_sessions = true;
        c.awareness_per_second = 10;
    })
    .await;
    let (a, mut b) = Peer::pair(&srv, "flood").await;
    let mut aw = yrs::sync::Awareness::new(yrs::Doc::with_client_id(77));
    let started = Instant::now();
    for i in 0..300 {
        aw.set_local_state_raw(format!(r#"{{"cursor":{{"anchor":{i},"head":{i}}}}}"#));
        let bytes = aw.update().unwrap().encode_v1();
        a.client
            .emit("yjs-awareness", vec![Arg::json("flood"), Arg::bin(bytes)])
            .unwrap();
    }
    let id = yrs::ClientID::new(77);
    eventually(Duration::from_secs(3), "b sees a's last cursor", || {
        b.awareness
            .lock()
            .unwrap()
            .state::<serde_json::Value>(id)
            .is_some_and(|v| v["cursor"]["anchor"] == 299)
    })
    .await;
    let elapsed = started.elapsed();
    let mut relayed = 0;
    while let Ok(ev) = b.events.try_recv() {
        relayed += usize::from(ev.name == "yjs-awareness");
    }
    // Burst 2 × 10, then 10 per second, plus the final merged flush.
    let allowed = 20 + (elapsed.as_secs_f64() * 10.0).ceil() as usize + 1;
    assert!(
        relayed <= allowed,
        "{relayed} of 300 awareness updates reached b in {elapsed:?}; the budget allows {allowed}"
    );
    assert!(relayed >= 2, "the burst and the final state were relayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_events() {
    let srv = on_demand().await;
    let mut a = Peer::connect(&srv.url, Some(&srv.token("a", &[])))
        .await
        .unwrap();
    a.join("p").await;
    let b = Peer::connect(&srv.url, Some(&srv.token("b", &[])))
        .await
        .unwrap();
    let joined = b.join("p").await;
    assert_eq!(joined["participants"].as_array().unwrap().len(), 2);
    let e = a.expect_event("user-joined").await;
    let j = e.args[0].as_json().unwrap();
    assert_eq!(j["user"]["id"], "b");
    assert!(j["user"]["color"].as_str().unwrap().starts_with('#'));
    // A second socket of the same user is not a new participant.
    let b2 = Peer::connect(&srv.url, Some(&srv.token("b", &[])))
        .await
        .unwrap();
    b2.join("p").await;
    a.expect_no_event("user-joined", Duration::from_millis(300))
        .await;
    b2.client.close();
    a.expect_no_event("user-left", Duration::from_millis(300))
        .await;
    b.client.kill();
    let e = a.expect_event("user-left").await;
    assert_eq!(e.args[0].as_json().unwrap()["userId"], "b");
}
