//! Who is connecting and what they may do: handshake authentication
//! (PROTOCOL.md, "Authentication") and the caller's role in a session.

use crate::auth::User;
use crate::error::{Error, ErrorCode};
use crate::model::{Role, SessionInfo, validate_session_id};
use crate::store::NewSession;

use super::AppState;

/// Authenticates a handshake `auth` object. A token-less guest (with
/// `--anonymous`) gets a random user id: the socket id is visible to other
/// participants and must not name the guest (it would let them act as it).
pub fn authenticate(state: &AppState, auth: Option<&serde_json::Value>) -> Result<User, Error> {
    let unauthorized = |m: &str| Error::new(ErrorCode::Unauthorized, m);
    match auth.and_then(|a| a.get("token")).and_then(|t| t.as_str()) {
        Some(token) => state.auth.verify(token).map_err(|e| {
            tracing::debug!(error = %e, "token refused");
            unauthorized("invalid or expired token")
        }),
        None => match state.config.anonymous.cap() {
            Some(cap) => {
                let name = auth
                    .and_then(|a| a.get("name"))
                    .and_then(|n| n.as_str())
                    .map(|n| n.trim().chars().take(64).collect::<String>())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "Guest".to_owned());
                let id = format!("anon:{}", uuid::Uuid::new_v4().simple());
                Ok(User::guest(id, name, cap))
            }
            None => Err(unauthorized("missing token")),
        },
    }
}

/// Finds (or, with on-demand sessions, creates) a session and the caller's role.
pub async fn resolve_session(
    state: &AppState,
    user: &User,
    session_id: &str,
) -> Result<(SessionInfo, Role), Error> {
    validate_session_id(session_id)?;
    let store = state.manager.store();
    let session = match store.get_session(session_id).await? {
        Some(s) => s,
        None if state.config.on_demand_sessions => {
            let created = store
                .create_session(&NewSession {
                    id: session_id.to_owned(),
                    title: session_id.to_owned(),
                    language: "plaintext".to_owned(),
                    owner_id: user.id.clone(),
                    owner_name: user.name.clone(),
                    public: true,
                    public_role: Role::Editor,
                    main_path: None,
                })
                .await?;
            match created {
                Some(s) => s,
                // Someone else created it a moment ago.
                None => store
                    .get_session(session_id)
                    .await?
                    .ok_or_else(|| Error::new(ErrorCode::SessionNotFound, "no such session"))?,
            }
        }
        None => return Err(Error::new(ErrorCode::SessionNotFound, "no such session")),
    };
    let role = role_in(state, user, &session).await?;
    Ok((session, role))
}

/// The caller's role in an existing session, `FORBIDDEN` if none.
pub async fn role_in(state: &AppState, user: &User, session: &SessionInfo) -> Result<Role, Error> {
    let row_role = if user.guest_cap.is_some() {
        None
    } else {
        state
            .manager
            .store()
            .participant(&session.id, &user.id)
            .await?
            .and_then(|p| p.role)
    };
    user.role_in(session, row_role)
        .ok_or_else(|| Error::new(ErrorCode::Forbidden, "no role in this session"))
}
