//! `/healthz` (process up), `/readyz` (database, and Redis in cluster mode, reachable), `/metrics` (Prometheus).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::HttpState;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "The process is up",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain"))
)]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "The database (and in cluster mode Redis) is reachable",
    responses(
        (status = 200, description = "`ready`", body = String, content_type = "text/plain"),
        (status = 503, description = "`database unreachable`, or in cluster mode `redis unreachable` / `redis subscription down`", body = String, content_type = "text/plain"),
    )
)]
pub async fn readyz(State(st): State<HttpState>) -> impl IntoResponse {
    if let Err(e) = st.app.manager.store().ping().await {
        tracing::warn!(error = %e, "readiness check failed");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unreachable".to_owned(),
        );
    }
    if let Some(c) = &st.app.cluster
        && let Err(why) = c.ready().await
    {
        tracing::warn!(reason = why, "readiness check failed");
        return (StatusCode::SERVICE_UNAVAILABLE, why.to_owned());
    }
    (StatusCode::OK, "ready".to_owned())
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics (bind the server privately or filter this path at the proxy)",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"))
)]
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
