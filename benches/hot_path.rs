//! Hot-path micro-benchmarks, each next to its bare-yrs baseline in the same run.
//!
//! - `update/*`: per-update server cost replaying the rustcode trace
//!   (decode, authorize, rate budget, apply, encode once for broadcast) vs bare
//!   yrs decode + apply.
//! - `awareness/*`: applying a 10-client awareness update.
//! - `snapshot/*`: encoding the final rustcode document.
//!
//! Traces: Joseph Gentle's editing-traces (CC BY 4.0), `tests/data/traces/`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use socketioxide_core::packet::Packet;
use socketioxide_core::parser::Parse;
use socketioxide_parser_common::CommonParser;
use tandem::auth::User;
use tandem::core::{DocManager, Fanout, ManagerConfig, SessionDoc};
use tandem::model::{Participant, Role};
use tandem::store::{NewSession, StoredDocument};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

/// Encodes each update once as the Socket.IO packet every peer receives,
/// exactly as socketioxide does on emit.
struct EncodeOnce;

impl Fanout for EncodeOnce {
    fn doc_update(&self, session_id: &str, update: &Bytes, _except: Option<&str>) {
        let value = CommonParser
            .encode_value(&(session_id, update), Some("yjs-update"))
            .unwrap();
        std::hint::black_box(CommonParser.encode(Packet::event("/", value)));
    }
    fn awareness(&self, _: &str, _: &Bytes, _: Option<&str>) {}
    fn user_joined(&self, _: &str, _: &Participant, _: Option<&str>) {}
    fn user_left(&self, _: &str, _: &str) {}
    fn typing_stopped(&self, _: &str, _: &str) {}
    fn unloaded(&self, _: &str) {}
}

fn limits() -> tandem::core::Limits {
    tandem::core::Limits {
        max_document_bytes: usize::MAX / 2,
        ..Default::default()
    }
}

fn rustcode() -> Vec<Bytes> {
    let trace =
        tandem::trace::load_sequential(tandem::trace::traces_dir().join("rustcode.json.gz"))
            .expect("rustcode trace");
    tandem::trace::updates(&trace)
        .0
        .into_iter()
        .map(Bytes::from)
        .collect()
}

fn update_path(c: &mut Criterion) {
    let updates = rustcode();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The log is measured by the persistence bench; budgets and limits out of the way.
    let config = tandem::config::Config {
        update_log: false,
        updates_per_second: u32::MAX / 2,
        update_burst: u32::MAX / 2,
        max_document_bytes: usize::MAX / 2,
        ..Default::default()
    };
    let (manager, user) = rt.block_on(async {
        let store =
            tandem::store::connect(&format!("sqlite://{}", dir.path().join("b.db").display()))
                .await
                .unwrap();
        let manager = DocManager::new(store, ManagerConfig::from_config(&config));
        manager.set_fanout(Arc::new(EncodeOnce));
        let user = User {
            id: "u".into(),
            name: "U".into(),
            sessions: Default::default(),
            guest_cap: None,
        };
        (manager, user)
    });
    let budget = tandem::core::UpdateBudget::new(config.updates_per_second, config.update_burst);

    let mut g = c.benchmark_group("update");
    g.throughput(Throughput::Elements(updates.len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("yrs_decode_apply", |b| {
        b.iter_batched(
            Doc::new,
            |doc| {
                let _t = doc.get_or_insert_text("monaco");
                for u in &updates {
                    let mut txn = doc.transact_mut();
                    txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
                }
                doc
            },
            BatchSize::PerIteration,
        )
    });
    let mut n = 0u64;
    g.bench_function("tandem_update_path", |b| {
        b.iter_batched(
            || {
                n += 1;
                let id = format!("bench{n}");
                rt.block_on(async {
                    manager
                        .store()
                        .create_session(&NewSession {
                            id: id.clone(),
                            title: String::new(),
                            language: String::new(),
                            owner_id: "u".into(),
                            owner_name: "U".into(),
                            public: false,
                            public_role: Role::Viewer,
                            main_path: None,
                        })
                        .await
                        .unwrap();
                    let lease = manager.open(&id).await.unwrap();
                    lease.join("c1", &user, Role::Editor);
                    lease
                })
            },
            |lease| {
                rt.block_on(async {
                    for u in &updates {
                        // What accept_update does before the core: role and budget.
                        assert!(lease.role_of("c1").is_some_and(Role::can_edit));
                        budget.check().unwrap();
                        manager
                            .submit_update(&lease, u.clone(), Some("c1"), false)
                            .await
                            .unwrap();
                    }
                });
                lease
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn awareness_and_snapshot(c: &mut Criterion) {
    // A 10-client awareness update, as a joiner receives it.
    let peers: Vec<yrs::sync::Awareness> = (1..=10)
        .map(|i| {
            let mut a = yrs::sync::Awareness::new(Doc::with_client_id(i));
            a.set_local_state_raw(format!(r##"{{"user":{{"name":"user{i}","color":"#123456"}},"cursor":{{"anchor":{i},"head":{}}}}}"##, i + 5));
            a
        })
        .collect();
    let updates: Vec<Vec<u8>> = peers
        .iter()
        .map(|a| a.update().unwrap().encode_v1())
        .collect();
    let mut g = c.benchmark_group("awareness");
    g.throughput(Throughput::Elements(updates.len() as u64));
    g.bench_function("yrs_apply", |b| {
        b.iter_batched(
            || yrs::sync::Awareness::new(Doc::new()),
            |mut a| {
                for u in &updates {
                    a.apply_update(yrs::sync::AwarenessUpdate::decode_v1(u).unwrap())
                        .unwrap();
                }
                a
            },
            BatchSize::SmallInput,
        )
    });
    let user = User {
        id: "u".into(),
        name: "U".into(),
        sessions: Default::default(),
        guest_cap: None,
    };
    g.bench_function("tandem_apply", |b| {
        b.iter_batched(
            || {
                let d = SessionDoc::load("a", &StoredDocument::default(), &limits()).unwrap();
                // One connection per peer, as in a session.
                for i in 0..updates.len() {
                    d.join(&format!("c{i}"), &user, Role::Editor);
                }
                d
            },
            |d| {
                for (i, u) in updates.iter().enumerate() {
                    d.apply_awareness(&format!("c{i}"), u).unwrap();
                }
                d
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let updates = rustcode();
    let doc = SessionDoc::load(
        "s",
        &StoredDocument {
            head: 0,
            snapshot: None,
            updates: updates.iter().map(|u| u.to_vec()).collect(),
        },
        &limits(),
    )
    .unwrap();
    let bare = Doc::new();
    {
        let mut txn = bare.transact_mut();
        for u in &updates {
            txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
        }
    }
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(20);
    g.bench_function("yrs_encode_state", |b| {
        b.iter(|| {
            bare.transact()
                .encode_state_as_update_v1(&StateVector::default())
        })
    });
    g.bench_function("tandem_encode_state", |b| {
        b.iter(|| doc.encode_state().unwrap())
    });
    g.finish();
}

criterion_group!(benches, update_path, awareness_and_snapshot);
criterion_main!(benches);
