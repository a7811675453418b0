//! Invite links (PROTOCOL.md, "Invite links"): an owner mints a signed,
//! expiring invite for a role; any signed-in user who presents it gets that
//! role (never a lower one than they have). Invites are JWTs with
//! `aud = "tandem-invite"` ([`crate::auth::Auth::issue_invite`]); they are
//! not user tokens and user tokens are not invites.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::extract::{AuthUser, JsonBody};
use super::sessions::{ApiResult, SessionJson, apply_roles, authorize, session_json};
use super::{ApiError, HttpState};
use crate::error::ErrorCode;
use crate::model::{Role, rfc3339};
use crate::protocol::events;

/// Default lifetime of an invite: 7 days.
pub const DEFAULT_INVITE_SECS: i64 = 7 * 24 * 3600;
/// Longest lifetime of an invite: 30 days.
pub const MAX_INVITE_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InviteBody {
    /// `editor` or `viewer`.
    role: Role,
    /// Lifetime in seconds, 1 to 2592000 (30 days); default 604800 (7 days).
    expires_in_secs: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteJson {
    /// The invite token (a JWT with `aud = "tandem-invite"`).
    token: String,
    /// `<public-url>/s/<session-id>#invite=<token>`.
    url: String,
    /// RFC 3339.
    expires_at: String,
}

#[utoipa::path(
    post,
    path = "/api/sessions/{id}/invites",
    tag = "invites",
    summary = "Create an invite link granting editor or viewer (owner)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$")),
    request_body(content = InviteBody),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The invite", body = InviteJson),
        (status = 400, description = "INVALID_PAYLOAD (role owner, lifetime not 1 s to 30 days) or INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: only the owner invites", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<InviteBody>,
) -> ApiResult<Response> {
    if body.role == Role::Owner {
        return Err(ApiError::new(
            ErrorCode::InvalidPayload,
            "an invite grants editor or viewer",
        ));
    }
    let ttl = body.expires_in_secs.unwrap_or(DEFAULT_INVITE_SECS);
    if !(1..=MAX_INVITE_SECS).contains(&ttl) {
        return Err(ApiError::new(
            ErrorCode::InvalidPayload,
            format!("expiresInSecs is 1 to {MAX_INVITE_SECS} (30 days)"),
        ));
    }
    authorize(&st, &user, &id, Role::Owner).await?;
    let (token, exp) = st.app.auth.issue_invite(&id, body.role, ttl);
    let url = format!("{}/s/{id}#invite={token}", st.app.config.public_url());
    tracing::info!(session_id = %id, role = body.role.as_str(), by = %user.id, "invite created");
    Ok((
        StatusCode::CREATED,
        Json(InviteJson {
            token,
            url,
            expires_at: rfc3339(exp * 1000),
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// The invite token.
    token: String,
}

#[utoipa::path(
    post,
    path = "/api/invites/accept",
    tag = "invites",
    summary = "Accept an invite: the caller gets its role (never a lower one)",
    request_body(content = AcceptBody),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The session; a first grant sends the caller `session:added`, a raise `role:changed`", body = SessionJson),
        (status = 400, description = "INVALID_PAYLOAD", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing or invalid user token, or an expired, malformed or foreign invite (a user token is not an invite)", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND: the session was deleted", body = super::openapi::ErrorBody),
    )
)]
pub async fn accept(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    JsonBody(body): JsonBody<AcceptBody>,
) -> ApiResult<Json<SessionJson>> {
    let invite = st
        .app
        .auth
        .verify_invite(body.token.trim())
        .map_err(|_| ApiError::new(ErrorCode::Unauthorized, "invalid or expired invite"))?;
    let store = st.app.manager.store();
    let session = store
        .get_session(&invite.sid)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::SessionNotFound, "no such session"))?;
    let old = store
        .participant(&session.id, &user.id)
        .await?
        .and_then(|p| p.role);
    if old.is_some_and(|r| r >= invite.role) {
        // Never lowers a role; accepting again changes nothing.
        return Ok(Json(session_json(session, None)));
    }
    store
        .set_role(&session.id, &user.id, &user.name, Some(invite.role))
        .await?;
    apply_roles(&st, &session, Some(&user.id)).await?;
    tracing::info!(session_id = %session.id, user_id = %user.id, role = invite.role.as_str(), "invite accepted");
    events::role_transition(
        &st.out,
        &user.id,
        &session.id,
        &session_json(session.clone(), None),
        old,
        Some(invite.role),
    );
    Ok(Json(session_json(session, None)))
}
