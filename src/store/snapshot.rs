//! Folding a stored snapshot, log rows and a live state into one state.
//! Yjs updates merge commutatively and idempotently, so merging everything
//! (instead of overwriting with the newest) is what keeps compaction safe when
//! several processes hold the same document.

use yrs::updates::decoder::Decode;
use yrs::{GetString, ReadTxn, StateVector, Text, Transact, Update};

use super::StoreError;
use crate::core::TEXT_NAME;

/// Returns `(state, text)` of the union of every input update.
pub fn merge_state<'a>(
    inputs: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Vec<u8>, String), StoreError> {
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut txn = doc.transact_mut();
    for bytes in inputs {
        let update = Update::decode_v1(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        txn.apply_update(update)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    }
    let state = txn.encode_state_as_update_v1(&StateVector::default());
    let s = text.get_string(&txn);
    Ok((state, s))
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
