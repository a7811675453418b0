//! The HTTP API in process (`tower::ServiceExt::oneshot`), on every backend:
//! each route's success and each refusal (401, 403, 404, 400, 413, 429).

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
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
    manager: std::sync::Arc<tandem::core::DocManager>,
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
            manager: app.manager,
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
        let (s, _, b) = self
            .send(method, path, token, body, content_type, PEER, &[])
            .await;
        (s, b)
    }

    /// One request from `peer` with extra headers; status, headers, body.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
        content_type: &str,
        peer: [u8; 4],
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(body).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 5555))));
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, headers, bytes)
    }

    /// Creates a session owned by `token`'s user; its id.
    async fn create(&self, token: &str, body: Value) -> String {
        let (s, v) = self
            .json(Method::POST, "/api/sessions", Some(token), Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    async fn guest(&self, peer: [u8; 4], headers: &[(&str, &str)]) -> (StatusCode, HeaderMap) {
        let (s, h, _) = self
            .send(
                Method::POST,
                "/api/auth/guest",
                None,
                Body::from(json!({ "name": "G" }).to_string()),
                "application/json",
                peer,
                headers,
            )
            .await;
        (s, h)
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

const PEER: [u8; 4] = [10, 0, 0, 7];

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

/// Every session route refuses a missing, bad or expired token (401), a
/// malformed id (400), an unknown session (404), and a caller below the
/// route's role (403); JSON bodies that do not parse are 400 INVALID_PAYLOAD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_each_way() {
    for b in backends() {
        let api = Api::new(b, |_| {}).await;
        let owner = api.token("owner");
        let expired = api.auth.issue("owner", "O", Default::default(), -10);
        let id = api.create(&owner, json!({})).await;
        for (who, role) in [("ed", "editor"), ("vi", "viewer")] {
            let (s, _) = api
                .json(
                    Method::PUT,
                    &format!("/api/sessions/{id}/participants/{who}"),
                    Some(&owner),
                    Some(json!({ "role": role })),
                )
                .await;
            assert_eq!(s, StatusCode::NO_CONTENT);
        }
        let (viewer, stranger) = (api.token("vi"), api.token("x"));
        let role_body = || Body::from(json!({ "role": "viewer" }).to_string());
        let patch_body = || Body::from(json!({ "title": "t" }).to_string());
        let update = || Body::from(insert("x"));
        // (method, path under the session, body, the lowest role allowed)
        type MakeBody<'a> = &'a dyn Fn() -> Body;
        let empty = || Body::empty();
        let routes: Vec<(Method, &str, MakeBody, &str)> = vec![
            (Method::GET, "", &empty, "viewer"),
            (Method::GET, "/text", &empty, "viewer"),
            (Method::GET, "/state", &empty, "viewer"),
            (Method::GET, "/chat", &empty, "viewer"),
            (Method::POST, "/update", &update, "editor"),
            (Method::PATCH, "", &patch_body, "owner"),
            (Method::PUT, "/participants/z", &role_body, "owner"),
            (Method::DELETE, "/participants/z", &empty, "owner"),
            (Method::DELETE, "", &empty, "owner"),
        ];
        for (m, suffix, body, min) in &routes {
            let at = |sid: &str| format!("/api/sessions/{sid}{suffix}");
            let ct = "application/json";
            let what = format!("{b:?} {m} {suffix}");
            // One request, refused with `status` and `code`.
            let refused = |sid: String,
                           token: Option<String>,
                           status,
                           want: &'static str,
                           why: &'static str| {
                let (api, what, m) = (&api, &what, m.clone());
                async move {
                    let (s, bytes) = api.call(m, &sid, token.as_deref(), body(), ct).await;
                    let got =
                        code(&serde_json::from_slice(&bytes).unwrap_or(Value::Null)).to_owned();
                    assert_eq!((s, got.as_str()), (status, want), "{what}{why}");
                }
            };
            for t in [None, Some("nope"), Some(expired.as_str())] {
                refused(
                    at(&id),
                    t.map(str::to_owned),
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "",
                )
                .await;
            }
            let owner_t = Some(owner.clone());
            refused(
                at("no.such"),
                owner_t.clone(),
                StatusCode::BAD_REQUEST,
                "INVALID_SESSION_ID",
                "",
            )
            .await;
            refused(
                at("unknown"),
                owner_t,
                StatusCode::NOT_FOUND,
                "SESSION_NOT_FOUND",
                "",
            )
            .await;
            refused(
                at(&id),
                Some(stranger.clone()),
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                ": private session, no role",
            )
            .await;
            if *min != "viewer" {
                refused(
                    at(&id),
                    Some(viewer.clone()),
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    ": viewer",
                )
                .await;
            }
            if *min == "owner" {
                let (s, _) = api
                    .call(m.clone(), &at(&id), Some(&api.token("ed")), body(), ct)
                    .await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{what}: editor");
            }
        }
        for t in [None, Some("nope"), Some(expired.as_str())] {
            assert_eq!(
                api.json(Method::GET, "/api/sessions", t, None).await.0,
                StatusCode::UNAUTHORIZED
            );
            assert_eq!(
                api.json(Method::POST, "/api/sessions", t, Some(json!({})))
                    .await
                    .0,
                StatusCode::UNAUTHORIZED
            );
        }
        // Bodies that are not the expected JSON, on every JSON route.
        for (m, path) in [
            (Method::POST, "/api/sessions".to_owned()),
            (Method::PATCH, format!("/api/sessions/{id}")),
            (Method::PUT, format!("/api/sessions/{id}/participants/z")),
            (Method::POST, "/api/auth/guest".to_owned()),
        ] {
            for bad in ["{oops", "[1,2]", r#"{"role":"god","title":7,"name":3}"#] {
                let (s, bytes) = api
                    .call(
                        m.clone(),
                        &path,
                        Some(&owner),
                        Body::from(bad),
                        "application/json",
                    )
                    .await;
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                assert_eq!(
                    (s, code(&v)),
                    (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"),
                    "{b:?} {m} {path} {bad}"
                );
            }
        }
        // Nothing above changed the session.
        let (s, v) = api
            .json(
                Method::GET,
                &format!("/api/sessions/{id}"),
                Some(&owner),
                None,
            )
            .await;
        assert_eq!((s, v["title"].as_str()), (StatusCode::OK, Some("")));
    }
}

/// Chat history pages back (newest last, default 50, at most 200);
/// participants carry role and colour; deleting a session removes its
/// document, chat and participant rows and unloads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_pages_participants_and_deletion_removes_everything() {
    for b in backends() {
        let api = Api::new(b, |_| {}).await;
        let owner = api.token("owner");
        let id = api.create(&owner, json!({ "title": "Chat" })).await;
        let store = api.manager.store().clone();
        for i in 0..205 {
            store
                .insert_chat(&id, "owner", "OWNER", &format!("m{i}"))
                .await
                .unwrap();
        }
        let chat = |q: String| {
            let (api, owner, id) = (&api, &owner, &id);
            async move {
                let (s, v) = api
                    .json(
                        Method::GET,
                        &format!("/api/sessions/{id}/chat{q}"),
                        Some(owner),
                        None,
                    )
                    .await;
                assert_eq!(s, StatusCode::OK, "{v}");
                v.as_array().unwrap().clone()
            }
        };
        let contents = |v: &[Value]| -> Vec<String> {
            v.iter()
                .map(|m| m["content"].as_str().unwrap().to_owned())
                .collect()
        };
        let page = chat(String::new()).await;
        assert_eq!(page.len(), 50, "{b:?}");
        assert_eq!(
            (contents(&page)[0].as_str(), contents(&page)[49].as_str()),
            ("m155", "m204"),
            "newest last"
        );
        assert_eq!(page[0]["sessionId"], id.as_str());
        assert!(
            page[0]["createdAt"]
                .as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
        );
        let before = page[0]["id"].as_i64().unwrap();
        let older = chat(format!("?before={before}&limit=10")).await;
        assert_eq!(
            contents(&older),
            (145..155).map(|i| format!("m{i}")).collect::<Vec<_>>()
        );
        assert_eq!(chat("?limit=1000".into()).await.len(), 200, "capped");

        // Participants: every row with a role, with colour; connected or not.
        api.json(
            Method::PUT,
            &format!("/api/sessions/{id}/participants/ed"),
            Some(&owner),
            Some(json!({ "role": "editor" })),
        )
        .await;
        let (_, got) = api
            .json(
                Method::GET,
                &format!("/api/sessions/{id}"),
                Some(&owner),
                None,
            )
            .await;
        let parts = got["participants"].as_array().unwrap();
        let roles: Vec<(&str, &str)> = parts
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["role"].as_str().unwrap()))
            .collect();
        assert_eq!(roles, [("ed", "editor"), ("owner", "owner")], "{b:?}");
        for p in parts {
            assert_eq!(
                p["color"].as_str().unwrap(),
                tandem::model::user_color(p["id"].as_str().unwrap())
            );
            assert_eq!(p["online"], false);
        }
        for k in [
            "id",
            "title",
            "language",
            "ownerId",
            "public",
            "publicRole",
            "createdAt",
            "updatedAt",
        ] {
            assert!(!got[k].is_null(), "Session.{k} missing: {got}");
        }

        // Load the document, then delete the session.
        let (s, _) = api
            .call(
                Method::POST,
                &format!("/api/sessions/{id}/update"),
                Some(&owner),
                Body::from(insert("gone soon")),
                "application/octet-stream",
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert!(api.manager.get_loaded(&id).is_some());
        assert_eq!(
            api.json(
                Method::DELETE,
                &format!("/api/sessions/{id}"),
                Some(&owner),
                None
            )
            .await
            .0,
            StatusCode::NO_CONTENT
        );
        assert!(api.manager.get_loaded(&id).is_none(), "unloaded");
        assert!(store.get_session(&id).await.unwrap().is_none());
        assert!(store.load_document(&id).await.unwrap().is_none());
        assert!(store.list_chat(&id, None, 500).await.unwrap().is_empty());
        assert!(store.list_participants(&id).await.unwrap().is_empty());
        let (s, v) = api
            .json(
                Method::GET,
                &format!("/api/sessions/{id}/text"),
                Some(&owner),
                None,
            )
            .await;
        assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "SESSION_NOT_FOUND"));
        assert!(
            api.json(Method::GET, "/api/sessions", Some(&owner), None)
                .await
                .1
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
}

/// 429 carries Retry-After; a spoofed X-Forwarded-For does not reset the
/// limit unless proxy headers are trusted, and then only the entry the proxy
/// appended (the last one) counts.
#[tokio::test]
async fn guest_rate_limit_keys_on_the_right_address() {
    let api = Api::new(common::Backend::Sqlite, |_| {}).await;
    let peer = [192, 0, 2, 1];
    let mut limited = None;
    for i in 0..10 {
        let xff = format!("198.51.100.{i}");
        let (s, h) = api.guest(peer, &[("x-forwarded-for", &xff)]).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(h);
            break;
        }
        assert_eq!(s, StatusCode::OK);
    }
    let h = limited.expect("untrusted X-Forwarded-For must not reset the limit");
    let secs: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    // Another peer has its own budget.
    assert_eq!(api.guest([192, 0, 2, 2], &[]).await.0, StatusCode::OK);

    let proxied = Api::new(common::Backend::Sqlite, |c| c.trust_proxy_headers = true).await;
    let proxy = [10, 1, 1, 1];
    for i in 0..10 {
        let xff = format!("198.51.100.{i}");
        assert_eq!(
            proxied.guest(proxy, &[("x-forwarded-for", &xff)]).await.0,
            StatusCode::OK,
            "distinct clients behind one proxy"
        );
    }
    let mut limited = false;
    for i in 0..10 {
        let xff = format!("6.6.6.{i}, 203.0.113.5");
        if proxied.guest(proxy, &[("x-forwarded-for", &xff)]).await.0
            == StatusCode::TOO_MANY_REQUESTS
        {
            limited = true;
            break;
        }
    }
    assert!(
        limited,
        "client-chosen leading entries must not reset the limit"
    );
}
