//! The y-websocket dialect through the project's own client
//! (`Client::connect_ywebsocket`, what `tandem-load --dialect ywebsocket`
//! uses) against the real server, on every backend: a refusal before the
//! upgrade carries the HTTP status, the server's step 1 is answered, updates
//! reach a native client and a second y-websocket client, and the document
//! survives a restart. (The npm provider is tested in tests/node.)

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestServer, backends};
use tandem::client::{Arg, Client, ClientError, Incoming};
use tandem::model::Role;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Text, Transact, Update};

async fn next_update(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Incoming>) -> Bytes {
    loop {
        let inc = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an update within 5 s")
            .expect("connection open");
        if let Incoming::Event(ev) = inc {
            if ev.name == "sync-step-1" {
                if let Some(ack) = ev.ack {
                    ack.reply(vec![Arg::bin(vec![0u8, 0])]).unwrap();
                }
                continue;
            }
            if ev.name == "sync-update" {
                return ev.args[0].as_bin().unwrap().clone();
            }
        }
    }
}

fn edit(doc: &Doc, at: u32, s: &str) -> Bytes {
    let text = doc.get_or_insert_text("monaco");
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, at, s);
    Bytes::from(txn.encode_update_v1())
}

#[tokio::test]
async fn the_project_client_speaks_y_websocket() {
    for backend in backends() {
        let srv = TestServer::start(backend, |c| c.on_demand_sessions = true).await;
        let sid = "yws-client";

        // Refused before the upgrade: the status comes back.
        match Client::connect_ywebsocket(&srv.url, sid, Some("garbage")).await {
            Err(ClientError::ConnectRefused { message }) => assert_eq!(message, "401"),
            other => panic!("expected a 401 refusal, got {other:?}"),
        }
        match Client::connect_ywebsocket(&srv.url, "bad%20id", Some(&srv.token("a", &[]))).await {
            Err(ClientError::ConnectRefused { message }) => assert_eq!(message, "400"),
            other => panic!("expected a 400 refusal, got {other:?}"),
        }

        let token = srv.token("alice", &[(sid, Role::Editor)]);
        let (a, mut arx) = Client::connect_ywebsocket(&srv.url, sid, Some(&token))
            .await
            .unwrap();
        let (b, mut brx) = Client::connect_ywebsocket(&srv.url, sid, Some(&token))
            .await
            .unwrap();
        // Step 1 with an ack: the server answers with its step 2.
        let diff = a
            .emit_with_ack(
                "sync-step-1",
                vec![Arg::bin(vec![0u8])],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert!(diff[0].as_bin().is_some());

        let doc = Doc::new();
        a.emit("sync-update", vec![Arg::bin(edit(&doc, 0, "hello"))])
            .unwrap();
        let got = next_update(&mut brx).await;
        let peer = Doc::new();
        peer.transact_mut()
            .apply_update(Update::decode_v1(&got).unwrap())
            .unwrap();
        assert_eq!(
            peer.get_or_insert_text("monaco")
                .get_string(&peer.transact()),
            "hello"
        );

        b.emit("sync-update", vec![Arg::bin(edit(&peer, 5, " world"))])
            .unwrap();
        let back = next_update(&mut arx).await;
        doc.transact_mut()
            .apply_update(Update::decode_v1(&back).unwrap())
            .unwrap();
        assert_eq!(
            doc.get_or_insert_text("monaco").get_string(&doc.transact()),
            "hello world"
        );

        assert_eq!(
            srv.get_text(sid, &token).await,
            "hello world",
            "{backend:?}"
        );
        a.close();
        b.close();
        srv.stop().await.unwrap();
    }
}

/// A graceful shutdown closes y-websocket connections at once with 1001
/// (before, they held the shutdown for its 10 s grace period, and their
/// leaving then panicked in the fan-out: the Socket.IO namespaces were gone).
#[tokio::test]
async fn shutdown_closes_y_websocket_connections_with_1001() {
    let srv = TestServer::start(common::Backend::Sqlite, |c| c.on_demand_sessions = true).await;
    let token = srv.token("alice", &[("bye", Role::Editor)]);
    let (_c, mut rx) = Client::connect_ywebsocket(&srv.url, "bye", Some(&token))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    srv.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Incoming::Disconnected { reason })) => break reason,
            Ok(Some(_)) => continue,
            other => panic!("no disconnect: {other:?}"),
        }
    };
    assert_eq!(reason, "closed 1001");
}

/// A y-websocket client that stops reading is closed as a slow consumer
/// once `--socket-buffer` frames wait for it; the sender is unaffected.
#[tokio::test]
async fn a_y_websocket_client_that_never_reads_is_closed() {
    let srv = TestServer::start(common::Backend::Sqlite, |c| {
        c.on_demand_sessions = true;
        c.socket_buffer = 16;
        c.updates_per_second = 10_000;
        c.update_burst = 10_000;
    })
    .await;
    let token = srv.token("alice", &[("slow", Role::Editor)]);
    // A raw WebSocket that never reads a frame.
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (_stalled, _) =
        tokio_tungstenite::client_async(format!("ws://{}/ws/slow?token={token}", srv.addr), tcp)
            .await
            .unwrap();
    let (sender, mut srx) = Client::connect_ywebsocket(&srv.url, "slow", Some(&token))
        .await
        .unwrap();
    let drain = tokio::spawn(async move {
        while let Some(i) = srx.recv().await {
            if let Incoming::Disconnected { reason } = i {
                eprintln!("sender disconnected: {reason}");
            }
        }
    });
    let doc = Doc::new();
    let chunk = "x".repeat(40_000);
    let metrics = || async {
        reqwest::get(format!("{}/metrics", srv.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("tandem_slow_consumers_disconnected_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let before = metrics().await;
    for i in 0..250u32 {
        sender
            .emit("sync-update", vec![Arg::bin(edit(&doc, i, &chunk))])
            .unwrap();
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while metrics().await <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled client was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The sender is still served: its step 1 is answered.
    sender
        .emit_with_ack(
            "sync-step-1",
            vec![Arg::bin(vec![0u8])],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    drain.abort();
}
