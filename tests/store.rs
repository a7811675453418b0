//! The `Store` contract, run on every backend (SQLite always; PostgreSQL when
//! `TANDEM_TEST_POSTGRES` is set, required under CI).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{Backend, backends, fresh_database_url};
use tandem::model::Role;
use tandem::store::{LogEntry, NewSession, SessionPatch, Store};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

async fn store(backend: Backend) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(backend, dir.path()).await;
    (tandem::store::connect(&url).await.unwrap(), dir)
}

fn session(id: &str, owner: &str) -> NewSession {
    NewSession {
        id: id.into(),
        title: format!("{id} title"),
        language: "rust".into(),
        owner_id: owner.into(),
        owner_name: owner.to_uppercase(),
        public: false,
        public_role: Role::Viewer,
        main_path: None,
    }
}

/// An edit by its own client: "text" inserted at 0.
fn edit(doc: &Doc, s: &str) -> Bytes {
    let t = doc.get_or_insert_text("monaco");
    let mut txn = doc.transact_mut();
    t.insert(&mut txn, 0, s);
    Bytes::from(txn.encode_update_v1())
}

fn text_of(state: &[u8]) -> String {
    let d = Doc::new();
    let t = d.get_or_insert_text("monaco");
    d.transact_mut()
        .apply_update(Update::decode_v1(state).unwrap())
        .unwrap();
    t.get_string(&d.transact())
}

fn loaded_text(doc: &tandem::store::StoredDocument) -> String {
    let d = Doc::new();
    let t = d.get_or_insert_text("monaco");
    {
        let mut txn = d.transact_mut();
        for u in doc.snapshot.iter().chain(doc.updates.iter()) {
            txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
        }
    }
    t.get_string(&d.transact())
}

#[tokio::test]
async fn sessions_participants_and_chat() {
    for b in backends() {
        let (s, _d) = store(b).await;
        let created = s
            .create_session(&session("s1", "alice"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (created.owner_id.as_str(), created.public),
            ("alice", false),
            "{b:?}"
        );
        assert!(
            s.create_session(&session("s1", "bob"))
                .await
                .unwrap()
                .is_none(),
            "{b:?}: duplicate id"
        );
        assert_eq!(
            s.participant("s1", "alice").await.unwrap().unwrap().role,
            Some(Role::Owner)
        );

        let patched = s
            .update_session(
                "s1",
                &SessionPatch {
                    public: Some(true),
                    public_role: Some(Role::Editor),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert!(
            patched.public && patched.public_role == Role::Editor && patched.title == "s1 title",
            "{b:?}"
        );

        s.set_role("s1", "bob", "Bob", Some(Role::Viewer))
            .await
            .unwrap();
        s.record_presence("s1", "carol", "Carol", true)
            .await
            .unwrap();
        s.record_presence("s1", "carol", "Carol", false)
            .await
            .unwrap();
        let ps = s.list_participants("s1").await.unwrap();
        assert_eq!(
            ps.iter()
                .map(|p| (p.user_id.as_str(), p.role))
                .collect::<Vec<_>>(),
            vec![
                ("alice", Some(Role::Owner)),
                ("bob", Some(Role::Viewer)),
                ("carol", None)
            ],
            "{b:?}"
        );
        let carol = ps.iter().find(|p| p.user_id == "carol").unwrap();
        assert!(carol.joined_at.is_some() && carol.left_at.is_some());
        s.set_role("s1", "bob", "", None).await.unwrap();
        let bob = s.participant("s1", "bob").await.unwrap().unwrap();
        assert_eq!(
            (bob.role, bob.user_name.as_str()),
            (None, "Bob"),
            "{b:?}: removing a role keeps the name"
        );
        assert_eq!(s.list_sessions_for_user("bob").await.unwrap().len(), 1);
        assert!(s.list_sessions_for_user("nobody").await.unwrap().is_empty());

        let mut ids = Vec::new();
        for i in 0..7 {
            ids.push(
                s.insert_chat("s1", "alice", "Alice", &format!("m{i} <script>x</script>"))
                    .await
                    .unwrap()
                    .id,
            );
        }
        let last3 = s.list_chat("s1", None, 3).await.unwrap();
        assert_eq!(
            last3.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            vec![
                "m4 <script>x</script>",
                "m5 <script>x</script>",
                "m6 <script>x</script>"
            ],
            "{b:?}: newest last"
        );
        let before = s.list_chat("s1", Some(last3[0].id), 10).await.unwrap();
        assert_eq!(before.len(), 4, "{b:?}");
        assert!(
            last3[0].created_at.ends_with('Z'),
            "RFC 3339 UTC: {}",
            last3[0].created_at
        );

        assert!(s.delete_session("s1").await.unwrap());
        assert!(!s.delete_session("s1").await.unwrap());
        assert!(s.get_session("s1").await.unwrap().is_none());
        assert!(s.list_chat("s1", None, 10).await.unwrap().is_empty());
        assert!(s.list_participants("s1").await.unwrap().is_empty());
        s.ping().await.unwrap();
    }
}

#[tokio::test]
async fn update_log_snapshot_and_compaction() {
    for b in backends() {
        let (s, _d) = store(b).await;
        s.create_session(&session("doc", "o")).await.unwrap();
        assert!(s.load_document("missing").await.unwrap().is_none(), "{b:?}");
        let a = Doc::with_client_id(1);
        let c = Doc::with_client_id(2);
        let mut batch = Vec::new();
        for i in 0..10 {
            batch.push(LogEntry {
                doc_id: "doc".into(),
                update: edit(&a, &format!("a{i} ")),
            });
            batch.push(LogEntry {
                doc_id: "doc".into(),
                update: edit(&c, &format!("c{i} ")),
            });
        }
        s.append_updates(&batch).await.unwrap();
        let loaded = s.load_document("doc").await.unwrap().unwrap();
        assert_eq!(
            (loaded.snapshot.is_none(), loaded.updates.len()),
            (true, 20),
            "{b:?}"
        );
        let expected = loaded_text(&loaded);

        // Snapshot from a live state that has only `a`'s edits: the store
        // merges in the log rows, so nothing of `c` is lost.
        let live_a = a
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let out = s.write_snapshot("doc", &live_a).await.unwrap().unwrap();
        assert_eq!(out.compacted_rows, 20, "{b:?}");
        let after = s.load_document("doc").await.unwrap().unwrap();
        assert!(after.updates.is_empty(), "{b:?}: log rows folded in");
        assert_eq!(text_of(after.snapshot.as_ref().unwrap()), expected, "{b:?}");
        assert_eq!(
            s.stored_text("doc").await.unwrap().unwrap(),
            expected,
            "{b:?}: last_snapshot is the text"
        );
        let stats = s.storage_stats().await.unwrap();
        assert_eq!(
            (stats.log_rows, stats.state_bytes as usize),
            (0, out.state_bytes),
            "{b:?}"
        );

        // A deleted session's rows in a batch do not sink the others.
        s.create_session(&session("gone", "o")).await.unwrap();
        s.delete_session("gone").await.unwrap();
        s.append_updates(&[
            LogEntry {
                doc_id: "gone".into(),
                update: edit(&Doc::with_client_id(3), "x"),
            },
            LogEntry {
                doc_id: "doc".into(),
                update: edit(&a, "LAST "),
            },
        ])
        .await
        .unwrap();
        let l = s.load_document("doc").await.unwrap().unwrap();
        assert!(loaded_text(&l).starts_with("LAST "), "{b:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_snapshots_from_different_replicas_lose_nothing() {
    for b in backends() {
        let (s, _d) = store(b).await;
        s.create_session(&session("doc", "o")).await.unwrap();
        // Two processes hold different replicas of the same document.
        let r1 = Doc::with_client_id(11);
        let r2 = Doc::with_client_id(22);
        let mut tasks = Vec::new();
        for round in 0..10 {
            edit(&r1, &format!("x{round} "));
            edit(&r2, &format!("y{round} "));
            for r in [&r1, &r2] {
                let st = r
                    .transact()
                    .encode_state_as_update_v1(&StateVector::default());
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    s.write_snapshot("doc", &st).await.unwrap()
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let text = s.stored_text("doc").await.unwrap().unwrap();
        for round in 0..10 {
            assert!(
                text.contains(&format!("x{round} ")) && text.contains(&format!("y{round} ")),
                "{b:?}: {text}"
            );
        }
    }
}

/// Compactions racing log appends and loads: a row committed during a
/// compaction is neither deleted unmerged nor missed, and every load holds
/// every row committed before it started (loads read rows, then snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_racing_appends_and_loads_loses_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const N: usize = 150;
    for b in backends() {
        let (s, _d) = store(b).await;
        s.create_session(&session("doc", "o")).await.unwrap();
        let committed = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (s, committed) = (s.clone(), committed.clone());
            tokio::spawn(async move {
                let a = Doc::with_client_id(7);
                for i in 0..N {
                    let update = edit(&a, &format!("<{i}>"));
                    s.append_updates(&[LogEntry {
                        doc_id: "doc".into(),
                        update,
                    }])
                    .await
                    .unwrap();
                    committed.store(i + 1, Ordering::SeqCst);
                }
            })
        };
        let compactor = {
            let (s, done) = (s.clone(), done.clone());
            tokio::spawn(async move {
                let empty = Doc::new()
                    .transact()
                    .encode_state_as_update_v1(&StateVector::default());
                let mut rounds = 0;
                while !done.load(Ordering::SeqCst) {
                    s.write_snapshot("doc", &empty).await.unwrap();
                    rounds += 1;
                }
                rounds
            })
        };
        let mut loads = 0;
        while committed.load(Ordering::SeqCst) < N {
            let before = committed.load(Ordering::SeqCst);
            let text = loaded_text(&s.load_document("doc").await.unwrap().unwrap());
            for i in 0..before {
                assert!(text.contains(&format!("<{i}>")), "{b:?}: load missed <{i}>");
            }
            loads += 1;
        }
        writer.await.unwrap();
        done.store(true, Ordering::SeqCst);
        let rounds = compactor.await.unwrap();
        assert!(
            rounds > 1 && loads > 1,
            "{b:?}: {rounds} compactions, {loads} loads"
        );
        let empty = Doc::new()
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        s.write_snapshot("doc", &empty).await.unwrap();
        let text = s.stored_text("doc").await.unwrap().unwrap();
        for i in 0..N {
            assert!(text.contains(&format!("<{i}>")), "{b:?}: <{i}> lost");
        }
        assert_eq!(s.storage_stats().await.unwrap().log_rows, 0, "{b:?}");
    }
}

/// Cluster mode's log sequence (#14): each document's rows are numbered 1,
/// 2, 3, … in commit order; a node reads back what follows its position,
/// with the snapshot when rows it lacks were already folded into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_rows_are_numbered_per_document_and_read_back() {
    for b in backends() {
        let (s, _d) = store(b).await;
        s.create_session(&session("q", "o")).await.unwrap();
        let new = tandem::store::NewFile {
            path: "src/a.rs".into(),
            language: "rust".into(),
            content: None,
            created_by: "o".into(),
            max_files: usize::MAX,
        };
        let file = s.create_file("q", &new).await.unwrap().unwrap();
        let fdoc = tandem::model::DocId::for_file("q", &file.id)
            .unwrap()
            .to_string();
        let a = Doc::with_client_id(1);
        let f = Doc::with_client_id(2);
        let row = |doc: &str, u: Bytes| LogEntry {
            doc_id: doc.into(),
            update: u,
        };
        let seqs = s
            .append_updates(&[
                row("q", edit(&a, "1")),
                row(&fdoc, edit(&f, "x")),
                row("q", edit(&a, "2")),
                row("nope", edit(&Doc::with_client_id(9), "?")),
            ])
            .await
            .unwrap();
        assert_eq!(seqs, [Some(1), Some(1), Some(2), None], "{b:?}");
        let seqs = s.append_updates(&[row("q", edit(&a, "3"))]).await.unwrap();
        assert_eq!(seqs, [Some(3)], "{b:?}");
        assert_eq!(s.load_document("q").await.unwrap().unwrap().head, 3);

        let mut heads = s.log_heads(&["q".into(), "nope".into()]).await.unwrap();
        heads.sort();
        let mut want = vec![("q".to_owned(), 3), (fdoc.clone(), 1)];
        want.sort();
        assert_eq!(heads, want, "{b:?}");

        let tail = s.read_log_since("q", 1).await.unwrap().unwrap();
        assert_eq!(tail.head, 3);
        assert_eq!(
            tail.updates.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [2, 3]
        );
        assert!(tail.snapshot.is_none(), "{b:?}: nothing folded yet");
        let none = s.read_log_since("q", 3).await.unwrap().unwrap();
        assert!(none.updates.is_empty() && none.snapshot.is_none());
        assert!(s.read_log_since("nope", 0).await.unwrap().is_none());

        // Compaction folds rows 1-3; a node at 1 gets the snapshot instead.
        let live = a
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        s.write_snapshot("q", &live).await.unwrap().unwrap();
        let seqs = s.append_updates(&[row("q", edit(&a, "4"))]).await.unwrap();
        assert_eq!(seqs, [Some(4)], "{b:?}: numbers go on after compaction");
        let tail = s.read_log_since("q", 1).await.unwrap().unwrap();
        assert_eq!(tail.head, 4);
        assert_eq!(
            tail.updates.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [4]
        );
        let state = tail.snapshot.expect("rows 2-3 are only in the snapshot");
        assert_eq!(text_of(&state), "321", "{b:?}");
    }
}
