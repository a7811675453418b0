//! The web editor (`web/dist`, built by `make web`): its routes of
//! PROTOCOL.md (`/` and `/s/<session-id>` answer `index.html`), the hashed
//! assets under `/assets/` with year-long immutable caching, and
//! compression from the `.br`/`.gz` files the build writes beside each asset
//! (nothing is compressed per request). Owns no state and no API route.
//!
//! Where the bundle comes from: `--web-dir` if given; else the bundle built
//! into the binary (a release build embeds the `web/dist` that `make web`
//! left; a debug build reads that folder of the checkout at run time); else
//! `web/dist` under the working directory. Without any, `/` and `/s/…`
//! answer a page that says how to build it.

use std::path::Path;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// Hashed file names never change content: cache them for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `index.html` names the current hashes: revalidate it every time.
const REVALIDATE: &str = "no-cache";

/// The bundle built into the binary (empty when `web/dist` did not exist
/// at compile time).
#[derive(rust_embed::RustEmbed)]
#[folder = "web/dist"]
#[allow_missing = true]
struct Built;

/// The web app's routes: from `dir`, else the built-in bundle, else
/// `web/dist`, else the "not built" page.
pub fn router<S: Clone + Send + Sync + 'static>(dir: Option<&Path>) -> Router<S> {
    match dir {
        Some(dir) => from_dir(dir),
        None if Built::get("index.html").is_some() => {
            tracing::info!("web editor: the bundle built into the binary");
            built_in()
        }
        None => from_dir(Path::new("web/dist")),
    }
}

/// The built-in bundle's routes (the same as [`from_dir`]'s).
fn built_in<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let page = async |headers: HeaderMap| serve_built("index.html", &headers, REVALIDATE);
    Router::new()
        .route("/", get(page))
        .route("/s/{*rest}", get(page))
        .route(
            "/assets/{*path}",
            get(async |uri: Uri, headers: HeaderMap| {
                serve_built(uri.path().trim_start_matches('/'), &headers, IMMUTABLE)
            }),
        )
        .fallback(async |uri: Uri, headers: HeaderMap| {
            serve_built(uri.path().trim_start_matches('/'), &headers, REVALIDATE)
        })
}

/// One file of the built-in bundle, or its `.br`/`.gz` sibling when the
/// client accepts that encoding; `ETag` per representation, `304` on a
/// matching `If-None-Match`.
fn serve_built(path: &str, headers: &HeaderMap, cache: &'static str) -> Response {
    let safe = !path.is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    let Some(file) = safe.then(|| Built::get(path)).flatten() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let accepted = |coding: &str| {
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|item| {
                let mut parts = item.split(';').map(str::trim);
                parts.next() == Some(coding)
                    && parts.all(|p| !matches!(p, "q=0" | "q=0.0" | "q=0.00" | "q=0.000"))
            })
    };
    let (body, coding) = ["br", "gzip"]
        .into_iter()
        .filter(|c| accepted(c))
        .find_map(|c| {
            let ext = if c == "br" { "br" } else { "gz" };
            Built::get(&format!("{path}.{ext}")).map(|f| (f.data, Some(c)))
        })
        .unwrap_or((file.data, None));
    let hash = hex::encode(&file.metadata.sha256_hash()[..12]);
    let etag = format!(
        "\"{hash}{}\"",
        coding.map(|c| format!("-{c}")).unwrap_or_default()
    );
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
        h.insert(header::CONTENT_TYPE, mime);
    }
    if let Some(c) = coding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    (h, body.into_owned()).into_response()
}

/// The routes for the bundle in `dir`, or the "not built" page.
fn from_dir<S: Clone + Send + Sync + 'static>(dir: &Path) -> Router<S> {
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
