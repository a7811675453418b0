//! Cluster mode (#14) through real processes: two or three `tandem` nodes on
//! one fresh PostgreSQL database and one redis-server this test owns (so it
//! can kill and restart it), with native Socket.IO clients spread over the
//! nodes. Needs `TANDEM_TEST_POSTGRES` and redis-server (`make test` sets
//! up both); without them it skips loudly, and under `CI=true` it fails.

mod common;

use std::time::Duration;

use common::peer::{Peer, Rng, code, edit_and_ack, eventually};
use common::process::{Node, RedisServer};
use common::{Backend, SECRET, fresh_database_url, postgres_server_url};
use serde_json::{Value, json};
use tandem::auth::Auth;
use tandem::client::Arg;
use yrs::updates::decoder::Decode;
use yrs::{ReadTxn, Transact};

struct Cluster {
    redis: RedisServer,
    db: String,
    dir: tempfile::TempDir,
    auth: Auth,
    nodes: Vec<Node>,
}

impl Cluster {
    /// `n` nodes, or `None` (skipped) without PostgreSQL or redis-server.
    async fn start(n: usize, extra: &[&str]) -> Option<Cluster> {
        postgres_server_url()?;
        Self::start_on(RedisServer::start().await?, n, extra).await
    }

    /// [`start`](Self::start) on this Redis (its CA trusted when it speaks TLS).
    async fn start_on(redis: RedisServer, n: usize, extra: &[&str]) -> Option<Cluster> {
        postgres_server_url()?;
        let dir = tempfile::tempdir().unwrap();
        let db = fresh_database_url(Backend::Postgres, dir.path()).await;
        let mut c = Cluster {
            redis,
            db,
            dir,
            auth: Auth::new(SECRET.as_bytes()),
            nodes: Vec::new(),
        };
        for i in 0..n {
            let node = c.node(i, extra).await;
            c.nodes.push(node);
        }
        Some(c)
    }

    /// Starts node `i` (not added to `nodes`).
    async fn node(&self, i: usize, extra: &[&str]) -> Node {
        let data = self.dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&data).unwrap();
        let (data, redis) = (data.display().to_string(), self.redis.url());
        let id = format!("n{i}");
        let mut args = vec![
            "--database-url",
            &self.db,
            "--redis-url",
            &redis,
            "--node-id",
            &id,
            "--data-dir",
            &data,
            "--cluster-heartbeat-ms",
            "200",
            "--cluster-node-timeout-ms",
            "1500",
            "--cluster-check-ms",
            "1000",
        ];
        args.extend_from_slice(extra);
        match self.redis.ca_file() {
            Some(ca) => Node::start_env(&args, &[("SSL_CERT_FILE", ca.as_os_str())]).await,
            None => Node::start(&args).await,
        }
    }

    fn token(&self, user: &str) -> String {
        self.auth
            .issue(user, &user.to_uppercase(), Default::default(), 3600)
    }

    /// A public session (public role editor) owned by `a`, created on node 0.
    async fn session(&self) -> String {
        let body = json!({ "public": true, "publicRole": "editor" });
        common::create_session(&self.nodes[0].url, &self.token("a"), body).await
    }

    async fn peer(&self, node: usize, user: &str, session: &str) -> Peer {
        let p = Peer::connect(&self.nodes[node].url, Some(&self.token(user)))
            .await
            .unwrap();
        let reply = p.join(session).await;
        assert_eq!(reply["ok"], true, "{reply}");
        p
    }

    async fn text_on(&self, node: usize, session: &str) -> String {
        common::get_body(
            &format!("{}/api/sessions/{session}/text", self.nodes[node].url),
            &self.token("a"),
        )
        .await
    }

    /// Every peer and every node's `GET /text` show the same text.
    async fn converge(&self, session: &str, peers: &[&Peer], within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let texts: Vec<String> = peers.iter().map(|p| p.text()).collect();
            let mut served = Vec::new();
            for i in 0..self.nodes.len() {
                served.push(self.text_on(i, session).await);
            }
            if texts.iter().chain(&served).all(|t| *t == texts[0]) {
                return texts[0].clone();
            }
            if tokio::time::Instant::now() > deadline {
                let logs: Vec<String> = self.nodes.iter().map(|n| n.log_text()).collect();
                panic!(
                    "no convergence within {within:?}\npeers: {texts:?}\nnodes: {served:?}\nlogs:\n{}",
                    logs.join("\n----\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_and_share_presence_chat_typing_files_and_roles() {
    let Some(c) = Cluster::start(3, &[]).await else {
        return;
    };
    let sid = c.session().await;
    let mut a = c.peer(0, "a", &sid).await;
    let mut b = c.peer(1, "b", &sid).await;
    // b hears that a (on node 0) is there: the join reply lists a.
    let mut joined = c.peer(2, "c", &sid).await;
    let ev = a.expect_event("user-joined").await;
    let first = ev.args[0].as_json().unwrap()["user"]["id"].clone();
    assert!(first == "b" || first == "c", "{first}");
    b.expect_event("user-joined").await;

    // Random concurrent edits from clients on three nodes converge.
    tokio::join!(
        edit_and_ack(&a, &sid, 60, 1),
        edit_and_ack(&b, &sid, 60, 2),
        edit_and_ack(&joined, &sid, 60, 3),
    );
    let text = c
        .converge(&sid, &[&a, &b, &joined], Duration::from_secs(10))
        .await;
    assert!(!text.is_empty());

    // GET /api/sessions/{id} on node 0 lists everyone online.
    let session: Value = serde_json::from_str(
        &common::get_body(
            &format!("{}/api/sessions/{sid}", c.nodes[0].url),
            &c.token("a"),
        )
        .await,
    )
    .unwrap();
    let online: Vec<&str> = session["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["online"] == true)
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(online, ["a", "b", "c"], "{session}");

    // Chat and typing cross nodes.
    assert_eq!(a.chat(&sid, "hello").await["ok"], true);
    let m = b.expect_event("chat-message").await;
    assert_eq!(m.args[0].as_json().unwrap()["content"], "hello");
    b.client
        .emit("typing", vec![Arg::json(json!({ "sessionId": sid }))])
        .unwrap();
    let t = a.expect_event("user-typing").await;
    assert_eq!(t.args[0].as_json().unwrap()["userId"], "b");

    // A file created over HTTP on node 2 is announced on node 0 and 1.
    let r = reqwest::Client::new()
        .post(format!("{}/api/sessions/{sid}/files", c.nodes[2].url))
        .bearer_auth(c.token("a"))
        .json(&json!({ "path": "src/lib.rs", "content": "fn main() {}\n" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for p in [&mut a, &mut b] {
        let e = p.expect_event("file:created").await;
        assert_eq!(e.args[0].as_json().unwrap()["file"]["path"], "src/lib.rs");
    }

    // Role changes made on node 0 reach connections on the other nodes at once.
    let http = reqwest::Client::new();
    let put = |role: &'static str| {
        let r = http
            .put(format!(
                "{}/api/sessions/{sid}/participants/b",
                c.nodes[0].url
            ))
            .bearer_auth(c.token("a"))
            .json(&json!({ "role": role }));
        async move { assert_eq!(r.send().await.unwrap().status(), 204) }
    };
    put("editor").await;
    b.expect_event("session:added").await;
    // Private now: c (no role of its own) loses access on node 2.
    let r = http
        .patch(format!("{}/api/sessions/{sid}", c.nodes[0].url))
        .bearer_auth(c.token("a"))
        .json(&json!({ "public": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = joined.expect_event("error").await;
    assert_eq!(code(e.args[0].as_json().unwrap()), "FORBIDDEN");
    for p in [&mut a, &mut b] {
        let e = p.expect_event("user-left").await;
        assert_eq!(e.args[0].as_json().unwrap()["userId"], "c");
    }
    put("viewer").await;
    let e = b.expect_event("role:changed").await;
    assert_eq!(e.args[0].as_json().unwrap()["role"], "viewer");
    let reply = b.send_update(&sid, b.random_edit(5), true).await.unwrap();
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");

    // b disconnects from node 1: a hears user-left.
    b.client.close();
    let e = a.expect_event("user-left").await;
    assert_eq!(e.args[0].as_json().unwrap()["userId"], "b");

    // Without an outage no node ever lost its subscription (the liveness
    // PING must not be mistaken for a dead connection).
    for n in &c.nodes {
        let metrics = n.get("/metrics").await.1;
        let reconnects = metrics
            .lines()
            .find(|l| l.starts_with("tandem_cluster_redis_reconnects_total"))
            .unwrap_or("none 0");
        assert!(reconnects.ends_with(" 0"), "{reconnects}\n{}", n.log_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_mid_edit_loses_no_acknowledged_edit() {
    let Some(mut c) = Cluster::start(2, &[]).await else {
        return;
    };
    let sid = c.session().await;
    let a = c.peer(0, "a", &sid).await;
    let mut b = c.peer(1, "b", &sid).await;
    // Every acknowledged update of a, in a document of its own.
    let acked = yrs::Doc::new();
    let edits = async {
        let mut rng = Rng(7);
        loop {
            let u = a.random_edit(rng.next());
            match a
                .client
                .emit_with_ack(
                    "yjs-update",
                    vec![Arg::json(&sid), Arg::bin(u.clone())],
                    Duration::from_secs(2),
                )
                .await
            {
                Ok(r) if r[0].as_json().is_some_and(|v| v["ok"] == true) => {
                    acked
                        .transact_mut()
                        .apply_update(yrs::Update::decode_v1(&u).unwrap())
                        .unwrap();
                }
                _ => return,
            }
        }
    };
    tokio::select! {
        _ = edits => panic!("edits stopped before the kill"),
        _ = tokio::time::sleep(Duration::from_millis(1500)) => {}
    }
    c.nodes[0].kill_9().await;
    assert!(!acked.transact().state_vector().is_empty());
    // Restarted at once under the same --node-id: still a new node to the
    // others, so what the dead run held expires all the same.
    c.nodes[0] = c.node(0, &[]).await;

    // Node 1 drops the dead node's user.
    let left = tokio::time::timeout(
        Duration::from_secs(5),
        b.expect_event_within("user-left", Duration::from_secs(10)),
    )
    .await;
    let Ok(e) = left else {
        panic!(
            "no user-left after the kill; node 1:\n{}",
            c.nodes[1].log_text()
        );
    };
    assert_eq!(e.args[0].as_json().unwrap()["userId"], "a");

    // a reconnects to the restarted node with the document it had and
    // converges with b on node 1.
    let a2 = Peer::connect_with_doc(&c.nodes[0].url, &c.token("a"), a.doc.clone())
        .await
        .unwrap();
    assert_eq!(a2.join(&sid).await["ok"], true);
    c.converge(&sid, &[&a2, &b], Duration::from_secs(10)).await;

    // Everything acknowledged is on node 1, whose view comes from the log.
    let fresh = c.peer(1, "d", &sid).await;
    let have = fresh.doc.transact().state_vector();
    for (client, clock) in acked.transact().state_vector().iter() {
        assert!(
            have.get(client) >= *clock,
            "acknowledged edits of client {client} up to {clock} lost (have {})",
            have.get(client)
        );
    }
}

/// Reads on another node are fresh even when several race (each one's
/// catch-up from the log starts after the read began, instead of skipping
/// because another catch-up is already running). Redis is down, so the log
/// is the only way the edits reach node 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_on_another_node_are_all_fresh() {
    let Some(mut c) = Cluster::start(2, &[]).await else {
        return;
    };
    let sid = c.session().await;
    let a = c.peer(0, "a", &sid).await;
    let _b = c.peer(1, "b", &sid).await;
    c.redis.kill().await;
    for round in 0..15 {
        edit_and_ack(&a, &sid, 1, 100 + round).await;
        let want = a.text();
        let reads = futures::future::join_all((0..4).map(|_| c.text_on(1, &sid))).await;
        for got in reads {
            assert_eq!(got, want, "round {round}: a stale read on node 1");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_session_loses_nothing_and_broadcasts_resume() {
    let Some(mut c) = Cluster::start(2, &[]).await else {
        return;
    };
    let sid = c.session().await;
    let a = c.peer(0, "a", &sid).await;
    let mut b = c.peer(1, "b", &sid).await;
    edit_and_ack(&a, &sid, 20, 11).await;
    c.converge(&sid, &[&a, &b], Duration::from_secs(10)).await;
    assert_eq!(c.nodes[0].get("/readyz").await.0, 200);

    c.redis.kill().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.nodes[0].get("/readyz").await.0 != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz still 200 with Redis down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Edits are acknowledged during the outage (PostgreSQL is the truth),
    // and a read on the other node shows them at once: it catches up from
    // the log before answering.
    edit_and_ack(&a, &sid, 20, 12).await;
    assert_eq!(c.text_on(1, &sid).await, a.text(), "GET /text on node 1");
    edit_and_ack(&b, &sid, 20, 13).await;
    // Longer than the node timeout: a deaf node does not drop the others.
    b.expect_no_event("user-left", Duration::from_secs(2)).await;

    c.redis.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for n in &c.nodes {
        while n.get("/readyz").await.0 != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz not back after Redis returned:\n{}",
                n.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    c.converge(&sid, &[&a, &b], Duration::from_secs(10)).await;

    // Broadcasts resume: chat from node 0 reaches node 1, live edits too.
    assert_eq!(a.chat(&sid, "back").await["ok"], true);
    let m = b.expect_event("chat-message").await;
    assert_eq!(m.args[0].as_json().unwrap()["content"], "back");
    let before = b.received.load(std::sync::atomic::Ordering::Relaxed);
    edit_and_ack(&a, &sid, 5, 14).await;
    eventually(
        Duration::from_secs(5),
        "live updates after the restart",
        || b.received.load(std::sync::atomic::Ordering::Relaxed) >= before + 5,
    )
    .await;
    c.converge(&sid, &[&a, &b], Duration::from_secs(10)).await;
    let metrics = c.nodes[1].get("/metrics").await.1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tandem_cluster_redis_reconnects_total") && !l.ends_with(" 0")),
        "reconnect not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_written_while_two_nodes_edit_lose_nothing() {
    // Snapshots every few hundred milliseconds on both nodes.
    let fast = [
        "--snapshot-debounce-ms",
        "50",
        "--snapshot-max-delay-ms",
        "200",
    ];
    let Some(mut c) = Cluster::start(2, &fast).await else {
        return;
    };
    let sid = c.session().await;
    let a = c.peer(0, "a", &sid).await;
    let b = c.peer(1, "b", &sid).await;
    for round in 0..5 {
        tokio::join!(
            edit_and_ack(&a, &sid, 30, 100 + round),
            edit_and_ack(&b, &sid, 30, 200 + round),
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let text = c.converge(&sid, &[&a, &b], Duration::from_secs(10)).await;
    drop((a, b));
    // Compaction ran (rows were folded into the snapshot) ...
    let store = tandem::store::connect(&c.db).await.unwrap();
    let stored = store.load_document(&sid).await.unwrap().unwrap();
    assert!(stored.snapshot.is_some(), "no snapshot was written");
    assert!(
        stored.updates.len() < 300,
        "{} rows left",
        stored.updates.len()
    );
    // ... and a node that loads the document from scratch has every edit.
    for n in &mut c.nodes {
        n.kill_9().await;
    }
    c.nodes.clear();
    let fresh = c.node(9, &[]).await;
    c.nodes.push(fresh);
    assert_eq!(c.text_on(0, &sid).await, text);
}

/// `rediss://`: nodes reach a TLS-only Redis whose certificate they verify
/// (against the CA `SSL_CERT_FILE` names): ready, chat and edits cross
/// nodes. A node that cannot verify it refuses to start, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_a_tls_redis_and_verify_its_certificate() {
    if postgres_server_url().is_none() {
        return;
    }
    let Some(redis) = RedisServer::start_tls().await else {
        return;
    };
    let redis_url = redis.url();
    assert!(redis_url.starts_with("rediss://"), "{redis_url}");
    let Some(c) = Cluster::start_on(redis, 2, &[]).await else {
        return;
    };
    for node in &c.nodes {
        assert_eq!(node.get("/readyz").await.0, 200);
    }
    let sid = c.session().await;
    let (a, mut b) = (c.peer(0, "a", &sid).await, c.peer(1, "b", &sid).await);
    assert_eq!(a.chat(&sid, "over tls").await["ok"], true);
    let m = b.expect_event("chat-message").await;
    assert_eq!(m.args[0].as_json().unwrap()["content"], "over tls");
    edit_and_ack(&a, &sid, 20, 1).await;
    edit_and_ack(&b, &sid, 20, 2).await;
    c.converge(&sid, &[&a, &b], Duration::from_secs(10)).await;

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["serve", "--bind", "127.0.0.1:0", "--secret", SECRET])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--database-url", &c.db, "--redis-url", &redis_url])
        .env("SSL_CERT_FILE", "/nonexistent/bundle.pem")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {err}");
    assert!(err.contains("cannot reach Redis at rediss://"), "{err}");
}

#[tokio::test]
async fn cluster_mode_refuses_sqlite_and_a_disabled_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let sqlite = format!("sqlite://{d}/t.db");
    for (db, extra, says) in [
        (sqlite.as_str(), None, "needs PostgreSQL"),
        (
            "postgres://postgres@127.0.0.1:5432/test",
            Some("false"),
            "needs the update log",
        ),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"));
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--secret", SECRET])
            .args(["--data-dir", &d, "--database-url", db])
            .args(["--redis-url", "redis://127.0.0.1:1"]);
        if let Some(v) = extra {
            cmd.args(["--update-log", v]);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started: {err}");
        assert!(err.contains(says), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_y_websocket_client_on_another_node_edits_with_a_native_one() {
    let Some(c) = Cluster::start(2, &[]).await else {
        return;
    };
    let sid = c.session().await;
    let a = c.peer(0, "a", &sid).await;
    let (w, mut wrx) =
        tandem::client::Client::connect_ywebsocket(&c.nodes[1].url, &sid, Some(&c.token("w")))
            .await
            .unwrap();
    let wdoc = yrs::Doc::new();
    let text = wdoc.get_or_insert_text("monaco");
    // Reads y-websocket traffic into `wdoc` until it shows `want`.
    let read_until = async |want: &str, wrx: &mut tokio::sync::mpsc::UnboundedReceiver<_>| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while yrs::GetString::get_string(&text, &wdoc.transact()) != want {
            let inc = tokio::time::timeout_at(deadline, wrx.recv())
                .await
                .expect("the y-websocket client got the edit in time")
                .expect("connection open");
            if let tandem::client::Incoming::Event(ev) = inc {
                match ev.name.as_str() {
                    "sync-step-1" => {
                        if let Some(ack) = ev.ack {
                            ack.reply(vec![Arg::bin(vec![0u8])]).unwrap();
                        }
                    }
                    "sync-update" | "sync-step-2" => {
                        let u = yrs::Update::decode_v1(ev.args[0].as_bin().unwrap()).unwrap();
                        wdoc.transact_mut().apply_update(u).unwrap();
                    }
                    _ => {}
                }
            }
        }
    };
    // A native edit on node 0 reaches the y-websocket client on node 1 ...
    let u = a.edit(|t, txn| yrs::Text::insert(t, txn, 0, "native"));
    assert_eq!(a.send_update(&sid, u, true).await.unwrap()["ok"], true);
    read_until("native", &mut wrx).await;
    // ... and its edit reaches the native client.
    let u = {
        let mut txn = wdoc.transact_mut();
        yrs::Text::insert(&text, &mut txn, 6, " + yws");
        txn.encode_update_v1()
    };
    w.emit("sync-update", vec![Arg::bin(u)]).unwrap();
    eventually(
        Duration::from_secs(10),
        "the native client sees the edit",
        || a.text() == "native + yws",
    )
    .await;
    c.converge(&sid, &[&a], Duration::from_secs(5)).await;
    w.close();
}
