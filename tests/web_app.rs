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

/// The app with `--web-dir` as given (`None`: the tests' empty `no-web`).
async fn router(web: Option<&std::path::Path>) -> (axum::Router, tempfile::TempDir) {
    router_with(|c| {
        if let Some(w) = web {
            c.web_dir = Some(w.to_path_buf());
        }
    })
    .await
}

async fn router_with(
    tweak: impl FnOnce(&mut tandem::config::Config),
) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).await;
    let mut config = test_config(dir.path(), &url);
    tweak(&mut config);
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

/// No `--web-dir`: the bundle built into the binary (a debug build reads the
/// checkout's `web/dist`, which `make test` builds first; a release build
/// carries the same files inside): pages, assets with their precompressed
/// forms, ETags, and no way out of the bundle.
#[tokio::test]
async fn without_a_web_dir_the_built_in_bundle_is_served() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/dist");
    if !dist.join("index.html").is_file() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true but web/dist is not built: `make test` builds it first"
        );
        eprintln!(
            "\n*** SKIPPED: built-in web bundle test (web/dist not built; run `make web`) ***\n"
        );
        return;
    }
    let (r, _dir) = router_with(|c| c.web_dir = None).await;
    let index = std::fs::read(dist.join("index.html")).unwrap();
    for page in ["/", "/s/abc_DEF-1"] {
        let (status, headers, body) = get(&r, page, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(body, index, "{page}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }

    // A script the build also wrote as .br and .gz.
    let script = std::fs::read_dir(dist.join("assets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".js") && dist.join("assets").join(format!("{n}.br")).is_file())
        .expect("a precompressed script in web/dist/assets");
    let path = format!("/assets/{script}");
    let on_disk =
        |ext: &str| std::fs::read(dist.join("assets").join(format!("{script}{ext}"))).unwrap();
    let (status, headers, body) = get(&r, &path, Some("gzip, br")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_ENCODING], "br");
    assert_eq!(body, on_disk(".br"));
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(headers[header::VARY], "accept-encoding");
    let (_, headers, body) = get(&r, &path, Some("br;q=0, gzip")).await;
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(body, on_disk(".gz"));
    let (_, headers, body) = get(&r, &path, None).await;
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(body, on_disk(""));

    // Revalidation: the ETag of that representation answers 304.
    let etag = headers[header::ETAG].clone();
    let req = Request::get(&path)
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .unwrap();
    let resp = r.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    for missing in [
        "/assets/missing-000.js",
        "/assets/../../Cargo.toml",
        "/assets/..%2f..%2fCargo.toml",
    ] {
        let (status, _, _) = get(&r, missing, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }
    let (status, _, body) = get(&r, "/api/sessions", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&body).contains("UNAUTHORIZED"));
}
