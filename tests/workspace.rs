//! Workspace files through the sockets (issue 11): `open-file` /
//! `close-file`, document ids on every `yjs-*` event, y-socket.io rooms
//! `<session>~<file>`, awareness per document, persistence per document.
//! Files are created through the store here; the file HTTP routes have
//! their own tests.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::peer::{T, code, eventually};
use common::{TestServer, backends};
use serde_json::{Value, json};
use tandem::client::{Arg, Client, Incoming};
use tandem::store::NewFile;
use tokio::sync::mpsc;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

/// A native client holding one replica per open document.
struct Multi {
    client: Client,
    docs: Arc<Mutex<HashMap<String, Doc>>>,
    events: mpsc::UnboundedReceiver<(String, Vec<Arg>)>,
}

impl Multi {
    async fn connect(srv: &TestServer, user: &str) -> Multi {
        let (client, mut rx) = Client::connect(
            &srv.url,
            "/",
            Some(json!({ "token": srv.token(user, &[]) })),
        )
        .await
        .unwrap();
        let docs: Arc<Mutex<HashMap<String, Doc>>> = Arc::default();
        let (tx, events) = mpsc::unbounded_channel();
        let d = docs.clone();
        tokio::spawn(async move {
            while let Some(Incoming::Event(ev)) = rx.recv().await {
                let id = ev
                    .args
                    .first()
                    .and_then(Arg::as_json)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                match ev.name.as_str() {
                    "yjs-update" => {
                        if let (Some(doc), Some(b)) = (
                            d.lock().unwrap().get(&id),
                            ev.args.get(1).and_then(Arg::as_bin),
                        ) {
                            doc.transact_mut()
                                .apply_update(Update::decode_v1(b).unwrap())
                                .unwrap();
                        }
                    }
                    "yjs-sync-step-1" => {
                        let sv = ev
                            .args
                            .get(1)
                            .and_then(Arg::as_bin)
                            .cloned()
                            .unwrap_or_default();
                        let diff = d.lock().unwrap().get(&id).map(|doc| {
                            doc.transact()
                                .encode_state_as_update_v1(&StateVector::decode_v1(&sv).unwrap())
                        });
                        if let (Some(ack), Some(diff)) = (ev.ack, diff) {
                            let _ = ack.reply(vec![Arg::bin(diff)]);
                        }
                    }
                    _ => {
                        let _ = tx.send((ev.name, ev.args));
                    }
                }
            }
        });
        Multi {
            client,
            docs,
            events,
        }
    }

    async fn call(&self, event: &str, args: Vec<Arg>) -> Value {
        let r = self.client.emit_with_ack(event, args, T).await.unwrap();
        r[0].as_json().cloned().unwrap_or(Value::Null)
    }

    /// Opens a replica for `doc_id` and pulls the server's state into it.
    async fn track(&self, doc_id: &str) {
        let doc = Doc::new();
        doc.get_or_insert_text("monaco");
        let sv = doc.transact().state_vector().encode_v1();
        self.docs.lock().unwrap().insert(doc_id.to_owned(), doc);
        let r = self
            .client
            .emit_with_ack("yjs-sync-step-1", vec![Arg::json(doc_id), Arg::bin(sv)], T)
            .await
            .unwrap();
        if let Some(b) = r[0].as_bin() {
            let docs = self.docs.lock().unwrap();
            docs[doc_id]
                .transact_mut()
                .apply_update(Update::decode_v1(b).unwrap())
                .unwrap();
        }
    }

    fn edit(&self, doc_id: &str, s: &str) -> Bytes {
        let docs = self.docs.lock().unwrap();
        let doc = &docs[doc_id];
        let t = doc.get_or_insert_text("monaco");
        let mut txn = doc.transact_mut();
        let n = t.len(&txn);
        t.insert(&mut txn, n, s);
        Bytes::from(txn.encode_update_v1())
    }

    fn text(&self, doc_id: &str) -> String {
        let docs = self.docs.lock().unwrap();
        let doc = &docs[doc_id];
        doc.get_or_insert_text("monaco").get_string(&doc.transact())
    }

    async fn next_event(&mut self, name: &str) -> Vec<Arg> {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some((n, args))) if n == name => return args,
                Ok(Some(_)) => continue,
                _ => panic!("no {name} event"),
            }
        }
    }
}

async fn session_with_file(srv: &TestServer, path: &str) -> (String, String) {
    let body = json!({ "public": true, "publicRole": "editor" });
    let sid = common::create_session(&srv.url, &srv.token("owner", &[]), body).await;
    let store = tandem::store::connect(&srv.database_url).await.unwrap();
    let f = store
        .create_file(
            &sid,
            &NewFile {
                path: path.into(),
                language: "rust".into(),
                content: Some("fn f() {}\n".into()),
                created_by: "owner".into(),
                max_files: usize::MAX,
            },
        )
        .await
        .unwrap()
        .unwrap();
    (sid, f.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_documents_of_their_own_in_both_dialects() {
    for b in backends() {
        let srv = TestServer::start(b, |_| {}).await;
        let (sid, fid) = session_with_file(&srv, "src/lib.rs").await;
        let doc_id = format!("{sid}~{fid}");
        let a = Multi::connect(&srv, "a").await;
        let c = Multi::connect(&srv, "c").await;

        // Opening before joining, or an unknown file, or a bad id.
        let r = a
            .call(
                "open-file",
                vec![Arg::json(json!({ "sessionId": sid, "fileId": fid }))],
            )
            .await;
        assert_eq!(code(&r), "NOT_JOINED", "{b:?} {r}");
        let join = a
            .call("join-session", vec![Arg::json(json!({ "sessionId": sid }))])
            .await;
        let paths: Vec<&str> = join["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            vec!["main.txt", "src/lib.rs"],
            "{b:?} files in the join ack"
        );
        let r = a
            .call(
                "open-file",
                vec![Arg::json(json!({ "sessionId": sid, "fileId": "nope" }))],
            )
            .await;
        assert_eq!(code(&r), "FILE_NOT_FOUND", "{b:?} {r}");
        let r = a
            .call(
                "yjs-update",
                vec![Arg::json(format!("{sid}~main")), Arg::bin(vec![0u8, 0])],
            )
            .await;
        assert_eq!(code(&r), "INVALID_SESSION_ID", "{b:?} {r}");
        let r = a
            .call(
                "yjs-update",
                vec![Arg::json(&doc_id), Arg::bin(vec![0u8, 0])],
            )
            .await;
        assert_eq!(code(&r), "NOT_JOINED", "{b:?} not opened yet: {r}");
        assert_eq!(r["error"]["docId"], doc_id.as_str());
        let main = a
            .call(
                "open-file",
                vec![Arg::json(json!({ "sessionId": sid, "fileId": "main" }))],
            )
            .await;
        assert_eq!(main["docId"], sid.as_str(), "{b:?} {main}");

        // Both open the file and edit it; a y-socket.io provider joins its room.
        for p in [&a, &c] {
            if p.client.sid() == c.client.sid() {
                p.call("join-session", vec![Arg::json(json!({ "sessionId": sid }))])
                    .await;
            }
            let r = p
                .call(
                    "open-file",
                    vec![Arg::json(json!({ "sessionId": sid, "fileId": fid }))],
                )
                .await;
            assert_eq!(r["ok"], true, "{b:?} {r}");
            assert_eq!(r["docId"], doc_id.as_str());
            assert_eq!(r["file"]["path"], "src/lib.rs");
            p.track(&doc_id).await;
        }
        assert_eq!(a.text(&doc_id), "fn f() {}\n", "{b:?} initial content");
        let (y, mut yrx) = Client::connect(
            &srv.url,
            &format!("/yjs|{doc_id}"),
            Some(json!({ "token": srv.token("y", &[]) })),
        )
        .await
        .unwrap();
        let ydoc = Doc::new();
        let ytext = ydoc.get_or_insert_text("monaco");
        let r = a
            .call(
                "yjs-update",
                vec![Arg::json(&doc_id), Arg::bin(a.edit(&doc_id, "// a\n"))],
            )
            .await;
        assert_eq!(r["ok"], true, "{b:?} {r}");
        let r = c
            .call(
                "yjs-update",
                vec![Arg::json(&doc_id), Arg::bin(c.edit(&doc_id, "// c\n"))],
            )
            .await;
        assert_eq!(r["ok"], true, "{b:?} {r}");
        // The provider pulls the server state and sends an edit of its own.
        let sv = ydoc.transact().state_vector().encode_v1();
        let diff = y
            .emit_with_ack("sync-step-1", vec![Arg::bin(sv)], T)
            .await
            .unwrap();
        ydoc.transact_mut()
            .apply_update(Update::decode_v1(diff[0].as_bin().unwrap()).unwrap())
            .unwrap();
        let yedit = {
            let mut txn = ydoc.transact_mut();
            let n = ytext.len(&txn);
            ytext.insert(&mut txn, n, "// y\n");
            txn.encode_update_v1()
        };
        y.emit("sync-update", vec![Arg::bin(yedit)]).unwrap();
        let want = ytext.get_string(&ydoc.transact());
        assert!(
            want.contains("// a") && want.contains("// c") && want.contains("// y"),
            "{b:?} {want}"
        );
        eventually(T, "both native replicas converge on the file", || {
            a.text(&doc_id) == want && c.text(&doc_id) == want
        })
        .await;
        // The main document is untouched.
        let main_text = srv.get_text(&sid, &srv.token("owner", &[])).await;
        assert_eq!(main_text, "", "{b:?} the main document changed");
        drop(yrx.try_recv());

        // An unknown file's room is refused with FILE_NOT_FOUND.
        let err = Client::connect(
            &srv.url,
            &format!("/yjs|{sid}~nofile"),
            Some(json!({ "token": srv.token("y", &[]) })),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().ends_with("FILE_NOT_FOUND"), "{b:?} {err}");

        // close-file: the socket's awareness there goes at once; the file is
        // no longer open for it.
        let mut aw = yrs::sync::Awareness::new(Doc::with_client_id(777));
        aw.set_local_state_raw(r#"{"user":"c"}"#);
        let r = c
            .call(
                "yjs-awareness",
                vec![
                    Arg::json(&doc_id),
                    Arg::bin(aw.update().unwrap().encode_v1()),
                ],
            )
            .await;
        assert_eq!(r["ok"], true, "{b:?} {r}");
        let mut a = a;
        a.next_event("yjs-awareness").await;
        let r = c
            .call(
                "close-file",
                vec![Arg::json(json!({ "sessionId": sid, "fileId": fid }))],
            )
            .await;
        assert_eq!(r["ok"], true, "{b:?} {r}");
        let removal = a.next_event("yjs-awareness").await;
        assert_eq!(removal[0].as_json().unwrap(), doc_id.as_str());
        let r = c
            .call(
                "yjs-update",
                vec![Arg::json(&doc_id), Arg::bin(vec![0u8, 0])],
            )
            .await;
        assert_eq!(code(&r), "NOT_JOINED", "{b:?} {r}");

        // Acknowledged file edits are in the log: a server that dies without
        // flushing loads them again.
        let r = a
            .call(
                "yjs-update",
                vec![Arg::json(&doc_id), Arg::bin(a.edit(&doc_id, "// last\n"))],
            )
            .await;
        assert_eq!(r["ok"], true);
        let expected = a.text(&doc_id);
        // `updatedBy` follows live edits as of the latest snapshot (2 s
        // after the last change).
        let mut updated_by = Value::Null;
        for _ in 0..60 {
            let files: Value = reqwest::Client::new()
                .get(format!("{}/api/sessions/{sid}/files", srv.url))
                .bearer_auth(srv.token("owner", &[]))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            updated_by = files
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["id"] == fid.as_str())
                .unwrap()["updatedBy"]
                .clone();
            if updated_by == "a" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(updated_by, "a", "{b:?} updatedBy after a live edit");
        let (config, dir, url) = (
            srv.config.clone(),
            srv.dir.clone(),
            srv.database_url.clone(),
        );
        drop(srv); // aborts the server task: no graceful flush
        tokio::time::sleep(Duration::from_millis(200)).await;
        let store = tandem::store::connect(&url).await.unwrap();
        let stored = store.load_document(&doc_id).await.unwrap().unwrap();
        let d = Doc::new();
        let t = d.get_or_insert_text("monaco");
        for u in stored.snapshot.iter().chain(stored.updates.iter()) {
            d.transact_mut()
                .apply_update(Update::decode_v1(u).unwrap())
                .unwrap();
        }
        assert_eq!(t.get_string(&d.transact()), expected, "{b:?}");
        let _ = (config, dir);
        drop(y);
    }
}
