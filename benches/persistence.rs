//! Persistence benchmarks (issue 3), every figure side by side in one run on
//! each backend. `cargo bench --bench persistence` prints a Markdown table.
//!
//! - accepted updates/s through the real update path with the durable log
//!   on vs off (rustcode trace, 36,981 updates, every 100th acknowledged so
//!   the run ends only when everything is committed);
//! - snapshot write (merge + compaction transaction) of the final rustcode
//!   document;
//! - load time (snapshot + log rows → live document), p50/p99;
//! - storage after 100,000 edits (automerge-paper trace) and compaction,
//!   against the live state size.
//!
//! PostgreSQL runs when `TANDEM_TEST_POSTGRES` is set (`make bench` sets it).
//! Traces: Joseph Gentle's editing-traces, CC BY 4.0, `tests/data/traces/`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem::core::{DocManager, ManagerConfig};
use tandem::model::Role;
use tandem::store::{NewSession, Store};

fn trace(name: &str, limit: usize) -> Vec<Bytes> {
    let t = tandem::trace::load_sequential(tandem::trace::traces_dir().join(name)).expect("trace");
    tandem::trace::updates(&t)
        .0
        .into_iter()
        .take(limit)
        .map(Bytes::from)
        .collect()
}

/// A fresh database for one measurement (`tag` names it on PostgreSQL).
async fn database(backend: &str, dir: &std::path::Path, tag: &str) -> Option<String> {
    match backend {
        "sqlite" => Some(format!("sqlite://{}", dir.join("bench.db").display())),
        _ => {
            use sqlx::Connection;
            let server = std::env::var("TANDEM_TEST_POSTGRES").ok()?;
            let name = format!("tandem_bench_{tag}_{}", std::process::id());
            let mut c = sqlx::PgConnection::connect(&server).await.ok()?;
            let _ = sqlx::Executor::execute(
                &mut c,
                sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
            )
            .await;
            sqlx::Executor::execute(
                &mut c,
                sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
            )
            .await
            .ok()?;
            Some(format!("{}/{name}", server.rsplit_once('/').unwrap().0))
        }
    }
}

async fn session(store: &Arc<dyn Store>, id: &str) {
    store
        .create_session(&NewSession {
            id: id.into(),
            title: id.into(),
            language: "rust".into(),
            owner_id: "o".into(),
            owner_name: "O".into(),
            public: true,
            public_role: Role::Editor,
            main_path: None,
        })
        .await
        .unwrap();
}

fn manager(store: Arc<dyn Store>, log: bool) -> Arc<DocManager> {
    let config = tandem::config::Config {
        update_log: log,
        max_document_bytes: usize::MAX / 2,
        // No snapshot during the throughput runs: they measure the log.
        snapshot_debounce_ms: 3_600_000,
        snapshot_max_delay_ms: 3_600_000,
        ..Default::default()
    };
    DocManager::new(store, ManagerConfig::from_config(&config))
}

/// Updates/s through `submit_update`, ending when the last one is durable.
async fn throughput(store: &Arc<dyn Store>, updates: &[Bytes], log: bool, id: &str) -> f64 {
    session(store, id).await;
    let m = manager(store.clone(), log);
    let doc = m.open(id).await.unwrap();
    let start = Instant::now();
    let mut pending = Vec::new();
    for (i, u) in updates.iter().enumerate() {
        let ack = i % 100 == 99 || i + 1 == updates.len();
        if let Some(rx) = m.submit_update(&doc, u.clone(), None, ack).await.unwrap() {
            pending.push(rx);
        }
    }
    for rx in pending {
        assert!(rx.await.unwrap());
    }
    let rate = updates.len() as f64 / start.elapsed().as_secs_f64();
    drop(doc);
    m.shutdown().await;
    rate
}

/// Applies every update; returns once the last one is committed to the log.
async fn apply_all(m: &DocManager, doc: &tandem::core::DocLease, updates: &[Bytes]) {
    let (last, rest) = updates.split_last().unwrap();
    for u in rest {
        m.submit_update(doc, u.clone(), None, false).await.unwrap();
    }
    m.submit(doc, last.clone(), None, true).await.unwrap();
}

/// This process's CPU time (user + system).
fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Tandem's own CPU per update while offered a steady 10,000 updates/s.
async fn cpu_at_10k(store: &Arc<dyn Store>, updates: &[Bytes], log: bool, id: &str) -> Duration {
    session(store, id).await;
    let m = manager(store.clone(), log);
    let doc = m.open(id).await.unwrap();
    let n = updates.len().min(20_000);
    let (cpu0, t0) = (cpu_time(), Instant::now());
    for (i, chunk) in updates[..n - 1].chunks(10).enumerate() {
        // 10 updates per millisecond; clients do not wait for the log.
        tokio::time::sleep_until((t0 + Duration::from_millis(i as u64)).into()).await;
        for u in chunk {
            m.submit_update(&doc, u.clone(), None, false).await.unwrap();
        }
    }
    apply_all(&m, &doc, &updates[n - 1..n]).await;
    let per = (cpu_time() - cpu0) / n as u32;
    drop(doc);
    m.shutdown().await;
    per
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn disk_bytes_sqlite(dir: &std::path::Path) -> u64 {
    ["bench.db", "bench.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` runs benches with `--bench`-less args: stay quick there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rustcode = trace("rustcode.json.gz", if quick { 2_000 } else { usize::MAX });
    let paper = trace(
        "automerge-paper.json.gz",
        if quick { 5_000 } else { 100_000 },
    );
    println!("| backend | measure | value |\n|---|---|---|");
    for backend in ["sqlite", "postgres"] {
        let dir = tempfile::tempdir().unwrap();
        let Some(url) = database(backend, dir.path(), "main").await else {
            println!("| {backend} | skipped | set TANDEM_TEST_POSTGRES |");
            continue;
        };
        let store = tandem::store::connect(&url).await.unwrap();

        // Log on and off alternately, three rounds each, best of each.
        let (mut on, mut off) = (0f64, 0f64);
        for round in 0..3 {
            off = off.max(throughput(&store, &rustcode, false, &format!("off{round}")).await);
            on = on.max(throughput(&store, &rustcode, true, &format!("on{round}")).await);
        }
        println!("| {backend} | updates/s, log off | {off:.0} |");
        println!("| {backend} | updates/s, log on (group commit) | {on:.0} |");
        println!(
            "| {backend} | throughput cost of the log at full speed | {:.1}% |",
            (1.0 - on / off) * 100.0
        );
        let cpu_off = cpu_at_10k(&store, &rustcode, false, "cpu-off").await;
        let cpu_on = cpu_at_10k(&store, &rustcode, true, "cpu-on").await;
        println!(
            "| {backend} | Tandem CPU per update at 10k updates/s, log off / on | {:.2} µs / {:.2} µs (log costs {:.1}% of throughput) |",
            cpu_off.as_secs_f64() * 1e6,
            cpu_on.as_secs_f64() * 1e6,
            (1.0 - cpu_off.as_secs_f64() / cpu_on.as_secs_f64()) * 100.0
        );

        // Snapshot write and load of the final rustcode document, with four
        // 1 ms tickers on the async workers meanwhile: how late they wake
        // is how long the merge, encode and load held a worker.
        session(&store, "snap").await;
        let m = manager(store.clone(), true);
        {
            let doc = m.open("snap").await.unwrap();
            apply_all(&m, &doc, &rustcode).await;
        }
        let state = m.get_loaded("snap").unwrap().encode_state().unwrap();
        let ticking = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let lateness: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
        let tickers: Vec<_> = (0..4)
            .map(|_| {
                let (ticking, lateness) = (ticking.clone(), lateness.clone());
                tokio::spawn(async move {
                    while ticking.load(std::sync::atomic::Ordering::Relaxed) {
                        let t = Instant::now();
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let late = t.elapsed().saturating_sub(Duration::from_millis(1));
                        lateness.lock().unwrap().push(late);
                    }
                })
            })
            .collect();
        let mut writes = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            store.write_snapshot("snap", &state).await.unwrap();
            writes.push(t.elapsed());
        }
        println!(
            "| {backend} | snapshot write, rustcode final doc ({} KiB state), p50 / p99 | {} / {} |",
            state.len() / 1024,
            ms(pct(&mut writes, 0.5)),
            ms(pct(&mut writes, 0.99))
        );
        let mut loads = Vec::new();
        for _ in 0..50 {
            m.discard("snap");
            let t = Instant::now();
            let doc = m.open("snap").await.unwrap();
            loads.push(t.elapsed());
            drop(doc);
        }
        println!(
            "| {backend} | load (snapshot → live doc), p50 / p99 | {} / {} |",
            ms(pct(&mut loads, 0.5)),
            ms(pct(&mut loads, 0.99))
        );
        ticking.store(false, std::sync::atomic::Ordering::Relaxed);
        for t in tickers {
            t.await.unwrap();
        }
        let mut late = std::mem::take(&mut *lateness.lock().unwrap());
        println!(
            "| {backend} | async workers during those writes and loads: 1 ms timer lateness p99 / max | {} / {} |",
            ms(pct(&mut late, 0.99)),
            ms(late.iter().copied().max().unwrap_or_default())
        );
        m.shutdown().await;

        // Storage after 100k edits and compaction, in a database of its own.
        let sdir = tempfile::tempdir().unwrap();
        let surl = database(backend, sdir.path(), "storage").await.unwrap();
        let sstore = tandem::store::connect(&surl).await.unwrap();
        session(&sstore, "paper").await;
        let m = manager(sstore.clone(), true);
        let live = {
            let doc = m.open("paper").await.unwrap();
            apply_all(&m, &doc, &paper).await;
            doc.encode_state().unwrap().len()
        };
        let before = sstore.storage_stats().await.unwrap();
        m.shutdown().await; // flushes: one compaction folds every row in
        let after = sstore.storage_stats().await.unwrap();
        println!(
            "| {backend} | {} edits (automerge-paper): log rows before / after compaction | {} / {} |",
            paper.len(),
            before.log_rows,
            after.log_rows
        );
        println!(
            "| {backend} | stored state / live state | {} / {} bytes ({:.2}×) |",
            after.state_bytes,
            live,
            after.state_bytes as f64 / live as f64
        );
        let on_disk = if backend == "sqlite" {
            let pool = sqlx::SqlitePool::connect(&surl).await.unwrap();
            sqlx::query("VACUUM").execute(&pool).await.unwrap();
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            disk_bytes_sqlite(sdir.path())
        } else {
            let pool = sqlx::PgPool::connect(&surl).await.unwrap();
            sqlx::query("VACUUM FULL document_updates")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("VACUUM FULL sessions")
                .execute(&pool)
                .await
                .unwrap();
            let size: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('document_updates') + pg_total_relation_size('sessions')").fetch_one(&pool).await.unwrap();
            size as u64
        };
        println!(
            "| {backend} | on disk after compaction (whole database / tables) vs live state | {} KiB vs {} KiB ({:.2}×) |",
            on_disk / 1024,
            live / 1024,
            on_disk as f64 / live as f64
        );
    }
}
