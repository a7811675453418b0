//! [`HeldBack`]: causal delivery for a client-side yrs replica (the folder
//! sync agent, `tandem-load`). yrs 0.28 integrates structs that start past
//! the document's clock for their client at once, leaving a hole in its
//! block list; a replica with a hole then encodes diffs that leave structs
//! out or put them at the wrong clocks, and whoever applies those diffs
//! (the server, answering its sync request) parts from everyone else for
//! good (BENCHMARKS.md, "Soak"). Yjs keeps such structs pending; this does
//! the same for whole updates: one that skips clocks waits until the
//! replica holds every clock before it. The server has its own, bounded
//! version of this in `SessionDoc` (parked updates).

use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, Transact, Update};

use super::inspect::{inspect_update, skips_clocks};

/// An update's bytes and the clock ranges it covers (`(client, start, end)`).
type Waiting = (Vec<u8>, Vec<(u64, u32, u32)>);

/// Updates waiting for their predecessors.
#[derive(Debug, Default)]
pub struct HeldBack {
    waiting: Vec<Waiting>,
}

impl HeldBack {
    /// Applies `update` to `doc` once every clock before it is there: now,
    /// or when a later update brings them. Returns how many updates were
    /// applied (this one and any it released); `Err` if the bytes are not
    /// a Yjs v1 update or yrs refused one.
    pub fn apply(&mut self, doc: &Doc, update: &[u8]) -> Result<usize, String> {
        let ranges = inspect_update(update)
            .map_err(|_| "bytes are not a Yjs v1 update".to_owned())?
            .clock_ranges;
        self.waiting.push((update.to_vec(), ranges));
        let mut applied = 0;
        loop {
            let sv = doc.transact().state_vector();
            let Some(i) = self.waiting.iter().position(|(_, r)| !skips_clocks(r, &sv)) else {
                return Ok(applied);
            };
            let (bytes, _) = self.waiting.swap_remove(i);
            let u = Update::decode_v1(&bytes).map_err(|e| e.to_string())?;
            doc.transact_mut()
                .apply_update(u)
                .map_err(|e| e.to_string())?;
            applied += 1;
        }
    }

    /// Updates still waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{GetString, StateVector, Text};

    #[test]
    fn an_update_past_the_clock_waits_for_its_predecessor() {
        let src = Doc::new();
        let t = src.get_or_insert_text("monaco");
        let mut updates = Vec::new();
        for s in ["ab", "cd", "ef"] {
            let mut txn = src.transact_mut();
            let len = t.len(&txn);
            t.insert(&mut txn, len, s);
            updates.push(txn.encode_update_v1());
        }
        let dst = Doc::new();
        let text = dst.get_or_insert_text("monaco");
        let mut held = HeldBack::default();
        assert_eq!(held.apply(&dst, &updates[0]).unwrap(), 1);
        // "ef" starts past dst's clock: it waits, dst's state is untouched.
        assert_eq!(held.apply(&dst, &updates[2]).unwrap(), 0);
        assert_eq!(held.len(), 1);
        assert_eq!(text.get_string(&dst.transact()), "ab");
        // "cd" releases it.
        assert_eq!(held.apply(&dst, &updates[1]).unwrap(), 2);
        assert!(held.is_empty());
        assert_eq!(text.get_string(&dst.transact()), "abcdef");
        // And dst's diffs are whole again (a hole would drop "ef").
        let diff = dst
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let again = Doc::new();
        let at = again.get_or_insert_text("monaco");
        again
            .transact_mut()
            .apply_update(Update::decode_v1(&diff).unwrap())
            .unwrap();
        assert_eq!(at.get_string(&again.transact()), "abcdef");
        assert!(held.apply(&dst, b"\xff\xff").is_err());
    }
}
