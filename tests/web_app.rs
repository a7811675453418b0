//! The web app's routes (src/http/web.rs) in process: SPA pages answer
//! index.html and revalidate, hashed assets are immutable and served from the
//! build's precompressed files, the API keeps its JSON errors, and without a
//! bundle the pages say how to build it. A fake bundle in a temp dir; the real
//! one is exercised by the browser tests (web/e2e).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Backend, fresh_database_url, test_config};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn router(web: Option<&std::path::Path>) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).await;
    let mut config = test_config(dir.path(), &url);
    if let Some(w) = web {
        config.web_dir = w.to_path_buf();
    }
    (tandem::server::build_app(config).await.unwrap().router, dir)
}

async fn get(
    r: &axum::Router,
    path: &str,
    accept_encoding: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::get(path);
    if let Some(e) = accept_encoding {
        req = req.header(header::ACCEPT_ENCODING, e);
    }
    let resp = r
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, bytes)
}

fn fake_bundle() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("assets")).unwrap();
    std::fs::write(
        d.path().join("index.html"),
        "<!doctype html><title>Tandem app</title>",
    )
    .unwrap();
    std::fs::write(
        d.path().join("assets/app-abc123.js"),
        "console.log('plain')",
    )
    .unwrap();
    std::fs::write(d.path().join("assets/app-abc123.js.br"), "BROTLI-BYTES").unwrap();
    std::fs::write(d.path().join("assets/app-abc123.js.gz"), "GZIP-BYTES").unwrap();
    d
}

#[tokio::test]
async fn pages_assets_and_api_share_the_port() {
    let bundle = fake_bundle();
    let (r, _dir) = router(Some(bundle.path())).await;

    for page in ["/", "/s/abc_DEF-1", "/s/abc/"] {
        let (status, headers, body) = get(&r, page, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            String::from_utf8_lossy(&body),
            "<!doctype html><title>Tandem app</title>",
            "{page}"
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{page}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }

    let (status, headers, body) = get(&r, "/assets/app-abc123.js", Some("br, gzip")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_ENCODING], "br");
    assert_eq!(body, b"BROTLI-BYTES");
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    let (_, headers, body) = get(&r, "/assets/app-abc123.js", Some("gzip")).await;
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(body, b"GZIP-BYTES");
    let (_, headers, body) = get(&r, "/assets/app-abc123.js", None).await;
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(body, b"console.log('plain')");

    let (status, _, _) = get(&r, "/assets/missing-000.js", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Outside the bundle: no path escapes the web dir.
    let (status, _, _) = get(&r, "/assets/../../etc/passwd", None).await;
    assert_ne!(status, StatusCode::OK);

    // The API is unaffected: its routes and JSON errors win over the pages.
    let (status, _, body) = get(&r, "/api/sessions", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&body).contains("UNAUTHORIZED"));
    let (status, _, body) = get(&r, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn without_a_bundle_the_pages_say_how_to_build_it() {
    let (r, dir) = router(None).await;
    for page in ["/", "/s/abc"] {
        let (status, headers, body) = get(&r, page, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("make web"), "{body}");
        assert!(
            body.contains(&dir.path().join("no-web").display().to_string()),
            "{body}"
        );
    }
}
