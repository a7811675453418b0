//! `tandem-load`: a load generator for Tandem (native, y-socket.io or y-websocket dialect)
//! and for y-socket.io, y-websocket and Hocuspocus servers. N sessions × M editing clients replay a
//! real editing trace at a fixed rate while K observers per session measure
//! edit-to-peer latency (matched by update content): from the moment an
//! editor hands an update to its client until the update's last frame is read
//! off an observer's socket. Prints a progress line
//! per second and a JSON summary; exits non-zero if replicas disagree.
//! Loopback targets only; bounded in time.
//!
//! For soaks, `--churn-secs` makes every session's clients leave together
//! periodically and come back after `--churn-away-secs` (so the server can
//! unload the document and must reload it), resyncing as real clients do,
//! and `--check-http` compares each session's `GET /api/sessions/{id}/text`
//! with the expected text at the end.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use serde_json::json;
use tandem::client::{Arg, Client, Incoming};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Dialect {
    Native,
    Ysocketio,
    /// The y-websocket framing on `/ws/<session>` (`--url` as for the others).
    Ywebsocket,
    /// A Hocuspocus server (3.x): y-websocket messages prefixed with the
    /// document name, after an auth message (for comparisons).
    Hocuspocus,
}

/// Load generator for Tandem and y-socket.io servers (loopback only).
#[derive(Debug, Parser)]
#[command(name = "tandem-load", version)]
struct Args {
    /// Server base URL (must be a loopback address).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Observers connect here instead of `--url`: another node of a
    /// cluster, to measure edit-to-peer latency across nodes.
    #[arg(long)]
    observer_url: Option<String>,
    /// Protocol dialect to speak.
    #[arg(long, value_enum, default_value = "native")]
    dialect: Dialect,
    /// Number of sessions (documents).
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// Editing clients per session.
    #[arg(long, default_value_t = 2)]
    editors: usize,
    /// Observing clients per session (they measure latency and check convergence).
    #[arg(long, default_value_t = 2)]
    observers: usize,
    /// Updates per second sent by each editor.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// How long to send, in seconds (at most 7200).
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Trace file (gzipped JSON, editing-traces format) replayed by each
    /// editor [default: tests/data/traces/sveltecomponent.json.gz].
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
    /// JWT secret to mint tokens with (Tandem); omit for servers without auth.
    #[arg(long, env = "TANDEM_SECRET")]
    secret: Option<String>,
    /// Prefix of the session ids (sessions are `<prefix>-<n>`; Tandem needs --on-demand-sessions).
    #[arg(long, default_value = "load")]
    session_prefix: String,
    /// Server process id, to sample its CPU and RSS from /proc; repeat it
    /// for a cluster (CPU and RSS are summed over the processes).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Only connect this many idle clients, hold them, report server RSS, exit.
    #[arg(long)]
    idle: Option<usize>,
    /// Every this many seconds all clients of a session disconnect, stay
    /// away for --churn-away-secs, then reconnect and resync (sessions
    /// staggered; 0 = never).
    #[arg(long, default_value_t = 0)]
    churn_secs: u64,
    /// How long a churned session stays without clients, in seconds.
    #[arg(long, default_value_t = 5)]
    churn_away_secs: u64,
    /// At the end, also compare each session's `GET /api/sessions/{id}/text`
    /// with the expected text (Tandem only; needs --secret).
    #[arg(long)]
    check_http: bool,
}

impl Args {
    /// When session `s` next leaves after `now` (churn), if before `deadline`
    /// with time to come back.
    fn next_leave(
        &self,
        s: usize,
        started: Instant,
        now: Instant,
        deadline: Instant,
    ) -> Option<Instant> {
        if self.churn_secs == 0 {
            return None;
        }
        let period = Duration::from_secs(self.churn_secs);
        let offset = period.mul_f64(s as f64 / self.sessions.max(1) as f64);
        let mut t = started + offset + period;
        while t <= now {
            t += period;
        }
        let back = t + Duration::from_secs(self.churn_away_secs + 2);
        (back < deadline).then_some(t)
    }
}

/// Send times of updates in flight, keyed by [`key`].
type Sent = Arc<std::sync::RwLock<HashMap<u64, Instant>>>;

/// Editor `e` of every session replays the same update stream, so an
/// update is identified by its session and its bytes.
fn key(session: &str, b: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    session.hash(&mut h);
    b.hash(&mut h);
    h.finish()
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
    disconnects: AtomicU64,
    /// Deliberate reconnects (churn).
    reconnects: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

fn namespace(d: Dialect, session: &str) -> String {
    match d {
        Dialect::Native => "/".into(),
        Dialect::Ysocketio => format!("/yjs|{session}"),
        Dialect::Ywebsocket | Dialect::Hocuspocus => session.to_owned(),
    }
}

async fn connect(
    a: &Args,
    url: &str,
    session: &str,
    user: &str,
) -> anyhow::Result<(Client, tokio::sync::mpsc::UnboundedReceiver<Incoming>)> {
    let token = a.secret.as_ref().map(|s| {
        tandem::auth::Auth::new(s.as_bytes()).issue(user, user, Default::default(), 24 * 3600)
    });
    let (c, rx) = if a.dialect == Dialect::Ywebsocket {
        Client::connect_ywebsocket(url, session, token.as_deref()).await?
    } else if a.dialect == Dialect::Hocuspocus {
        Client::connect_hocuspocus(url, session, token.as_deref().unwrap_or("")).await?
    } else {
        let auth = token.map(|tok| json!({ "token": tok }));
        Client::connect(url, &namespace(a.dialect, session), auth).await?
    };
    if a.dialect == Dialect::Native {
        let r = c
            .emit_with_ack(
                "join-session",
                vec![Arg::json(json!({ "sessionId": session }))],
                Duration::from_secs(10),
            )
            .await?;
        let ok = r
            .first()
            .and_then(Arg::as_json)
            .is_some_and(|v| v["ok"] == true);
        anyhow::ensure!(ok, "join {session} failed: {:?}", r.first());
    }
    Ok((c, rx))
}

/// Measures latency of incoming updates, answers sync requests, and keeps
/// `doc` up to date. While `settling` is false (the send window) updates are
/// only queued, so decoding and applying them does not compete with the
/// server for the CPU being measured; they are applied before a sync reply
/// and as soon as the window closes.
fn spawn_reader(
    dialect: Dialect,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Incoming>,
    doc: Doc,
    sent: Option<(Sent, String)>,
    stats: Arc<Stats>,
    settling: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut queued: Vec<Bytes> = Vec::new();
        // Kept per observer while sending: no lock shared with the others.
        let mut latencies: Vec<u32> = Vec::new();
        // Relays that skip clocks (this client was away and its pull's
        // reply has not come yet) wait for their predecessors: a yrs
        // replica with a hole answers sync requests with structs at the
        // wrong clocks (see `tandem::core::HeldBack`).
        let mut pending = tandem::core::HeldBack::default();
        let apply = |queued: &mut Vec<Bytes>, pending: &mut tandem::core::HeldBack| {
            for b in queued.drain(..) {
                let _ = pending.apply(&doc, &b);
            }
        };
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            let inc = tokio::select! {
                inc = rx.recv() => inc,
                _ = tick.tick() => {
                    if settling.load(Ordering::Relaxed) && !queued.is_empty() {
                        // Hand over the samples before the replica can look converged.
                        stats.latencies_us.lock().unwrap().append(&mut latencies);
                        apply(&mut queued, &mut pending);
                    }
                    continue;
                }
            };
            let ev = match inc {
                Some(Incoming::Event(ev)) => ev,
                Some(Incoming::Disconnected { .. }) if closing.load(Ordering::Relaxed) => break,
                Some(Incoming::Disconnected { reason }) => {
                    // The server dropped this client (e.g. as a slow consumer);
                    // it does not reconnect, so its replica stays behind.
                    if stats.disconnects.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("a client was disconnected: {reason}");
                    }
                    break;
                }
                None => break,
            };
            let bin_at = if dialect == Dialect::Native { 1 } else { 0 };
            match ev.name.as_str() {
                "yjs-update" | "sync-update" => {
                    let Some(b) = ev.args.get(bin_at).and_then(Arg::as_bin) else {
                        continue;
                    };
                    if let Some((sent, session)) = &sent {
                        if let Some(t0) = sent.read().unwrap().get(&key(session, b)).copied() {
                            latencies.push(
                                ev.received
                                    .duration_since(t0)
                                    .as_micros()
                                    .min(u32::MAX as u128) as u32,
                            );
                        }
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    queued.push(b.clone());
                    if settling.load(Ordering::Relaxed) {
                        stats.latencies_us.lock().unwrap().append(&mut latencies);
                        apply(&mut queued, &mut pending);
                    }
                }
                "yjs-sync-step-1" | "sync-step-1" => {
                    apply(&mut queued, &mut pending);
                    let sv = ev
                        .args
                        .get(bin_at)
                        .and_then(Arg::as_bin)
                        .and_then(|b| StateVector::decode_v1(b).ok())
                        .unwrap_or_default();
                    let diff = doc.transact().encode_state_as_update_v1(&sv);
                    if let Some(ack) = ev.ack {
                        let _ = ack.reply(vec![Arg::bin(diff)]);
                    }
                }
                "error" => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        // Leaving (churn): keep the samples and what was queued.
        stats.latencies_us.lock().unwrap().append(&mut latencies);
        apply(&mut queued, &mut pending);
    })
}

/// A connected client and its reader.
struct Attached {
    client: Client,
    reader: tokio::task::JoinHandle<()>,
    closing: Arc<AtomicBool>,
}

/// Connects (and joins) one client of `session` with a reader keeping
/// `doc`; with `pull`, first fetches what `doc` lacks (a reconnect).
#[allow(clippy::too_many_arguments)]
async fn attach(
    a: &Args,
    session: &str,
    user: &str,
    doc: &Doc,
    sent: Option<Sent>,
    stats: &Arc<Stats>,
    settling: &Arc<AtomicBool>,
    pull: bool,
) -> anyhow::Result<Attached> {
    // Observers (they get `sent`, to measure latency) may use another node.
    let url = match (&sent, &a.observer_url) {
        (Some(_), Some(u)) => u.as_str(),
        _ => a.url.as_str(),
    };
    let (client, rx) = connect(a, url, session, user).await?;
    if pull {
        let sv = doc.transact().state_vector().encode_v1();
        let (ev, args) = match a.dialect {
            Dialect::Native => ("yjs-sync-step-1", vec![Arg::json(session), Arg::bin(sv)]),
            Dialect::Ysocketio | Dialect::Ywebsocket | Dialect::Hocuspocus => {
                ("sync-step-1", vec![Arg::bin(sv)])
            }
        };
        let r = client
            .emit_with_ack(ev, args, Duration::from_secs(10))
            .await?;
        if let Some(b) = r.first().and_then(Arg::as_bin) {
            doc.transact_mut().apply_update(Update::decode_v1(b)?)?;
        }
    }
    let closing = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(
        a.dialect,
        rx,
        doc.clone(),
        sent.map(|s| (s, session.to_owned())),
        stats.clone(),
        settling.clone(),
        closing.clone(),
    );
    Ok(Attached {
        client,
        reader,
        closing,
    })
}

impl Attached {
    /// Leaves on purpose: closes the connection and lets the reader finish.
    async fn detach(mut self) {
        self.closing.store(true, Ordering::Relaxed);
        self.client.close();
        if tokio::time::timeout(Duration::from_secs(5), &mut self.reader)
            .await
            .is_err()
        {
            self.reader.abort();
        }
    }
}

/// `GET <path>` over a fresh connection: status and body.
async fn http_get(hostport: &str, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(hostport).await?;
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let raw = String::from_utf8(raw)?;
    let (head, mut body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("malformed HTTP response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("malformed status line"))?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, body.to_owned()));
    }
    let mut out = String::new();
    loop {
        let (len, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| anyhow::anyhow!("malformed chunk"))?;
        let len = usize::from_str_radix(len.trim(), 16)?;
        if len == 0 {
            return Ok((status, out));
        }
        out.push_str(
            rest.get(..len)
                .ok_or_else(|| anyhow::anyhow!("short chunk"))?,
        );
        body = rest.get(len + 2..).unwrap_or_default();
    }
}

/// CPU seconds and RSS (KiB) summed over `pids`; `None` if any is unreadable.
fn proc_sample_all(pids: &[u32]) -> Option<(f64, u64)> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold((0.0, 0), |(c, r), p| {
        proc_sample(*p).map(|(c1, r1)| (c + c1, r + r1))
    })
}

fn proc_sample(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / 100.0, rss_kb))
}

fn percentile(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Arc::new(Args::parse());
    let host = a
        .url
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        host == "localhost" || host.starts_with("127.") || host == "[::1]",
        "tandem-load only targets loopback addresses, not {host}"
    );
    anyhow::ensure!(a.duration_secs <= 7200, "--duration-secs is at most 7200");
    anyhow::ensure!(
        !a.check_http || a.secret.is_some(),
        "--check-http needs --secret"
    );

    if let Some(n) = a.idle {
        let mut held = Vec::with_capacity(n);
        let rss0 = proc_sample_all(&a.server_pid).map(|s| s.1);
        for i in 0..n {
            let session = format!("{}-{}", a.session_prefix, i % a.sessions.max(1));
            let (c, rx) = connect(&a, &a.url, &session, &format!("idle{i}")).await?;
            held.push((
                c,
                spawn_reader(
                    a.dialect,
                    rx,
                    Doc::new(),
                    None,
                    Arc::default(),
                    Arc::default(),
                    Arc::default(),
                ),
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss1 = proc_sample_all(&a.server_pid).map(|s| s.1);
        let summary = json!({ "idle_clients": n, "server_rss_kib_before": rss0, "server_rss_kib_after": rss1,
            "clients_per_gib": match (rss0, rss1) { (Some(b), Some(e)) if e > b => Some((n as f64) * 1024.0 * 1024.0 / (e - b) as f64), _ => None } });
        println!("{summary}");
        return Ok(());
    }

    let trace_path = a
        .trace
        .clone()
        .unwrap_or_else(|| tandem::trace::traces_dir().join("sveltecomponent.json.gz"));
    let trace = tandem::trace::load_sequential(&trace_path)?;
    let stats = Arc::new(Stats::default());
    let sent: Sent = Arc::default();
    let settling = Arc::new(AtomicBool::new(false));
    // Per observer: its session, its replica, and the task that keeps it
    // connected (reconnecting it under churn) and hands its client back.
    let mut observers = Vec::new();
    let mut editors = Vec::new();
    let mut all_updates: HashMap<String, Vec<Bytes>> = HashMap::new();

    // Each editor of a session replays the trace as its own Yjs client;
    // editor `e` of every session replays the same stream (sessions are
    // separate documents), so the trace is replayed once per editor index.
    let streams: Vec<Arc<Vec<Bytes>>> = (0..a.editors)
        .map(|_| {
            Arc::new(
                tandem::trace::updates(&trace)
                    .0
                    .into_iter()
                    .map(Bytes::from)
                    .collect(),
            )
        })
        .collect();
    for s in 0..a.sessions {
        let session = format!("{}-{s}", a.session_prefix);
        for o in 0..a.observers {
            let doc = Doc::new();
            doc.get_or_insert_text("monaco");
            let user = format!("obs{s}-{o}");
            let conn = attach(
                &a,
                &session,
                &user,
                &doc,
                Some(sent.clone()),
                &stats,
                &settling,
                false,
            )
            .await?;
            observers.push((s, session.clone(), user, doc, conn));
        }
        for (e, stream) in streams.iter().enumerate() {
            // The editor's replica: others' updates, and under churn its
            // own too, so it can answer the server's sync request after a
            // reconnect with anything the server lacks.
            let doc = Doc::new();
            let user = format!("ed{s}-{e}");
            let conn = attach(&a, &session, &user, &doc, None, &stats, &settling, false).await?;
            editors.push((s, session.clone(), user, doc, conn, stream.clone()));
        }
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.duration_secs);
    let interval = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
    let away = Duration::from_secs(a.churn_away_secs);
    let mut tasks = Vec::new();
    for (s, session, user, doc, mut conn, updates) in editors {
        let (sent, stats, settling, a) = (sent.clone(), stats.clone(), settling.clone(), a.clone());
        let dialect = a.dialect;
        let offset =
            Duration::from_micros(rand::random::<u64>() % interval.as_micros().max(1) as u64);
        tasks.push(tokio::spawn(async move {
            let mut used = Vec::new();
            let mut next = Instant::now() + offset;
            let mut leave = a.next_leave(s, started, Instant::now(), deadline);
            for u in updates.iter().cloned() {
                if Instant::now() >= deadline {
                    break;
                }
                if leave.is_some_and(|l| Instant::now() >= l) {
                    conn.detach().await;
                    tokio::time::sleep(away).await;
                    // Pull what the others sent while this editor was away:
                    // its replica answers the server's sync requests.
                    conn = match attach(&a, &session, &user, &doc, None, &stats, &settling, true)
                        .await
                    {
                        Ok(c) => c,
                        Err(e) => anyhow::bail!("{user} could not reconnect: {e}"),
                    };
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    next = Instant::now();
                    leave = a.next_leave(s, started, Instant::now(), deadline);
                }
                tokio::time::sleep_until(next.into()).await;
                next += interval;
                if a.churn_secs > 0 {
                    doc.transact_mut().apply_update(Update::decode_v1(&u)?)?;
                }
                sent.write()
                    .unwrap()
                    .insert(key(&session, &u), Instant::now());
                let args = match dialect {
                    Dialect::Native => vec![Arg::json(&session), Arg::bin(u.clone())],
                    Dialect::Ysocketio | Dialect::Ywebsocket | Dialect::Hocuspocus => {
                        vec![Arg::bin(u.clone())]
                    }
                };
                let ev = if dialect == Dialect::Native {
                    "yjs-update"
                } else {
                    "sync-update"
                };
                if conn.client.emit(ev, args).is_err() {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                stats.sent.fetch_add(1, Ordering::Relaxed);
                used.push(u);
            }
            Ok((session, used, conn))
        }));
    }
    // Observers under churn: leave with their session, come back, resync.
    let mut observer_tasks = Vec::new();
    for (s, session, user, doc, mut conn) in observers {
        let (sent, stats, settling, a) = (sent.clone(), stats.clone(), settling.clone(), a.clone());
        observer_tasks.push(tokio::spawn(async move {
            while let Some(l) = a.next_leave(s, started, Instant::now(), deadline) {
                tokio::time::sleep_until(l.into()).await;
                conn.detach().await;
                tokio::time::sleep(away).await;
                conn = attach(
                    &a,
                    &session,
                    &user,
                    &doc,
                    Some(sent.clone()),
                    &stats,
                    &settling,
                    true,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{user} could not reconnect: {e}"))?;
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok((session, doc, conn))
        }));
    }

    // Progress once a second while sending.
    let cpu0 = proc_sample_all(&a.server_pid);
    let mut rss_max = 0u64;
    let progress = {
        let stats = stats.clone();
        let pids = a.server_pid.clone();
        tokio::spawn(async move {
            let mut last = (0, 0);
            let mut rss_max = 0u64;
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (s, d) = (
                    stats.sent.load(Ordering::Relaxed),
                    stats.delivered.load(Ordering::Relaxed),
                );
                let rss = proc_sample_all(&pids).map(|p| p.1).unwrap_or(0);
                rss_max = rss_max.max(rss);
                eprintln!(
                    "[{:>4.0}s] sent {s} (+{}/s) delivered {d} (+{}/s) errors {} reconnects {} server rss {} MiB",
                    started.elapsed().as_secs_f64(),
                    s - last.0,
                    d - last.1,
                    stats.errors.load(Ordering::Relaxed),
                    stats.reconnects.load(Ordering::Relaxed),
                    rss / 1024
                );
                last = (s, d);
            }
            rss_max
        })
    };
    let mut editors_done = Vec::new();
    for t in tasks {
        let (session, used, c) = t.await??;
        all_updates.entry(session).or_default().extend(used);
        editors_done.push(c);
    }
    let mut observers = Vec::new();
    for t in observer_tasks {
        observers.push(t.await??);
    }
    let send_secs = started.elapsed().as_secs_f64();
    rss_max = rss_max.max(progress.await.unwrap_or(0));
    let cpu1 = proc_sample_all(&a.server_pid);
    settling.store(true, Ordering::Relaxed);

    // Convergence: every observer equals the merge of everything sent to its session.
    let mut expected: HashMap<String, String> = HashMap::new();
    for (session, updates) in &all_updates {
        let d = Doc::new();
        let t = d.get_or_insert_text("monaco");
        {
            let mut txn = d.transact_mut();
            for u in updates {
                txn.apply_update(Update::decode_v1(u)?)?;
            }
        }
        expected.insert(session.clone(), t.get_string(&d.transact()));
    }
    let settle = Instant::now() + Duration::from_secs(15);
    let converged = loop {
        let ok = observers.iter().all(|(s, doc, _)| {
            doc.get_or_insert_text("monaco").get_string(&doc.transact()) == expected[s]
        });
        if ok || Instant::now() > settle {
            break ok;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The server's own view, over HTTP: the text a fresh viewer would get.
    let mut http_mismatches = Vec::new();
    if a.check_http {
        let hostport = a.url.trim_start_matches("http://").trim_end_matches('/');
        let token = tandem::auth::Auth::new(a.secret.as_deref().unwrap_or_default().as_bytes())
            .issue("load-check", "load-check", Default::default(), 3600);
        for (session, want) in &expected {
            let (status, body) =
                http_get(hostport, &format!("/api/sessions/{session}/text"), &token).await?;
            if status != 200 || &body != want {
                // Whether the replicas agree among themselves (server and
                // observers) tells a server-side loss from a merge that
                // depends on the order updates were integrated in.
                let agree = observers
                    .iter()
                    .filter(|(s, _, _)| s == session)
                    .filter(|(_, doc, _)| {
                        doc.get_or_insert_text("monaco").get_string(&doc.transact()) == body
                    })
                    .count();
                let of = observers.iter().filter(|(s, _, _)| s == session).count();
                http_mismatches.push(format!(
                    "{session}: HTTP {status}, {} chars, expected {}; {agree} of {of} observers hold the server's text",
                    body.len(),
                    want.len()
                ));
            }
        }
        for m in &http_mismatches {
            eprintln!("GET text differs: {m}");
        }
    }
    // Raw material for offline analysis (TANDEM_LOAD_DUMP=<dir>): per
    // session every update sent (editor by editor, each as a 4-byte
    // little-endian length and the bytes) and each observer's state.
    if let Some(dir) = std::env::var_os("TANDEM_LOAD_DUMP") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir)?;
        let frame = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend((b.len() as u32).to_le_bytes());
            out.extend(b);
        };
        for (session, updates) in &all_updates {
            let mut out = Vec::new();
            for u in updates {
                frame(&mut out, u);
            }
            std::fs::write(dir.join(format!("{session}.sent.bin")), out)?;
            std::fs::write(
                dir.join(format!("{session}.expected.txt")),
                &expected[session],
            )?;
        }
        for (i, (session, doc, _)) in observers.iter().enumerate() {
            let mut out = Vec::new();
            frame(
                &mut out,
                &doc.transact()
                    .encode_state_as_update_v1(&StateVector::default()),
            );
            std::fs::write(dir.join(format!("{session}.obs{i}.bin")), out)?;
        }
    }

    let mut lat = std::mem::take(&mut *stats.latencies_us.lock().unwrap());
    lat.sort_unstable();
    let sent_n = stats.sent.load(Ordering::Relaxed);
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let server_cpu = match (cpu0, cpu1) {
        (Some(a0), Some(a1)) => Some((a1.0 - a0.0) / send_secs),
        _ => None,
    };
    let summary = json!({
        "dialect": format!("{:?}", a.dialect).to_lowercase(),
        "sessions": a.sessions, "editors_per_session": a.editors, "observers_per_session": a.observers,
        "rate_per_editor": a.rate, "seconds": send_secs,
        "updates_sent": sent_n, "updates_per_sec": sent_n as f64 / send_secs,
        "deliveries": delivered, "deliveries_per_sec": delivered as f64 / send_secs,
        "errors": stats.errors.load(Ordering::Relaxed),
        "disconnects": stats.disconnects.load(Ordering::Relaxed),
        "reconnects": stats.reconnects.load(Ordering::Relaxed),
        "latency_ms": { "p50": percentile(&lat, 0.5), "p90": percentile(&lat, 0.9), "p99": percentile(&lat, 0.99), "p999": percentile(&lat, 0.999), "max": percentile(&lat, 1.0), "samples": lat.len() },
        "server_cpu_cores": server_cpu, "server_rss_max_kib": (rss_max > 0).then_some(rss_max),
        "converged": converged,
        "http_checked": a.check_http.then_some(expected.len()),
        "http_converged": a.check_http.then_some(http_mismatches.is_empty()),
    });
    println!("{summary}");
    for (_, _, c) in observers {
        c.detach().await;
    }
    for c in editors_done {
        c.detach().await;
    }
    anyhow::ensure!(
        converged,
        "replicas did not converge ({} clients were disconnected): a load test that loses data fails",
        stats.disconnects.load(Ordering::Relaxed)
    );
    anyhow::ensure!(
        http_mismatches.is_empty(),
        "GET /api/sessions/{{id}}/text differs from the clients for {} sessions",
        http_mismatches.len()
    );
    Ok(())
}
