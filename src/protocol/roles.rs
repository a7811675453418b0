//! Live role changes: after the owner changes a session's visibility or
//! public role, or a participant's role, every connection whose token does
//! not pin a role gets its new role at once, and connections left without
//! access are removed (PROTOCOL.md, "Roles"). In cluster mode every node
//! does this for its own connections ([`roles_changed`] tells them).

use std::collections::HashMap;

use socketioxide::SocketIo;

use super::AppState;
use crate::auth::{guest_role, row_or_public_role};
use crate::model::{Role, SessionInfo};
use crate::store::StoreResult;

/// Re-applies roles on this node and, in cluster mode, on every other.
pub async fn roles_changed(
    st: &AppState,
    io: &SocketIo,
    session: &SessionInfo,
    only: Option<&str>,
) -> StoreResult<()> {
    if let Some(c) = &st.cluster {
        c.publish(
            crate::cluster::wire::Msg::Roles {
                session: session.id.clone(),
                only: only.map(str::to_owned),
            },
            &[],
        );
    }
    apply_roles(st, io, session, only).await
}

/// [`apply_roles`] for a session read from the store (another node
/// changed it); nothing if it is gone.
pub async fn reapply(
    st: &AppState,
    io: &SocketIo,
    session_id: &str,
    only: Option<&str>,
) -> StoreResult<()> {
    if st.manager.loaded_of_session(session_id).is_empty() {
        return Ok(());
    }
    match st.manager.store().get_session(session_id).await? {
        Some(session) => apply_roles(st, io, &session, only).await,
        None => Ok(()),
    }
}

/// Recomputes the role of every local connection whose token does not pin
/// one (guests included: theirs follows the public role); connections left
/// without access are removed from the session at once. `only`: one user.
pub async fn apply_roles(
    st: &AppState,
    io: &SocketIo,
    session: &SessionInfo,
    only: Option<&str>,
) -> StoreResult<()> {
    let mut rows: HashMap<String, Option<Role>> = HashMap::new();
    // The main document and every loaded file: each holds the roles of
    // the connections that have it open.
    for doc in st.manager.loaded_of_session(&session.id) {
        let mut revoked = Vec::new();
        let mut changed = false;
        for t in doc.role_targets() {
            if only.is_some_and(|u| u != t.user_id) {
                continue;
            }
            let role = match t.guest_cap {
                Some(cap) => guest_role(session, cap),
                None => {
                    if !rows.contains_key(&t.user_id) {
                        let row = st
                            .manager
                            .store()
                            .participant(&session.id, &t.user_id)
                            .await?
                            .and_then(|p| p.role);
                        rows.insert(t.user_id.clone(), row);
                    }
                    row_or_public_role(session, rows[&t.user_id])
                }
            };
            changed = true;
            if doc.set_conn_role(&t.conn, role) {
                revoked.push(t.conn);
            }
        }
        if !revoked.is_empty() {
            tracing::info!(doc_id = %doc.id, connections = revoked.len(), "access revoked; removing connections");
            super::revoke(st, io, &doc.id, &revoked);
        }
        if changed && let Some(f) = st.manager.fanout() {
            f.presence_changed(&doc.id);
        }
    }
    Ok(())
}
