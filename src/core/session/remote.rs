//! What one node's copy of a document knows of the other nodes of a cluster
//! (see `crate::cluster`): which log rows it holds ([`LogPos`]), the users
//! connected through other nodes, and the awareness states those nodes
//! relayed. Single-node servers never call any of this.
//!
//! A user connected through node `n` is held as a pseudo-connection
//! `@n/<user id>` (pinned: role changes are applied by the user's own node),
//! so the participant list, `user-joined` and `user-left` work exactly as for
//! local connections. Awareness states relayed by node `n` are owned by
//! `@n`: no local connection may change or remove them, and node `n`'s
//! updates never touch a state a local connection owns.

use std::collections::BTreeSet;

use bytes::Bytes;
use tokio::time::Instant;
use yrs::ClientID;
use yrs::updates::encoder::Encode;

use super::{Conn, SessionDoc, decode_awareness, register};
use crate::error::Error;
use crate::model::Participant;

/// Whether a connection (or awareness owner) id stands for another node.
pub fn is_remote(conn: &str) -> bool {
    conn.starts_with('@')
}

fn node_owner(node: &str) -> String {
    format!("@{node}")
}

fn node_conn_prefix(node: &str) -> String {
    format!("@{node}/")
}

/// The log rows a copy holds: every `doc_seq <= through`, plus the rows in
/// `above` (heard of out of order). A hole below a row in `above` is a gap
/// the copy must fill from the log, `gap_since` telling since when.
#[derive(Debug)]
pub struct LogPos {
    through: i64,
    above: BTreeSet<i64>,
    gap_since: Option<Instant>,
}

impl LogPos {
    pub fn at(head: i64) -> Self {
        Self {
            through: head,
            above: BTreeSet::new(),
            gap_since: None,
        }
    }

    fn note(&mut self, seq: i64, now: Instant) {
        if seq <= self.through {
            return;
        }
        self.above.insert(seq);
        self.settle(now);
    }

    fn caught_up(&mut self, head: i64, now: Instant) {
        self.through = self.through.max(head);
        self.settle(now);
    }

    fn settle(&mut self, now: Instant) {
        while let Some(&first) = self.above.first() {
            if first <= self.through + 1 {
                self.above.pop_first();
                self.through = self.through.max(first);
            } else {
                break;
            }
        }
        self.gap_since = if self.above.is_empty() {
            None
        } else {
            Some(self.gap_since.unwrap_or(now))
        };
    }
}

/// Users another node's presence added or removed here.
#[derive(Debug, Default)]
pub struct RemotePresence {
    /// First connection of the user in this copy: announce `user-joined`.
    pub joined: Vec<Participant>,
    /// Last connection of the user gone: announce `user-left`.
    pub left: Vec<String>,
}

impl SessionDoc {
    /// Every log row up to this `doc_seq` is applied to this copy.
    pub fn log_through(&self) -> i64 {
        self.lock().log.through
    }

    /// Since when a row below one this copy applied is missing, if one is.
    pub fn log_gap_since(&self) -> Option<Instant> {
        self.lock().log.gap_since
    }

    /// Whether the row `seq` is known to be applied here.
    pub fn has_seq(&self, seq: i64) -> bool {
        let inner = self.lock();
        seq <= inner.log.through || inner.log.above.contains(&seq)
    }

    /// Row `seq` of the log is applied to this copy.
    pub fn note_seq(&self, seq: i64) {
        self.lock().log.note(seq, Instant::now());
    }

    /// Every row through `head` is applied to this copy (a catch-up).
    pub fn caught_up_to(&self, head: i64) {
        self.lock().log.caught_up(head, Instant::now());
    }

    /// The users connected through this node (pseudo-connections aside),
    /// each with the highest role of their local connections: what this
    /// node tells the others.
    pub fn local_participants(&self) -> Vec<Participant> {
        self.participants_where(|c| !is_remote(c))
    }

    /// Replaces what node `node` said is connected through it with `users`.
    pub fn set_node_presence(&self, node: &str, users: &[Participant]) -> RemotePresence {
        let prefix = node_conn_prefix(node);
        let gone: Vec<String> = {
            let inner = self.lock();
            inner
                .conns
                .keys()
                .filter(|c| {
                    c.strip_prefix(&prefix)
                        .is_some_and(|u| !users.iter().any(|p| p.id == u))
                })
                .cloned()
                .collect()
        };
        let mut out = RemotePresence::default();
        for conn in gone {
            if let Some(u) = self.leave(&conn).user_left {
                out.left.push(u);
            }
        }
        let mut inner = self.lock();
        for p in users {
            let c = Conn {
                user_id: p.id.clone(),
                role: p.role,
                // Roles of other nodes' connections are theirs to change.
                pinned: true,
                guest_cap: None,
                clients: Default::default(),
            };
            let joined = register(&mut inner, &format!("{prefix}{}", p.id), c, &p.name);
            if joined.first_for_user {
                out.joined.push(joined.participant);
            }
        }
        out
    }

    /// Applies awareness states node `node` relayed. States a local
    /// connection owns are left alone; the rest become `@node`'s. Returns
    /// what changed, for the local sockets.
    pub fn apply_node_awareness(&self, node: &str, bytes: &[u8]) -> Result<Option<Bytes>, Error> {
        let mut update = decode_awareness(bytes)?;
        let owner = node_owner(node);
        let mut inner = self.lock();
        let inner = &mut *inner;
        update
            .clients
            .retain(|id, _| inner.awareness_owner.get(id).is_none_or(|o| is_remote(o)));
        if update.clients.is_empty() {
            return Ok(None);
        }
        for (id, entry) in &update.clients {
            if &*entry.json != "null" {
                inner.awareness_owner.insert(*id, owner.clone());
            } else if inner.awareness_owner.get(id) == Some(&owner) {
                // Only the node that holds a state gives it up: a client
                // that moved on to another node keeps its cursor there.
                inner.awareness_owner.remove(id);
            }
        }
        let out = Bytes::from(update.encode_v1());
        inner.awareness.apply_update(update).map_err(|_| {
            Error::new(
                crate::error::ErrorCode::InvalidUpdate,
                "awareness update refused",
            )
        })?;
        Ok(Some(out))
    }

    /// The awareness states local connections own (what a node that just
    /// loaded the document asks the others for).
    pub fn local_awareness_states(&self) -> Option<Bytes> {
        let inner = self.lock();
        let ids: Vec<ClientID> = inner
            .awareness_owner
            .iter()
            .filter(|(_, o)| !is_remote(o))
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return None;
        }
        let u = inner.awareness.update_with_clients(ids).ok()?;
        (!u.clients.is_empty()).then(|| Bytes::from(u.encode_v1()))
    }

    /// Node `node` is gone: its users leave and its awareness states are
    /// removed. Returns the presence change and the awareness removal.
    pub fn drop_node(&self, node: &str) -> (RemotePresence, Option<Bytes>) {
        let presence = self.set_node_presence(node, &[]);
        let owner = node_owner(node);
        let mut inner = self.lock();
        let ids: Vec<ClientID> = inner
            .awareness_owner
            .iter()
            .filter(|(_, o)| **o == owner)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return (presence, None);
        }
        for id in &ids {
            inner.awareness.remove_state(*id);
            inner.awareness_owner.remove(id);
        }
        let removal = inner
            .awareness
            .update_with_clients(ids)
            .ok()
            .map(|u| Bytes::from(u.encode_v1()));
        (presence, removal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Limits;
    use crate::core::session::tests::user;
    use crate::model::Role;
    use crate::store::StoredDocument;
    use yrs::Doc;
    use yrs::sync::Awareness;

    fn p(id: &str, role: Role) -> Participant {
        Participant {
            id: id.into(),
            name: id.to_uppercase(),
            role,
            color: String::new(),
        }
    }

    /// An awareness update for client `id` with `state` (`None` = removal).
    fn aw(id: u64, clock_bumps: usize, state: Option<&str>) -> Vec<u8> {
        let mut a = Awareness::new(Doc::with_client_id(id));
        for _ in 0..clock_bumps {
            a.set_local_state_raw(r#"{"x":0}"#);
        }
        match state {
            Some(s) => a.set_local_state_raw(s),
            None => a.clean_local_state(),
        }
        a.update_with_clients([ClientID::new(id)])
            .unwrap()
            .encode_v1()
    }

    #[test]
    fn other_nodes_users_join_and_leave_like_local_ones() {
        let d = SessionDoc::load("s", &StoredDocument::default(), &Limits::default()).unwrap();
        d.join("c1", &user("u1"), Role::Editor);
        // Node n lists u1 (also here) and u2: only u2 is new.
        let ch = d.set_node_presence("n", &[p("u1", Role::Viewer), p("u2", Role::Editor)]);
        assert_eq!(
            ch.joined.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["u2"]
        );
        assert_eq!(d.participants().len(), 2);
        // What this node tells the others: its own users only.
        let local = d.local_participants();
        assert_eq!((local.len(), local[0].id.as_str()), (1, "u1"));
        // Other nodes' users are not this node's to re-role.
        assert!(d.role_targets().iter().all(|t| !is_remote(&t.conn)));
        // Node n's next list drops u1: u1 stays (c1 is here), nothing leaves.
        let ch = d.set_node_presence("n", &[p("u2", Role::Editor)]);
        assert!(ch.joined.is_empty() && ch.left.is_empty());
        // Node n dies: u2 leaves.
        let (ch, removal) = d.drop_node("n");
        assert_eq!(ch.left, ["u2"]);
        assert!(removal.is_none());
        assert_eq!(d.participants().len(), 1);
    }

    #[test]
    fn awareness_states_belong_to_the_node_that_relayed_them() {
        let d = SessionDoc::load("s", &StoredDocument::default(), &Limits::default()).unwrap();
        d.join("c1", &user("u1"), Role::Editor);
        d.apply_awareness("c1", &aw(1, 0, Some(r#"{"me":1}"#)))
            .unwrap();
        // Node n cannot touch the local connection's state ...
        assert!(
            d.apply_node_awareness("n", &aw(1, 5, Some(r#"{"forged":1}"#)))
                .unwrap()
                .is_none()
        );
        // ... but relays its own; the local connection cannot touch that.
        assert!(
            d.apply_node_awareness("n", &aw(2, 0, Some(r#"{"n":1}"#)))
                .unwrap()
                .is_some()
        );
        assert!(d.apply_awareness("c1", &aw(2, 3, None)).is_err());
        // Only local states go to a node that asks.
        let mine = decode_awareness(&d.local_awareness_states().unwrap()).unwrap();
        assert_eq!(
            mine.clients.keys().copied().collect::<Vec<_>>(),
            [ClientID::new(1)]
        );
        // Client 2 moves to node m; node n's late removal leaves it with m.
        d.apply_node_awareness("m", &aw(2, 2, Some(r#"{"m":1}"#)))
            .unwrap();
        d.apply_node_awareness("n", &aw(2, 1, None)).unwrap();
        let (_, removal) = d.drop_node("n");
        assert!(removal.is_none(), "n holds nothing any more");
        let (_, removal) = d.drop_node("m");
        assert!(removal.is_some(), "m's state of client 2 goes with m");
    }

    #[test]
    fn log_position_tracks_gaps() {
        let now = Instant::now();
        let mut p = LogPos::at(3);
        p.note(4, now);
        assert_eq!((p.through, p.gap_since), (4, None));
        p.note(6, now);
        assert_eq!(p.through, 4);
        assert!(p.gap_since.is_some());
        p.note(2, now);
        p.note(5, now);
        assert_eq!((p.through, p.gap_since), (6, None));
        p.note(9, now);
        p.caught_up(8, now);
        assert_eq!((p.through, p.gap_since), (9, None));
    }
}
