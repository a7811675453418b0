//! `/metrics` (issue 10, "Operability"): every `tandem_*` series carries a
//! `# HELP` line, histograms have buckets, and the series added for
//! operators appear after real traffic. Own test binary: it reads the
//! process-wide metrics (connection gauges must not see other tests).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use common::peer::{Peer, T, code, eventually};
use common::{Backend, TestServer};
use serde_json::json;
use tandem::client::{Arg, Client};
use tandem::model::Role;

struct Scrape {
    text: String,
    /// Sample lines: series (name plus labels) -> value.
    samples: HashMap<String, f64>,
}

impl Scrape {
    async fn get(url: &str) -> Scrape {
        let text = reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(series, v)| (series.to_owned(), v.parse().unwrap_or(f64::NAN)))
            .collect();
        Scrape { text, samples }
    }

    fn value(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }

    fn has_family(&self, name: &str) -> bool {
        self.samples
            .keys()
            .any(|s| s == name || s.starts_with(&format!("{name}{{")))
    }
}

/// A yrs update inserting `s` into the root text of a fresh document.
fn insert_update(s: &str) -> Bytes {
    use yrs::{Text, Transact};
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("monaco");
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, 0, s);
    Bytes::from(txn.encode_update_v1())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_is_described_and_the_operability_series_appear() {
    let srv = TestServer::start(Backend::Sqlite, |c| c.on_demand_sessions = true).await;
    let sid = "metrics-1";

    // Native: two editors (one update delivered to the other) and a viewer
    // whose update is refused.
    let (a, b) = Peer::pair(&srv, sid).await;
    let update = a.random_edit(1);
    let reply = a.send_update(sid, update, true).await.unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    eventually(T, "b received a's update", || {
        b.received.load(std::sync::atomic::Ordering::SeqCst) >= 1
    })
    .await;
    let viewer = Peer::connect(&srv.url, Some(&srv.token("v", &[(sid, Role::Viewer)])))
        .await
        .unwrap();
    assert_eq!(viewer.join(sid).await["ok"], true);
    let refused = viewer
        .send_update(sid, viewer.random_edit(2), true)
        .await
        .unwrap();
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");

    // y-socket.io: one provider sending an update.
    let (y, _yrx) = Client::connect(
        &srv.url,
        &format!("/yjs|{sid}"),
        Some(json!({ "token": srv.token("y", &[]) })),
    )
    .await
    .unwrap();
    y.emit("sync-update", vec![Arg::bin(insert_update("from y"))])
        .unwrap();

    // HTTP: a garbage update is refused with INVALID_UPDATE.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/sessions/{sid}/update", srv.url))
        .bearer_auth(srv.token("a", &[]))
        .header("content-type", "application/octet-stream")
        .body(vec![0xffu8, 0xff, 0xff, 0x01])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Wait for the log writer to commit the accepted updates.
    let mut m = Scrape::get(&srv.url).await;
    for _ in 0..100 {
        if m.value("tandem_log_commits_total").unwrap_or(0.0) >= 1.0
            && m.value("tandem_updates_applied_total").unwrap_or(0.0) >= 2.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = Scrape::get(&srv.url).await;
    }

    // Every sample belongs to a described family.
    let described: BTreeSet<&str> = m
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut undescribed = BTreeSet::new();
    for series in m.samples.keys().filter(|s| s.starts_with("tandem_")) {
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| described.contains(base))
            })
            .unwrap_or(name);
        if !described.contains(family) {
            undescribed.insert(family.to_owned());
        }
    }
    assert!(
        undescribed.is_empty(),
        "series without # HELP: {undescribed:?}\n{}",
        m.text
    );

    // The operability series are there, with sensible values.
    assert_eq!(
        m.value(r#"tandem_connections{dialect="native"}"#),
        Some(3.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.value(r#"tandem_connections{dialect="ysocketio"}"#),
        Some(1.0)
    );
    assert!(m.value(r#"tandem_updates_rejected_total{code="FORBIDDEN"}"#) >= Some(1.0));
    assert!(m.value(r#"tandem_updates_rejected_total{code="INVALID_UPDATE"}"#) >= Some(1.0));
    assert!(m.value("tandem_update_bytes_in_total") > Some(0.0));
    assert!(m.value("tandem_update_bytes_out_total") > Some(0.0));
    assert!(m.value("tandem_documents_loaded_total") >= Some(1.0));
    assert!(m.value("tandem_documents_loaded") >= Some(1.0));
    for histogram in [
        "tandem_log_batch_rows",
        "tandem_log_commit_seconds",
        "tandem_update_apply_seconds",
        "tandem_document_load_seconds",
    ] {
        assert!(
            m.has_family(&format!("{histogram}_bucket")),
            "{histogram} is not a histogram with buckets\n{}",
            m.text
        );
        assert!(m.value(&format!("{histogram}_count")) >= Some(1.0));
    }

    // Disconnects bring the connection gauges back down.
    for p in [&a, &b, &viewer] {
        p.client.close();
    }
    y.close();
    let mut last = (f64::NAN, f64::NAN);
    for _ in 0..100 {
        let m = Scrape::get(&srv.url).await;
        last = (
            m.value(r#"tandem_connections{dialect="native"}"#)
                .unwrap_or(f64::NAN),
            m.value(r#"tandem_connections{dialect="ysocketio"}"#)
                .unwrap_or(f64::NAN),
        );
        if last == (0.0, 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, (0.0, 0.0), "(native, ysocketio) after every close");
}

/// Every series named in the source is described: catches series that the
/// traffic above does not reach (slow consumers, rate limits, ...).
#[test]
fn every_series_in_the_source_is_described() {
    let catalogue = std::fs::read_to_string("src/telemetry.rs").unwrap();
    let mut missing = BTreeSet::new();
    let mut stack = vec![std::path::PathBuf::from("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("telemetry.rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            // `counter!("tandem_…"`, `gauge!(…`, `histogram!(…`.
            for (i, _) in src.match_indices("!(\"tandem_") {
                let name: String = src[i + 3..].chars().take_while(|c| *c != '"').collect();
                if !catalogue.contains(&format!("\"{name}\"")) {
                    missing.insert(format!("{name} ({})", path.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not described in src/telemetry.rs: {missing:?}"
    );
    // The catalogue's own helpers emit these.
    for name in [
        "tandem_connections",
        "tandem_updates_rejected_total",
        "tandem_update_bytes_in_total",
    ] {
        assert!(
            catalogue.matches(&format!("\"{name}\"")).count() >= 2,
            "{name}"
        );
    }
}
