//! Shared test support: boot the real server in-process on port 0 against a
//! fresh SQLite file or a fresh PostgreSQL database, mint tokens.
//!
//! PostgreSQL tests run when `TANDEM_TEST_POSTGRES` names a server URL
//! (`make test` sets it). Without it they skip with a loud message, except
//! under `CI=true`, where a missing database is a failure.
#![allow(dead_code)]

pub mod peer;
pub mod process;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;

use tandem::auth::Auth;
use tandem::config::Config;
use tandem::model::Role;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends to run a test on: SQLite always, PostgreSQL when configured.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    if postgres_server_url().is_some() {
        v.push(Backend::Postgres);
    }
    v
}

/// `TANDEM_TEST_POSTGRES`, or `None` after a loud skip notice (a panic in CI).
pub fn postgres_server_url() -> Option<String> {
    match std::env::var("TANDEM_TEST_POSTGRES") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CI=true but TANDEM_TEST_POSTGRES is not set: PostgreSQL tests may not skip in CI"
                );
            }
            eprintln!(
                "\n*** SKIPPED: PostgreSQL variant (set TANDEM_TEST_POSTGRES, e.g. via `make test`) ***\n"
            );
            None
        }
    }
}

/// A fresh, empty database for one test: a file in `dir` or a new PostgreSQL database.
pub async fn fresh_database_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("tandem.db").display()),
        Backend::Postgres => {
            use sqlx::Connection;
            let server = postgres_server_url().expect("postgres configured");
            // The pid in the name lets later runs drop what finished runs left.
            let name = format!(
                "tandem_t_{}_{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            );
            let mut conn = sqlx::PgConnection::connect(&server)
                .await
                .expect("connect to TANDEM_TEST_POSTGRES");
            reap_stale_databases(&mut conn).await;
            sqlx::Executor::execute(
                &mut conn,
                sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
            )
            .await
            .expect("create test database");
            let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(&server);
            format!("{base}/{name}")
        }
    }
}

/// Drops test databases whose creating process has exited (once per process).
async fn reap_stale_databases(conn: &mut sqlx::PgConnection) {
    use sqlx::Row;
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    ONCE.call_once(|| first = true);
    if !first {
        return;
    }
    let rows = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'tandem_t_%'")
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| {
            eprintln!("could not list stale test databases: {e}");
            Vec::new()
        });
    for r in rows {
        let name: String = r.get(0);
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive
            && let Err(e) = sqlx::Executor::execute(
                &mut *conn,
                sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
            )
            .await
        {
            eprintln!("could not drop stale test database {name}: {e}");
        }
    }
}

pub const SECRET: &str = "test-secret";

/// `GET url` with `token`: the body as text, whatever the status.
pub async fn get_body(url: &str, token: &str) -> String {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `GET url` with `http`: the body as text (the request must get an answer).
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// `POST /api/sessions` with `body` on the server at `base_url` as
/// `token`'s user: the new session's id (the creation must succeed).
pub async fn create_session(base_url: &str, token: &str, body: serde_json::Value) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base_url}/api/sessions"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let created: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    pub database_url: String,
    pub config: Config,
    pub auth: Auth,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub dir: std::sync::Arc<tempfile::TempDir>,
}

/// A config for tests: port 0, temp data dir, fixed secret, no web dir.
pub fn test_config(dir: &std::path::Path, database_url: &str) -> Config {
    let mut c = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        web_dir: Some(dir.join("no-web")),
        ..Default::default()
    };
    c.secret.secret = Some(SECRET.into());
    c.secret.data_dir = dir.to_path_buf();
    c
}

impl TestServer {
    /// Starts a server on a fresh database of `backend`, with `tweak` applied to the config.
    pub async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let url = fresh_database_url(backend, dir.path()).await;
        let mut config = test_config(dir.path(), &url);
        tweak(&mut config);
        Self::start_with(config, dir).await
    }

    /// Starts a server with exactly this config (e.g. again on the same database).
    pub async fn start_with(config: Config, dir: std::sync::Arc<tempfile::TempDir>) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let listener = tokio::net::TcpListener::bind(config.bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(tandem::server::run(listener, config.clone(), async move {
            let _ = rx.await;
        }));
        // Ready once /healthz answers (the listener accepts before the
        // server has migrated its database).
        let url = format!("http://{addr}");
        let http = reqwest::Client::new();
        for _ in 0..500 {
            if http
                .get(format!("{url}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Self {
            addr,
            url,
            database_url: config.database_url.clone(),
            auth: Auth::new(config.secret.secret.as_deref().unwrap_or(SECRET).as_bytes()),
            config,
            shutdown: Some(tx),
            handle: Some(handle),
            dir,
        }
    }

    /// A token for `user` with optional pinned session roles.
    pub fn token(&self, user: &str, sessions: &[(&str, Role)]) -> String {
        let map: HashMap<String, Role> =
            sessions.iter().map(|(s, r)| (s.to_string(), *r)).collect();
        self.auth.issue(user, &user.to_uppercase(), map, 3600)
    }

    /// `GET /api/sessions/{sid}/text` as `token`'s user (the body, whatever the status).
    pub async fn get_text(&self, sid: &str, token: &str) -> String {
        get_body(&format!("{}/api/sessions/{sid}/text", self.url), token).await
    }

    /// Graceful shutdown (flushes every document); returns the server's result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.take().map(|t| t.send(()));
        self.handle
            .take()
            .unwrap()
            .await
            .expect("server task panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}
