//! Workspaces over HTTP through the real server, on every backend: the file
//! routes and their refusals, file events (actor, role, timestamp, oldPath,
//! originSocketId; nothing for a refused request), content replaced by a
//! minimal edit, the zip archive, per-user events on every socket of a
//! user, and invites (granted once, never lowering, never a user token).

mod common;

use std::io::Read;
use std::time::Duration;

use common::peer::{Peer, T, eventually};
use common::{Backend, TestServer, backends};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tandem::client::ClientError;
use tandem::model::Role;

const QUIET: Duration = Duration::from_millis(300);

struct Http {
    srv: TestServer,
    http: reqwest::Client,
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

impl Http {
    async fn start(b: Backend, tweak: impl FnOnce(&mut tandem::config::Config)) -> Http {
        Http {
            srv: TestServer::start(b, tweak).await,
            http: reqwest::Client::new(),
        }
    }

    fn token(&self, user: &str) -> String {
        self.srv.token(user, &[])
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        user: &str,
        body: Option<Value>,
        socket: Option<&str>,
    ) -> Resp {
        self.send_token(method, path, &self.token(user), body, socket)
            .await
    }

    async fn send_token(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        socket: Option<&str>,
    ) -> Resp {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.srv.url))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        if let Some(s) = socket {
            r = r.header("X-Socket-Id", s);
        }
        let resp = r.send().await.unwrap();
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    async fn put_text(&self, path: &str, user: &str, text: &str) -> Resp {
        let resp = self
            .http
            .put(format!("{}{path}", self.srv.url))
            .bearer_auth(self.token(user))
            .header("content-type", "text/plain; charset=utf-8")
            .body(text.to_owned())
            .send()
            .await
            .unwrap();
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    /// A session owned by `owner`; returns its id.
    async fn session(&self, owner: &str, body: Value) -> String {
        let r = self
            .send(Method::POST, "/api/sessions", owner, Some(body), None)
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_owned()
    }

    async fn grant(&self, sid: &str, owner: &str, user: &str, role: &str) {
        let r = self
            .send(
                Method::PUT,
                &format!("/api/sessions/{sid}/participants/{user}"),
                owner,
                Some(json!({ "role": role })),
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text());
    }

    /// `GET /api/sessions/{sid}/files` as `user`.
    async fn list_files(&self, sid: &str, user: &str) -> Resp {
        let path = format!("/api/sessions/{sid}/files");
        self.send(Method::GET, &path, user, None, None).await
    }

    async fn create_file(&self, sid: &str, user: &str, body: Value, socket: Option<&str>) -> Resp {
        self.send(
            Method::POST,
            &format!("/api/sessions/{sid}/files"),
            user,
            Some(body),
            socket,
        )
        .await
    }

    async fn peer(&self, user: &str) -> Peer {
        Peer::connect(&self.srv.url, Some(&self.token(user)))
            .await
            .unwrap()
    }
}

/// The payload of the next `name` event.
async fn next(p: &mut Peer, name: &str) -> Value {
    p.expect_event(name).await.args[0]
        .as_json()
        .unwrap()
        .clone()
}

fn assert_actor(ev: &Value, user: &str, role: &str) {
    assert_eq!(
        ev["actor"],
        json!({ "userId": user, "userName": user.to_uppercase(), "role": role }),
        "{ev}"
    );
    let ts = ev["timestamp"].as_str().expect("timestamp");
    let t = chrono::DateTime::parse_from_rfc3339(ts).expect("RFC 3339 timestamp");
    let age = chrono::Utc::now().signed_duration_since(t);
    assert!(age.num_seconds().abs() < 30, "timestamp {ts} is not now");
}

const FILE_EVENTS: [&str; 5] = [
    "file:created",
    "file:updated",
    "file:renamed",
    "file:moved",
    "file:deleted",
];

/// No file event of any kind reaches `p` for a while.
async fn no_file_event(p: &mut Peer) {
    let deadline = tokio::time::Instant::now() + QUIET;
    loop {
        match tokio::time::timeout_at(deadline, p.events.recv()).await {
            Ok(Some(e)) if FILE_EVENTS.contains(&e.name.as_str()) => {
                panic!("unexpected {}: {:?}", e.name, e.args)
            }
            Ok(Some(_)) => continue,
            _ => return,
        }
    }
}

#[tokio::test]
async fn file_routes_emit_each_event_once_with_actor_and_origin() {
    for b in backends() {
        let h = Http::start(b, |_| {}).await;
        let sid = h
            .session(
                "a",
                json!({ "title": "ws", "language": "rust", "mainPath": "src/main.rs" }),
            )
            .await;
        h.grant(&sid, "a", "b", "editor").await;
        h.grant(&sid, "a", "c", "viewer").await;
        let mut peers = Vec::new();
        for u in ["a", "b", "c"] {
            let p = h.peer(u).await;
            assert_eq!(p.join(&sid).await["ok"], true);
            peers.push(p);
        }
        let files = h.list_files(&sid, "c").await;
        assert_eq!(files.status, 200);
        let main = &files.json()[0];
        assert_eq!(
            (
                main["id"].as_str(),
                main["path"].as_str(),
                main["language"].as_str()
            ),
            (Some("main"), Some("src/main.rs"), Some("rust"))
        );

        // Created by an editor, from a named socket.
        let r = h
            .create_file(
                &sid,
                "b",
                json!({ "path": "src/lib.rs", "content": "pub fn x() {}" }),
                Some("sock-b"),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let file = r.json();
        let fid = file["id"].as_str().unwrap().to_owned();
        assert_eq!(file["language"], "rust");
        assert_eq!(file["size"], 13);
        assert_eq!(file["updatedBy"], "b");
        for p in &mut peers {
            let ev = next(p, "file:created").await;
            assert_eq!(ev["sessionId"], sid.as_str());
            assert_eq!(ev["file"], file);
            assert_eq!(ev["originSocketId"], "sock-b");
            assert!(ev.get("oldPath").is_none());
            assert_actor(&ev, "b", "editor");
        }

        // Renamed by the owner, without a socket id: same folder.
        let path = format!("/api/sessions/{sid}/files/{fid}");
        let r = h
            .send(
                Method::PATCH,
                &path,
                "a",
                Some(json!({ "path": "src/util.rs" })),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["path"], "src/util.rs");
        for p in &mut peers {
            let ev = next(p, "file:renamed").await;
            assert_eq!(ev["oldPath"], "src/lib.rs");
            assert_eq!(ev["file"]["path"], "src/util.rs");
            assert_eq!(ev["originSocketId"], Value::Null);
            assert_actor(&ev, "a", "owner");
        }

        // Moved and re-languaged at once: one event, `file:moved`.
        let r = h
            .send(
                Method::PATCH,
                &path,
                "b",
                Some(json!({ "path": "lib/util.txt", "language": "plaintext" })),
                Some("sock-b2"),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        for p in &mut peers {
            let ev = next(p, "file:moved").await;
            assert_eq!(ev["oldPath"], "src/util.rs");
            assert_eq!(ev["file"]["path"], "lib/util.txt");
            assert_eq!(ev["file"]["language"], "plaintext");
            assert_eq!(ev["originSocketId"], "sock-b2");
            assert_actor(&ev, "b", "editor");
            no_file_event(p).await;
        }

        // Language only: `file:updated`.
        let r = h
            .send(
                Method::PATCH,
                &path,
                "b",
                Some(json!({ "language": "markdown" })),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        for p in &mut peers {
            let ev = next(p, "file:updated").await;
            assert_eq!(ev["file"]["language"], "markdown");
            assert_actor(&ev, "b", "editor");
        }

        // A viewer changes nothing, and nothing is emitted.
        let content = format!("{path}/content");
        for (m, p, body) in [
            (
                Method::POST,
                format!("/api/sessions/{sid}/files"),
                Some(json!({ "path": "v.txt" })),
            ),
            (
                Method::PATCH,
                path.clone(),
                Some(json!({ "path": "v.txt" })),
            ),
            (Method::DELETE, path.clone(), None),
        ] {
            let r = h.send(m.clone(), &p, "c", body, Some("sock-c")).await;
            assert_eq!((r.status, r.code().as_str()), (403, "FORBIDDEN"), "{m} {p}");
        }
        let r = h.put_text(&content, "c", "viewer text").await;
        assert_eq!((r.status, r.code().as_str()), (403, "FORBIDDEN"));
        // Refusals of every other kind emit nothing either.
        for (body, status, code) in [
            (json!({ "path": "/abs" }), 400, "INVALID_PATH"),
            (json!({ "path": "a//b" }), 400, "INVALID_PATH"),
            (json!({ "path": "../x" }), 400, "INVALID_PATH"),
            (json!({ "path": "a/./b" }), 400, "INVALID_PATH"),
            (json!({ "path": "a\u{1}b" }), 400, "INVALID_PATH"),
            (json!({ "path": "" }), 400, "INVALID_PATH"),
            (json!({ "path": "x".repeat(513) }), 400, "INVALID_PATH"),
            (json!({ "path": "lib/util.txt" }), 409, "PATH_EXISTS"),
            (json!({ "path": "lib" }), 409, "PATH_EXISTS"),
            (json!({ "path": "src/main.rs/inner" }), 409, "PATH_EXISTS"),
            (json!({ "path": "src" }), 409, "PATH_EXISTS"),
            (
                json!({ "path": "ok.txt", "extra": 1 }),
                400,
                "INVALID_PAYLOAD",
            ),
        ] {
            let r = h.create_file(&sid, "b", body.clone(), None).await;
            assert_eq!((r.status, r.code().as_str()), (status, code), "{body}");
        }
        for body in [
            json!({ "path": "src/main.rs" }),
            json!({ "path": "src/main.rs/x" }),
        ] {
            let r = h
                .send(Method::PATCH, &path, "b", Some(body.clone()), None)
                .await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (409, "PATH_EXISTS"),
                "{body}"
            );
        }
        let r = h
            .send(
                Method::PATCH,
                &path,
                "b",
                Some(json!({ "path": "a/../b" })),
                None,
            )
            .await;
        assert_eq!(r.code(), "INVALID_PATH");
        let r = h
            .send(Method::PATCH, &path, "b", Some(json!({})), None)
            .await;
        assert_eq!(r.code(), "INVALID_PAYLOAD");
        let main_path = format!("/api/sessions/{sid}/files/main");
        let r = h.send(Method::DELETE, &main_path, "a", None, None).await;
        assert_eq!((r.status, r.code().as_str()), (403, "FORBIDDEN"));
        for unknown in ["nope", "bad~id", "main2"] {
            let p = format!("/api/sessions/{sid}/files/{unknown}");
            for (m, body) in [
                (Method::PATCH, Some(json!({ "path": "z.txt" }))),
                (Method::DELETE, None),
                (Method::GET, None),
            ] {
                let url = if m == Method::GET {
                    format!("{p}/content")
                } else {
                    p.clone()
                };
                let r = h.send(m.clone(), &url, "b", body, None).await;
                assert_eq!(
                    (r.status, r.code().as_str()),
                    (404, "FILE_NOT_FOUND"),
                    "{m} {url}"
                );
            }
            let r = h.put_text(&format!("{p}/content"), "b", "x").await;
            assert_eq!((r.status, r.code().as_str()), (404, "FILE_NOT_FOUND"));
        }
        for p in &mut peers {
            no_file_event(p).await;
        }

        // Deleted by an editor.
        let r = h
            .send(Method::DELETE, &path, "b", None, Some("sock-b"))
            .await;
        assert_eq!(r.status, 204, "{}", r.text());
        for p in &mut peers {
            let ev = next(p, "file:deleted").await;
            assert_eq!(ev["fileId"], fid.as_str());
            assert_eq!(ev["path"], "lib/util.txt");
            assert_eq!(ev["originSocketId"], "sock-b");
            assert_actor(&ev, "b", "editor");
            no_file_event(p).await;
        }
        let r = h
            .send(Method::GET, &format!("{path}/content"), "a", None, None)
            .await;
        assert_eq!(r.code(), "FILE_NOT_FOUND");
        // A bad mainPath.
        let r = h
            .send(
                Method::POST,
                "/api/sessions",
                "a",
                Some(json!({ "mainPath": "../x" })),
                None,
            )
            .await;
        assert_eq!((r.status, r.code().as_str()), (400, "INVALID_PATH"));
    }
}

/// The file limit holds under concurrent creates: it is counted inside the
/// creating transaction, not before it (where every racing create saw room).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_cannot_pass_the_file_limit_together() {
    for b in backends() {
        let h = Http::start(b, |c| c.max_files_per_session = 3).await;
        let sid = h.session("a", json!({})).await;
        let statuses: Vec<(u16, String)> = futures::future::join_all((0..12).map(|i| {
            let (h, sid) = (&h, &sid);
            async move {
                let r = h
                    .create_file(sid, "a", json!({ "path": format!("f{i}.txt") }), None)
                    .await;
                (r.status, r.code())
            }
        }))
        .await;
        let created = statuses.iter().filter(|(s, _)| *s == 201).count();
        assert_eq!(created, 2, "{b:?}: main + 2 = the limit of 3: {statuses:?}");
        assert!(
            statuses
                .iter()
                .all(|(s, c)| *s == 201 || (*s, c.as_str()) == (400, "TOO_MANY_FILES")),
            "{statuses:?}"
        );
        let files = h.list_files(&sid, "a").await.json();
        assert_eq!(files.as_array().unwrap().len(), 3, "{b:?}: {files}");
    }
}

#[tokio::test]
async fn workspace_limits_refuse_with_their_codes() {
    for b in backends() {
        let h = Http::start(b, |c| {
            c.max_files_per_session = 3;
            c.max_workspace_bytes = 100;
        })
        .await;
        let sid = h.session("a", json!({})).await;
        let mut p = h.peer("a").await;
        p.join(&sid).await;
        for name in ["one.txt", "two.txt"] {
            let r = h
                .create_file(&sid, "a", json!({ "path": name, "content": "12345" }), None)
                .await;
            assert_eq!(r.status, 201, "{}", r.text());
            next(&mut p, "file:created").await;
        }
        let r = h
            .create_file(&sid, "a", json!({ "path": "three.txt" }), None)
            .await;
        assert_eq!((r.status, r.code().as_str()), (400, "TOO_MANY_FILES"));
        // A bad path is reported as such even when the workspace is full.
        let r = h
            .create_file(&sid, "a", json!({ "path": "/x" }), None)
            .await;
        assert_eq!(r.code(), "INVALID_PATH");
        let files = h.list_files(&sid, "a").await.json();
        let one = files
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == "one.txt")
            .unwrap();
        let content = format!(
            "/api/sessions/{sid}/files/{}/content",
            one["id"].as_str().unwrap()
        );
        let r = h.put_text(&content, "a", &"x".repeat(200)).await;
        assert_eq!((r.status, r.code().as_str()), (413, "DOCUMENT_TOO_LARGE"));
        assert_eq!(
            h.send(Method::GET, &content, "a", None, None).await.text(),
            "12345"
        );
        no_file_event(&mut p).await;
    }
}

#[tokio::test]
async fn put_content_is_a_minimal_edit_on_its_own_document() {
    for b in backends() {
        let h = Http::start(b, |_| {}).await;
        let sid = h.session("a", json!({})).await;
        let mut peer = h.peer("a").await;
        assert_eq!(peer.join(&sid).await["ok"], true);
        let main_content = format!("/api/sessions/{sid}/files/main/content");
        assert_eq!(
            h.put_text(&main_content, "a", "main text").await.status,
            200
        );
        eventually(T, "the main document reaches the peer", || {
            peer.text() == "main text"
        })
        .await;
        next(&mut peer, "file:updated").await;

        let r = h
            .create_file(
                &sid,
                "a",
                json!({ "path": "notes.md", "content": "hello world" }),
                None,
            )
            .await;
        let fid = r.json()["id"].as_str().unwrap().to_owned();
        next(&mut peer, "file:created").await;
        let content = format!("/api/sessions/{sid}/files/{fid}/content");
        assert_eq!(
            h.send(Method::GET, &content, "a", None, None).await.text(),
            "hello world"
        );

        let before = peer.received.load(std::sync::atomic::Ordering::Relaxed);
        let r = h.put_text(&content, "a", "hello brave new wörld").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let file = r.json();
        assert_eq!(file["size"], "hello brave new wörld".len());
        assert_eq!(file["updatedBy"], "a");
        let ev = next(&mut peer, "file:updated").await;
        assert_eq!(ev["file"]["id"], fid.as_str());
        assert_actor(&ev, "a", "owner");
        let r = h.send(Method::GET, &content, "a", None, None).await;
        assert_eq!(r.text(), "hello brave new wörld");
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain"),
            "{:?}",
            r.headers
        );
        // Again, from the live document, after a second replace.
        let r = h.put_text(&content, "a", "hello wörld!").await;
        assert_eq!(r.status, 200);
        next(&mut peer, "file:updated").await;
        assert_eq!(
            h.send(Method::GET, &content, "a", None, None).await.text(),
            "hello wörld!"
        );
        // The same text again replaces nothing and announces nothing.
        assert_eq!(h.put_text(&content, "a", "hello wörld!").await.status, 200);
        no_file_event(&mut peer).await;
        // The peer has the main document only: the file's edits are not its.
        assert_eq!(
            peer.received.load(std::sync::atomic::Ordering::Relaxed),
            before
        );
        assert_eq!(peer.text(), "main text");
        assert_eq!(
            h.send(Method::GET, &main_content, "a", None, None)
                .await
                .text(),
            "main text"
        );

        // A live editor of the main document converges with an HTTP replace
        // made while it types (minimal edit: its own insert survives).
        let local = peer.edit(|t, txn| yrs::Text::insert(t, txn, 0, ">> "));
        peer.send_update(&sid, local, true).await;
        let r = h
            .put_text(&main_content, "a", ">> main text, replaced")
            .await;
        assert_eq!(r.status, 200);
        eventually(T, "the peer converges", || {
            peer.text() == ">> main text, replaced"
        })
        .await;
        assert_eq!(
            h.send(
                Method::GET,
                &format!("/api/sessions/{sid}/text"),
                "a",
                None,
                None
            )
            .await
            .text(),
            ">> main text, replaced"
        );
        // Not UTF-8.
        let r = h
            .http
            .put(format!("{}{content}", h.srv.url))
            .bearer_auth(h.token("a"))
            .body(vec![0xff, 0xfe])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        // Survives a restart (the edit is in the log).
        let dir = h.srv.dir.clone();
        let config = h.srv.config.clone();
        h.srv.stop().await.unwrap();
        let srv = TestServer::start_with(config, dir).await;
        let r = reqwest::Client::new()
            .get(format!("{}{content}", srv.url))
            .bearer_auth(srv.token("a", &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "hello wörld!");
    }
}

#[tokio::test]
async fn archive_holds_every_path_with_its_content() {
    for b in backends() {
        let h = Http::start(b, |_| {}).await;
        let sid = h.session("a", json!({ "language": "python" })).await;
        h.grant(&sid, "a", "v", "viewer").await;
        let mut want = vec![("main.py".to_owned(), "print('hi')\n".to_owned())];
        assert_eq!(
            h.put_text(
                &format!("/api/sessions/{sid}/files/main/content"),
                "a",
                &want[0].1
            )
            .await
            .status,
            200
        );
        for (p, c) in [
            ("a/b/c.txt", "deep"),
            ("README.md", "# read me"),
            ("empty", ""),
            ("ü/ñ.rs", "fn ü() {}"),
        ] {
            let r = h
                .create_file(&sid, "a", json!({ "path": p, "content": c }), None)
                .await;
            assert_eq!(r.status, 201);
            want.push((p.to_owned(), c.to_owned()));
        }
        let r = h
            .send(
                Method::GET,
                &format!("/api/sessions/{sid}/archive"),
                "v",
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-type"], "application/zip");
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(r.body)).unwrap();
        assert_eq!(zip.len(), want.len());
        for (path, content) in &want {
            let mut s = String::new();
            zip.by_name(path)
                .unwrap_or_else(|_| panic!("{path} missing"))
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(&s, content, "{path}");
        }
        let r = h
            .send(
                Method::GET,
                &format!("/api/sessions/{sid}/archive"),
                "stranger",
                None,
                None,
            )
            .await;
        assert_eq!(r.code(), "FORBIDDEN");
    }
}

#[tokio::test]
async fn per_user_events_reach_every_socket_of_the_user() {
    for b in backends() {
        let h = Http::start(b, |_| {}).await;
        // Two tabs of `u`, joined to nothing.
        let mut tabs = [h.peer("u").await, h.peer("u").await];
        let mut other = h.peer("w").await;

        let own = h.session("u", json!({ "title": "mine" })).await;
        for t in &mut tabs {
            let ev = next(t, "session:added").await;
            assert_eq!(
                (ev["session"]["id"].as_str(), ev["role"].as_str()),
                (Some(own.as_str()), Some("owner"))
            );
            assert_eq!(ev["session"]["title"], "mine");
        }

        let sid = h.session("o", json!({ "title": "theirs" })).await;
        h.grant(&sid, "o", "u", "editor").await;
        for t in &mut tabs {
            let ev = next(t, "session:added").await;
            assert_eq!(ev["session"]["id"], sid.as_str());
            assert_eq!(ev["role"], "editor");
        }
        h.grant(&sid, "o", "u", "editor").await; // unchanged: nothing
        h.grant(&sid, "o", "u", "viewer").await;
        for t in &mut tabs {
            let ev = next(t, "role:changed").await;
            assert_eq!(ev, json!({ "sessionId": sid, "role": "viewer" }));
        }
        let r = h
            .send(
                Method::PATCH,
                &format!("/api/sessions/{sid}"),
                "o",
                Some(json!({ "title": "renamed", "public": true })),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        for t in &mut tabs {
            let ev = next(t, "session:updated").await;
            assert_eq!(ev["session"]["title"], "renamed");
            assert_eq!(ev["session"]["public"], true);
        }
        // Language via the main file is the session's language too.
        let r = h
            .send(
                Method::PATCH,
                &format!("/api/sessions/{sid}/files/main"),
                "o",
                Some(json!({ "language": "go" })),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        for t in &mut tabs {
            assert_eq!(
                next(t, "session:updated").await["session"]["language"],
                "go"
            );
        }
        let r = h
            .send(
                Method::DELETE,
                &format!("/api/sessions/{sid}/participants/u"),
                "o",
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 204);
        for t in &mut tabs {
            assert_eq!(
                next(t, "session:removed").await,
                json!({ "sessionId": sid })
            );
        }
        h.grant(&sid, "o", "u", "editor").await;
        for t in &mut tabs {
            next(t, "session:added").await;
        }
        let r = h
            .send(
                Method::DELETE,
                &format!("/api/sessions/{sid}"),
                "o",
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 204);
        for t in &mut tabs {
            assert_eq!(
                next(t, "session:removed").await,
                json!({ "sessionId": sid })
            );
            for name in [
                "session:added",
                "session:updated",
                "role:changed",
                "session:removed",
            ] {
                t.expect_no_event(name, Duration::from_millis(100)).await;
            }
        }
        // Another user heard none of it.
        for name in [
            "session:added",
            "session:updated",
            "role:changed",
            "session:removed",
        ] {
            other
                .expect_no_event(name, Duration::from_millis(100))
                .await;
        }
    }
}

#[tokio::test]
async fn invites_grant_once_never_lower_and_are_not_user_tokens() {
    for b in backends() {
        let h = Http::start(b, |c| c.public_url = Some("https://tandem.example".into())).await;
        let sid = h.session("o", json!({})).await;
        let invites = format!("/api/sessions/{sid}/invites");
        for (body, status, code) in [
            (json!({ "role": "owner" }), 400, "INVALID_PAYLOAD"),
            (
                json!({ "role": "editor", "expiresInSecs": 30 * 86400 + 1 }),
                400,
                "INVALID_PAYLOAD",
            ),
            (
                json!({ "role": "editor", "expiresInSecs": 0 }),
                400,
                "INVALID_PAYLOAD",
            ),
            (json!({ "role": "admin" }), 400, "INVALID_PAYLOAD"),
        ] {
            let r = h
                .send(Method::POST, &invites, "o", Some(body.clone()), None)
                .await;
            assert_eq!((r.status, r.code().as_str()), (status, code), "{body}");
        }
        let r = h
            .send(
                Method::POST,
                &invites,
                "u",
                Some(json!({ "role": "viewer" })),
                None,
            )
            .await;
        assert_eq!(r.code(), "FORBIDDEN");

        let r = h
            .send(
                Method::POST,
                &invites,
                "o",
                Some(json!({ "role": "editor" })),
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let inv = r.json();
        let token = inv["token"].as_str().unwrap().to_owned();
        assert_eq!(
            inv["url"],
            format!("https://tandem.example/s/{sid}#invite={token}")
        );
        let exp = chrono::DateTime::parse_from_rfc3339(inv["expiresAt"].as_str().unwrap()).unwrap();
        let days = exp.signed_duration_since(chrono::Utc::now()).num_hours();
        assert!((7 * 24 - 1..=7 * 24).contains(&days), "{days} hours");
        let r = h
            .send(
                Method::POST,
                &invites,
                "o",
                Some(json!({ "role": "viewer", "expiresInSecs": 60 })),
                None,
            )
            .await;
        let viewer_invite = r.json()["token"].as_str().unwrap().to_owned();

        // Not a user token: over HTTP, and over a socket.
        let r = h
            .send_token(Method::GET, "/api/sessions", &token, None, None)
            .await;
        assert_eq!((r.status, r.code().as_str()), (401, "UNAUTHORIZED"));
        match Peer::connect(&h.srv.url, Some(&token)).await {
            Err(ClientError::ConnectRefused { message }) => assert_eq!(message, "UNAUTHORIZED"),
            Err(e) => panic!("expected UNAUTHORIZED, got {e:?}"),
            Ok(_) => panic!("an invite token connected as a user"),
        }

        let mut tabs = [h.peer("u").await, h.peer("u").await];
        let accept = |user: &'static str, token: String| {
            let h = &h;
            async move {
                h.send(
                    Method::POST,
                    "/api/invites/accept",
                    user,
                    Some(json!({ "token": token })),
                    None,
                )
                .await
            }
        };
        let r = accept("u", token.clone()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["id"], sid.as_str());
        for t in &mut tabs {
            let ev = next(t, "session:added").await;
            assert_eq!(
                (ev["session"]["id"].as_str(), ev["role"].as_str()),
                (Some(sid.as_str()), Some("editor"))
            );
        }
        let role_of = |user: &'static str| {
            let h = &h;
            let sid = sid.clone();
            async move {
                let s = h
                    .send(
                        Method::GET,
                        &format!("/api/sessions/{sid}"),
                        "o",
                        None,
                        None,
                    )
                    .await
                    .json();
                s["participants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["id"] == user)
                    .map(|p| p["role"].as_str().unwrap().to_owned())
            }
        };
        assert_eq!(role_of("u").await.as_deref(), Some("editor"));
        // Twice changes nothing; a viewer invite never lowers.
        assert_eq!(accept("u", token.clone()).await.status, 200);
        assert_eq!(accept("u", viewer_invite.clone()).await.status, 200);
        assert_eq!(role_of("u").await.as_deref(), Some("editor"));
        for t in &mut tabs {
            for name in ["session:added", "role:changed", "session:removed"] {
                t.expect_no_event(name, Duration::from_millis(100)).await;
            }
        }
        // The owner stays owner.
        assert_eq!(accept("o", token.clone()).await.status, 200);
        assert_eq!(role_of("o").await.as_deref(), Some("owner"));
        // A viewer raised by an editor invite hears role:changed.
        assert_eq!(accept("x", viewer_invite.clone()).await.status, 200);
        let mut x = h.peer("x").await;
        assert_eq!(accept("x", token.clone()).await.status, 200);
        assert_eq!(
            next(&mut x, "role:changed").await,
            json!({ "sessionId": sid, "role": "editor" })
        );

        // Refused invites.
        let user_token = h.token("u");
        let foreign = tandem::auth::Auth::new(b"another-secret")
            .issue_invite(&sid, Role::Editor, 60)
            .0;
        let expired = h.srv.auth.issue_invite(&sid, Role::Editor, -5).0;
        for (what, t) in [
            ("a user token", user_token),
            ("another key", foreign),
            ("expired", expired),
            ("malformed", "not.a.jwt".to_owned()),
        ] {
            let r = accept("z", t).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (401, "UNAUTHORIZED"),
                "{what}"
            );
        }
        let r = h
            .http
            .post(format!("{}/api/invites/accept", h.srv.url))
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "accepting needs a user token");
        assert_eq!(role_of("z").await, None);
        // A deleted session.
        assert_eq!(
            h.send(
                Method::DELETE,
                &format!("/api/sessions/{sid}"),
                "o",
                None,
                None
            )
            .await
            .status,
            204
        );
        let r = accept("u", token.clone()).await;
        assert_eq!((r.status, r.code().as_str()), (404, "SESSION_NOT_FOUND"));
    }
}

/// `cargo test --release --test workspaces_http -- --ignored --nocapture bench_`
#[tokio::test]
#[ignore]
async fn bench_two_thousand_files_list_and_archive() {
    const FILES: usize = 2000;
    let h = Http::start(Backend::Sqlite, |_| {}).await;
    let sid = h.session("a", json!({})).await;
    let started = std::time::Instant::now();
    let body = "fn main() {\n    println!(\"hello\");\n}\n".repeat(10);
    let creates = futures::stream::iter(0..FILES - 1)
        .map(|i| {
            let (h, body, sid) = (&h, body.clone(), &sid);
            async move {
                let path = format!("src/m{:02}/file{i:04}.rs", i % 50);
                let r = h
                    .create_file(sid, "a", json!({ "path": path, "content": body }), None)
                    .await;
                assert_eq!(r.status, 201, "{}", r.text());
            }
        })
        .buffer_unordered(8);
    creates.collect::<Vec<_>>().await;
    let create_time = started.elapsed();
    let time = |n: usize, path: String| {
        let h = &h;
        async move {
            let mut best = Duration::MAX;
            let mut bytes = 0;
            for _ in 0..n {
                let t = std::time::Instant::now();
                let r = h.send(Method::GET, &path, "a", None, None).await;
                assert_eq!(r.status, 200);
                best = best.min(t.elapsed());
                bytes = r.body.len();
            }
            (best, bytes)
        }
    };
    let (list, list_bytes) = time(5, format!("/api/sessions/{sid}/files")).await;
    let (archive, zip_bytes) = time(3, format!("/api/sessions/{sid}/archive")).await;
    println!(
        "{FILES} files: created in {create_time:?} (8 concurrent); list {list:?} ({list_bytes} bytes JSON); archive {archive:?} ({zip_bytes} bytes zip); best of 5 / 3"
    );
}
