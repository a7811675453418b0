//! `/healthz` (process up), `/readyz` (database reachable), `/metrics` (Prometheus).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::HttpState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(st): State<HttpState>) -> impl IntoResponse {
    match st.app.manager.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database unreachable".to_owned(),
            )
        }
    }
}

pub async fn metrics(State(st): State<HttpState>) -> impl IntoResponse {
    metrics::gauge!("tandem_documents_loaded").set(st.app.manager.loaded() as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        st.metrics.render(),
    )
}
