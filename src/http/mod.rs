//! The HTTP side of the one port: health, readiness, metrics, and the
//! session, workspace-file and invite API of PROTOCOL.md. Handlers are thin: authenticate, authorize,
//! call the core or the store, encode.

mod error;
mod extract;
pub mod files;
mod health;
pub mod invites;
pub mod openapi;
pub mod sessions;
pub mod web;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post, put};
use socketioxide::SocketIo;

pub use error::ApiError;

use crate::protocol::AppState;

/// State of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub io: SocketIo,
    /// Room events (file and per-user events), every node in cluster mode.
    pub out: crate::protocol::Broadcast,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Guest sign-ins per client IP.
    pub guest_limiter: Arc<governor::DefaultKeyedRateLimiter<IpAddr>>,
}

impl HttpState {
    pub fn new(
        app: AppState,
        io: SocketIo,
        metrics: metrics_exporter_prometheus::PrometheusHandle,
    ) -> Self {
        Self {
            out: crate::protocol::Broadcast::new(&app, &io),
            app,
            io,
            metrics,
            guest_limiter: sessions::guest_limiter(),
        }
    }
}

/// CORS for browser pages of other origins (`--cors-origin`): `None` when no
/// origin is allowed, so responses carry no CORS headers at all and browsers
/// keep the same-origin rule. Tokens travel in `Authorization`, never in
/// cookies, so credentials are not allowed.
pub fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static(files::SOCKET_ID_HEADER),
            ])
            .expose_headers([header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// All HTTP routes (the Socket.IO layer is added by the server).
pub fn router(state: HttpState) -> Router {
    // Bodies are small JSON or one Yjs update.
    let body_limit = state.app.config.max_update_bytes.max(64 << 10);
    Router::new()
        .route("/api/auth/guest", post(sessions::guest))
        .route("/api/sessions", post(sessions::create).get(sessions::list))
        .route(
            "/api/sessions/{id}",
            get(sessions::get)
                .patch(sessions::update)
                .delete(sessions::delete),
        )
        .route(
            "/api/sessions/{id}/participants/{user_id}",
            put(sessions::put_participant).delete(sessions::delete_participant),
        )
        .route("/api/sessions/{id}/text", get(sessions::text))
        .route("/api/sessions/{id}/state", get(sessions::state))
        .route("/api/sessions/{id}/update", post(sessions::apply_update))
        .route("/api/sessions/{id}/chat", get(sessions::chat))
        .route(
            "/api/sessions/{id}/files",
            get(files::list).post(files::create),
        )
        .route(
            "/api/sessions/{id}/files/{file_id}",
            patch(files::update).delete(files::delete),
        )
        .route(
            "/api/sessions/{id}/files/{file_id}/content",
            get(files::get_content).put(files::put_content),
        )
        .route("/api/sessions/{id}/archive", get(files::archive))
        .route("/api/sessions/{id}/invites", post(invites::create))
        .route("/api/invites/accept", post(invites::accept))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
