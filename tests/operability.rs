//! Deployment options of issue 10 ("Operability") against a real server:
//! `--cors-origin` and `--socketio-path`.

mod common;

use common::peer::{Peer, T};
use common::{Backend, TestServer};
use serde_json::json;
use tandem::client::{Arg, Client, Incoming};

const ALLOWED: &str = "https://editor.example";
const FOREIGN: &str = "https://evil.example";
const ACAO: &str = "access-control-allow-origin";

async fn preflight(url: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{url}/api/sessions"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

async fn get(url: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .header("origin", origin)
        .send()
        .await
        .unwrap()
}

fn acao(r: &reqwest::Response) -> Option<&str> {
    r.headers().get(ACAO).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_only_for_allowed_origins() {
    let srv = TestServer::start(Backend::Sqlite, |c| {
        c.cors_origins = vec![ALLOWED.into(), "http://other.example:8080".into()];
    })
    .await;

    let ok = preflight(&srv.url, ALLOWED).await;
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(acao(&ok), Some(ALLOWED));
    let methods = ok.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let headers = ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    assert_eq!(acao(&preflight(&srv.url, FOREIGN).await), None);

    for path in ["/healthz", "/api/sessions"] {
        let url = format!("{}{path}", srv.url);
        assert_eq!(acao(&get(&url, ALLOWED).await), Some(ALLOWED), "{path}");
        assert_eq!(acao(&get(&url, FOREIGN).await), None, "{path}");
    }
    // Socket.IO long-polling goes through the same layer.
    let polling = format!("{}/socket.io/?EIO=4&transport=polling", srv.url);
    let r = get(&polling, ALLOWED).await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(acao(&r), Some(ALLOWED));
    assert_eq!(acao(&get(&polling, FOREIGN).await), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cors_headers_by_default() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    assert_eq!(acao(&preflight(&srv.url, ALLOWED).await), None);
    assert_eq!(
        acao(&get(&format!("{}/healthz", srv.url), ALLOWED).await),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_under_a_custom_path() {
    const PATH: &str = "/api/socket/io";
    let srv = TestServer::start(Backend::Sqlite, |c| {
        c.on_demand_sessions = true;
        c.socketio_path = PATH.into();
    })
    .await;
    let sid = "custom-path";

    // Native dialect: join and an acknowledged update.
    let auth = || Some(json!({ "token": srv.token("a", &[]) }));
    let (native, _rx) = Client::connect_at(&srv.url, PATH, "/", auth())
        .await
        .unwrap();
    let joined = native
        .emit_with_ack(
            "join-session",
            vec![Arg::json(json!({ "sessionId": sid }))],
            T,
        )
        .await
        .unwrap();
    assert_eq!(joined[0].as_json().unwrap()["ok"], true, "{joined:?}");
    let update = {
        use yrs::{Text, Transact};
        let doc = yrs::Doc::new();
        let text = doc.get_or_insert_text("monaco");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "hi");
        txn.encode_update_v1()
    };
    let ack = native
        .emit_with_ack("yjs-update", vec![Arg::json(sid), Arg::bin(update)], T)
        .await
        .unwrap();
    assert_eq!(ack[0].as_json().unwrap()["ok"], true, "{ack:?}");

    // y-socket.io dialect on the same path: connected, the server starts the sync.
    let (_y, mut yrx) = Client::connect_at(&srv.url, PATH, &format!("/yjs|{sid}"), auth())
        .await
        .unwrap();
    let step1 = tokio::time::timeout(T, async {
        loop {
            match yrx.recv().await {
                Some(Incoming::Event(e)) if e.name == "sync-step-1" => return e,
                Some(_) => continue,
                None => panic!("y-socket.io connection ended"),
            }
        }
    })
    .await
    .expect("sync-step-1 from the server");
    assert!(step1.ack.is_some());

    // The default path is not Socket.IO any more.
    assert!(
        Peer::connect(&srv.url, Some(&srv.token("b", &[])))
            .await
            .is_err()
    );
    let old = reqwest::get(format!("{}/socket.io/?EIO=4&transport=polling", srv.url))
        .await
        .unwrap();
    assert_eq!(old.status(), 404);
    let new = reqwest::get(format!("{}{PATH}/?EIO=4&transport=polling", srv.url))
        .await
        .unwrap();
    assert!(new.status().is_success(), "{}", new.status());
}
