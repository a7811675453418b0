//! `GET /api/openapi.json` through the real server: a well-formed OpenAPI 3
//! document that lists every route of `src/http/mod.rs` with its method,
//! whose references all resolve, and whose authenticated operations name the
//! bearer scheme.

#[path = "support/code_scan.rs"]
mod code_scan;
mod common;

use std::collections::BTreeSet;

use common::{Backend, TestServer};
use serde_json::Value;
use utoipa::openapi::OpenApi;

/// Every `$ref` in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" {
                    out.push(v.as_str().expect("$ref is a string").to_owned());
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_document_is_valid_and_lists_every_route() {
    let srv = TestServer::start(Backend::Sqlite, |_| {}).await;
    let resp = reqwest::get(format!("{}/api/openapi.json", srv.url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let raw: Value = resp.json().await.unwrap();

    // Well-formed: OpenAPI 3, and it parses as utoipa's typed model.
    let version = raw["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert!(raw["info"]["title"].is_string() && raw["info"]["version"].is_string());
    let doc: OpenApi = serde_json::from_value(raw.clone()).expect("a valid OpenAPI document");

    // Every route with every method, and nothing the router lacks.
    let mut listed = BTreeSet::new();
    for (path, item) in raw["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete", "head", "options"]
                .contains(&method.as_str())
            {
                listed.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routes = code_scan::http_routes();
    let missing: Vec<_> = routes.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&routes).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "OpenAPI paths the router lacks: {extra:?}"
    );
    assert_eq!(
        doc.paths.paths.len(),
        raw["paths"].as_object().unwrap().len()
    );

    // Path parameters are declared, operations answer something, refs resolve.
    let template_param = regex::Regex::new(r"\{([^}]+)\}").unwrap();
    for (path, item) in raw["paths"].as_object().unwrap() {
        let declared: BTreeSet<String> = template_param
            .captures_iter(path)
            .map(|c| c[1].to_owned())
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let params: BTreeSet<String> = op["parameters"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(params, declared, "{method} {path}: path parameters");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}: no responses"
            );
            let authed = path.starts_with("/api/sessions") || path.starts_with("/api/invites");
            let has_security = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s.get("bearer").is_some()));
            assert_eq!(has_security, authed, "{method} {path}: bearer security");
        }
    }
    assert_eq!(
        raw["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut all = Vec::new();
    refs(&raw, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(
            raw["components"]["schemas"].get(name).is_some(),
            "$ref {r} does not resolve"
        );
    }

    // The error codes in the schema are exactly ErrorCode::ALL.
    let codes: BTreeSet<&str> = raw["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = tandem::error::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(codes, expected);

    srv.stop().await.unwrap();
}
