//! A connection's membership of one document: the [`DocLease`] that keeps it
//! loaded plus the connection's presence (participants, awareness, typing).
//! Both dialects hold documents only through a [`Presence`], and dropping it
//! is the only way out: a clean leave, a disconnect, a revocation, or a socket
//! that went away before its connect or join completed (whose state is
//! dropped with the socket) all remove the presence and broadcast it, so no
//! participant stays listed without a connection behind it.

use std::sync::Arc;

use crate::auth::User;
use crate::core::DocLease;
use crate::model::Role;

use super::AppState;

/// Membership of connection `conn` in a leased document; leaves on drop.
pub struct Presence {
    st: AppState,
    doc: DocLease,
    conn: String,
    user: Arc<User>,
    /// The session's main document: the one whose presence is the
    /// session's participant list (`user-joined`/`user-left`, the
    /// participants row). A file document's presence only carries awareness
    /// and the connection's role there.
    main: bool,
}

impl Presence {
    /// Registers `conn` with `role` in the document: `user-joined` for the
    /// user's first connection, the participants row.
    pub fn join(st: &AppState, doc: DocLease, conn: &str, user: Arc<User>, role: Role) -> Self {
        let outcome = doc.join(conn, &user, role);
        let main = crate::model::DocId::is_main_id(&doc.id);
        if main {
            if let Some(f) = st.manager.fanout() {
                if outcome.first_for_user {
                    f.user_joined(&doc.id, &outcome.participant, Some(conn));
                }
                f.presence_changed(&doc.id);
            }
            if outcome.first_for_user {
                record_presence(st, &doc.id, &user, true);
            }
        }
        Self {
            st: st.clone(),
            doc,
            conn: conn.to_owned(),
            user,
            main,
        }
    }

    /// A re-join of the same connection: the role is refreshed, nothing else.
    pub fn refresh(&self, role: Role) {
        self.doc.join(&self.conn, &self.user, role);
        if self.main
            && let Some(f) = self.st.manager.fanout()
        {
            f.presence_changed(&self.doc.id);
        }
    }

    /// The connection's current role in this document.
    pub fn role(&self) -> Option<Role> {
        self.doc.role_of(&self.conn)
    }

    /// The lease (another one, for work that outlives this borrow).
    pub fn lease(&self) -> &DocLease {
        &self.doc
    }
}

impl std::ops::Deref for Presence {
    type Target = DocLease;
    fn deref(&self) -> &DocLease {
        &self.doc
    }
}

impl Drop for Presence {
    /// Removes the connection: its awareness states (removal broadcast at
    /// once), typing flag, `user-left` for the user's last connection.
    fn drop(&mut self) {
        let out = self.doc.leave(&self.conn);
        let Some(f) = self.st.manager.fanout() else {
            return;
        };
        if let Some(removal) = &out.awareness_removal {
            f.awareness(&self.doc.id, removal, Some(&self.conn));
        }
        if !self.main {
            return;
        }
        if out.stopped_typing {
            f.typing_stopped(&self.doc.id, &self.user.id);
        }
        if let Some(user_id) = &out.user_left {
            f.user_left(&self.doc.id, user_id);
            record_presence(&self.st, &self.doc.id, &self.user, false);
        }
        f.presence_changed(&self.doc.id);
    }
}

/// Records a join or leave in the participants table without delaying the caller.
fn record_presence(state: &AppState, session_id: &str, user: &User, joined: bool) {
    if user.guest_cap.is_some() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let store = state.manager.store().clone();
    let (sid, uid, name) = (session_id.to_owned(), user.id.clone(), user.name.clone());
    rt.spawn(async move {
        if let Err(e) = store.record_presence(&sid, &uid, &name, joined).await {
            tracing::warn!(session_id = %sid, error = %e, "recording presence failed");
        }
    });
}
