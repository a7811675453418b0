//! The HTTP side of the one port: health, readiness, metrics, and the
//! session API of PROTOCOL.md. Handlers are thin: authenticate, authorize,
//! call the core or the store, encode.

mod error;
mod health;

use axum::Router;
use axum::routing::get;
use socketioxide::SocketIo;

pub use error::ApiError;

use crate::protocol::AppState;

/// State of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub io: SocketIo,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// All HTTP routes (the Socket.IO layer is added by the server).
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state)
}
