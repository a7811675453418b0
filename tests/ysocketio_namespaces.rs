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
    // The maintenance pass (every 250 ms) unloads the idle documents.
    let mut last = -1.0;
    for _ in 0..100 {
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
