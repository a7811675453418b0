//! The HTTP API in process (`tower::ServiceExt::oneshot`), on every backend:
//! each route's success and each refusal (401, 403, 404, 400, 413, 429).

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use common::{backends, fresh_database_url, test_config};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tandem::auth::Auth;
use tandem::model::Role;
use tower::ServiceExt;
use yrs::{Doc, Text, Transact};

struct Api {
    router: Router,
    auth: Auth,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn new(b: common::Backend, tweak: impl FnOnce(&mut tandem::config::Config)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database_url(b, dir.path()).await;
        let mut config = test_config(dir.path(), &url);
        tweak(&mut config);
        let app = tandem::server::build_app(config).await.unwrap();
        Api {
            router: app.router,
            auth: Auth::new(common::SECRET.as_bytes()),
            _dir: dir,
        }
    }

    fn token(&self, user: &str) -> String {
        self.auth
            .issue(user, &user.to_uppercase(), Default::default(), 3600)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
        content_type: &str,
    ) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let mut req = req.body(body).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 5555))));
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, bytes)
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body
            .map(|b| Body::from(b.to_string()))
            .unwrap_or_else(Body::empty);
        let (s, bytes) = self
            .call(method, path, token, body, "application/json")
            .await;
        (s, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn insert(s: &str) -> Vec<u8> {
    let d = Doc::new();
    let t = d.get_or_insert_text("monaco");
    let mut txn = d.transact_mut();
    t.insert(&mut txn, 0, s);
    txn.encode_update_v1()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_every_refusal() {
    for b in backends() {
        let api = Api::new(b, |c| c.max_update_bytes = 64 << 10).await;
        let (owner, editor, viewer, stranger) = (
            api.token("owner"),
            api.token("ed"),
            api.token("vi"),
            api.token("x"),
        );

        // 401 without or with a bad token.
        assert_eq!(
            api.json(Method::GET, "/api/sessions", None, None).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (s, v) = api
            .json(Method::GET, "/api/sessions", Some("bad.token.here"), None)
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            "{b:?}"
        );

        // Create, list, get.
        let (s, created) = api
            .json(
                Method::POST,
                "/api/sessions",
                Some(&owner),
                Some(json!({ "title": "Pair", "language": "rust" })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b:?}: {created}");
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(
            (
                created["ownerId"].as_str(),
                created["public"].as_bool(),
                created["publicRole"].as_str()
            ),
            (Some("owner"), Some(false), Some("viewer"))
        );
        let (s, list) = api
            .json(Method::GET, "/api/sessions", Some(&owner), None)
            .await;
        assert_eq!((s, list.as_array().unwrap().len()), (StatusCode::OK, 1));
        assert!(
            api.json(Method::GET, "/api/sessions", Some(&stranger), None)
                .await
                .1
                .as_array()
                .unwrap()
                .is_empty()
        );
        let base = format!("/api/sessions/{id}");
        let (s, got) = api.json(Method::GET, &base, Some(&owner), None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(got["participants"][0]["role"], "owner");

        // 400: malformed JSON, wrong types, bad ids; 404: unknown session.
        let (s, bytes) = api
            .call(
                Method::POST,
                "/api/sessions",
                Some(&owner),
                Body::from("{not json"),
                "application/json",
            )
            .await;
        assert_eq!(
            (s, code(&serde_json::from_slice(&bytes).unwrap())),
            (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"),
            "{b:?}"
        );
        let (s, v) = api
            .json(
                Method::POST,
                "/api/sessions",
                Some(&owner),
                Some(json!({ "public": "yes" })),
            )
            .await;
        assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"));
        let (s, v) = api
            .json(Method::GET, "/api/sessions/bad%20id", Some(&owner), None)
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "INVALID_SESSION_ID")
        );
        let (s, v) = api
            .json(Method::GET, "/api/sessions/nope", Some(&owner), None)
            .await;
        assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "SESSION_NOT_FOUND"));

        // 403: strangers see nothing of a private session; only the owner manages it.
        let (s, v) = api.json(Method::GET, &base, Some(&stranger), None).await;
        assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
        for role in ["editor", "viewer"] {
            let who = if role == "editor" { "ed" } else { "vi" };
            let (s, _) = api
                .json(
                    Method::PUT,
                    &format!("{base}/participants/{who}"),
                    Some(&owner),
                    Some(json!({ "role": role })),
                )
                .await;
            assert_eq!(s, StatusCode::NO_CONTENT, "{b:?}");
        }
        let (s, v) = api
            .json(
                Method::PUT,
                &format!("{base}/participants/x"),
                Some(&owner),
                Some(json!({ "role": "god" })),
            )
            .await;
        assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"));
        assert_eq!(
            api.json(
                Method::PATCH,
                &base,
                Some(&editor),
                Some(json!({ "title": "mine" }))
            )
            .await
            .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            api.json(
                Method::PUT,
                &format!("{base}/participants/x"),
                Some(&editor),
                Some(json!({ "role": "owner" }))
            )
            .await
            .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            api.json(Method::DELETE, &base, Some(&editor), None).await.0,
            StatusCode::FORBIDDEN
        );
        let (s, v) = api
            .json(
                Method::PUT,
                &format!("{base}/participants/owner"),
                Some(&owner),
                Some(json!({ "role": "viewer" })),
            )
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::FORBIDDEN, "FORBIDDEN"),
            "the owner cannot be demoted"
        );

        // PATCH by the owner.
        let (s, v) = api
            .json(
                Method::PATCH,
                &base,
                Some(&owner),
                Some(json!({ "title": "Renamed", "public": true, "publicRole": "viewer" })),
            )
            .await;
        assert_eq!(
            (s, v["title"].as_str(), v["public"].as_bool()),
            (StatusCode::OK, Some("Renamed"), Some(true)),
            "{b:?}"
        );
        // Public now: a stranger may read, not write.
        assert_eq!(
            api.json(Method::GET, &base, Some(&stranger), None).await.0,
            StatusCode::OK
        );

        // The document over HTTP: editors write (durably), viewers read.
        let (s, bytes) = api
            .call(
                Method::POST,
                &format!("{base}/update"),
                Some(&editor),
                Body::from(insert("fn main() {}")),
                "application/octet-stream",
            )
            .await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{b:?}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let (s, _) = api
            .call(
                Method::POST,
                &format!("{base}/update"),
                Some(&viewer),
                Body::from(insert("x")),
                "application/octet-stream",
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, bytes) = api
            .call(
                Method::POST,
                &format!("{base}/update"),
                Some(&editor),
                Body::from(vec![0xff; 10]),
                "application/octet-stream",
            )
            .await;
        assert_eq!(
            (s, code(&serde_json::from_slice(&bytes).unwrap())),
            (StatusCode::BAD_REQUEST, "INVALID_UPDATE")
        );
        let (s, bytes) = api
            .call(
                Method::POST,
                &format!("{base}/update"),
                Some(&editor),
                Body::from(insert(&"y".repeat(100 << 10))),
                "application/octet-stream",
            )
            .await;
        assert_eq!(
            (s, code(&serde_json::from_slice(&bytes).unwrap())),
            (StatusCode::PAYLOAD_TOO_LARGE, "UPDATE_TOO_LARGE"),
            "{b:?}"
        );
        let (s, bytes) = api
            .call(
                Method::GET,
                &format!("{base}/text"),
                Some(&viewer),
                Body::empty(),
                "text/plain",
            )
            .await;
        assert_eq!(
            (s, String::from_utf8(bytes).unwrap()),
            (StatusCode::OK, "fn main() {}".to_owned())
        );
        let (s, state) = api
            .call(
                Method::GET,
                &format!("{base}/state"),
                Some(&stranger),
                Body::empty(),
                "",
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let d = Doc::new();
        let t = d.get_or_insert_text("monaco");
        d.transact_mut()
            .apply_update(yrs::updates::decoder::Decode::decode_v1(&state).unwrap())
            .unwrap();
        assert_eq!(
            yrs::GetString::get_string(&t, &d.transact()),
            "fn main() {}"
        );

        // Chat history (empty here; the socket tests fill it).
        let (s, v) = api
            .json(
                Method::GET,
                &format!("{base}/chat?limit=10"),
                Some(&viewer),
                None,
            )
            .await;
        assert_eq!((s, v.as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
        let (s, v) = api
            .json(
                Method::GET,
                &format!("{base}/chat?limit=abc"),
                Some(&viewer),
                None,
            )
            .await;
        assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"));

        // Remove a role; private again: the former editor is refused.
        assert_eq!(
            api.json(
                Method::DELETE,
                &format!("{base}/participants/ed"),
                Some(&owner),
                None
            )
            .await
            .0,
            StatusCode::NO_CONTENT
        );
        api.json(
            Method::PATCH,
            &base,
            Some(&owner),
            Some(json!({ "public": false })),
        )
        .await;
        assert_eq!(
            api.json(Method::GET, &base, Some(&editor), None).await.0,
            StatusCode::FORBIDDEN
        );

        // Delete.
        assert_eq!(
            api.json(Method::DELETE, &base, Some(&owner), None).await.0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            api.json(Method::GET, &base, Some(&owner), None).await.0,
            StatusCode::NOT_FOUND
        );

        // Health and readiness, metrics.
        assert_eq!(
            api.call(Method::GET, "/healthz", None, Body::empty(), "")
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            api.call(Method::GET, "/readyz", None, Body::empty(), "")
                .await
                .0,
            StatusCode::OK
        );
        let (s, m) = api
            .call(Method::GET, "/metrics", None, Body::empty(), "")
            .await;
        assert!(
            s == StatusCode::OK && String::from_utf8_lossy(&m).contains("tandem_"),
            "{b:?}"
        );
        let _ = Role::Owner;
    }
}

#[tokio::test]
async fn guest_sign_in_is_rate_limited_per_ip_and_can_be_disabled() {
    let api = Api::new(common::Backend::Sqlite, |_| {}).await;
    let (s, v) = api
        .json(
            Method::POST,
            "/api/auth/guest",
            None,
            Some(json!({ "name": "  Ada  " })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["user"]["name"], "Ada");
    let guest = v["token"].as_str().unwrap().to_owned();
    assert!(v["user"]["id"].as_str().unwrap().starts_with("guest:"));
    // The token works.
    assert_eq!(
        api.json(Method::GET, "/api/sessions", Some(&guest), None)
            .await
            .0,
        StatusCode::OK
    );
    let (s, v) = api
        .json(
            Method::POST,
            "/api/auth/guest",
            None,
            Some(json!({ "name": "" })),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"));
    // Burst of 5 per IP, then 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let (s, v) = api
            .json(
                Method::POST,
                "/api/auth/guest",
                None,
                Some(json!({ "name": "Bob" })),
            )
            .await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(v);
            break;
        }
    }
    let v = limited.expect("rate limited within 10 requests");
    assert_eq!(code(&v), "RATE_LIMITED");

    let off = Api::new(common::Backend::Sqlite, |c| c.guest_sign_in = false).await;
    let (s, v) = off
        .json(
            Method::POST,
            "/api/auth/guest",
            None,
            Some(json!({ "name": "Eve" })),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
}
