//! Real processes for tests: the `tandem` binary as a child ([`Node`]) and a
//! redis-server the test owns ([`RedisServer`]), so it can kill and restart
//! it. Both are killed when dropped.
#![allow(dead_code)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// The `tandem` binary running as a child process.
pub struct Node {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// The last lines it logged (for failure messages).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts `tandem serve` on a free port with `args`, the test secret,
    /// and no `TANDEM_*` variables from the environment.
    pub async fn start(args: &[&str]) -> Node {
        Self::start_env(args, &[]).await
    }

    /// [`start`](Self::start) with these environment variables set.
    pub async fn start_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Node {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"));
        cmd.envs(env.iter().copied());
        for (k, _) in std::env::vars() {
            if k.starts_with("TANDEM_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--secret", super::SECRET])
            .args(args)
            .env(
                "RUST_LOG",
                "info,socketioxide=warn,engineioxide=warn,sqlx=warn,tower_http=warn",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn tandem");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let l = log.clone();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                push(&l, &line);
                if let Some(i) = line.find("listening on http://") {
                    return line[i + "listening on ".len()..].trim().to_owned();
                }
            }
            panic!(
                "tandem exited before listening:\n{}",
                l.lock().unwrap().join("\n")
            );
        })
        .await
        .expect("tandem did not start within 30 s");
        // Keep draining stderr so the child never blocks on a full pipe.
        let l = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                push(&l, &line);
            }
        });
        Node { child, url, log }
    }

    /// SIGKILL: no flush, no goodbye.
    pub async fn kill_9(&mut self) {
        self.child.kill().await.unwrap();
        let _ = self.child.wait().await;
    }

    /// The log lines seen so far, joined.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `GET path` status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

fn push(log: &Mutex<Vec<String>>, line: &str) {
    let mut l = log.lock().unwrap();
    if l.len() > 400 {
        l.drain(..200);
    }
    l.push(line.to_owned());
}

/// `redis-server` on a free port, owned by the test.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
    /// TLS only (`--tls-port`), with this CA's `localhost` certificate.
    tls: Option<(super::tls::TestCa, tempfile::TempDir)>,
}

impl RedisServer {
    /// The redis-server binary, or `None` after a loud skip notice (a
    /// panic under `CI=true`: Redis tests may not skip in CI).
    pub fn binary() -> Option<String> {
        let found = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        match found {
            Some(p) => Some(p.to_owned()),
            None => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!(
                        "CI=true but redis-server is not installed: Redis tests may not skip in CI"
                    );
                }
                eprintln!(
                    "\n*** SKIPPED: cluster tests (no redis-server; `make test` installs it) ***\n"
                );
                None
            }
        }
    }

    /// Starts a fresh redis-server on a free port (no persistence).
    pub async fn start() -> Option<RedisServer> {
        Self::start_with(None).await
    }

    /// [`start`](Self::start), speaking TLS only, with a certificate for
    /// `localhost` from a fresh private CA ([`ca_file`](Self::ca_file)).
    pub async fn start_tls() -> Option<RedisServer> {
        let dir = tempfile::tempdir().unwrap();
        let ca = super::tls::TestCa::new(dir.path());
        Self::start_with(Some((ca, dir))).await
    }

    async fn start_with(tls: Option<(super::tls::TestCa, tempfile::TempDir)>) -> Option<Self> {
        Self::binary()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = RedisServer {
            port,
            child: None,
            tls,
        };
        r.restart().await;
        Some(r)
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://localhost:<port>` over TLS.
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("rediss://localhost:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The CA a client must trust (TLS only).
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|(ca, _)| ca.ca_file.as_path())
    }

    /// Kills it (SIGKILL) and waits until the port is closed.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it (again) on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut cmd = std::process::Command::new(Self::binary().unwrap());
        let port = self.port.to_string();
        match &self.tls {
            None => cmd.args(["--bind", "127.0.0.1", "--port", &port]),
            Some((ca, _)) => cmd
                .args(["--bind", "127.0.0.1", "--port", "0", "--tls-port", &port])
                .arg("--tls-cert-file")
                .arg(&ca.cert_file)
                .arg("--tls-key-file")
                .arg(&ca.key_file)
                .arg("--tls-ca-cert-file")
                .arg(&ca.ca_file)
                .args(["--tls-auth-clients", "no"]),
        };
        let child = cmd
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
