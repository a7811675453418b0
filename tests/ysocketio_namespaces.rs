//! A y-socket.io document's namespace goes when the document unloads
//! (issue 4), so namespaces do not pile up. Own test binary: it reads the
//! process-wide metrics.

mod common;

use std::time::Duration;

use common::{Backend, TestServer};
use serde_json::json;
use tandem::client::Client;

async fn namespaces(url: &str) -> f64 {
    let m = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix("tandem_ysocketio_namespaces "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_removed_when_their_documents_unload() {
    let _guard = SERIAL.lock().await;
    let srv = TestServer::start(Backend::Sqlite, |c| {
        c.on_demand_sessions = true;
        c.idle_unload_secs = 0;
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..5 {
        let (c, rx) = Client::connect(
            &srv.url,
            &format!("/yjs|ns-{i}"),
            Some(json!({ "token": srv.token("u", &[]) })),
        )
        .await
        .unwrap();
        clients.push((c, rx));
    }
    assert_eq!(
        namespaces(&srv.url).await,
        5.0,
        "one namespace per connected document, counted as they appear"
    );
    for (c, _) in &clients {
        c.close();
    }
    // The maintenance pass (every 250 ms) unloads the idle documents once
    // nothing holds them: here that is after the server's unanswered sync
    // step 1 to each client gives up (its ack timeout, 5 s), so allow 15 s.
    let mut last = -1.0;
    for _ in 0..300 {
        last = namespaces(&srv.url).await;
        if last == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        last, 0.0,
        "5 namespaces were created; all must be gone after unload"
    );
    // A new connection to an unloaded document works (namespace recreated).
    let (c, _rx) = Client::connect(
        &srv.url,
        "/yjs|ns-0",
        Some(json!({ "token": srv.token("u", &[]) })),
    )
    .await
    .unwrap();
    c.close();
}

/// Issue 10, defect 2: socketioxide creates a y-socket.io namespace before
/// the connect middleware runs. Refused connects (unknown sessions, no
/// token, junk and over-long names), even many of them sent as CONNECT
/// packets over one WebSocket, leave no namespace behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connects_leave_no_namespace() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    // Wait until the other test's namespaces are gone (shared gauge).
    let _guard = SERIAL.lock().await;
    let hostport = srv.url.trim_start_matches("http://").to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{hostport}/socket.io/?EIO=4&transport=websocket"
    ))
    .await
    .unwrap();
    let _open = ws.next().await;
    let token = json!({ "token": srv.token("u", &[]) });
    let big = "n".repeat(100_000);
    let mut sent = 0;
    for i in 0..300 {
        let packet = match i % 3 {
            0 => format!("40/yjs|unknown-{i},{token}"),
            1 => format!("40/yjs|{big}{i},{token}"),
            _ => format!("40/yjs|no-token-{i},"),
        };
        ws.send(Message::text(packet)).await.unwrap();
        sent += 1;
    }
    // Every CONNECT is answered with a connect_error.
    let mut refused = 0;
    while refused < sent {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().starts_with("44/yjs|") => refused += 1,
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.unwrap();
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("after {refused} refusals: {other:?}"),
        }
    }
    // A legitimate provider makes the server count its namespaces: its own
    // must be the only one.
    let session = common::create_session(&srv.url, &srv.token("u", &[]), json!({})).await;
    let (ok, _rx) = Client::connect(
        &srv.url,
        &format!("/yjs|{session}"),
        Some(json!({ "token": srv.token("u", &[]) })),
    )
    .await
    .unwrap();
    assert_eq!(
        namespaces(&srv.url).await,
        1.0,
        "{sent} refused connects left namespaces behind"
    );
    ok.close();
    // The refusal still carries its code.
    let err = Client::connect(
        &srv.url,
        "/yjs|unknown-0",
        Some(json!({ "token": srv.token("u", &[]) })),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().ends_with("SESSION_NOT_FOUND"), "{err}");
}

/// The namespace gauge is process-wide: tests reading it take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
