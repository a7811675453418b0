//! One file's Yjs document on the agent's side, and the three-way merge
//! that folds edits made on disk into edits made in the session.

use bytes::Bytes;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, TextRef, Transact};

use crate::core::{TEXT_NAME, edit_text};

/// A file's document: the session's `monaco` text, with its history.
pub struct Replica {
    doc: Doc,
    text: TextRef,
    /// Session updates waiting for their predecessors (a relay that came
    /// before the reply to this agent's sync request after a reconnect).
    held: std::sync::Mutex<crate::core::HeldBack>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("len", &self.text().len())
            .finish()
    }
}

fn new_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Bytes,
        ..Options::default()
    })
}

impl Default for Replica {
    fn default() -> Self {
        let doc = new_doc();
        let text = doc.get_or_insert_text(TEXT_NAME);
        Replica {
            doc,
            text,
            held: Default::default(),
        }
    }
}

impl Replica {
    /// A replica from its saved state (a Yjs v1 update). Each run edits under
    /// a new client id, so two runs never reuse clocks.
    pub fn load(state: &[u8]) -> anyhow::Result<Replica> {
        let r = Replica::default();
        r.apply(state)?;
        Ok(r)
    }

    /// The whole document as one Yjs v1 update.
    pub fn state(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    pub fn state_vector(&self) -> Vec<u8> {
        self.doc.transact().state_vector().encode_v1()
    }

    /// What a peer with state vector `sv` lacks.
    pub fn diff(&self, sv: &[u8]) -> anyhow::Result<Vec<u8>> {
        let sv = StateVector::decode_v1(sv)?;
        Ok(self.doc.transact().encode_state_as_update_v1(&sv))
    }

    /// Applies an update from the session, once the replica holds every
    /// clock before it ([`HeldBack`](crate::core::HeldBack): a replica
    /// with a hole would answer the server's sync requests with structs at
    /// the wrong clocks).
    pub fn apply(&self, update: &[u8]) -> anyhow::Result<()> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.apply(&self.doc, update).map_err(anyhow::Error::msg)?;
        Ok(())
    }

    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// Edits the text into `new` (a character diff); the update to send, if
    /// anything changed.
    pub fn set_text(&self, new: &str) -> Option<Bytes> {
        let old = self.text();
        let mut txn = self.doc.transact_mut();
        edit_text(&mut txn, &self.text, &old, new).then(|| Bytes::from(txn.encode_update_v1()))
    }
}

/// Three-way merge of text: the changes from `base` to `ours` and from
/// `base` to `theirs`, both kept. Done with Yjs itself: both sides are
/// replayed as character edits on copies of one base document and merged,
/// so the result is exactly what two live editors would converge to.
pub fn merge3(base: &str, ours: &str, theirs: &str) -> String {
    if ours == base {
        return theirs.to_owned();
    }
    if theirs == base || ours == theirs {
        return ours.to_owned();
    }
    let origin = Replica::default();
    origin.set_text(base);
    let state = origin.state();
    let (a, b) = (
        Replica::load(&state).expect("own state"),
        Replica::load(&state).expect("own state"),
    );
    a.set_text(ours);
    b.set_text(theirs);
    let diff = b.diff(&a.state_vector()).expect("own state vector");
    a.apply(&diff).expect("own update");
    a.text()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge3_keeps_both_sides() {
        let base = "fn a() {}\nfn b() {}\nfn c() {}\n";
        let ours = "fn a() { 1 }\nfn b() {}\nfn c() {}\n";
        let theirs = "fn a() {}\nfn b() {}\nfn c() { 3 }\n";
        assert_eq!(
            merge3(base, ours, theirs),
            "fn a() { 1 }\nfn b() {}\nfn c() { 3 }\n"
        );
        assert_eq!(merge3(base, base, theirs), theirs);
        assert_eq!(merge3(base, ours, base), ours);
        // Both deleted the same line: deleted once.
        let both = "fn a() {}\nfn c() {}\n";
        assert_eq!(merge3(base, both, both), both);
    }

    #[test]
    fn replicas_sync_both_ways_and_survive_save_and_load() {
        let a = Replica::default();
        let up = a.set_text("héllo\n").unwrap();
        let b = Replica::default();
        b.apply(&up).unwrap();
        assert_eq!(b.text(), "héllo\n");
        assert!(b.set_text("héllo\n").is_none());
        let c = Replica::load(&b.state()).unwrap();
        c.set_text("héllo world\n");
        a.apply(&c.diff(&a.state_vector()).unwrap()).unwrap();
        assert_eq!(a.text(), "héllo world\n");
    }
}
