//! `tandem sync` (issue 15): the real binary's agents on temporary folders
//! against a real server, with HTTP and native-socket clients on the other
//! side.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::peer::Peer;
use common::{Backend, TestServer};
use serde_json::{Value, json};
use yrs::Text;

const WAIT: Duration = Duration::from_secs(15);

/// A running `tandem sync` process with its output collected.
struct Agent {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            l.lock().unwrap().push(line);
        }
    });
    lines
}

fn sync_command(dir: &Path, args: &[&str], log: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tandem"));
    c.arg("sync")
        .arg(dir)
        .args(args)
        .args(["--debounce-ms", "50"])
        .env("RUST_LOG", log)
        .env_remove("TANDEM_TOKEN")
        .env_remove("TANDEM_SERVER");
    c
}

impl Agent {
    /// Starts an agent and waits for its first full sync.
    async fn start(dir: &Path, args: &[&str]) -> Agent {
        Self::start_logging(dir, args, "warn").await
    }

    /// [`start`](Self::start) with its own `RUST_LOG` (stderr is collected).
    async fn start_logging(dir: &Path, args: &[&str], log: &str) -> Agent {
        let mut a = Self::spawn(dir, args, log);
        a.wait_line("synced ").await;
        a
    }

    /// Starts an agent without waiting for anything.
    fn spawn(dir: &Path, args: &[&str], log: &str) -> Agent {
        Self::spawn_command(sync_command(dir, args, log))
    }

    /// Starts a [`sync_command`] (with whatever the caller added).
    fn spawn_command(mut command: Command) -> Agent {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Agent { child, out, err }
    }

    /// Waits for the process to exit (panics with `what` after [`WAIT`]).
    async fn exited(&mut self, what: &str) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().join("\n")
    }

    async fn wait_line(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(l) = self.out.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "agent exited ({status}) before `{needle}`:\n{}\n{}",
                    self.output(),
                    self.err.lock().unwrap().join("\n")
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{needle}` from the agent:\n{}\n{}",
                self.output(),
                self.err.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits: the agent flushes and exits 0.
    async fn stop(mut self) -> String {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.exited("the agent did not stop").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let out = self.output();
        assert!(
            status.success(),
            "agent exit {status:?}:\n{out}\n{}",
            self.err.lock().unwrap().join("\n")
        );
        out
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tandem sync` to completion (for the refusals); (exit code, stderr).
async fn run_to_exit(dir: &Path, args: &[&str]) -> (i32, String) {
    run_command_to_exit(sync_command(dir, args, "warn")).await
}

async fn run_command_to_exit(mut c: Command) -> (i32, String) {
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Http {
    url: String,
    token: String,
    c: reqwest::Client,
}

impl Http {
    fn new(srv: &TestServer, user: &str) -> Http {
        Http {
            url: srv.url.clone(),
            token: srv.token(user, &[]),
            c: reqwest::Client::new(),
        }
    }

    async fn call(&self, m: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .c
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    async fn session(&self) -> String {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                "/api/sessions",
                Some(json!({ "title": "t", "mainPath": "main.txt" })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    /// path → (id, text) of every file.
    async fn files(&self, sid: &str) -> std::collections::BTreeMap<String, (String, String)> {
        let (_, v) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/sessions/{sid}/files"),
                None,
            )
            .await;
        let mut out = std::collections::BTreeMap::new();
        for f in v.as_array().cloned().unwrap_or_default() {
            let id = f["id"].as_str().unwrap().to_owned();
            let text = self.content(sid, &id).await;
            out.insert(f["path"].as_str().unwrap().to_owned(), (id, text));
        }
        out
    }

    async fn content(&self, sid: &str, id: &str) -> String {
        common::get_body(
            &format!("{}/api/sessions/{sid}/files/{id}/content", self.url),
            &self.token,
        )
        .await
    }

    async fn put(&self, sid: &str, id: &str, text: &str) {
        let r = self
            .c
            .put(format!(
                "{}/api/sessions/{sid}/files/{id}/content",
                self.url
            ))
            .bearer_auth(&self.token)
            .body(text.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    async fn id_of(&self, sid: &str, path: &str) -> String {
        self.files(sid).await[path].0.clone()
    }
}

/// The text files of a folder (path → text), without the agent's state.
fn folder(dir: &Path) -> std::collections::BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == ".tandem" || rel == ".git" {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(t) = std::fs::read_to_string(&p) {
                out.insert(rel, t);
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn read(dir: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(path)).ok()
}

/// Polls an async condition until it holds.
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Both folders and the session hold the same files with the same texts.
async fn converged(http: &Http, sid: &str, dirs: &[&Path]) -> bool {
    let server: std::collections::BTreeMap<String, String> = http
        .files(sid)
        .await
        .into_iter()
        .map(|(p, (_, t))| (p, t))
        .collect();
    dirs.iter().all(|d| {
        let mut f = folder(d);
        f.retain(|p, _| server.contains_key(p) || !p.ends_with(".log"));
        f.retain(|p, _| !p.ends_with(".png") && !p.ends_with(".sql"));
        f == server
    })
}

/// A server, alice's HTTP client and token, a session of hers (main file
/// `main.txt`) and an empty folder.
async fn setup() -> (TestServer, Http, String, String, tempfile::TempDir) {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let http = Http::new(&srv, "alice");
    let token = srv.token("alice", &[]);
    let sid = http.session().await;
    (srv, http, token, sid, tempfile::tempdir().unwrap())
}

/// The folder's `main.txt` reaches the session's main file as `up`; then
/// the session's text `down` reaches the disk.
async fn main_syncs_both_ways(http: &Http, sid: &str, d: &Path, up: &str, down: &str) {
    until("the folder's main.txt in the session", || async {
        http.content(sid, "main").await == up
    })
    .await;
    http.put(sid, "main", down).await;
    until("the session's edit in main.txt", || async {
        read(d, "main.txt").as_deref() == Some(down)
    })
    .await;
}

fn args<'a>(srv: &'a str, sid: &'a str, token: &'a str) -> Vec<&'a str> {
    vec!["--server", srv, "--session", sid, "--token", token]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_folders_and_the_session_converge_on_every_kind_of_change() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let http = Http::new(&srv, "alice");
    let token = srv.token("alice", &[]);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (da, db) = (a.path(), b.path());
    write(da, "src/main.rs", "fn main() {\n    one();\n}\n");
    write(da, "README.md", "# Demo\n");
    write(da, ".gitignore", "*.log\n");
    write(da, "debug.log", "secret log\n");
    write(da, ".git/HEAD", "ref: refs/heads/main\n");
    std::fs::write(da.join("logo.png"), [0x89, b'P', b'N', b'G', 0, 0, 1]).unwrap();
    write(da, "dump.sql", &"x".repeat(600 * 1024));

    // --create: a session from folder A, its main file one of A's files.
    let mut agent_a = Agent::start(
        da,
        &["--server", &srv.url, "--create", "Demo", "--token", &token],
    )
    .await;
    let created = agent_a.wait_line("created session ").await;
    let sid = created
        .split("created session ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(
        created.contains(&format!("{}/s/{sid}", srv.url)),
        "{created}"
    );
    let files = http.files(&sid).await;
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        vec![".gitignore", "README.md", "src/main.rs"],
        "ignored, binary, over-limit and .git files never leave the machine"
    );
    assert_eq!(
        files["src/main.rs"].0, "main",
        "an entry point is the main file"
    );
    assert!(agent_a.output().contains("logo.png: binary, not synced"));
    assert!(
        agent_a
            .output()
            .contains("dump.sql: 614400 bytes, above --max-file-bytes")
    );

    let agent_b = Agent::start(db, &args(&srv.url, &sid, &token)).await;
    let both = [da, db];
    until("B has A's files", || converged(&http, &sid, &both)).await;
    assert!(read(db, "debug.log").is_none() && read(db, "logo.png").is_none());

    // Created in A.
    write(da, "src/util.rs", "pub fn one() {}\n");
    until("src/util.rs everywhere", || async {
        read(db, "src/util.rs").as_deref() == Some("pub fn one() {}\n")
    })
    .await;
    // Edited in B.
    write(
        db,
        "src/main.rs",
        "fn main() {\n    one();\n    two();\n}\n",
    );
    until("B's edit in A", || async {
        read(da, "src/main.rs").is_some_and(|t| t.contains("two();"))
    })
    .await;
    // Edited, created and renamed over HTTP (the browser's side).
    let readme = http.id_of(&sid, "README.md").await;
    http.put(&sid, &readme, "# Demo\n\nFrom the browser.\n")
        .await;
    let (s, f) = http
        .call(
            reqwest::Method::POST,
            &format!("/api/sessions/{sid}/files"),
            Some(json!({ "path": "web/app.js", "content": "app();\n" })),
        )
        .await;
    assert_eq!(s, 201);
    let app = f["id"].as_str().unwrap().to_owned();
    until("HTTP edit and create in both folders", || async {
        [da, db].iter().all(|d| {
            read(d, "README.md").is_some_and(|t| t.contains("browser"))
                && read(d, "web/app.js").as_deref() == Some("app();\n")
        })
    })
    .await;
    let (s, _) = http
        .call(
            reqwest::Method::PATCH,
            &format!("/api/sessions/{sid}/files/{app}"),
            Some(json!({ "path": "web/main.js" })),
        )
        .await;
    assert_eq!(s, 200);
    until("HTTP rename in both folders", || async {
        [da, db]
            .iter()
            .all(|d| read(d, "web/main.js").is_some() && read(d, "web/app.js").is_none())
    })
    .await;

    // A session file at a path A ignores (*.log) is synced, never deleted.
    let (s, _) = http
        .call(
            reqwest::Method::POST,
            &format!("/api/sessions/{sid}/files"),
            Some(json!({ "path": "notes/run.log", "content": "kept\n" })),
        )
        .await;
    assert_eq!(s, 201);
    until("the ignored-path file in both folders", || async {
        [da, db]
            .iter()
            .all(|d| read(d, "notes/run.log").as_deref() == Some("kept\n"))
    })
    .await;

    // Moved in B: a PATCH (same file id), not delete + create.
    std::fs::create_dir_all(db.join("docs")).unwrap();
    std::fs::rename(db.join("README.md"), db.join("docs/README.md")).unwrap();
    until("the move reaches A", || async {
        read(da, "docs/README.md").is_some() && read(da, "README.md").is_none()
    })
    .await;
    assert_eq!(http.id_of(&sid, "docs/README.md").await, readme);

    // A whole folder renamed in A: each file keeps its id.
    let util_id = http.id_of(&sid, "src/util.rs").await;
    std::fs::rename(da.join("src"), da.join("lib")).unwrap();
    until("the folder rename reaches B and the session", || async {
        read(db, "lib/main.rs").is_some()
            && read(db, "lib/util.rs").is_some()
            && !db.join("src").exists()
    })
    .await;
    assert_eq!(http.id_of(&sid, "lib/util.rs").await, util_id);
    assert_eq!(http.id_of(&sid, "lib/main.rs").await, "main");
    std::fs::rename(db.join("lib"), db.join("src")).unwrap();
    until("and back from B", || async {
        read(da, "src/main.rs").is_some() && !da.join("lib").exists()
    })
    .await;

    // Deleted in A; deleted over HTTP.
    std::fs::remove_file(da.join("src/util.rs")).unwrap();
    let (s, _) = http
        .call(
            reqwest::Method::DELETE,
            &format!("/api/sessions/{sid}/files/{app}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    until("deletes reach both folders", || async {
        [da, db]
            .iter()
            .all(|d| read(d, "src/util.rs").is_none() && !d.join("web").exists())
    })
    .await;

    // Concurrent edits in different places of one file merge.
    write(
        da,
        "src/main.rs",
        "// A\nfn main() {\n    one();\n    two();\n}\n",
    );
    write(
        db,
        "src/main.rs",
        "fn main() {\n    one();\n    two();\n}\n// B\n",
    );
    until("both edits everywhere", || async {
        converged(&http, &sid, &both).await
            && read(da, "src/main.rs")
                .is_some_and(|t| t.starts_with("// A") && t.ends_with("// B\n"))
    })
    .await;
    assert_eq!(
        read(da, "src/main.rs").unwrap(),
        "// A\nfn main() {\n    one();\n    two();\n}\n// B\n"
    );
    assert!(
        http.files(&sid).await.contains_key("notes/run.log"),
        "a file at a path A ignores was deleted from the session"
    );
    agent_a.stop().await;
    agent_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_save_is_one_change_and_remote_edits_are_not_echoed() {
    let (srv, _http, token, sid, dir) = setup().await;
    let d = dir.path();
    write(d, "main.txt", "line one\nline two\n");
    let agent = Agent::start(d, &args(&srv.url, &sid, &token)).await;
    let mut peer = Peer::connect(&srv.url, Some(&token)).await.unwrap();
    peer.join(&sid).await;
    peer.pull(&sid).await;
    assert_eq!(peer.text(), "line one\nline two\n");
    let seen = |p: &Peer| p.received.load(std::sync::atomic::Ordering::SeqCst);

    // An editor's save: write a temporary file, rename it over the original.
    std::fs::write(d.join(".main.txt.swp"), "line one\nline 2\n").unwrap();
    std::fs::rename(d.join(".main.txt.swp"), d.join("main.txt")).unwrap();
    common::peer::eventually(WAIT, "the save reaches the peer", || {
        peer.text() == "line one\nline 2\n"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(seen(&peer), 1, "one save, one update");
    peer.expect_no_event("file:created", Duration::from_millis(10))
        .await;

    // 100 edits from the peer: written to disk, never sent back.
    for i in 0..100 {
        let u = peer.edit(|t, txn| {
            let end = t.len(txn);
            t.insert(txn, end, &format!("{i} "));
        });
        peer.send_update(&sid, u, i % 10 == 9).await;
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let want = peer.text();
    until("the agent's file has all 100 edits", || async {
        read(d, "main.txt").as_deref() == Some(want.as_str())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(seen(&peer), 1, "the agent echoed remote edits back");
    assert_eq!(srv.get_text(&sid, &token).await, want);
    let out = agent.stop().await;
    assert!(out.contains("every change is synced"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_files_keep_their_line_endings() {
    let (srv, http, token, sid, dir) = setup().await;
    let d = dir.path();
    write(d, "win.bat", "@echo off\r\necho one\r\n");
    let agent = Agent::start(d, &args(&srv.url, &sid, &token)).await;
    let id = http.id_of(&sid, "win.bat").await;
    assert_eq!(
        http.content(&sid, &id).await,
        "@echo off\necho one\n",
        "the session holds LF"
    );
    http.put(&sid, &id, "@echo off\necho one\necho two\n").await;
    until("the remote edit on disk, in CRLF", || async {
        read(d, "win.bat").as_deref() == Some("@echo off\r\necho one\r\necho two\r\n")
    })
    .await;
    // A local CRLF edit arrives as LF.
    write(d, "win.bat", "@echo on\r\necho one\r\necho two\r\n");
    until("the local edit in the session", || async {
        http.content(&sid, &id).await == "@echo on\necho one\necho two\n"
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_while_stopped_merge_with_the_sessions() {
    let (srv, http, token, sid, dir) = setup().await;
    let d = dir.path();
    write(d, "main.txt", "alpha\nbeta\ngamma\n");
    write(d, "gone.txt", "bye\n");
    let agent = Agent::start(d, &args(&srv.url, &sid, &token)).await;
    agent.stop().await;

    // Offline: edit the first line, add a file, delete one.
    write(d, "main.txt", "ALPHA\nbeta\ngamma\n");
    write(d, "new.txt", "made offline\n");
    std::fs::remove_file(d.join("gone.txt")).unwrap();
    // Meanwhile in the session: the last line.
    http.put(&sid, "main", "alpha\nbeta\nGAMMA\n").await;

    // Restarted without --server/--session/--token? The token is not
    // remembered (it is a secret); server and session are.
    let agent = Agent::start(d, &["--token", &token]).await;
    until("both edits on disk and in the session", || async {
        let t = read(d, "main.txt");
        t.as_deref() == Some("ALPHA\nbeta\nGAMMA\n")
            && http.content(&sid, "main").await == "ALPHA\nbeta\nGAMMA\n"
    })
    .await;
    let files = http.files(&sid).await;
    assert_eq!(files["new.txt"].1, "made offline\n");
    assert!(!files.contains_key("gone.txt"));
    agent.stop().await;
}

/// A file moved and edited while the agent was stopped is one file moved
/// and edited, not a delete plus a create: it keeps its id, and an edit made
/// to it in the session meanwhile is merged, not lost with the old file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_moved_and_edited_keeps_its_identity_and_others_edits() {
    let (srv, http, token, sid, dir) = setup().await;
    let d = dir.path();
    let lines = "one\ntwo\nthree\nfour\nfive\nsix\n";
    write(d, "main.txt", "main\n");
    write(d, "notes/todo.md", lines);
    let agent = Agent::start(d, &args(&srv.url, &sid, &token)).await;
    until("the file in the session", || async {
        http.files(&sid).await.contains_key("notes/todo.md")
    })
    .await;
    let id = http.files(&sid).await["notes/todo.md"].0.clone();
    agent.stop().await;

    // Offline: moved to another folder, its first line edited.
    std::fs::remove_file(d.join("notes/todo.md")).unwrap();
    write(d, "docs/todo.md", &lines.replace("one", "ONE"));
    // Meanwhile in the session: its last line.
    http.put(&sid, &id, &lines.replace("six", "SIX")).await;

    let agent = Agent::start(d, &["--token", &token]).await;
    let merged = "ONE\ntwo\nthree\nfour\nfive\nSIX\n";
    until(
        "the move and both edits, in the session and on disk",
        || async {
            let files = http.files(&sid).await;
            files.get("docs/todo.md") == Some(&(id.clone(), merged.to_owned()))
                && !files.contains_key("notes/todo.md")
                && read(d, "docs/todo.md").as_deref() == Some(merged)
        },
    )
    .await;
    let out = agent.stop().await;
    assert!(out.contains("notes/todo.md → docs/todo.md"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_resumes_after_a_server_restart() {
    let (srv, http, token, sid, dir) = setup().await;
    let d = dir.path();
    write(d, "main.txt", "before\n");
    let mut agent = Agent::start(d, &args(&srv.url, &sid, &token)).await;
    until("synced", || async {
        http.content(&sid, "main").await == "before\n"
    })
    .await;

    let (mut config, data) = (srv.config.clone(), srv.dir.clone());
    config.bind = srv.addr;
    srv.stop().await.unwrap();
    agent.wait_line("disconnected").await;
    write(d, "main.txt", "before\nwhile down\n");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let srv = TestServer::start_with(config, data).await;
    // The edit made while down reaches the server; later ones the disk.
    main_syncs_both_ways(
        &http,
        &sid,
        d,
        "before\nwhile down\n",
        "before\nwhile down\nafter\n",
    )
    .await;
    agent.stop().await;
    drop(srv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_sync_keeps_both_versions_of_a_file_that_differs() {
    let (srv, http, token, sid, dir) = setup().await;
    for (path, content) in [
        ("shared.txt", "the session's\n"),
        ("remote.txt", "remote only\n"),
    ] {
        let (s, _) = http
            .call(
                reqwest::Method::POST,
                &format!("/api/sessions/{sid}/files"),
                Some(json!({ "path": path, "content": content })),
            )
            .await;
        assert_eq!(s, 201);
    }
    let d = dir.path();
    write(d, "shared.txt", "mine\n");
    write(d, "local.txt", "local only\n");
    let agent = Agent::start(d, &args(&srv.url, &sid, &token)).await;
    assert_eq!(read(d, "shared.txt").unwrap(), "the session's\n");
    assert_eq!(read(d, "remote.txt").unwrap(), "remote only\n");
    let local = folder(d);
    let conflict: Vec<_> = local
        .iter()
        .filter(|(p, _)| p.starts_with("shared.conflict-") && p.ends_with(".txt"))
        .collect();
    assert_eq!(conflict.len(), 1, "{local:?}");
    assert_eq!(conflict[0].1, "mine\n");
    until("local-only files reach the session", || async {
        http.files(&sid)
            .await
            .get("local.txt")
            .map(|f| f.1.as_str())
            == Some("local only\n")
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_deletion_is_refused_unless_allowed() {
    let (srv, http, token, sid, dir) = setup().await;
    let d = dir.path();
    for i in 0..4 {
        write(d, &format!("f{i}.txt"), &format!("file {i}\n"));
    }
    let mut agent = Agent::start(d, &args(&srv.url, &sid, &token)).await;
    // main.txt + 4 files; deleting 4 of 5 at once is refused and undone.
    for i in 0..4 {
        std::fs::remove_file(d.join(format!("f{i}.txt"))).unwrap();
    }
    agent.wait_line("refusing to delete 4 of 5 files").await;
    until("the files are restored", || async {
        (0..4).all(|i| read(d, &format!("f{i}.txt")).is_some())
    })
    .await;
    assert_eq!(http.files(&sid).await.len(), 5);
    agent.stop().await;

    for i in 0..4 {
        std::fs::remove_file(d.join(format!("f{i}.txt"))).unwrap();
    }
    let agent = Agent::start(d, &["--token", &token, "--allow-mass-delete"]).await;
    assert_eq!(
        http.files(&sid).await.keys().cloned().collect::<Vec<_>>(),
        vec!["main.txt"]
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_exit_non_zero_with_a_clear_message() {
    let (srv, _http, token, sid, dir) = setup().await;
    let fresh = |name: &str| -> PathBuf { dir.path().join(name) };

    let (code, err) = run_to_exit(&fresh("a"), &args(&srv.url, &sid, "not-a-jwt")).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("refused the connection") && err.contains("--token"),
        "{err}"
    );

    let (code, err) = run_to_exit(&fresh("b"), &args(&srv.url, "NoSuchSession1", &token)).await;
    assert_ne!(code, 0);
    assert!(err.contains("no session NoSuchSession1"), "{err}");

    let outsider = srv.token("mallory", &[]);
    let (code, err) = run_to_exit(&fresh("c"), &args(&srv.url, &sid, &outsider)).await;
    assert_ne!(code, 0);
    assert!(err.contains("FORBIDDEN"), "{err}");

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (code, err) = run_to_exit(&fresh("d"), &args(&closed, &sid, &token)).await;
    assert_ne!(code, 0);
    assert!(err.contains("cannot reach"), "{err}");

    let (code, err) = run_to_exit(&fresh("e"), &["--server", &srv.url]).await;
    assert_ne!(code, 0);
    assert!(err.contains("--session"), "{err}");
}

/// A stop (SIGTERM) while the server accepts the connection but never
/// answers: the agent exits 0 at once instead of hanging in the handshake or
/// dying of the signal's default action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_server_stalls_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", stalled.local_addr().unwrap());
    // Accepted and held open, never read from or answered.
    std::thread::spawn(move || {
        let held: Vec<_> = stalled.incoming().collect();
        drop(held);
    });
    let agent = Agent::spawn(dir.path(), &args(&url, "AnySession12", "t"), "warn");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let out = agent.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(out.contains("stopped before the first sync"), "{out}");
}

/// `--server https://…`: the agent syncs through a TLS-terminating proxy
/// whose certificate it checks (against the bundle `SSL_CERT_FILE` names),
/// and refuses one it cannot verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_syncs_with_a_server_behind_tls() {
    let (srv, http, token, sid, dir) = setup().await;
    let d = dir.path();
    let ca = common::tls::TestCa::new(&d.with_extension("tls"));
    let url = ca.proxy(srv.addr).await;

    // A certificate the agent cannot verify (the system roots lack the CA).
    let mut untrusted = sync_command(d, &args(&url, &sid, &token), "warn");
    untrusted.env("SSL_CERT_FILE", "/nonexistent/bundle.pem");
    let (code, err) = run_command_to_exit(untrusted).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot reach") && err.to_lowercase().contains("certificate"),
        "{err}"
    );

    write(d, "main.txt", "over tls\n");
    let mut trusted = sync_command(d, &args(&url, &sid, &token), "warn");
    trusted.env("SSL_CERT_FILE", &ca.ca_file);
    let mut agent = Agent::spawn_command(trusted);
    agent.wait_line("synced ").await;
    main_syncs_both_ways(&http, &sid, d, "over tls\n", "over tls, both ways\n").await;
    agent.stop().await;
}

#[test]
fn help_describes_the_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["sync", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--server",
        "--session",
        "--create",
        "--token",
        "--allow-mass-delete",
        "TANDEM_TOKEN",
        ".tandemignore",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_per_folder_and_a_deleted_session_stops_it() {
    let (srv, http, token, sid, dir) = setup().await;
    let d = dir.path();
    let mut agent = Agent::start(d, &args(&srv.url, &sid, &token)).await;
    let (code, err) = run_to_exit(d, &args(&srv.url, &sid, &token)).await;
    assert_ne!(code, 0);
    assert!(err.contains("already running"), "{err}");

    let (s, _) = http
        .call(
            reqwest::Method::DELETE,
            &format!("/api/sessions/{sid}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let status = agent.exited("the agent kept running").await;
    assert!(!status.success());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = agent.err.lock().unwrap().join("\n");
    assert!(err.contains("the session was deleted"), "{err}");
    assert_eq!(
        read(d, "main.txt").as_deref(),
        Some(""),
        "the folder is left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_does_not_keep_looking_at_the_folder() {
    let (srv, http, token, sid, dir) = setup().await;
    let d = dir.path();
    for i in 0..20 {
        write(d, &format!("f{i}.txt"), "x\n");
    }
    let agent =
        Agent::start_logging(d, &args(&srv.url, &sid, &token), "warn,tandem::sync=debug").await;
    let looks = |a: &Agent| {
        a.err
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("folder changed"))
            .count()
    };
    // Its own writes and reads after the first sync settle, then nothing:
    // reading a file is no change (inotify reports it as an access).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = looks(&agent);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle = looks(&agent) - before;
    assert!(
        idle <= 1,
        "an idle agent looked at the folder {idle} times in 1.5 s"
    );
    // A save is still seen at once.
    write(d, "f3.txt", "y\n");
    until("the save reaches the session", || async {
        http.files(&sid).await.get("f3.txt").map(|f| f.1.as_str()) == Some("y\n")
    })
    .await;
    agent.stop().await;
}
