//! Workspaces in the store (PROTOCOL.md, "Workspaces: files in a session"):
//! file CRUD and the path rules, the update log, snapshots and loads per
//! document, deletion, and the upgrade of a database written by the
//! pre-workspace schema. Every test runs on SQLite, and on PostgreSQL when
//! `TANDEM_TEST_POSTGRES` is set.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{Backend, backends, fresh_database_url};
use tandem::model::Role;
use tandem::store::{LogEntry, NewFile, NewSession, Store, StoreError};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

async fn store(backend: Backend) -> (Arc<dyn Store>, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(backend, dir.path()).await;
    (tandem::store::connect(&url).await.unwrap(), dir, url)
}

fn session(id: &str, language: &str) -> NewSession {
    NewSession {
        id: id.into(),
        title: id.into(),
        language: language.into(),
        owner_id: "alice".into(),
        owner_name: "Alice".into(),
        public: false,
        public_role: Role::Viewer,
        main_path: None,
    }
}

fn new_file(path: &str, content: Option<&str>) -> NewFile {
    NewFile {
        path: path.into(),
        language: tandem::model::language_for_path(path).into(),
        content: content.map(Into::into),
        created_by: "bob".into(),
        max_files: usize::MAX,
    }
}

fn edit(doc: &Doc, s: &str) -> Bytes {
    let t = doc.get_or_insert_text("monaco");
    let mut txn = doc.transact_mut();
    let len = t.len(&txn);
    t.insert(&mut txn, len, s);
    Bytes::from(txn.encode_update_v1())
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

async fn text_of(s: &Arc<dyn Store>, doc_id: &str) -> String {
    loaded_text(&s.load_document(doc_id).await.unwrap().unwrap())
}

fn empty_state() -> Vec<u8> {
    Doc::new()
        .transact()
        .encode_state_as_update_v1(&StateVector::default())
}

fn conflict(r: Result<impl std::fmt::Debug, StoreError>) -> String {
    match r {
        Err(StoreError::PathExists { existing, .. }) => existing,
        other => panic!("expected PathExists, got {other:?}"),
    }
}

#[tokio::test]
async fn file_crud_and_path_rules() {
    for b in backends() {
        let (s, _d, _) = store(b).await;
        s.create_session(&session("s", "rust")).await.unwrap();
        let files = s.list_files("s").await.unwrap();
        assert_eq!(files.len(), 1, "{b:?}");
        let main = &files[0];
        assert_eq!(
            (main.id.as_str(), main.path.as_str(), main.language.as_str()),
            ("main", "main.rs", "rust"),
            "{b:?}"
        );
        assert_eq!((main.size, main.updated_by.as_str()), (0, "alice"));
        assert!(main.created_at.ends_with('Z'), "{}", main.created_at);
        assert_eq!(s.get_file("s", "main").await.unwrap().as_ref(), Some(main));

        // mainPath wins over the language's default; a bad one is refused.
        let mut with_path = session("p", "python");
        with_path.main_path = Some("app/__main__.py".into());
        s.create_session(&with_path).await.unwrap().unwrap();
        assert_eq!(
            s.get_file("p", "main").await.unwrap().unwrap().path,
            "app/__main__.py"
        );
        let mut bad = session("q", "go");
        bad.main_path = Some("../x.go".into());
        assert!(matches!(
            s.create_session(&bad).await,
            Err(StoreError::InvalidPath(_))
        ));
        assert!(s.get_session("q").await.unwrap().is_none(), "{b:?}");
        s.create_session(&session("t", "cobol")).await.unwrap();
        assert_eq!(s.list_files("t").await.unwrap()[0].path, "main.txt");

        // Create, with content as a Yjs state and as text.
        let lib = s
            .create_file("s", &new_file("src/lib.rs", Some("fn x() {} // é")))
            .await
            .unwrap()
            .unwrap();
        assert!(tandem::model::is_valid_id(&lib.id) && lib.id != "main");
        assert_eq!(
            (lib.path.as_str(), lib.language.as_str(), lib.size),
            ("src/lib.rs", "rust", 15),
            "{b:?}: size in UTF-8 bytes"
        );
        assert_eq!(lib.updated_by, "bob");
        let lib_doc = format!("s~{}", lib.id);
        assert_eq!(text_of(&s, &lib_doc).await, "fn x() {} // é", "{b:?}");
        assert_eq!(
            s.stored_text(&lib_doc).await.unwrap().as_deref(),
            Some("fn x() {} // é")
        );
        let empty = s
            .create_file("s", &new_file("README.md", None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((empty.size, empty.language.as_str()), (0, "markdown"));
        assert_eq!(text_of(&s, &format!("s~{}", empty.id)).await, "");

        // The path rules: equal, folder of, has as folder.
        for (path, existing) in [
            ("src/lib.rs", "src/lib.rs"),
            ("src", "src/lib.rs"),
            ("src/lib.rs/x", "src/lib.rs"),
            ("src/lib.rs/x/y", "src/lib.rs"),
            ("main.rs", "main.rs"),
            ("main.rs/a", "main.rs"),
        ] {
            assert_eq!(
                conflict(s.create_file("s", &new_file(path, Some("x"))).await),
                existing,
                "{b:?}: {path}"
            );
        }
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/./b",
            "../a",
            "a\u{7}b",
            &"x".repeat(513),
        ] {
            assert!(
                matches!(
                    s.create_file("s", &new_file(bad, None)).await,
                    Err(StoreError::InvalidPath(_))
                ),
                "{b:?}: {bad:?}"
            );
        }
        // Neighbours that merely share a prefix are fine; case matters.
        for ok in [
            "srcx",
            "src2/lib.rs",
            "src/lib.rsx",
            "SRC/lib.rs",
            "src/a/b.rs",
        ] {
            s.create_file("s", &new_file(ok, Some("")))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{b:?}: {ok}"));
        }
        assert!(
            s.create_file("nope", &new_file("a", None))
                .await
                .unwrap()
                .is_none()
        );

        // Rename / move / language.
        let moved = s
            .rename_file("s", &lib.id, Some("lib/lib.rs"), None, "carol")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                moved.old_path.as_str(),
                moved.file.path.as_str(),
                moved.file.updated_by.as_str()
            ),
            ("src/lib.rs", "lib/lib.rs", "carol"),
            "{b:?}"
        );
        assert_eq!(moved.file.language, "rust");
        assert_eq!(
            conflict(s.rename_file("s", &lib.id, Some("srcx/a"), None, "c").await),
            "srcx"
        );
        let existing = conflict(s.rename_file("s", &lib.id, Some("src"), None, "c").await);
        assert!(existing.starts_with("src/"), "{b:?}: {existing}");
        // Its own path, or one of its own old folders, is no conflict.
        let same = s
            .rename_file("s", &lib.id, Some("lib/lib.rs"), Some("plaintext"), "c")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (same.file.language.as_str(), same.old_language.as_str()),
            ("plaintext", "rust")
        );
        s.rename_file("s", &lib.id, Some("lib"), None, "c")
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            s.rename_file("s", &lib.id, Some("/x"), None, "c").await,
            Err(StoreError::InvalidPath(_))
        ));
        assert!(
            s.rename_file("s", "nofile", Some("z"), None, "c")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            text_of(&s, &lib_doc).await,
            "fn x() {} // é",
            "{b:?}: content follows the file"
        );

        // The main file: renamed and moved freely; its language is the session's.
        let m = s
            .rename_file("s", "main", Some("bin/main.py"), Some("python"), "dave")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.old_path.as_str(), m.file.path.as_str()),
            ("main.rs", "bin/main.py")
        );
        assert_eq!(
            s.get_session("s").await.unwrap().unwrap().language,
            "python"
        );
        s.update_session(
            "s",
            &tandem::store::SessionPatch {
                language: Some("go".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let main = s.get_file("s", "main").await.unwrap().unwrap();
        assert_eq!(
            (main.language.as_str(), main.path.as_str()),
            ("go", "bin/main.py"),
            "{b:?}: the language changes, not the path"
        );

        // Listing is sorted by path (byte order).
        let paths: Vec<String> = s
            .list_files("s")
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted, "{b:?}");
        assert_eq!(paths[0], "README.md", "{b:?}: upper case first");
        assert_eq!(paths.len(), 8);
        assert_eq!(s.workspace_bytes("s").await.unwrap(), 15, "{b:?}");
        assert_eq!(s.workspace_bytes("nope").await.unwrap(), 0);

        // Delete.
        assert!(matches!(
            s.delete_file("s", "main").await,
            Err(StoreError::MainFileUndeletable)
        ));
        let gone = s.delete_file("s", &lib.id).await.unwrap().unwrap();
        assert_eq!(gone.path, "lib");
        assert!(s.delete_file("s", &lib.id).await.unwrap().is_none());
        assert!(s.get_file("s", &lib.id).await.unwrap().is_none());
        assert!(s.load_document(&lib_doc).await.unwrap().is_none(), "{b:?}");
        assert!(s.stored_text(&lib_doc).await.unwrap().is_none());
        assert_eq!(s.workspace_bytes("s").await.unwrap(), 0);
        // Its path is free again, also as a folder.
        s.create_file("s", &new_file("lib/x", None))
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn documents_have_their_own_log_and_snapshot() {
    for b in backends() {
        let (s, _d, _) = store(b).await;
        s.create_session(&session("s", "rust")).await.unwrap();
        s.create_session(&session("other", "rust")).await.unwrap();
        let f1 = s
            .create_file("s", &new_file("a.rs", Some("A:")))
            .await
            .unwrap()
            .unwrap();
        let f2 = s
            .create_file("s", &new_file("b/c.rs", None))
            .await
            .unwrap()
            .unwrap();
        let (main_id, d1, d2) = (
            "s".to_string(),
            format!("s~{}", f1.id),
            format!("s~{}", f2.id),
        );
        assert!(
            s.load_document(&format!("s~{}", "main"))
                .await
                .unwrap()
                .is_none(),
            "{b:?}: <sid>~main is no document id"
        );
        assert!(s.load_document("s~nofile").await.unwrap().is_none());
        assert!(s.load_document("other~").await.unwrap().is_none());

        // Clients that start from each document's stored state.
        let clients: Vec<(String, Doc)> = [&main_id, &d1, &d2]
            .into_iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), Doc::with_client_id(100 + i as u64)))
            .collect();
        for (id, doc) in &clients {
            let stored = s.load_document(id).await.unwrap().unwrap();
            let mut txn = doc.transact_mut();
            for u in stored.snapshot.iter().chain(stored.updates.iter()) {
                txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
            }
        }
        // One mixed batch, interleaved, plus rows of a malformed id, an
        // unknown file and another session's main document.
        let mut batch = Vec::new();
        for i in 0..5 {
            for (id, doc) in &clients {
                let tag = if id == &main_id {
                    "m"
                } else if id == &d1 {
                    "x"
                } else {
                    "y"
                };
                batch.push(LogEntry {
                    doc_id: id.as_str().into(),
                    update: edit(doc, &format!("{tag}{i} ")),
                });
            }
        }
        let stray = Doc::with_client_id(9);
        for id in ["s~main", "s~nofile", "bad id"] {
            batch.push(LogEntry {
                doc_id: id.into(),
                update: edit(&stray, "STRAY "),
            });
        }
        batch.push(LogEntry {
            doc_id: "other".into(),
            update: edit(&Doc::with_client_id(10), "OTHER"),
        });
        s.append_updates(&batch).await.unwrap();
        let stats = s.storage_stats().await.unwrap();
        assert_eq!(stats.log_rows, 16, "{b:?}: stray rows dropped");
        let main_text = "m0 m1 m2 m3 m4 ";
        let t1 = "A:x0 x1 x2 x3 x4 ";
        let t2 = "y0 y1 y2 y3 y4 ";
        for (id, want) in [(&main_id, main_text), (&d1, t1), (&d2, t2)] {
            let loaded = s.load_document(id).await.unwrap().unwrap();
            assert_eq!(loaded.updates.len(), 5, "{b:?}: {id}");
            assert_eq!(loaded_text(&loaded), want, "{b:?}: {id}");
        }
        assert_eq!(text_of(&s, "other").await, "OTHER");

        // Snapshots, each folding exactly its own rows.
        for (id, want) in [(&d1, t1), (&main_id, main_text)] {
            let out = s.write_snapshot(id, &empty_state()).await.unwrap().unwrap();
            assert_eq!(out.compacted_rows, 5, "{b:?}: {id}");
            assert_eq!(s.stored_text(id).await.unwrap().as_deref(), Some(want));
            let after = s.load_document(id).await.unwrap().unwrap();
            assert!(after.updates.is_empty() && after.snapshot.is_some());
            assert_eq!(loaded_text(&after), want, "{b:?}: {id}");
        }
        assert_eq!(
            s.load_document(&d2).await.unwrap().unwrap().updates.len(),
            5
        );
        assert_eq!(s.stored_text(&d2).await.unwrap().as_deref(), Some(""));
        assert!(
            s.write_snapshot("s~nofile", &empty_state())
                .await
                .unwrap()
                .is_none()
        );
        // Sizes follow the snapshot text (the main file's too).
        let size_of = |files: &[tandem::model::File], id: &str| {
            files.iter().find(|f| f.id == id).unwrap().size
        };
        let files = s.list_files("s").await.unwrap();
        assert_eq!(size_of(&files, "main"), main_text.len() as i64, "{b:?}");
        assert_eq!(size_of(&files, &f1.id), t1.len() as i64);
        assert_eq!(size_of(&files, &f2.id), 0, "{b:?}: not snapshotted yet");
        s.write_snapshot(&d2, &empty_state())
            .await
            .unwrap()
            .unwrap();
        let f2_after = s.get_file("s", &f2.id).await.unwrap().unwrap();
        assert_eq!(f2_after.size, t2.len() as i64);
        assert_eq!(
            s.workspace_bytes("s").await.unwrap(),
            (main_text.len() + t1.len() + t2.len()) as i64
        );
        // A snapshot that changes nothing keeps updatedAt.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        s.write_snapshot(&d2, &empty_state())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s.get_file("s", &f2.id).await.unwrap().unwrap().updated_at,
            f2_after.updated_at,
            "{b:?}"
        );

        // New rows after a snapshot land in the right document.
        s.append_updates(&[
            LogEntry {
                doc_id: d2.as_str().into(),
                update: edit(&clients[2].1, "Z"),
            },
            LogEntry {
                doc_id: d1.as_str().into(),
                update: edit(&clients[1].1, "W"),
            },
        ])
        .await
        .unwrap();
        assert_eq!(text_of(&s, &d2).await, format!("{t2}Z"));
        assert_eq!(text_of(&s, &d1).await, format!("{t1}W"));
        assert_eq!(text_of(&s, &main_id).await, main_text);

        // delete_file takes its rows; a late row of it is dropped.
        let rows_before = s.storage_stats().await.unwrap().log_rows;
        s.delete_file("s", &f1.id).await.unwrap().unwrap();
        assert_eq!(
            s.storage_stats().await.unwrap().log_rows,
            rows_before - 1,
            "{b:?}"
        );
        s.append_updates(&[
            LogEntry {
                doc_id: d1.as_str().into(),
                update: edit(&clients[1].1, "late"),
            },
            LogEntry {
                doc_id: d2.as_str().into(),
                update: edit(&clients[2].1, "!"),
            },
        ])
        .await
        .unwrap();
        assert_eq!(s.storage_stats().await.unwrap().log_rows, rows_before);
        assert_eq!(text_of(&s, &d2).await, format!("{t2}Z!"));

        // delete_session takes every file's data.
        assert!(s.delete_session("s").await.unwrap());
        assert!(s.list_files("s").await.unwrap().is_empty());
        for id in [&main_id, &d1, &d2] {
            assert!(s.load_document(id).await.unwrap().is_none(), "{b:?}: {id}");
            assert!(s.stored_text(id).await.unwrap().is_none());
        }
        let stats = s.storage_stats().await.unwrap();
        assert_eq!(
            (stats.log_rows, stats.state_bytes),
            (1, 0),
            "{b:?}: only `other` is left"
        );
        // A late row of the deleted session's file is dropped too.
        s.append_updates(&[LogEntry {
            doc_id: d2.as_str().into(),
            update: edit(&clients[2].1, "late"),
        }])
        .await
        .unwrap();
        assert_eq!(s.storage_stats().await.unwrap().log_rows, 1);
    }
}

/// Concurrent creates of `x` and `x/y` in one session: exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_keep_the_folder_rule() {
    for b in backends() {
        let (s, _d, _) = store(b).await;
        s.create_session(&session("s", "rust")).await.unwrap();
        for round in 0..10 {
            let (a, c) = (format!("r{round}"), format!("r{round}/f"));
            let (s1, s2) = (s.clone(), s.clone());
            let t1 = tokio::spawn(async move { s1.create_file("s", &new_file(&a, None)).await });
            let t2 = tokio::spawn(async move { s2.create_file("s", &new_file(&c, None)).await });
            let (r1, r2) = (t1.await.unwrap(), t2.await.unwrap());
            let ok = [&r1, &r2]
                .iter()
                .filter(|r| matches!(r, Ok(Some(_))))
                .count();
            assert_eq!(ok, 1, "{b:?}: {r1:?} {r2:?}");
        }
    }
}

/// A database written by the pre-workspace schema (0001 only) upgrades in
/// place: its document is the main file, intact, and the log keeps working.
#[tokio::test]
async fn migration_from_the_single_document_schema() {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database_url(b, dir.path()).await;
        // The old state, committed and logged the old way.
        let old = Doc::with_client_id(1);
        let _ = edit(&old, "fn main() {}\n");
        let snapshot = old
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let log1 = edit(&old, "// ü1\n");
        let log2 = edit(&old, "// 2\n");
        let insert_session = "INSERT INTO sessions (id, title, language, owner_id, public, public_role, \
             yjs_state, last_snapshot, state_through_seq, created_at, updated_at) \
             VALUES ($1, 'Old', $2, 'olga', TRUE, 'editor', $3, $4, 7, 1000, 2000)";
        let insert_row =
            "INSERT INTO document_updates (session_id, payload, created_at) VALUES ($1, $2, 3000)";
        match b {
            Backend::Sqlite => {
                let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
                let pool = sqlx::SqlitePool::connect_with(opts.create_if_missing(true))
                    .await
                    .unwrap();
                sqlx::migrate!("migrations/sqlite")
                    .run_to(1, &pool)
                    .await
                    .unwrap();
                for (id, lang, state, text) in [
                    ("old", "python", Some(&snapshot), Some("fn main() {}\n")),
                    ("never", "mystery", None, None),
                ] {
                    sqlx::query(insert_session)
                        .bind(id)
                        .bind(lang)
                        .bind(state)
                        .bind(text)
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                for p in [&log1, &log2] {
                    sqlx::query(insert_row)
                        .bind("old")
                        .bind(&p[..])
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                sqlx::migrate!("migrations/postgres")
                    .run_to(1, &pool)
                    .await
                    .unwrap();
                for (id, lang, state, text) in [
                    ("old", "python", Some(&snapshot), Some("fn main() {}\n")),
                    ("never", "mystery", None, None),
                ] {
                    sqlx::query(insert_session)
                        .bind(id)
                        .bind(lang)
                        .bind(state)
                        .bind(text)
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                for p in [&log1, &log2] {
                    sqlx::query(insert_row)
                        .bind("old")
                        .bind(&p[..])
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                pool.close().await;
            }
        }

        // Opened by the current store: migrated in place.
        let s = tandem::store::connect(&url).await.unwrap();
        let full = "fn main() {}\n// ü1\n// 2\n";
        let loaded = s.load_document("old").await.unwrap().unwrap();
        assert_eq!(
            (loaded.snapshot.as_deref(), loaded.updates.len()),
            (Some(snapshot.as_slice()), 2),
            "{b:?}"
        );
        assert_eq!(loaded_text(&loaded), full, "{b:?}");
        assert_eq!(
            s.stored_text("old").await.unwrap().as_deref(),
            Some("fn main() {}\n")
        );
        let files = s.list_files("old").await.unwrap();
        assert_eq!(files.len(), 1, "{b:?}");
        let main = &files[0];
        assert_eq!(
            (
                main.id.as_str(),
                main.path.as_str(),
                main.language.as_str(),
                main.size,
                main.updated_by.as_str()
            ),
            ("main", "main.py", "python", 13, "olga"),
            "{b:?}"
        );
        assert_eq!(main.created_at, tandem::model::rfc3339(1000));
        let never = s.list_files("never").await.unwrap();
        assert_eq!(
            (never.len(), never[0].path.as_str(), never[0].size),
            (1, "main.txt", 0),
            "{b:?}"
        );
        assert!(
            s.load_document("never")
                .await
                .unwrap()
                .unwrap()
                .snapshot
                .is_none()
        );

        // The log keeps working: new rows, a compaction folding old and new.
        s.append_updates(&[LogEntry {
            doc_id: "old".into(),
            update: edit(&old, "// 3\n"),
        }])
        .await
        .unwrap();
        let full3 = format!("{full}// 3\n");
        assert_eq!(text_of(&s, "old").await, full3);
        let out = s
            .write_snapshot("old", &empty_state())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            out.compacted_rows, 3,
            "{b:?}: old rows and new fold together"
        );
        assert_eq!(
            s.stored_text("old").await.unwrap().as_deref(),
            Some(full3.as_str())
        );
        assert_eq!(
            s.get_file("old", "main").await.unwrap().unwrap().size,
            full3.len() as i64
        );
        // Files can be added beside it; the upgraded session deletes whole.
        let f = s.create_file("old", &new_file("main.py/x", None)).await;
        assert_eq!(conflict(f), "main.py");
        s.create_file("old", &new_file("lib.py", Some("x = 1")))
            .await
            .unwrap()
            .unwrap();
        assert!(s.delete_session("old").await.unwrap());
        let stats = s.storage_stats().await.unwrap();
        assert_eq!((stats.log_rows, stats.state_bytes), (0, 0), "{b:?}");
        // A second open runs no migration again.
        drop(s);
        tandem::store::connect(&url).await.unwrap();
    }
}
