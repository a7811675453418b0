//! The session API of PROTOCOL.md: sessions, participants and roles, the
//! document over HTTP, chat history, guest sign-in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::extract::{AuthUser, JsonBody, RawBody};
use super::{ApiError, HttpState};
use crate::auth::{User, row_or_public_role};
use crate::error::{Error, ErrorCode};
use crate::model::{ChatMessage, Role, SessionInfo, rfc3339, user_color, validate_session_id};
use crate::protocol::role_in;
use crate::store::{NewSession, SessionPatch};

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// `Session` of PROTOCOL.md.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionJson {
    id: String,
    title: String,
    language: String,
    owner_id: String,
    public: bool,
    public_role: Role,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    participants: Option<Vec<ParticipantJson>>,
}

/// `Participant` plus whether the user is connected now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ParticipantJson {
    id: String,
    name: String,
    role: Role,
    color: String,
    online: bool,
}

pub(super) fn session_json(
    s: SessionInfo,
    participants: Option<Vec<ParticipantJson>>,
) -> SessionJson {
    SessionJson {
        id: s.id,
        title: s.title,
        language: s.language,
        owner_id: s.owner_id,
        public: s.public,
        public_role: s.public_role,
        created_at: rfc3339(s.created_at),
        updated_at: rfc3339(s.updated_at),
        participants,
    }
}

/// The session and the caller's role, refusing below `min`.
pub(super) async fn authorize(
    st: &HttpState,
    user: &User,
    id: &str,
    min: Role,
) -> ApiResult<(SessionInfo, Role)> {
    validate_session_id(id)?;
    let session = st
        .app
        .manager
        .store()
        .get_session(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::SessionNotFound, "no such session"))?;
    let role = role_in(&st.app, user, &session).await?;
    if role < min {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("requires the {} role", min.as_str()),
        ));
    }
    Ok((session, role))
}

fn check_len(what: &str, v: &Option<String>, max: usize) -> ApiResult<()> {
    match v {
        Some(s) if s.chars().count() > max => Err(ApiError::new(
            ErrorCode::InvalidPayload,
            format!("{what} is longer than {max} characters"),
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionFields {
    title: Option<String>,
    language: Option<String>,
    public: Option<bool>,
    public_role: Option<Role>,
}

impl SessionFields {
    fn validate(&self) -> ApiResult<()> {
        check_len("title", &self.title, 200)?;
        check_len("language", &self.language, 64)?;
        if self.public_role == Some(Role::Owner) {
            return Err(ApiError::new(
                ErrorCode::InvalidPayload,
                "publicRole is viewer or editor",
            ));
        }
        Ok(())
    }
}

/// `POST /api/sessions`: the fields of [`SessionFields`] plus `mainPath`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSessionFields {
    title: Option<String>,
    language: Option<String>,
    public: Option<bool>,
    public_role: Option<Role>,
    /// The main file's path (default `main.<ext>` from the language).
    main_path: Option<String>,
}

impl NewSessionFields {
    fn validate(&self) -> ApiResult<()> {
        SessionFields {
            title: self.title.clone(),
            language: self.language.clone(),
            public: self.public,
            public_role: self.public_role,
        }
        .validate()?;
        if let Some(p) = &self.main_path {
            crate::model::validate_path(p).map_err(crate::store::StoreError::from)?;
        }
        Ok(())
    }
}

fn new_session_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[utoipa::path(
    post,
    path = "/api/sessions",
    tag = "sessions",
    summary = "Create a session; the caller becomes its owner",
    request_body(content = NewSessionFields),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new session; the caller's sockets get `session:added`", body = SessionJson),
        (status = 400, description = "INVALID_PAYLOAD: not the expected JSON, or title above 200 / language above 64 characters; INVALID_PATH: a bad mainPath", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    JsonBody(f): JsonBody<NewSessionFields>,
) -> ApiResult<Response> {
    f.validate()?;
    if user.guest_cap.is_some() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "guests cannot create sessions",
        ));
    }
    let store = st.app.manager.store();
    for _ in 0..5 {
        let created = store
            .create_session(&NewSession {
                id: new_session_id(),
                title: f.title.clone().unwrap_or_default(),
                language: f.language.clone().unwrap_or_else(|| "plaintext".into()),
                owner_id: user.id.clone(),
                owner_name: user.name.clone(),
                public: f.public.unwrap_or(false),
                public_role: f.public_role.unwrap_or(Role::Viewer),
                main_path: f.main_path.clone(),
            })
            .await?;
        if let Some(s) = created {
            tracing::info!(session_id = %s.id, owner = %user.id, "session created");
            let json = session_json(s, None);
            crate::protocol::events::session_added(&st.out, &user.id, &json, Role::Owner);
            return Ok((StatusCode::CREATED, Json(json)).into_response());
        }
    }
    Err(Error::internal().into())
}

#[utoipa::path(
    get,
    path = "/api/sessions",
    tag = "sessions",
    summary = "The sessions the caller participates in",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Sessions, without participants", body = Vec<SessionJson>),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Vec<SessionJson>>> {
    let sessions = st
        .app
        .manager
        .store()
        .list_sessions_for_user(&user.id)
        .await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| session_json(s, None))
            .collect(),
    ))
}

#[utoipa::path(
    get,
    path = "/api/sessions/{id}",
    tag = "sessions",
    summary = "A session with its participants (viewer+)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The session with participants", body = SessionJson),
        (status = 400, description = "INVALID_PAYLOAD or INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: the role does not allow it", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn get(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionJson>> {
    let (session, _) = authorize(&st, &user, &id, Role::Viewer).await?;
    let rows = st.app.manager.store().list_participants(&id).await?;
    let online: HashMap<String, crate::model::Participant> = st
        .app
        .manager
        .get_loaded(&id)
        .map(|d| {
            d.participants()
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect()
        })
        .unwrap_or_default();
    let mut out: Vec<ParticipantJson> = rows
        .into_iter()
        .filter_map(|r| {
            let live = online.get(&r.user_id);
            // An offline visitor of a public session (a row without a role)
            // holds nothing of their own: not listed.
            let role = live.map(|p| p.role).or_else(|| {
                r.role
                    .map(|row| row_or_public_role(&session, Some(row)).unwrap_or(row))
            })?;
            Some(ParticipantJson {
                color: user_color(&r.user_id),
                online: live.is_some(),
                name: live.map(|p| p.name.clone()).unwrap_or(r.user_name),
                id: r.user_id,
                role,
            })
        })
        .collect();
    for (id, p) in &online {
        if !out.iter().any(|o| &o.id == id) {
            out.push(ParticipantJson {
                id: id.clone(),
                name: p.name.clone(),
                role: p.role,
                color: p.color.clone(),
                online: true,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(session_json(session, Some(out))))
}

/// Role changes reach connected sockets at once, on every node.
pub(super) async fn apply_roles(
    st: &HttpState,
    session: &SessionInfo,
    only: Option<&str>,
) -> ApiResult<()> {
    crate::protocol::roles::roles_changed(&st.app, &st.io, session, only).await?;
    Ok(())
}

#[utoipa::path(
    patch,
    path = "/api/sessions/{id}",
    tag = "sessions",
    summary = "Change title, language, visibility or public role (owner)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$")),
    request_body(content = SessionFields),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated session; if anything changed, `session:updated` went to every participant (and `file:updated` for the main file if the language changed)", body = SessionJson),
        (status = 400, description = "INVALID_PAYLOAD or INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: the role does not allow it", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn update(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(f): JsonBody<SessionFields>,
) -> ApiResult<Json<SessionJson>> {
    f.validate()?;
    let (before, role) = authorize(&st, &user, &id, Role::Owner).await?;
    let patch = SessionPatch {
        title: f.title,
        language: f.language,
        public: f.public,
        public_role: f.public_role,
    };
    let session = st
        .app
        .manager
        .store()
        .update_session(&id, &patch)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::SessionNotFound, "no such session"))?;
    if patch.public.is_some() || patch.public_role.is_some() {
        apply_roles(&st, &session, None).await?;
    }
    let changed = (
        &session.title,
        &session.language,
        session.public,
        session.public_role,
    ) != (
        &before.title,
        &before.language,
        before.public,
        before.public_role,
    );
    if changed {
        super::files::announce_session_updated(&st, session.clone()).await?;
    }
    if session.language != before.language
        && let Some(main) = st
            .app
            .manager
            .store()
            .get_file(&id, crate::model::MAIN_FILE_ID)
            .await?
    {
        // The main file's language is the session's language.
        let o = super::files::origin(&user, role, &headers);
        crate::protocol::events::file_updated(&st.out, &id, &main, &o);
    }
    Ok(Json(session_json(session, None)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    role: Role,
}

#[utoipa::path(
    put,
    path = "/api/sessions/{id}/participants/{user_id}",
    tag = "sessions",
    summary = "Grant or change a user's role (owner)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$"), ("user_id" = String, Path, description = "The user id (`sub`) whose role changes")),
    request_body(content = RoleBody),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Role set"),
        (status = 400, description = "INVALID_PAYLOAD or INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: not the owner, or the owner's own role would change", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn put_participant(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path((id, target)): Path<(String, String)>,
    JsonBody(body): JsonBody<RoleBody>,
) -> ApiResult<StatusCode> {
    set_participant(st, user, id, target, Some(body.role)).await
}

#[utoipa::path(
    delete,
    path = "/api/sessions/{id}/participants/{user_id}",
    tag = "sessions",
    summary = "Remove a user's role (owner)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$"), ("user_id" = String, Path, description = "The user id (`sub`) whose role changes")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Role removed"),
        (status = 400, description = "INVALID_PAYLOAD or INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: not the owner, or the target is the session's owner", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete_participant(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path((id, target)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    set_participant(st, user, id, target, None).await
}

async fn set_participant(
    st: HttpState,
    user: User,
    id: String,
    target: String,
    role: Option<Role>,
) -> ApiResult<StatusCode> {
    let (session, _) = authorize(&st, &user, &id, Role::Owner).await?;
    if target.is_empty() || target.len() > 200 {
        return Err(ApiError::new(ErrorCode::InvalidPayload, "invalid user id"));
    }
    if target == session.owner_id && role != Some(Role::Owner) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the session's owner keeps the owner role",
        ));
    }
    let store = st.app.manager.store();
    let old = store.participant(&id, &target).await?;
    // A user who never joined is named by their id until they do.
    let name = old
        .as_ref()
        .map_or(target.as_str(), |p| p.user_name.as_str());
    store.set_role(&id, &target, name, role).await?;
    apply_roles(&st, &session, Some(&target)).await?;
    crate::protocol::events::role_transition(
        &st.out,
        &target,
        &id,
        &session_json(session.clone(), None),
        old.and_then(|p| p.role),
        role,
    );
    tracing::info!(session_id = %id, user_id = %target, role = ?role, by = %user.id, "role changed");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/sessions/{id}",
    tag = "sessions",
    summary = "Delete the session and all its data (owner)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; connected sockets get SESSION_NOT_FOUND (FILE_NOT_FOUND for open files), every participant's sockets `session:removed`"),
        (status = 400, description = "INVALID_PAYLOAD or INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: the role does not allow it", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    authorize(&st, &user, &id, Role::Owner).await?;
    let store = st.app.manager.store();
    // Who to tell and which documents to close, read before they are gone.
    let files = store.list_files(&id).await?;
    let users: Vec<String> = store
        .list_participants(&id)
        .await?
        .into_iter()
        .map(|p| p.user_id)
        .collect();
    if !store.delete_session(&id).await? {
        return Err(ApiError::new(ErrorCode::SessionNotFound, "no such session"));
    }
    for f in files.iter().filter(|f| f.id != crate::model::MAIN_FILE_ID) {
        if let Some(doc) = crate::model::DocId::for_file(&id, &f.id) {
            let doc = doc.to_string();
            let err = Error::new(ErrorCode::SessionNotFound, "the session was deleted")
                .with_session(&id)
                .with_doc(&doc);
            crate::protocol::document_deleted(&st.app, &st.io, &doc, &err);
        }
    }
    let err = Error::new(ErrorCode::SessionNotFound, "the session was deleted").with_session(&id);
    crate::protocol::document_deleted(&st.app, &st.io, &id, &err);
    crate::protocol::events::session_removed(&st.out, &users, &id);
    tracing::info!(session_id = %id, by = %user.id, "session deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/sessions/{id}/text",
    tag = "document",
    summary = "The current text (viewer+)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The text of the root Y.Text `monaco`", body = String, content_type = "text/plain"),
        (status = 400, description = "INVALID_PAYLOAD or INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: the role does not allow it", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn text(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let doc = open_for_viewer(&st, &user, &id).await?;
    let text = doc.text();
    // What this shows must survive a crash right after it was shown.
    st.app.manager.durable(&doc).await;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[utoipa::path(
    get,
    path = "/api/sessions/{id}/state",
    tag = "document",
    summary = "The whole document as one Yjs v1 update (viewer+)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Yjs v1 update", body = super::openapi::YjsUpdate, content_type = "application/octet-stream"),
        (status = 400, description = "INVALID_PAYLOAD or INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: the role does not allow it", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn state(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let doc = open_for_viewer(&st, &user, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        doc.encode_state()?,
    )
        .into_response())
}

/// The live document, for a caller with at least the viewer role.
async fn open_for_viewer(
    st: &HttpState,
    user: &User,
    id: &str,
) -> ApiResult<crate::core::DocLease> {
    authorize(st, user, id, Role::Viewer).await?;
    Ok(st.app.manager.open_fresh(id).await?)
}

#[utoipa::path(
    post,
    path = "/api/sessions/{id}/update",
    tag = "document",
    summary = "Apply a Yjs v1 update server-side and broadcast it (editor+)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$")),
    request_body(content = super::openapi::YjsUpdate, content_type = "application/octet-stream", description = "One Yjs v1 update"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Applied and durably logged", body = super::openapi::OkResponse),
        (status = 400, description = "INVALID_UPDATE (the body is not a Yjs v1 update) or INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: viewers cannot edit", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
        (status = 413, description = "UPDATE_TOO_LARGE or DOCUMENT_TOO_LARGE", body = super::openapi::ErrorBody),
    )
)]
pub async fn apply_update(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<Json<serde_json::Value>> {
    let len = body.len();
    let result = async {
        authorize(&st, &user, &id, Role::Editor).await?;
        let doc = st.app.manager.open(&id).await?;
        st.app.manager.limits().check_update_size(body.len())?;
        st.app.manager.submit(&doc, body, None, true).await?;
        Ok::<_, ApiError>(())
    }
    .await;
    crate::telemetry::update_received(len, result.as_ref().err().map(|e| &e.0));
    result.map(|()| Json(serde_json::json!({ "ok": true })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChatQuery {
    /// Only messages with an id below this one (paging back).
    before: Option<i64>,
    /// How many messages, 1 to 200 (default 50).
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/sessions/{id}/chat",
    tag = "chat",
    summary = "Chat history, oldest first (viewer+)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$"), ChatQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Up to `limit` messages with id < `before`, oldest first", body = Vec<ChatMessage>),
        (status = 400, description = "INVALID_PAYLOAD or INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: the role does not allow it", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn chat(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    q: Result<Query<ChatQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<ChatMessage>>> {
    let Query(q) = q.map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidPayload,
            "`before` and `limit` must be integers",
        )
    })?;
    authorize(&st, &user, &id, Role::Viewer).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    Ok(Json(
        st.app
            .manager
            .store()
            .list_chat(&id, q.before, limit)
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct GuestBody {
    /// Display name, 1 to 64 characters after trimming.
    name: String,
}

#[utoipa::path(
    post,
    path = "/api/auth/guest",
    tag = "auth",
    summary = "Sign in as a guest: a new user id and a 24-hour token",
    request_body(content = GuestBody),
    responses(
        (status = 200, description = "Token and user", body = super::openapi::GuestResponse),
        (status = 400, description = "INVALID_PAYLOAD: name empty after trimming or above 64 characters", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: guest sign-in is disabled (--guest-sign-in false)", body = super::openapi::ErrorBody),
        (status = 429, description = "RATE_LIMITED (Retry-After header)", body = super::openapi::ErrorBody),
    )
)]
/// Guest sign-in: a fresh user id and a token, rate limited per client IP.
pub async fn guest(
    State(st): State<HttpState>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    JsonBody(body): JsonBody<GuestBody>,
) -> ApiResult<Json<serde_json::Value>> {
    if !st.app.config.guest_sign_in {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "guest sign-in is disabled",
        ));
    }
    let ip = client_ip(
        &headers,
        peer.map(|Extension(ConnectInfo(a))| a),
        st.app.config.trust_proxy_headers,
    );
    if let Err(not_until) = st.guest_limiter.check_key(&ip) {
        metrics::counter!("tandem_guest_sign_ins_rate_limited_total").increment(1);
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return Err(Error::rate_limited_with(
            wait.as_millis().max(1) as u64,
            "too many guest sign-ins from this address",
        )
        .into());
    }
    if st.guest_limiter.len() > 100_000 {
        st.guest_limiter.retain_recent();
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::new(
            ErrorCode::InvalidPayload,
            "name must be 1 to 64 characters",
        ));
    }
    let id = format!("guest:{}", uuid::Uuid::new_v4().simple());
    let token = st.app.auth.issue(&id, name, HashMap::new(), 24 * 3600);
    Ok(Json(
        serde_json::json!({ "token": token, "user": { "id": id, "name": name } }),
    ))
}

/// The socket peer address, or the proxy's header when trusted. Of
/// `X-Forwarded-For` only the last entry counts: the one our proxy appended
/// (earlier entries come from the client and can be anything).
fn client_ip(headers: &HeaderMap, peer: Option<SocketAddr>, trust_proxy: bool) -> IpAddr {
    if trust_proxy {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .or_else(|| headers.get("x-real-ip").and_then(|v| v.to_str().ok()))
            .and_then(|v| v.trim().parse().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer.map(|p| p.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The per-IP limiter for guest sign-in: 5 at once, then 1 every 6 s.
pub fn guest_limiter() -> Arc<governor::DefaultKeyedRateLimiter<IpAddr>> {
    let quota = governor::Quota::per_minute(std::num::NonZeroU32::new(10).expect("non-zero"))
        .allow_burst(std::num::NonZeroU32::new(5).expect("non-zero"));
    Arc::new(governor::RateLimiter::keyed(quota))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_trusts_only_the_proxy_appended_address() {
        let peer = Some(SocketAddr::from(([10, 0, 0, 1], 4000)));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        h.insert("x-real-ip", "7.7.7.7".parse().unwrap());
        assert_eq!(client_ip(&h, peer, false), IpAddr::from([10, 0, 0, 1]));
        assert_eq!(client_ip(&h, peer, true), IpAddr::from([203, 0, 113, 9]));
        h.remove("x-forwarded-for");
        assert_eq!(client_ip(&h, peer, true), IpAddr::from([7, 7, 7, 7]));
        h.insert("x-real-ip", "garbage".parse().unwrap());
        assert_eq!(client_ip(&h, peer, true), IpAddr::from([10, 0, 0, 1]));
        assert_eq!(client_ip(&h, None, false), IpAddr::from([0, 0, 0, 0]));
    }
}
