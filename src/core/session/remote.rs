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

use super::{Conn, SessionDoc, UserEntry, decode_awareness, user_role};
use crate::error::Error;
use crate::model::{Participant, user_color};

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
        let inner = self.lock();
        let mut v: Vec<Participant> = inner
            .users
            .iter()
            .filter_map(|(id, u)| {
                let role = inner
                    .conns
                    .iter()
                    .filter(|(c, conn)| !is_remote(c) && conn.user_id == *id)
                    .map(|(_, conn)| conn.role)
                    .max()?;
                Some(Participant {
                    id: id.clone(),
                    name: u.name.clone(),
                    role,
                    color: u.color.clone(),
                })
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
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
            let conn = format!("{prefix}{}", p.id);
            if let Some(c) = inner.conns.get_mut(&conn) {
                c.role = p.role;
                continue;
            }
            inner.conns.insert(
                conn,
                Conn {
                    user_id: p.id.clone(),
                    role: p.role,
                    pinned: true,
                    guest_cap: None,
                    clients: Default::default(),
                },
            );
            let entry = inner
                .users
                .entry(p.id.clone())
                .or_insert_with(|| UserEntry {
                    name: p.name.clone(),
                    color: user_color(&p.id),
                    connections: 0,
                });
            entry.connections += 1;
            if entry.connections == 1 {
                let role = user_role(&inner.conns, &p.id).unwrap_or(p.role);
                out.joined.push(Participant { role, ..p.clone() });
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
            if &*entry.json == "null" {
                inner.awareness_owner.remove(id);
            } else {
                inner.awareness_owner.insert(*id, owner.clone());
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
