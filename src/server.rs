//! Wiring: store, core, Socket.IO (both dialects) and HTTP on one listener.
//! [`run`] takes the listener and a shutdown future so tests can bind port 0.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, load_or_create_secret};
use crate::config::Config;
use crate::core::{DocManager, ManagerConfig};
use crate::http::{self, HttpState};
use crate::protocol::{self, AppState, Hub};

/// The process-wide Prometheus recorder (installed once, shared by every
/// server in the process, e.g. in tests).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = crate::telemetry::prometheus_builder().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::debug!("a metrics recorder was already installed");
            }
            crate::telemetry::describe();
            handle
        })
        .clone()
}

/// Accepts HTTP/1.1 connections (with upgrades) until `token` is cancelled,
/// then waits for open requests to finish. Hand-rolled instead of
/// `axum::serve` for two settings it does not expose:
/// - TCP_NODELAY on every accepted socket: small frames must leave at once
///   (without it p99.9 edit latency is ~30 ms instead of ~2 ms);
/// - an 8 KiB HTTP/1 read buffer (hyper's minimum): it stays allocated for
///   the life of an upgraded WebSocket connection, and hyper's default lets
///   it grow to 16 KiB per idle client (see BENCHMARKS.md).
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    token: CancellationToken,
    limits: ServeLimits,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;

    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().max_buf_size(8192);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let engine_closer = spawn_engine_closer(router.clone(), token.clone());
    let per_ip = PerIp::default();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = per_ip.acquire(peer.ip(), limits.max_connections_per_ip) else {
            metrics::counter!("tandem_connections_refused_total", "reason" => "per_ip_limit")
                .increment(1);
            tracing::debug!(%peer, "per-IP connection limit reached; connection closed");
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "TCP_NODELAY not set");
        }
        let (tcp, closer) = crate::net::Conn::new(tcp);
        // Counted until the stream closes: for a WebSocket that is long
        // after hyper's connection future, which ends at the upgrade.
        let tcp = tcp.hold(slot);
        let router = router.clone();
        let engine_closer = engine_closer.clone();
        let socketio_path = limits.socketio_path.clone();
        let svc = tower::service_fn(move |req: axum::extract::Request<hyper::body::Incoming>| {
            // Only engine.io keeps a request head; other requests need no copy.
            let is_socketio = is_socketio_request(req.uri().path(), &socketio_path);
            let mut req = if is_socketio { detach_head(req) } else { req };
            let upgrade_sid = is_socketio
                .then(|| upgraded_sid(&req).map(str::to_owned))
                .flatten();
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            req.extensions_mut().insert(closer.clone());
            req.extensions_mut().insert(engine_closer.clone());
            let (router, closer) = (router.clone(), closer.clone());
            async move {
                let resp = tower::ServiceExt::oneshot(router, req).await?;
                // Registered only once engine.io really upgraded this
                // session: a request merely naming another client's sid
                // must not take over that client's closer.
                if let Some(sid) = upgrade_sid
                    && resp.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS
                {
                    closer.register(&sid);
                }
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let conn = builder.serve_connection_with_upgrades(
            TokioIo::new(tcp),
            hyper_util::service::TowerToHyperService::new(svc),
        );
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; stopping anyway");
    }
}

/// Settings of the accept loop.
#[derive(Debug, Clone)]
struct ServeLimits {
    max_connections_per_ip: usize,
    /// Prefix of engine.io requests (`/socket.io/`).
    socketio_path: Arc<str>,
}

/// Open connections per client IP.
#[derive(Clone, Default)]
struct PerIp(Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

/// One counted connection; uncounted when dropped.
struct IpSlot {
    map: PerIp,
    ip: std::net::IpAddr,
}

impl PerIp {
    fn acquire(&self, ip: std::net::IpAddr, max: usize) -> Option<IpSlot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if max != 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            map: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.map.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// The task that closes long-polling engine.io sessions for slow-consumer
/// kicks (see [`crate::net::EngineCloser`]).
fn spawn_engine_closer(router: axum::Router, token: CancellationToken) -> crate::net::EngineCloser {
    let (closer, mut rx) = crate::net::EngineCloser::channel();
    tokio::spawn(async move {
        loop {
            let (path, sid) = tokio::select! {
                _ = token.cancelled() => break,
                next = rx.recv() => match next {
                    Some(n) => n,
                    None => break,
                },
            };
            let req = crate::net::close_request(&path, &sid);
            match tower::ServiceExt::oneshot(router.clone(), req).await {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!(%sid, "long-polling session closed");
                }
                Ok(r) => {
                    tracing::debug!(%sid, status = %r.status(), "long-polling session already gone")
                }
                Err(e) => match e {},
            }
        }
    });
    closer
}

/// Copies the request line and headers out of hyper's read buffer.
///
/// hyper parses them as zero-copy slices of the connection's 8 KiB read
/// buffer, and engine.io keeps a Socket.IO connection's request head for the
/// life of the socket, so every idle WebSocket client pinned a whole read
/// buffer (heaptrack: 8 KiB of its ~26 KiB). The copies take a few hundred
/// bytes and let the buffer go as soon as the connection is upgraded.
fn detach_head<B>(req: axum::http::Request<B>) -> axum::http::Request<B> {
    let (mut parts, body) = req.into_parts();
    let mut headers = axum::http::HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        // HeaderName::from_bytes copies custom names; standard ones are static.
        let name =
            axum::http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or(name.clone());
        let copied = axum::http::HeaderValue::from_bytes(value.as_bytes()).map(|mut v| {
            v.set_sensitive(value.is_sensitive());
            v
        });
        headers.append(name, copied.unwrap_or_else(|_| value.clone()));
    }
    parts.headers = headers;
    if let Ok(uri) = parts.uri.to_string().parse() {
        parts.uri = uri;
    }
    axum::http::Request::from_parts(parts, body)
}

/// Whether engine.io serves `path` when configured with `socketio_path`
/// (the path itself or below it, as engineioxide matches).
fn is_socketio_request(path: &str, socketio_path: &str) -> bool {
    path.strip_prefix(socketio_path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The engine.io session a WebSocket upgrade request names
/// (`?transport=websocket&sid=…` with `Upgrade: websocket`).
fn upgraded_sid<B>(req: &axum::http::Request<B>) -> Option<&str> {
    let upgrade = req
        .headers()
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return None;
    }
    let query = req.uri().query()?;
    let mut pairs = query.split('&').filter_map(|p| p.split_once('='));
    let mut sid = None;
    let mut websocket = false;
    for (k, v) in &mut pairs {
        match k {
            "sid" => sid = Some(v),
            "transport" => websocket = v == "websocket",
            _ => {}
        }
    }
    sid.filter(|_| websocket)
}

/// A wired application: the router (HTTP + Socket.IO) and its parts.
pub struct App {
    pub router: axum::Router,
    pub io: SocketIo,
    pub manager: Arc<DocManager>,
    pub config: Arc<Config>,
    /// The y-websocket dialect's connections (closed at shutdown).
    pub ywebsocket: Arc<protocol::ywebsocket::Rooms>,
    /// Cluster mode: the link to the other nodes and what handles their
    /// messages ([`run`] starts both).
    pub cluster: Option<(Arc<crate::cluster::Cluster>, Arc<crate::cluster::Receiver>)>,
}

/// Opens the store and wires core, both dialects and HTTP into one router.
/// No listener and no background tasks: [`run`] adds those.
pub async fn build_app(config: Config) -> anyhow::Result<App> {
    let secret = load_or_create_secret(config.secret.secret.as_deref(), &config.secret.data_dir)?;
    crate::cluster::check_config(&config)?;
    let store = crate::store::connect(&config.database_url).await?;
    tracing::info!(backend = store.backend(), "database ready");
    let manager = DocManager::new(store, ManagerConfig::from_config(&config));
    let cluster = crate::cluster::Cluster::connect(&config).await?;
    let config = Arc::new(config);
    let app = AppState::new(
        manager.clone(),
        Arc::new(Auth::new(&secret)),
        config.clone(),
    )
    .with_cluster(cluster.clone());

    // Binary attachments travel as separate frames: leave room above the
    // update limit so an oversized update is answered with UPDATE_TOO_LARGE
    // instead of a dropped connection.
    let frame_limit = config
        .max_update_bytes
        .saturating_mul(4)
        .saturating_add(64 << 10);
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(config.socket_buffer)
        // A client must connect to a namespace this soon after its
        // handshake, or its engine.io session (and memory) is released.
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
        // Each WebSocket keeps a read buffer of this size for its whole life
        // (4 KiB by default); updates and awareness frames are far smaller,
        // and a larger frame is still read whole. Measured: 45.7k -> 52.0k
        // idle clients per GiB at 5,000 clients (BENCHMARKS.md).
        .ws_read_buffer_size(1024)
        .max_payload(frame_limit as u64)
        .ws_max_message_size(frame_limit)
        .ws_max_frame_size(frame_limit)
        .req_path(config.socketio_path.clone())
        .with_state(app.clone())
        .build_layer();
    protocol::native::register(&io);
    protocol::ysocketio::register(&io);
    let hub: Arc<dyn crate::core::Fanout> = Hub::new(io.clone(), app.ywebsocket.clone());
    let cluster = match cluster {
        Some(c) => {
            manager.set_fanout(crate::cluster::ClusterFanout::new(
                hub.clone(),
                c.clone(),
                &manager,
            ));
            Some((
                c.clone(),
                crate::cluster::Receiver::new(c, app.clone(), io.clone(), hub),
            ))
        }
        None => {
            manager.set_fanout(hub);
            None
        }
    };

    let mut router = http::router(HttpState::new(app.clone(), io.clone(), metrics_handle()))
        .merge(protocol::ywebsocket::router(app.clone()))
        .merge(http::web::router(config.web_dir.as_deref()));
    router = router.layer(layer);
    // Outside the Socket.IO layer: long-polling requests get CORS headers too.
    if let Some(cors) = http::cors_layer(&config.cors_origins) {
        router = router.layer(cors);
    }
    let router = router.layer(tower_http::trace::TraceLayer::new_for_http());
    Ok(App {
        router,
        io,
        manager,
        config,
        ywebsocket: app.ywebsocket.clone(),
        cluster,
    })
}

/// Serves until `shutdown` resolves, then stops accepting, disconnects every
/// socket, drains the update log and flushes every dirty document.
pub async fn run(
    listener: TcpListener,
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The address actually bound (port 0 becomes the real port), for `public_url()`.
    let addr = listener.local_addr()?;
    config.bind = addr;
    let App {
        router,
        io,
        manager,
        config,
        ywebsocket,
        cluster,
    } = build_app(config).await?;
    let token = CancellationToken::new();
    if let Some((c, rx)) = &cluster {
        c.start(rx.clone(), token.clone());
    }
    let maintenance = tokio::spawn(
        manager
            .clone()
            .run_maintenance(Duration::from_millis(250), token.clone()),
    );
    {
        let token = token.clone();
        let io = io.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: closing connections");
            token.cancel();
            ywebsocket.close_all();
            io.close().await;
        });
    }

    tracing::info!("listening on http://{addr}");
    tracing::info!("open {} in a browser", config.public_url());
    let limits = ServeLimits {
        max_connections_per_ip: config.max_connections_per_ip,
        socketio_path: config.socketio_path.as_str().into(),
    };
    serve(listener, router, token.clone(), limits).await;
    let _ = maintenance.await;
    manager.shutdown().await;
    if let Some((c, _)) = &cluster {
        c.say_goodbye().await;
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_socketio_request;

    #[test]
    fn socketio_requests_follow_the_configured_path() {
        assert!(is_socketio_request("/socket.io/", "/socket.io"));
        assert!(is_socketio_request("/socket.io", "/socket.io"));
        assert!(!is_socketio_request("/socket.iox/", "/socket.io"));
        assert!(!is_socketio_request("/api/sessions", "/socket.io"));
        assert!(is_socketio_request("/api/socket/io/", "/api/socket/io"));
        assert!(!is_socketio_request("/socket.io/", "/api/socket/io"));
    }
}
