//! The hostile-client suite (issue 10): the real `tandem` binary, started as
//! a child process so its own RSS can be read from `/proc/<pid>/status`, is
//! attacked over raw WebSockets, raw TCP and the project's Socket.IO client.
//!
//! Every attack follows the same frame:
//! 1. warm up (a well-behaved pair edits the session once), record VmRSS;
//! 2. run the attack while a sampler records the peak VmRSS;
//! 3. check the process is alive, never logged a panic, and answers `/healthz`;
//! 4. a fresh well-behaved pair (native dialect) joins the same session,
//!    edits, and both replicas and `GET /api/sessions/{id}/text` agree;
//! 5. with the attack's connections closed, VmRSS comes back within
//!    [`BAND_KIB`] of the baseline (polled for up to 10 s: glibc keeps some
//!    freed memory). Attacks that hold memory (attachments that never come,
//!    512 KB arguments) send more than the band, so a leak of what they send
//!    fails the check.
//!
//! Each test prints one `hostile[<attack>]` line with its RSS figures
//! (`cargo test --test hostile_suite -- --nocapture`).
//!
//! Reading a server answer is always bounded in time; an attack whose
//! connection is neither answered nor closed within [`SILENCE`] counts as
//! "silent" and fails where an answer or a close is required.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::peer::{Peer, code};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tandem::auth::Auth;
use tandem::client::{Arg, Client, ClientError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, Text, Transact};

const SECRET: &str = "hostile-suite-secret";
/// How far above its baseline the server's RSS may stay once an attack is over.
const BAND_KIB: u64 = 48 * 1024;
/// How long a request may go unanswered before it counts as silent.
const SILENCE: Duration = Duration::from_secs(5);
const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------

/// The last lines of the server's log, and whether it ever logged a panic.
#[derive(Default)]
struct LogTail {
    lines: std::collections::VecDeque<String>,
    panics: Vec<String>,
}

/// `tandem serve` as a child process on a port of its choosing.
struct Server {
    child: Child,
    pid: u32,
    /// `127.0.0.1:<port>`
    addr: String,
    /// `http://127.0.0.1:<port>`
    url: String,
    auth: Auth,
    /// No idle pooled connections: they would count against the per-IP limit.
    http: reqwest::Client,
    log: Arc<Mutex<LogTail>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the real binary with the suite's base flags plus `extra`.
    async fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tandem"));
        for (k, _) in std::env::vars() {
            if k.starts_with("TANDEM_") {
                cmd.env_remove(k);
            }
        }
        cmd.env(
            "RUST_LOG",
            "info,socketioxide=warn,engineioxide=warn,sqlx=warn,tower_http=warn",
        )
        .args(["serve", "--bind", "127.0.0.1:0", "--secret", SECRET])
        .args(["--data-dir", &d])
        .args(["--database-url", &format!("sqlite://{d}/t.db")])
        .args(["--anonymous", "off", "--web-dir", &format!("{d}/no-web")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the tandem binary");
        let pid = child.id();
        let log = Arc::new(Mutex::new(LogTail::default()));
        let (port_tx, port_rx) = std::sync::mpsc::channel::<String>();
        // Both pipes are drained for the life of the process: a full pipe
        // would block the server's logging.
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for pipe in [out, err] {
            let (log, port_tx) = (log.clone(), port_tx.clone());
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    // src/server.rs: `listening on http://{addr}`
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let _ = port_tx.send(addr.to_owned());
                    }
                    let mut l = log.lock().unwrap();
                    if line.contains("panicked") || line.contains("overflowed its stack") {
                        l.panics.push(line.clone());
                    }
                    l.lines.push_back(line);
                    if l.lines.len() > 200 {
                        l.lines.pop_front();
                    }
                }
            });
        }
        let addr = match port_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let tail: Vec<_> = log.lock().unwrap().lines.iter().cloned().collect();
                panic!("server never logged `listening on`:\n{}", tail.join("\n"));
            }
        };
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let srv = Server {
            child,
            pid,
            url: format!("http://{addr}"),
            addr,
            auth: Auth::new(SECRET.as_bytes()),
            http,
            log,
            _dir: dir,
        };
        for _ in 0..500 {
            if srv.healthy().await {
                return srv;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("server at {} never answered /healthz", srv.url);
    }

    fn token(&self, user: &str) -> String {
        self.auth.issue(user, user, HashMap::new(), 3600)
    }

    fn auth_json(&self, user: &str) -> Value {
        json!({ "token": self.token(user) })
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.pid).unwrap_or_else(|| panic!("server process {} is gone", self.pid))
    }

    async fn healthy(&self) -> bool {
        self.http
            .get(format!("{}/healthz", self.url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// The process is running, never logged a panic, and serves HTTP.
    async fn assert_alive(&mut self, attack: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "[{attack}] the server exited ({status}); last log lines:\n{}",
                self.tail()
            );
        }
        let panics = self.log.lock().unwrap().panics.clone();
        assert!(
            panics.is_empty(),
            "[{attack}] the server logged a panic:\n{}",
            panics.join("\n")
        );
        assert!(self.healthy().await, "[{attack}] /healthz does not answer");
    }

    fn tail(&self) -> String {
        let l = self.log.lock().unwrap();
        l.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// A public session (public role editor) owned by `owner`.
    async fn create_session(&self) -> String {
        let r = self
            .http
            .post(format!("{}/api/sessions", self.url))
            .bearer_auth(self.token("owner"))
            .json(&json!({ "title": "hostile", "public": true, "publicRole": "editor" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create session");
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    async fn text(&self, session: &str) -> String {
        let r = self
            .http
            .get(format!("{}/api/sessions/{session}/text", self.url))
            .bearer_auth(self.token("owner"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET text: {}", r.status());
        r.text().await.unwrap()
    }

    /// Users listed as online in `GET /api/sessions/{id}`.
    async fn online(&self, session: &str) -> HashSet<String> {
        let v: Value = self
            .http
            .get(format!("{}/api/sessions/{session}", self.url))
            .bearer_auth(self.token("owner"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["online"] == true)
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Sum of a Prometheus series (all label sets whose text contains
    /// `labels`); `None` if the server exports no such series.
    async fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let body = common::get_text(&self.http, &format!("{}/metrics", self.url)).await;
        let values: Vec<f64> = body
            .lines()
            .filter(|l| {
                l.split(['{', ' ']).next() == Some(name)
                    && (labels.is_empty() || l.contains(labels))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// The end of every attack: alive, a fresh pair converges, RSS back in band.
    async fn after_attack(&mut self, attack: &str, session: &str, watch: RssWatch) {
        self.assert_alive(attack).await;
        good_pair(self, session, attack).await;
        let peak = watch.stop();
        let base = watch.baseline;
        let deadline = Instant::now() + Duration::from_secs(10);
        let after = loop {
            let now = self.rss_kib();
            if now <= base + BAND_KIB {
                break now;
            }
            if Instant::now() > deadline {
                panic!(
                    "[{attack}] server RSS stayed at {} MiB, baseline {} MiB (band +{} MiB, peak {} MiB)",
                    now / 1024,
                    base / 1024,
                    BAND_KIB / 1024,
                    peak / 1024
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        eprintln!(
            "hostile[{attack}]: RSS baseline {:.1} MiB, peak {:.1} MiB, after {:.1} MiB (band +{} MiB)",
            base as f64 / 1024.0,
            peak.max(after) as f64 / 1024.0,
            after as f64 / 1024.0,
            BAND_KIB / 1024
        );
        self.assert_alive(attack).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The baseline and a sampler of the peak RSS during an attack.
struct RssWatch {
    baseline: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssWatch {
    /// Warms the session up with one well-behaved pair, then takes the baseline.
    async fn begin(srv: &Server, session: &str) -> RssWatch {
        good_pair(srv, session, "warm-up").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let baseline = srv.rss_kib();
        let peak = Arc::new(AtomicU64::new(baseline));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, pid) = (peak.clone(), stop.clone(), srv.pid);
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(r) = rss_kib(pid) {
                    p.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch {
            baseline,
            peak,
            stop,
        }
    }

    fn stop(&self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}

/// Two well-behaved native clients join `session`, edit concurrently and
/// converge; the HTTP text agrees with them.
async fn good_pair(srv: &Server, session: &str, tag: &str) {
    let a = Peer::connect(&srv.url, Some(&srv.token("good-a")))
        .await
        .unwrap_or_else(|e| panic!("[{tag}] good client a cannot connect: {e}"));
    let b = Peer::connect(&srv.url, Some(&srv.token("good-b")))
        .await
        .unwrap_or_else(|e| panic!("[{tag}] good client b cannot connect: {e}"));
    for p in [&a, &b] {
        let r = p.join(session).await;
        assert_eq!(r["ok"], true, "[{tag}] good client join: {r}");
    }
    edit_and_converge(srv, session, tag, &a, &b).await;
    a.client.close();
    b.client.close();
}

/// Both peers insert markers (acked: committed), then must hold the same
/// text containing all of them, which `GET text` also returns.
async fn edit_and_converge(srv: &Server, session: &str, tag: &str, a: &Peer, b: &Peer) {
    let mut markers = Vec::new();
    for i in 0..3 {
        for (name, p) in [("a", a), ("b", b)] {
            let m = format!("<{tag}:{name}{i}>");
            let u = p.edit(|t, txn| {
                let at = if name == "a" { 0 } else { t.len(txn) };
                t.insert(txn, at, &m)
            });
            let r = p.send_update(session, u, true).await.unwrap();
            assert_eq!(r["ok"], true, "[{tag}] good client update refused: {r}");
            markers.push(m);
        }
    }
    let converged = |a: &Peer, b: &Peer| {
        let (ta, tb) = (a.text(), b.text());
        ta == tb && markers.iter().all(|m| ta.contains(m))
    };
    let deadline = Instant::now() + T;
    while !converged(a, b) {
        assert!(
            Instant::now() < deadline,
            "[{tag}] good clients did not converge:\n a: {:?}\n b: {:?}",
            a.text(),
            b.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        srv.text(session).await,
        a.text(),
        "[{tag}] GET /text differs from the clients' text"
    );
}

// ---------------------------------------------------------------------------
// A raw WebSocket speaking Engine.IO by hand
// ---------------------------------------------------------------------------

/// What a raw connection saw in answer to something it sent.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Answered(String),
    Closed,
    Silent,
}

impl Outcome {
    fn kind(&self) -> &'static str {
        match self {
            Outcome::Answered(_) => "answered",
            Outcome::Closed => "closed",
            Outcome::Silent => "silent",
        }
    }
}

enum Frame {
    Text(String),
    Bin,
    Closed,
    Timeout,
}

struct Raw {
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
}

impl Raw {
    /// TCP + WebSocket upgrade + the Engine.IO open packet. `rcvbuf` sets a
    /// small receive buffer (for clients that stop reading).
    async fn open(addr: &str, rcvbuf: Option<u32>) -> Result<Raw, String> {
        let sa: SocketAddr = addr.parse().unwrap();
        let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n).map_err(|e| e.to_string())?;
        }
        let tcp = sock.connect(sa).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio::time::timeout(T, tokio_tungstenite::client_async(url, tcp))
            .await
            .map_err(|_| "upgrade timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let mut raw = Raw { ws, next_id: 1 };
        match raw.next(T).await {
            Frame::Text(t) if t.starts_with('0') => Ok(raw),
            Frame::Text(t) => Err(format!("expected engine.io open, got {t:?}")),
            _ => Err("no engine.io open packet".into()),
        }
    }

    /// [`open`](Self::open) plus a Socket.IO connect to `/` with `auth`.
    async fn connected(addr: &str, auth: &Value) -> Raw {
        let mut r = Raw::open(addr, None).await.unwrap();
        r.sio_connect(auth).await;
        r
    }

    async fn sio_connect(&mut self, auth: &Value) {
        self.text(format!("40{auth}")).await;
        match self
            .wait_for(T, |t| t.starts_with("40") || t.starts_with("44"))
            .await
        {
            Outcome::Answered(t) if t.starts_with("40") => {}
            other => panic!("socket.io connect failed: {other:?}"),
        }
    }

    /// Sends a text frame; a connection the server already closed is not an error here.
    async fn text(&mut self, s: impl Into<String>) {
        let _ = self.ws.send(Message::text(s.into())).await;
    }

    /// The next text or binary frame, answering Engine.IO pings.
    async fn next(&mut self, within: Duration) -> Frame {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Frame::Timeout,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Frame::Closed;
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    if t.as_str() == "2" {
                        let _ = self.ws.send(Message::text("3")).await;
                        continue;
                    }
                    return Frame::Text(t.as_str().to_owned());
                }
                Ok(Some(Ok(Message::Binary(_)))) => return Frame::Bin,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Waits for a text frame matching `pred`, skipping others.
    async fn wait_for(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> Outcome {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Frame::Text(t) if pred(&t) => return Outcome::Answered(t),
                Frame::Text(_) | Frame::Bin => continue,
                Frame::Closed => return Outcome::Closed,
                Frame::Timeout => return Outcome::Silent,
            }
        }
    }

    /// Sends `42<id><args>` on `/` and waits for its ack; the answer is the
    /// ack's JSON array.
    async fn request(&mut self, args: &str) -> Outcome {
        let id = self.next_id;
        self.next_id += 1;
        self.text(format!("42{id}{args}")).await;
        self.ack(id).await
    }

    async fn ack(&mut self, id: u64) -> Outcome {
        let prefix = format!("43{id}[");
        match self.wait_for(SILENCE, |t| t.starts_with(&prefix)).await {
            Outcome::Answered(t) => Outcome::Answered(t[prefix.len() - 1..].to_owned()),
            o => o,
        }
    }

    /// Is the connection still served? A request that must be answered.
    async fn probe(&mut self) -> Outcome {
        self.request(r#"["leave-session",{"sessionId":"probe"}]"#)
            .await
    }
}

/// The first element of an ack array, as JSON.
fn ack_value(ack: &str) -> Value {
    serde_json::from_str::<Value>(ack)
        .ok()
        .and_then(|v| v.get(0).cloned())
        .unwrap_or(Value::Null)
}

fn placeholder(n: usize) -> Value {
    json!({ "_placeholder": true, "num": n })
}

// ---------------------------------------------------------------------------
// 1. Malformed Engine.IO / Socket.IO frames
// ---------------------------------------------------------------------------

struct Case {
    name: &'static str,
    /// Socket.IO-connected to `/` before the frames are sent.
    connected: bool,
    frames: Vec<Message>,
}

fn malformed_cases() -> Vec<Case> {
    let t = |s: &str| Message::text(s.to_owned());
    let b = |v: &[u8]| Message::binary(v.to_vec());
    let upd = json!(["yjs-update", "s", placeholder(0), placeholder(1)]).to_string();
    let c = |name, connected, frames| Case {
        name,
        connected,
        frames,
    };
    vec![
        c(
            "engine.io garbage text",
            false,
            vec![t("\u{1}garbage{{{ ]]")],
        ),
        c("empty text frame", false, vec![t("")]),
        c("unknown engine.io packet type", false, vec![t("9hello")]),
        c(
            "engine.io upgrade packet on a websocket",
            false,
            vec![t("5")],
        ),
        c(
            "binary frame before any namespace",
            false,
            vec![b(&[0xff; 16])],
        ),
        c(
            "connect with a non-object auth",
            false,
            vec![t("40[1,2,3]")],
        ),
        c(
            "connect with broken JSON auth",
            false,
            vec![t("40{\"token\":")],
        ),
        c(
            "connect to an unknown namespace",
            false,
            vec![t("40/no-such-namespace,{}")],
        ),
        c("truncated `4`", true, vec![t("4")]),
        c("truncated `42`", true, vec![t("42")]),
        c("truncated `42[`", true, vec![t("42[")]),
        c("truncated `451-[`", true, vec![t("451-[")]),
        c("unknown socket.io packet type", true, vec![t(r#"47["x"]"#)]),
        c("non-digit socket.io packet type", true, vec![t("4x[]")]),
        c("event without a name", true, vec![t("42[]")]),
        c("event name not a string", true, vec![t(r#"42[17,{}]"#)]),
        c("event payload an object", true, vec![t(r#"42{"a":1}"#)]),
        c(
            "event payload not JSON",
            true,
            vec![t("42[\"join-session\",{]")],
        ),
        c("unknown event", true, vec![t(r#"4277["no-such-event",1]"#)]),
        c(
            "event to a namespace never connected",
            true,
            vec![t(r#"42/elsewhere,["join-session",{"sessionId":"x"}]"#)],
        ),
        c(
            "ack for an id never sent",
            true,
            vec![t(r#"4399[{"ok":true}]"#)],
        ),
        c("ack without an id", true, vec![t(r#"43[{"ok":true}]"#)]),
        c(
            "ack id overflowing i64",
            true,
            vec![t(
                r#"4299999999999999999999["leave-session",{"sessionId":"x"}]"#,
            )],
        ),
        c("binary frame without a header", true, vec![b(&[1, 2, 3])]),
        c(
            "attachments without a header",
            true,
            vec![b(&[0; 8]), b(&[1; 64]), b(&[2; 512])],
        ),
        c(
            "header announcing attachments that never come",
            true,
            vec![t(&format!("452-{upd}"))],
        ),
        c(
            "header announcing one of two attachments",
            true,
            vec![t(&format!("452-{upd}")), b(&[0; 4])],
        ),
        c(
            "header announcing 10^15 attachments",
            true,
            vec![t(&format!("451000000000000000-{upd}"))],
        ),
        c(
            "header with a junk attachment count",
            true,
            vec![t(&format!("45x-{upd}"))],
        ),
        c(
            "placeholder pointing past the attachments",
            true,
            vec![
                t(&format!(
                    "451-{}",
                    json!(["yjs-update", "s", placeholder(7)])
                )),
                b(&[0; 4]),
            ],
        ),
        c(
            "binary ack for an id never sent",
            true,
            vec![t(&format!("461-55{}", json!([placeholder(0)]))), b(&[9; 9])],
        ),
        c(
            "disconnect, then events",
            true,
            vec![t("41"), t(r#"42["join-session",{"sessionId":"x"}]"#)],
        ),
    ]
}

/// Sends one malformed case on a fresh connection, then probes it: the
/// server must either still serve the connection or close it.
async fn run_case(addr: String, auth: Value, case: &Case) -> Outcome {
    let mut r = Raw::open(&addr, None).await.unwrap();
    if case.connected {
        r.sio_connect(&auth).await;
    }
    for f in &case.frames {
        let _ = r.ws.send(f.clone()).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    if !case.connected {
        // Try the normal handshake on the same connection.
        r.text(format!("40{auth}")).await;
        let o = r
            .wait_for(SILENCE, |t| t.starts_with("40{") && t.contains("\"sid\""))
            .await;
        if o == Outcome::Closed {
            return o;
        }
    }
    r.probe().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames() {
    let mut srv = Server::start(&[]).await;
    let session = srv.create_session().await;
    let watch = RssWatch::begin(&srv, &session).await;

    // Every case on 6 connections at once.
    let cases = Arc::new(malformed_cases());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..cases.len() {
        for _ in 0..6 {
            let (cases, addr, auth) = (cases.clone(), srv.addr.clone(), srv.auth_json("mal"));
            tasks.spawn(async move { (i, run_case(addr, auth, &cases[i]).await) });
        }
    }
    let mut seen: BTreeMap<usize, BTreeMap<&'static str, usize>> = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let (i, o) = r.unwrap();
        *seen.entry(i).or_default().entry(o.kind()).or_default() += 1;
    }
    for (i, kinds) in &seen {
        eprintln!("malformed: {:<48} {:?}", cases[*i].name, kinds);
    }
    let silent: Vec<_> = seen
        .iter()
        .filter(|(_, k)| k.contains_key("silent"))
        .map(|(i, k)| format!("{}: {k:?}", cases[*i].name))
        .collect();
    assert!(
        silent.is_empty(),
        "connections neither served nor closed after malformed frames:\n{}",
        silent.join("\n")
    );

    // Memory held by partial packets: 160 connections each announce two
    // attachments with a 400 KB header and never send them (64 MB, more
    // than the band), then go away.
    let filler = "x".repeat(400 << 10);
    let header = format!(
        "452-{}",
        json!(["yjs-update", filler, placeholder(0), placeholder(1)])
    );
    let mut held = Vec::new();
    for _ in 0..160 {
        let mut r = Raw::connected(&srv.addr, &srv.auth_json("mal")).await;
        r.text(header.clone()).await;
        held.push(r);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak_held = srv.rss_kib();
    // Each held connection is still open and waiting (not closed early).
    let mut open = 0;
    for r in &mut held {
        if let Frame::Timeout = r.next(Duration::from_millis(5)).await {
            open += 1;
        }
    }
    assert_eq!(
        open,
        held.len(),
        "connections waiting for attachments were closed"
    );
    drop(held);
    eprintln!(
        "malformed: 160 partial 400 KB packets held: RSS {} MiB (baseline {} MiB)",
        peak_held / 1024,
        watch.baseline / 1024
    );
    srv.after_attack("malformed frames", &session, watch).await;
}

// ---------------------------------------------------------------------------
// 2. Binary where JSON is expected, and JSON where binary is expected
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_json_confusion() {
    let mut srv = Server::start(&[]).await;
    let session = srv.create_session().await;
    let watch = RssWatch::begin(&srv, &session).await;

    let (c, _rx) = Client::connect(&srv.url, "/", Some(srv.auth_json("confused")))
        .await
        .unwrap();
    let r = c
        .emit_with_ack(
            "join-session",
            vec![Arg::json(json!({ "sessionId": session }))],
            T,
        )
        .await
        .unwrap();
    assert_eq!(r[0].as_json().unwrap()["ok"], true);

    // A real update (text "INJECTED") that must never be applied when it
    // arrives in JSON clothing.
    let injected = {
        let d = Doc::new();
        let t = d.get_or_insert_text("monaco");
        let mut txn = d.transact_mut();
        t.insert(&mut txn, 0, "INJECTED");
        txn.encode_update_v1()
    };
    let as_numbers = Value::Array(injected.iter().map(|b| json!(b)).collect());
    let as_string = Value::String(String::from_utf8_lossy(&injected).into_owned());
    let sv = Doc::new().transact().state_vector().encode_v1();
    let big = vec![0xA5u8; 320 << 10];
    let s = || Arg::json(&session);
    let cases: Vec<(&str, &str, Vec<Arg>)> = vec![
        (
            "join-session: binary",
            "join-session",
            vec![Arg::bin(big.clone())],
        ),
        ("join-session: number", "join-session", vec![Arg::json(7)]),
        ("join-session: bare id string", "join-session", vec![s()]),
        (
            "join-session: null",
            "join-session",
            vec![Arg::json(Value::Null)],
        ),
        ("join-session: no argument", "join-session", vec![]),
        (
            "join-session: sessionId a number",
            "join-session",
            vec![Arg::json(json!({ "sessionId": 5 }))],
        ),
        (
            "join-session: sessionId an array",
            "join-session",
            vec![Arg::json(json!({ "sessionId": [session] }))],
        ),
        (
            "leave-session: binary",
            "leave-session",
            vec![Arg::bin(big.clone())],
        ),
        ("typing: binary", "typing", vec![Arg::bin(vec![1, 2])]),
        (
            "chat-message: binary",
            "chat-message",
            vec![Arg::bin(big.clone())],
        ),
        (
            "chat-message: content a number",
            "chat-message",
            vec![Arg::json(json!({ "sessionId": session, "content": 5 }))],
        ),
        (
            "yjs-update: update as a JSON array of numbers",
            "yjs-update",
            vec![s(), Arg::json(as_numbers.clone())],
        ),
        (
            "yjs-update: update as a JSON string",
            "yjs-update",
            vec![s(), Arg::json(as_string.clone())],
        ),
        (
            "yjs-update: update as an object",
            "yjs-update",
            vec![s(), Arg::json(json!({ "0": 1 }))],
        ),
        ("yjs-update: no update", "yjs-update", vec![s()]),
        (
            "yjs-update: session id binary",
            "yjs-update",
            vec![
                Arg::bin(session.clone().into_bytes()),
                Arg::bin(injected.clone()),
            ],
        ),
        (
            "yjs-update: session as an object",
            "yjs-update",
            vec![
                Arg::json(json!({ "sessionId": session })),
                Arg::bin(injected.clone()),
            ],
        ),
        (
            "yjs-sync-step-1: state vector as JSON numbers",
            "yjs-sync-step-1",
            vec![s(), Arg::json(json!(sv))],
        ),
        (
            "yjs-awareness: update as a JSON string",
            "yjs-awareness",
            vec![s(), Arg::json("{\"clients\":[]}")],
        ),
    ];
    let mut wrong = Vec::new();
    for (name, event, args) in &cases {
        let reply = c
            .emit_with_ack(event, args.clone(), T)
            .await
            .unwrap_or_else(|e| panic!("{name}: no ack ({e})"));
        let v = reply
            .first()
            .and_then(Arg::as_json)
            .cloned()
            .unwrap_or_default();
        eprintln!("confusion: {name:<48} -> {}", code(&v));
        if v["ok"] != false || code(&v) != "INVALID_PAYLOAD" {
            wrong.push(format!("{name}: {v}"));
        }
    }
    // Volume for the RSS check: 200 × 320 KB binary arguments where JSON
    // belongs (64 MB, more than the band), each refused.
    for i in 0..200 {
        let event = ["join-session", "leave-session", "chat-message"][i % 3];
        let reply = c
            .emit_with_ack(event, vec![Arg::bin(big.clone())], T)
            .await
            .unwrap();
        assert_eq!(code(reply[0].as_json().unwrap()), "INVALID_PAYLOAD");
    }

    // y-socket.io dialect: JSON where its binary payloads belong gets an
    // `error` event with INVALID_PAYLOAD, and nothing is applied.
    let (y, mut yrx) = Client::connect(
        &srv.url,
        &format!("/yjs|{session}"),
        Some(srv.auth_json("confused-y")),
    )
    .await
    .unwrap();
    for (name, event, arg) in [
        (
            "sync-update: JSON numbers",
            "sync-update",
            as_numbers.clone(),
        ),
        ("sync-update: JSON string", "sync-update", as_string.clone()),
        (
            "awareness-update: JSON object",
            "awareness-update",
            json!({}),
        ),
    ] {
        y.emit(event, vec![Arg::json(arg)]).unwrap();
        let got = loop {
            match tokio::time::timeout(SILENCE, yrx.recv()).await {
                Ok(Some(tandem::client::Incoming::Event(ev))) if ev.name == "error" => {
                    break ev
                        .args
                        .first()
                        .and_then(Arg::as_json)
                        .cloned()
                        .unwrap_or_default();
                }
                Ok(Some(tandem::client::Incoming::Event(ev))) => {
                    if let Some(ack) = ev.ack {
                        let _ = ack.reply(vec![Arg::bin(vec![0u8, 0])]);
                    }
                }
                Ok(Some(tandem::client::Incoming::Disconnected { reason })) => {
                    break json!({ "disconnected": reason });
                }
                Ok(None) => break json!({ "disconnected": "receiver closed" }),
                Err(_) => break json!({ "silent": true }),
            }
        };
        eprintln!("confusion: {name:<48} -> {}", code(&got));
        if code(&got) != "INVALID_PAYLOAD" {
            wrong.push(format!("y-socket.io {name}: {got}"));
        }
    }
    y.close();
    c.close();
    drop(_rx);

    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = srv.text(&session).await;
    assert!(
        !text.contains("INJECTED"),
        "an update sent as JSON instead of binary was applied: {text:?}"
    );
    assert!(
        wrong.is_empty(),
        "requests of the wrong type not refused with INVALID_PAYLOAD:\n{}",
        wrong.join("\n")
    );
    srv.after_attack("binary/JSON confusion", &session, watch)
        .await;
}

// ---------------------------------------------------------------------------
// 3. Huge and deeply nested JSON arguments
// ---------------------------------------------------------------------------

fn nested_array(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_object(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// What a request in [`huge_and_deep_json`] must get (closing the connection
/// is always acceptable).
enum Expect {
    /// An ack `{ ok: false, error }`.
    Refusal,
    /// Any ack: the trailing argument is ignored, the request is valid.
    Answer,
    /// Nothing: no handler, no ack (the connection must still be served).
    Silence,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_deep_json() {
    let mut srv = Server::start(&[]).await;
    let session = srv.create_session().await;
    let watch = RssWatch::begin(&srv, &session).await;
    let auth = srv.auth_json("deep");
    let big = "A".repeat(512 << 10);
    let deep = nested_array(10_000);
    let very_deep = nested_array(1_000_000);

    use Expect::*;
    let requests: Vec<(&str, String, Expect)> = vec![
        (
            "join-session: 10,000-deep array",
            format!(r#"["join-session",{deep}]"#),
            Refusal,
        ),
        (
            "join-session: sessionId a 10,000-deep object",
            format!(
                r#"["join-session",{{"sessionId":{}}}]"#,
                nested_object(10_000)
            ),
            Refusal,
        ),
        (
            "join-session: 1,000,000-deep second argument",
            format!(r#"["join-session",{{"sessionId":"{session}"}},{very_deep}]"#),
            Answer,
        ),
        (
            "yjs-update: 10,000-deep session id",
            format!(r#"["yjs-update",{deep}]"#),
            Refusal,
        ),
        (
            "chat-message: 10,000-deep content",
            format!(r#"["chat-message",{{"sessionId":"{session}","content":{deep}}}]"#),
            Refusal,
        ),
        (
            "unknown event: 1,000,000-deep argument",
            format!(r#"["nope",{very_deep}]"#),
            Silence,
        ),
        (
            "join-session: 512 KB session id",
            format!(r#"["join-session",{{"sessionId":"{big}"}}]"#),
            Refusal,
        ),
        (
            "yjs-update: 512 KB session id",
            format!(r#"["yjs-update","{big}"]"#),
            Refusal,
        ),
        (
            "chat-message: 512 KB content (joined)",
            format!(r#"["chat-message",{{"sessionId":"{session}","content":"{big}"}}]"#),
            Refusal,
        ),
        (
            "unknown 512 KB event name",
            format!(r#"["{big}",1]"#),
            Silence,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, args, expect) in &requests {
        let mut r = Raw::connected(&srv.addr, &auth).await;
        let joined = r
            .request(&format!(r#"["join-session",{{"sessionId":"{session}"}}]"#))
            .await;
        assert!(
            matches!(&joined, Outcome::Answered(a) if ack_value(a)["ok"] == true),
            "{joined:?}"
        );
        let o = r.request(args).await;
        let verdict = match &o {
            Outcome::Answered(a) => {
                let v = ack_value(a);
                format!(
                    "answered {}",
                    if v["ok"] == false {
                        code(&v)
                    } else {
                        "ok:true"
                    }
                )
            }
            other => other.kind().to_owned(),
        };
        eprintln!("deep/huge: {name:<50} -> {verdict}");
        let acceptable = match (&o, expect) {
            (Outcome::Answered(a), Refusal) => ack_value(a)["ok"] == false,
            (Outcome::Answered(_), Answer) => true,
            (Outcome::Closed, _) => true,
            (Outcome::Silent, Silence) => true,
            _ => false,
        };
        if !acceptable {
            wrong.push(format!("{name}: {o:?}"));
        }
        if o != Outcome::Closed && !matches!(r.probe().await, Outcome::Answered(_)) {
            wrong.push(format!(
                "{name}: connection no longer served after the request"
            ));
        }
    }
    // The same in the handshake: a CONNECT whose auth is 10,000 levels deep
    // or carries a 512 KB token is refused (or the connection closed).
    for (name, auth) in [
        (
            "connect: 10,000-deep token",
            format!(r#"{{"token":{deep}}}"#),
        ),
        ("connect: 1,000,000-deep auth", very_deep.clone()),
        ("connect: 512 KB token", format!(r#"{{"token":"{big}"}}"#)),
    ] {
        let mut r = Raw::open(&srv.addr, None).await.unwrap();
        r.text(format!("40{auth}")).await;
        let o = r
            .wait_for(SILENCE, |t| t.starts_with("40") || t.starts_with("44"))
            .await;
        eprintln!("deep/huge: {name:<50} -> {o:?}");
        match o {
            Outcome::Answered(t) if t.starts_with("44") => {}
            Outcome::Closed => {}
            other => wrong.push(format!("{name}: {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "mishandled:\n{}", wrong.join("\n"));

    // Volume for the RSS check: 128 × 512 KB arguments from 4 sockets at
    // once (64 MB, more than the band), each refused.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (addr, auth, big) = (srv.addr.clone(), auth.clone(), big.clone());
        tasks.spawn(async move {
            let mut r = Raw::connected(&addr, &auth).await;
            for _ in 0..32 {
                let o = r
                    .request(&format!(r#"["join-session",{{"sessionId":"{big}"}}]"#))
                    .await;
                let Outcome::Answered(a) = &o else {
                    panic!("512 KB join: {o:?}")
                };
                assert_eq!(ack_value(a)["ok"], false);
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    srv.after_attack("huge and deep JSON", &session, watch)
        .await;
}

// ---------------------------------------------------------------------------
// 4. Floods of joins of unknown sessions
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_floods_of_unknown_sessions() {
    let mut srv = Server::start(&["--joins-per-second", "5"]).await;
    let session = srv.create_session().await;
    let watch = RssWatch::begin(&srv, &session).await;

    // One socket, 1,000 joins at once: the join budget (5/s, burst 10)
    // answers nearly all of them RATE_LIMITED without a database query.
    let (c, _rx) = Client::connect(&srv.url, "/", Some(srv.auth_json("flooder")))
        .await
        .unwrap();
    let started = Instant::now();
    let replies = futures::future::join_all((0..1000).map(|i| {
        let c = c.clone();
        async move {
            let r = c
                .emit_with_ack(
                    "join-session",
                    vec![Arg::json(json!({ "sessionId": format!("nope-{i}") }))],
                    T,
                )
                .await
                .expect("every join is answered");
            r[0].as_json().cloned().unwrap_or_default()
        }
    }))
    .await;
    let secs = started.elapsed().as_secs_f64();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for r in &replies {
        assert_eq!(
            r["ok"], false,
            "a join of an unknown session succeeded: {r}"
        );
        if code(r) == "RATE_LIMITED" {
            assert!(
                r["error"]["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0),
                "RATE_LIMITED without retryAfterMs: {r}"
            );
        }
        *codes.entry(code(r).to_owned()).or_default() += 1;
    }
    eprintln!("join flood, one socket: {codes:?} in {secs:.2} s");
    let not_found = codes.get("SESSION_NOT_FOUND").copied().unwrap_or(0);
    let limited = codes.get("RATE_LIMITED").copied().unwrap_or(0);
    assert_eq!(not_found + limited, 1000, "unexpected codes: {codes:?}");
    let allowed = 10.0 + 5.0 * secs + 1.0;
    assert!(
        not_found >= 1 && (not_found as f64) <= allowed,
        "{not_found} joins reached the database in {secs:.2} s (budget allows {allowed:.0})"
    );
    c.close();

    // Many sockets, each within its own budget: every join is a database
    // lookup answered SESSION_NOT_FOUND (or INVALID_SESSION_ID for junk).
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..100 {
        let (url, auth) = (srv.url.clone(), srv.auth_json(&format!("flood{s}")));
        tasks.spawn(async move {
            let (c, _rx) = Client::connect(&url, "/", Some(auth)).await.unwrap();
            let mut codes = Vec::new();
            for i in 0..8 {
                let id = match i {
                    6 => json!("../../etc/passwd"),
                    7 => json!("x".repeat(65)),
                    _ => json!(format!("nope-{s}-{i}")),
                };
                let r = c
                    .emit_with_ack(
                        "join-session",
                        vec![Arg::json(json!({ "sessionId": id }))],
                        T,
                    )
                    .await
                    .unwrap();
                codes.push((i, code(r[0].as_json().unwrap()).to_owned()));
            }
            c.close();
            codes
        });
    }
    let mut many: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(t) = tasks.join_next().await {
        for (i, code) in t.unwrap() {
            let expected = if i >= 6 {
                "INVALID_SESSION_ID"
            } else {
                "SESSION_NOT_FOUND"
            };
            assert_eq!(code, expected, "join {i} of a socket");
            *many.entry(code).or_default() += 1;
        }
    }
    eprintln!("join flood, 100 sockets: {many:?}");

    // The y-socket.io dialect: 300 connects to unknown sessions and 20 to
    // 100 KB names are refused, and leave no namespace behind.
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..10 {
        let (url, auth) = (srv.url.clone(), srv.auth_json("yflood"));
        tasks.spawn(async move {
            let mut refusals = Vec::new();
            for i in 0..32 {
                let name = if i < 30 {
                    format!("/yjs|nope-y{w}-{i}")
                } else {
                    format!("/yjs|{}", "n".repeat(100 << 10))
                };
                match Client::connect(&url, &name, Some(auth.clone())).await {
                    Ok(_) => panic!("connect to {} accepted", &name[..20]),
                    Err(ClientError::ConnectRefused { message }) => refusals.push(message),
                    Err(e) => refusals.push(format!("error: {e}")),
                }
            }
            refusals
        });
    }
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(t) = tasks.join_next().await {
        for m in t.unwrap() {
            *refusals.entry(m).or_default() += 1;
        }
    }
    eprintln!("y-socket.io connect flood: {refusals:?}");
    assert_eq!(
        refusals.get("SESSION_NOT_FOUND"),
        Some(&300),
        "{refusals:?}"
    );
    let namespaces = srv.metric("tandem_ysocketio_namespaces", "").await;
    assert_eq!(
        namespaces,
        Some(0.0),
        "refused y-socket.io connects (and none accepted) left namespaces"
    );
    srv.after_attack("join floods", &session, watch).await;
}

// ---------------------------------------------------------------------------
// 5. Join/leave storms
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_leave_storm() {
    let mut srv = Server::start(&["--joins-per-second", "1000"]).await;
    let session = srv.create_session().await;
    let watch = RssWatch::begin(&srv, &session).await;

    // A well-behaved pair stays in the session through the storm.
    let a = Peer::connect(&srv.url, Some(&srv.token("good-a")))
        .await
        .unwrap();
    let b = Peer::connect(&srv.url, Some(&srv.token("good-b")))
        .await
        .unwrap();
    assert_eq!(a.join(&session).await["ok"], true);
    assert_eq!(b.join(&session).await["ok"], true);

    let mut storm = tokio::task::JoinSet::new();
    for s in 0..40 {
        let (url, auth, session) = (
            srv.url.clone(),
            srv.auth_json(&format!("storm{s}")),
            session.clone(),
        );
        storm.spawn(async move {
            let (c, _rx) = Client::connect(&url, "/", Some(auth)).await.unwrap();
            let arg = || vec![Arg::json(json!({ "sessionId": session }))];
            for i in 0..25 {
                if i % 5 == 4 {
                    // Join and leave back to back, without waiting.
                    c.emit("join-session", arg()).unwrap();
                    c.emit("leave-session", arg()).unwrap();
                    continue;
                }
                let j = c.emit_with_ack("join-session", arg(), T).await.unwrap();
                assert_eq!(
                    j[0].as_json().unwrap()["ok"],
                    true,
                    "storm join: {:?}",
                    j[0]
                );
                let l = c.emit_with_ack("leave-session", arg(), T).await.unwrap();
                assert_eq!(
                    l[0].as_json().unwrap()["ok"],
                    true,
                    "storm leave: {:?}",
                    l[0]
                );
            }
            // End joined: half leave by closing, half by dropping the TCP connection.
            let j = c.emit_with_ack("join-session", arg(), T).await.unwrap();
            assert_eq!(j[0].as_json().unwrap()["ok"], true);
            if s % 2 == 0 { c.close() } else { c.kill() }
        });
    }
    // Sockets that send a join and vanish at once (the join still awaits
    // the database), in both dialects.
    for s in 0..30 {
        let (url, session) = (srv.url.clone(), session.clone());
        let auth = srv.auth_json(&format!("ghost{s}"));
        storm.spawn(async move {
            if s % 2 == 0 {
                let (c, _rx) = Client::connect(&url, "/", Some(auth)).await.unwrap();
                c.emit(
                    "join-session",
                    vec![Arg::json(json!({ "sessionId": session }))],
                )
                .unwrap();
                c.kill();
            } else if let Ok((c, _rx)) =
                Client::connect(&url, &format!("/yjs|{session}"), Some(auth)).await
            {
                c.kill();
            }
        });
    }
    // The pair keeps editing while the storm runs.
    edit_and_converge(&srv, &session, "during storm", &a, &b).await;
    while let Some(t) = storm.join_next().await {
        t.unwrap();
    }
    edit_and_converge(&srv, &session, "after storm", &a, &b).await;

    // No ghosts: once the storm's sockets are gone, only the pair is online.
    let want: HashSet<String> = ["good-a", "good-b"].map(str::to_owned).into();
    let deadline = Instant::now() + T;
    loop {
        let online = srv.online(&session).await;
        if online == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ghost participants after the storm: online = {online:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.client.close();
    b.client.close();
    srv.after_attack("join/leave storm", &session, watch).await;
}

// ---------------------------------------------------------------------------
// 6. Clients that never read
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_are_disconnected() {
    let mut srv = Server::start(&[
        "--socket-buffer",
        "64",
        "--updates-per-second",
        "100000",
        "--update-burst",
        "100000",
    ])
    .await;
    let session = srv.create_session().await;
    let watch = RssWatch::begin(&srv, &session).await;

    let writer = Peer::connect(&srv.url, Some(&srv.token("good-a")))
        .await
        .unwrap();
    let observer = Peer::connect(&srv.url, Some(&srv.token("good-b")))
        .await
        .unwrap();
    assert_eq!(writer.join(&session).await["ok"], true);
    assert_eq!(observer.join(&session).await["ok"], true);

    // Four clients join with a 4 KiB receive buffer, then never read again.
    let mut stalled = Vec::new();
    for i in 0..4 {
        let mut r = Raw::open(&srv.addr, Some(4096)).await.unwrap();
        r.sio_connect(&srv.auth_json(&format!("stalled{i}"))).await;
        let j = r
            .request(&format!(r#"["join-session",{{"sessionId":"{session}"}}]"#))
            .await;
        assert!(
            matches!(&j, Outcome::Answered(a) if ack_value(a)["ok"] == true),
            "{j:?}"
        );
        stalled.push(r);
    }
    let kicked_before = srv
        .metric("tandem_slow_consumers_disconnected_total", "")
        .await
        .unwrap_or(0.0);

    // The writer sends 600 inserts of 8 KB, each deleted again by the next
    // update (4.8 MB on the wire to every reader, a tiny document): more
    // than the stalled clients' kernel buffers and 64 queued packets hold.
    let chunk = "z".repeat(8 << 10);
    for i in 0..600 {
        let ins = writer.edit(|t, txn| t.insert(txn, 0, &chunk));
        let del = writer.edit(|t, txn| t.remove_range(txn, 0, chunk.len() as u32));
        // An ack every 10 updates paces the writer, so the observer (a
        // reader in this busy test process, behind a 64-packet buffer) is
        // not itself dropped as a slow consumer when CPU is short (CI).
        let ack = i % 10 == 9;
        writer.send_update(&session, ins, false).await;
        if let Some(r) = writer.send_update(&session, del, ack).await {
            assert_eq!(r["ok"], true, "writer's update {i}: {r}");
        }
    }
    // The server dropped them (they never read a byte meanwhile) ...
    let deadline = Instant::now() + T;
    loop {
        let online = srv.online(&session).await;
        if !online.iter().any(|u| u.starts_with("stalled")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clients that never read are still in the session: {online:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kicked = srv
        .metric("tandem_slow_consumers_disconnected_total", "")
        .await
        .unwrap_or(0.0)
        - kicked_before;
    assert!(kicked >= 4.0, "only {kicked} slow consumers disconnected");
    // ... and their connections end once they read what was queued.
    for (i, r) in stalled.iter_mut().enumerate() {
        let deadline = Instant::now() + T;
        loop {
            match r
                .next(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                Frame::Closed => break,
                Frame::Timeout => panic!("stalled client {i}: connection still open"),
                _ => {}
            }
        }
    }
    drop(stalled);
    // The others were unaffected: the observer has every update, and both
    // still edit and converge.
    let sv = |p: &Peer| p.doc.transact().state_vector();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sv(&observer) != sv(&writer) {
        assert!(
            Instant::now() < deadline,
            "observer behind the writer: {:?} vs {:?}",
            sv(&observer),
            sv(&writer)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    edit_and_converge(&srv, &session, "after stalled readers", &writer, &observer).await;
    writer.client.close();
    observer.client.close();
    eprintln!("never-reading: {kicked} slow consumers disconnected");
    srv.after_attack("clients that never read", &session, watch)
        .await;
}

// ---------------------------------------------------------------------------
// 7. Connection floods from one IP
// ---------------------------------------------------------------------------

/// Whether the server closed this TCP connection (EOF or reset) within `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    match tokio::time::timeout(within, tcp.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_from_one_ip() {
    const LIMIT: usize = 50;
    let mut srv = Server::start(&["--max-connections-per-ip", "50"]).await;
    let session = srv.create_session().await;
    let watch = RssWatch::begin(&srv, &session).await;

    // A pair already connected (2 of the 50 connections).
    let a = Peer::connect(&srv.url, Some(&srv.token("good-a")))
        .await
        .unwrap();
    let b = Peer::connect(&srv.url, Some(&srv.token("good-b")))
        .await
        .unwrap();
    assert_eq!(a.join(&session).await["ok"], true);
    assert_eq!(b.join(&session).await["ok"], true);
    // Let the warm-up's and the joins' HTTP connections finish closing.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 30 WebSocket clients (Socket.IO-connected, below the limit) ...
    let mut ws_flood = Vec::new();
    for i in 0..30 {
        match Client::connect(&srv.url, "/", Some(srv.auth_json("flood"))).await {
            Ok((c, rx)) => ws_flood.push((c, rx)),
            Err(e) => panic!("WebSocket client {i} of 30 refused below the limit: {e}"),
        }
    }
    // ... then 150 bare TCP connections: only the rest of the 50 stay open,
    // upgraded WebSockets counting like any other connection.
    let mut flood = Vec::new();
    for _ in 0..150 {
        flood.push(TcpStream::connect(&srv.addr).await.unwrap());
    }
    let started = Instant::now();
    let states = futures::future::join_all(
        flood
            .iter_mut()
            .map(|t| closed_within(t, Duration::from_millis(1500))),
    )
    .await;
    let closed = states.iter().filter(|c| **c).count();
    let held = states.len() - closed;
    let room = LIMIT - 2 - ws_flood.len();
    eprintln!(
        "connection flood: 2 pair + 30 WebSocket + 150 TCP opened, {held} TCP held, {closed} closed within {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert!(
        held <= room,
        "{held} bare connections held beside 32 WebSockets: limit {LIMIT} not enforced"
    );
    assert!(
        held + 6 >= room,
        "only {held} of {room} connections accepted below the limit"
    );
    // A newcomer is refused while the flood holds the limit ...
    assert!(
        Client::connect(&srv.url, "/", Some(srv.auth_json("newcomer")))
            .await
            .is_err(),
        "a connection above the limit was accepted"
    );
    // ... the pair already connected keeps editing and converging ...
    edit_and_converge_ws_only("during flood", &session, &a, &b).await;
    // ... and once the flood goes, new connections are accepted again.
    drop(flood);
    for (c, _) in &ws_flood {
        c.kill();
    }
    drop(ws_flood);
    let deadline = Instant::now() + T;
    let newcomer = loop {
        match Client::connect(&srv.url, "/", Some(srv.auth_json("newcomer"))).await {
            Ok((c, _)) => break c,
            Err(e) => assert!(
                Instant::now() < deadline,
                "still refused after the flood: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    newcomer.close();
    let refused = srv
        .metric("tandem_connections_refused_total", "per_ip_limit")
        .await
        .unwrap_or(0.0);
    assert!(
        refused >= closed as f64,
        "refusals counted {refused}, seen {closed}"
    );
    edit_and_converge(&srv, &session, "after flood", &a, &b).await;
    a.client.close();
    b.client.close();
    srv.after_attack("connection flood", &session, watch).await;
}

/// Like [`edit_and_converge`] without the HTTP check (no new connection).
async fn edit_and_converge_ws_only(tag: &str, session: &str, a: &Peer, b: &Peer) {
    for i in 0..3 {
        for p in [a, b] {
            let u = p.edit(|t, txn| t.insert(txn, 0, &format!("<{tag}{i}>")));
            let r = p.send_update(session, u, true).await.unwrap();
            assert_eq!(r["ok"], true, "[{tag}] update refused: {r}");
        }
    }
    let deadline = Instant::now() + T;
    while a.text() != b.text() || !a.text().contains(&format!("<{tag}2>")) {
        assert!(Instant::now() < deadline, "[{tag}] pair did not converge");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 11's memory figure (not an attack; run by hand, see BENCHMARKS.md):
/// the server's RSS with one native client that has 1, then 100 workspace
/// files of 4 KB open, against the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn workspace_memory_with_1_and_100_files_open() {
    let srv = Server::start(&[]).await;
    let session = srv.create_session().await;
    let owner = srv.token("owner");
    let mut ids = Vec::new();
    for i in 0..100 {
        let r = srv
            .http
            .post(format!("{}/api/sessions/{session}/files", srv.url))
            .bearer_auth(&owner)
            .json(&json!({ "path": format!("src/m{i}.rs"), "content": "// x\n".repeat(800) }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let p = Peer::connect(&srv.url, Some(&owner)).await.unwrap();
    p.join(&session).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = srv.rss_kib();
    let open = |id: String| {
        let c = p.client.clone();
        let session = session.clone();
        async move {
            let r = c
                .emit_with_ack(
                    "open-file",
                    vec![Arg::json(json!({ "sessionId": session, "fileId": id }))],
                    T,
                )
                .await
                .unwrap();
            assert_eq!(r[0].as_json().unwrap()["ok"], true);
        }
    };
    open(ids[0].clone()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let one = srv.rss_kib();
    for id in &ids[1..] {
        open(id.clone()).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hundred = srv.rss_kib();
    println!(
        "RSS: joined, no file open {:.1} MiB; 1 file open {:.1} MiB; 100 files open {:.1} MiB ({:.1} KiB per open file)",
        base as f64 / 1024.0,
        one as f64 / 1024.0,
        hundred as f64 / 1024.0,
        (hundred.saturating_sub(one)) as f64 / 99.0
    );
}
