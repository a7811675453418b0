//! The bundled web editor (`web/dist`, built by `make web`): its routes of
//! PROTOCOL.md (`/` and `/s/<session-id>` answer `index.html`), the hashed
//! assets under `/assets/` with year-long immutable caching, and
//! compression from the `.br`/`.gz` files the build writes beside each asset
//! (nothing is compressed per request). Without a bundle, `/` and `/s/…`
//! answer a page that says how to build it. Owns no state and no API route.

use std::path::Path;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// Hashed file names never change content: cache them for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `index.html` names the current hashes: revalidate it every time.
const REVALIDATE: &str = "no-cache";

/// The web app's routes for the bundle in `dir`, or the "not built" page.
pub fn router<S: Clone + Send + Sync + 'static>(dir: &Path) -> Router<S> {
    let index = dir.join("index.html");
    if !index.is_file() {
        tracing::warn!(
            dir = %dir.display(),
            "no web bundle: `/` explains how to build it (make web)"
        );
        let page = missing_page(dir);
        let handler = move || {
            let page = page.clone();
            async move { (StatusCode::SERVICE_UNAVAILABLE, Html(page)).into_response() }
        };
        return Router::new()
            .route("/", get(handler.clone()))
            .route("/s/{*rest}", get(handler));
    }
    let page = || {
        ServeFile::new(&index)
            .precompressed_br()
            .precompressed_gzip()
    };
    let assets = ServeDir::new(dir.join("assets"))
        .precompressed_br()
        .precompressed_gzip();
    let others = ServeDir::new(dir)
        .precompressed_br()
        .precompressed_gzip()
        .append_index_html_on_directories(false);
    let pages = Router::new()
        .route_service("/", page())
        .route_service("/s/{*rest}", page())
        .fallback_service(others)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static(REVALIDATE),
        ));
    Router::new()
        .nest_service(
            "/assets",
            tower::ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(IMMUTABLE),
                ))
                .service(assets),
        )
        .merge(pages)
}

fn missing_page(dir: &Path) -> String {
    let dir = html_escape(&dir.display().to_string());
    format!(
        "<!doctype html><meta charset=utf-8><title>Tandem: web editor not built</title>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;line-height:1.5\">\
         <h1>Tandem is running, but its web editor is not built</h1>\
         <p>The server looked for the bundle in <code>{dir}</code> and found no <code>index.html</code>.</p>\
         <p>Build it from the repository root, then restart the server:</p>\
         <pre>make web        # npm ci + vite build into web/dist\nmake run        # builds web/ and the server, then starts it</pre>\
         <p>Or point the server at a built bundle with <code>--web-dir</code> (<code>TANDEM_WEB_DIR</code>).\
         The HTTP API (<code>/api/…</code>) and Socket.IO work without it.</p>"
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
