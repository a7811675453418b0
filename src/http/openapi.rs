//! The HTTP API as an OpenAPI 3 document, generated from the handlers'
//! `#[utoipa::path]` attributes and served at `GET /api/openapi.json`.
//! docs/PROTOCOL.md is the prose reference; this is the machine-readable one.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{files, health, invites, sessions};
use crate::error::ErrorCode;

/// Every HTTP route of [`super::router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tandem HTTP API",
        description = "Sessions, roles, the document over HTTP, workspace files, invites, chat \
                       history, guest sign-in, health and metrics. The real-time protocol (Socket.IO) and every error \
                       code are described in docs/PROTOCOL.md."
    ),
    paths(
        sessions::guest,
        sessions::create,
        sessions::list,
        sessions::get,
        sessions::update,
        sessions::delete,
        sessions::put_participant,
        sessions::delete_participant,
        sessions::text,
        sessions::state,
        sessions::apply_update,
        sessions::chat,
        files::list,
        files::create,
        files::update,
        files::delete,
        files::get_content,
        files::put_content,
        files::archive,
        invites::create,
        invites::accept,
        health::healthz,
        health::readyz,
        health::metrics,
        openapi_json,
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode, OkResponse, GuestResponse, GuestUser)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Guest sign-in"),
        (name = "sessions", description = "Sessions, participants and roles"),
        (name = "document", description = "The session's document over HTTP"),
        (name = "files", description = "Workspace files: list, create, rename/move, delete, content, zip archive"),
        (name = "invites", description = "Invite links"),
        (name = "chat", description = "Chat history"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme (`Authorization: Bearer <jwt>`).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 JWT signed with the server secret (claims sub, name, exp, \
                         optional sessions), e.g. from POST /api/auth/guest or `tandem token`",
                    ))
                    .build(),
            ),
        );
    }
}

/// Error responses: `{ error: { code, message } }`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// `{ ok: true }`.
#[derive(Serialize, ToSchema)]
pub struct OkResponse {
    pub ok: bool,
}

/// The reply of `POST /api/auth/guest`.
#[derive(Serialize, ToSchema)]
pub struct GuestResponse {
    /// A user token valid for 24 hours.
    pub token: String,
    pub user: GuestUser,
}

#[derive(Serialize, ToSchema)]
pub struct GuestUser {
    /// `guest:<32 hex digits>`, new for every sign-in.
    pub id: String,
    pub name: String,
}

/// Raw bytes: a Yjs v1 update.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct YjsUpdate(pub Vec<u8>);

/// Raw bytes: a zip archive.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ZipArchive(pub Vec<u8>);

/// The OpenAPI document, rendered once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json"))
)]
pub async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}
