//! Folding a stored snapshot, log rows and a live state into one state.
//! Yjs updates merge commutatively and idempotently, so merging everything
//! (instead of overwriting with the newest) is what keeps compaction safe when
//! several processes hold the same document.

use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{GetString, ReadTxn, StateVector, Text, Transact, Update};

use super::StoreError;
use crate::core::TEXT_NAME;
use crate::core::inspect::{inspect_update, skips_clocks, split_at_skips};

/// Returns `(state, text)` of the union of every input update, and the
/// indices of the inputs some of whose structs could not be merged yet.
///
/// Inputs are integrated in causal order, as the live document does: a log
/// row can come before the row holding its predecessors (rows are written in
/// the order updates arrived, and an update that overtook its predecessor is
/// logged at once), and structs after a gap or a `Skip` wait until the clocks
/// before them are there. Handed to yrs directly, they would be integrated
/// with a hole, and a document with a hole leaves the structs past it out of
/// the diffs it serves (see `core::inspect::split_at_skips`). Structs still
/// waiting at the end are not in `state`: their rows must stay in the log.
pub fn merge_state<'a>(
    inputs: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Vec<u8>, String, Vec<usize>), StoreError> {
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut txn = doc.transact_mut();
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
    // (input index, bytes, clock ranges) waiting for predecessors.
    type Waiting = (usize, Vec<u8>, Vec<(u64, u32, u32)>);
    let mut waiting: Vec<Waiting> = Vec::new();
    let apply = |txn: &mut yrs::TransactionMut, bytes: &[u8]| -> Result<(), StoreError> {
        let update = Update::decode_v1(bytes).map_err(|e| corrupt(&e))?;
        txn.apply_update(update).map_err(|e| corrupt(&e))
    };
    for (i, bytes) in inputs.into_iter().enumerate() {
        let pieces = match split_at_skips(bytes) {
            Ok(Some(split)) => std::iter::once(split.head).chain(split.tails).collect(),
            Ok(None) => vec![bytes.to_vec()],
            // What the inspection refuses is applied as it is (stored
            // before the inspection existed).
            Err(_) => {
                apply(&mut txn, bytes)?;
                continue;
            }
        };
        for piece in pieces {
            let ranges = inspect_update(&piece)
                .map(|i| i.clock_ranges)
                .unwrap_or_default();
            waiting.push((i, piece, ranges));
        }
        // Everything whose predecessors are here, until nothing moves.
        while let Some(at) = {
            let sv = txn.state_vector();
            waiting.iter().position(|(_, _, r)| !skips_clocks(r, &sv))
        } {
            let (_, piece, _) = waiting.remove(at);
            apply(&mut txn, &piece)?;
        }
    }
    let mut state = txn.encode_state_as_update_v1(&StateVector::default());
    let s = text.get_string(&txn);
    if !waiting.is_empty() {
        // Kept in the state too, after their skips (a loader parks them
        // again): a snapshot or live state that held them must not lose them.
        let mut parts = vec![Update::decode_v1(&state).map_err(|e| corrupt(&e))?];
        for (_, piece, _) in &waiting {
            parts.push(Update::decode_v1(piece).map_err(|e| corrupt(&e))?);
        }
        state = Update::merge_updates(parts).encode_v1();
    }
    let mut left: Vec<usize> = waiting.into_iter().map(|(i, _, _)| i).collect();
    left.dedup();
    Ok((state, s, left))
}

/// The Yjs state of a new document whose root `Y.Text` (`monaco`) holds `text`.
pub fn initial_state(text: &str) -> Vec<u8> {
    let doc = yrs::Doc::new();
    let t = doc.get_or_insert_text(TEXT_NAME);
    let mut txn = doc.transact_mut();
    if !text.is_empty() {
        t.insert(&mut txn, 0, text);
    }
    txn.encode_state_as_update_v1(&StateVector::default())
}
