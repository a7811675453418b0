//! Events the HTTP API sends to native sockets (PROTOCOL.md, "Workspaces:
//! files in a session" and "Per-user events"):
//! - file events, to every socket that joined the session
//!   ([`room`]`(session_id)`), each carrying who did it ([`Actor`]), when
//!   (RFC 3339) and from which socket (`X-Socket-Id`);
//! - per-user events, to every socket of one user ([`user_room`]), joined
//!   to the session or not.
//!
//! Callers emit only after the change is committed, and never for a refused
//! request. Delivery is [`Broadcast::emit`] (every node in cluster mode),
//! [`emit_or_kick`](super::emit_or_kick) per socket: a socket whose queue is
//! full is disconnected (it reconnects and refetches), never silently skipped.

use serde::Serialize;

use super::{Broadcast, room, user_room};
use crate::model::{File, Role, now_ms, rfc3339};

/// `Actor = { userId, userName, role }`: who made a change, with the role
/// they held in the session when they made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub user_id: String,
    pub user_name: String,
    pub role: Role,
}

/// What every file event carries besides its subject.
#[derive(Debug, Clone)]
pub struct Origin {
    pub actor: Actor,
    /// The request's `X-Socket-Id`, so that socket can ignore its own change.
    pub socket_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileEvent<'a> {
    session_id: &'a str,
    file: &'a File,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_path: Option<&'a str>,
    actor: &'a Actor,
    timestamp: String,
    origin_socket_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileDeleted<'a> {
    session_id: &'a str,
    file_id: &'a str,
    path: &'a str,
    actor: &'a Actor,
    timestamp: String,
    origin_socket_id: Option<&'a str>,
}

/// How a path change is announced: the same folder is a rename, another
/// folder a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathChange {
    Renamed,
    Moved,
}

impl PathChange {
    pub fn of(old_path: &str, new_path: &str) -> PathChange {
        let folder = |p: &str| p.rsplit_once('/').map(|(f, _)| f.to_owned());
        if folder(old_path) == folder(new_path) {
            PathChange::Renamed
        } else {
            PathChange::Moved
        }
    }
}

fn event<'a>(
    session_id: &'a str,
    file: &'a File,
    old_path: Option<&'a str>,
    o: &'a Origin,
) -> FileEvent<'a> {
    FileEvent {
        session_id,
        file,
        old_path,
        actor: &o.actor,
        timestamp: rfc3339(now_ms()),
        origin_socket_id: o.socket_id.as_deref(),
    }
}

/// `file:created` to the session's sockets.
pub fn file_created(out: &Broadcast, session_id: &str, file: &File, o: &Origin) {
    let msg = event(session_id, file, None, o);
    out.emit(vec![room(session_id)], None, "file:created", &msg);
}

/// `file:updated` (language changed, or content replaced over HTTP).
pub fn file_updated(out: &Broadcast, session_id: &str, file: &File, o: &Origin) {
    let msg = event(session_id, file, None, o);
    out.emit(vec![room(session_id)], None, "file:updated", &msg);
}

/// `file:renamed` or `file:moved`, by [`PathChange::of`] the two paths; one
/// event even when the language changed too (`file` carries the new one).
pub fn file_path_changed(
    out: &Broadcast,
    session_id: &str,
    file: &File,
    old_path: &str,
    o: &Origin,
) {
    let msg = event(session_id, file, Some(old_path), o);
    let rooms = vec![room(session_id)];
    match PathChange::of(old_path, &file.path) {
        PathChange::Renamed => out.emit(rooms, None, "file:renamed", &msg),
        PathChange::Moved => out.emit(rooms, None, "file:moved", &msg),
    }
}

/// `file:deleted` to the session's sockets.
pub fn file_deleted(out: &Broadcast, session_id: &str, file: &File, o: &Origin) {
    let msg = FileDeleted {
        session_id,
        file_id: &file.id,
        path: &file.path,
        actor: &o.actor,
        timestamp: rfc3339(now_ms()),
        origin_socket_id: o.socket_id.as_deref(),
    };
    out.emit(vec![room(session_id)], None, "file:deleted", &msg);
}

/// `session:added` `{ session, role }` to every socket of `user_id`.
pub fn session_added<S: Serialize>(out: &Broadcast, user_id: &str, session: &S, role: Role) {
    let msg = serde_json::json!({ "session": session, "role": role });
    out.emit(vec![user_room(user_id)], None, "session:added", &msg);
}

/// `session:updated` `{ session }` to every socket of each of `user_ids`.
pub fn session_updated<S: Serialize>(out: &Broadcast, user_ids: &[String], session: &S) {
    if user_ids.is_empty() {
        return;
    }
    let msg = serde_json::json!({ "session": session });
    let rooms: Vec<String> = user_ids.iter().map(|u| user_room(u)).collect();
    // One socket of several listed users (impossible today) hears it once.
    out.emit(rooms, None, "session:updated", &msg);
}

/// `session:removed` `{ sessionId }` to every socket of each of `user_ids`.
pub fn session_removed(out: &Broadcast, user_ids: &[String], session_id: &str) {
    if user_ids.is_empty() {
        return;
    }
    let msg = serde_json::json!({ "sessionId": session_id });
    let rooms: Vec<String> = user_ids.iter().map(|u| user_room(u)).collect();
    out.emit(rooms, None, "session:removed", &msg);
}

/// `role:changed` `{ sessionId, role }` to every socket of `user_id`.
pub fn role_changed(out: &Broadcast, user_id: &str, session_id: &str, role: Role) {
    let msg = serde_json::json!({ "sessionId": session_id, "role": role });
    out.emit(vec![user_room(user_id)], None, "role:changed", &msg);
}

/// The per-user event for a role going from `old` to `new` (`None` = no
/// role): a first grant is `session:added`, a change `role:changed`, a
/// removal `session:removed`; no change sends nothing.
pub fn role_transition<S: Serialize>(
    out: &Broadcast,
    user_id: &str,
    session_id: &str,
    session: &S,
    old: Option<Role>,
    new: Option<Role>,
) {
    match (old, new) {
        (None, Some(r)) => session_added(out, user_id, session, r),
        (Some(a), Some(b)) if a != b => role_changed(out, user_id, session_id, b),
        (Some(_), None) => session_removed(out, &[user_id.to_owned()], session_id),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_within_a_folder_moved_across() {
        assert_eq!(PathChange::of("a.rs", "b.rs"), PathChange::Renamed);
        assert_eq!(PathChange::of("src/a.rs", "src/b.rs"), PathChange::Renamed);
        assert_eq!(PathChange::of("src/a.rs", "a.rs"), PathChange::Moved);
        assert_eq!(PathChange::of("a.rs", "src/a.rs"), PathChange::Moved);
        assert_eq!(PathChange::of("src/a.rs", "lib/a.rs"), PathChange::Moved);
        assert_eq!(PathChange::of("a/b/c", "a/b/d"), PathChange::Renamed);
        assert_eq!(PathChange::of("a/b/c", "a/c"), PathChange::Moved);
    }
}
