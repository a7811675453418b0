//! Awareness relay: a socket's awareness update is applied at once (so
//! joiners see the newest states) and broadcast within the socket's
//! awareness budget; above it, states are merged and sent once the budget
//! allows. Limits on states per connection and their size live in the core
//! ([`SessionDoc::apply_awareness`]).

use std::sync::Arc;

use bytes::Bytes;
use yrs::sync::awareness::AwarenessUpdate;
use yrs::updates::encoder::Encode;

use super::{AppState, ConnState, Peer, lock};
use crate::core::SessionDoc;
use crate::error::Error;

/// An awareness update from a socket: applied at once (so joiners see the
/// newest states), broadcast within the socket's awareness budget. Above it
/// the states are merged, newest clock per client, and broadcast as one
/// update when the budget allows: a flood of cursor moves costs the others
/// a few messages per second, and the last position still arrives.
pub fn relay_awareness<P: Peer>(
    s: &P,
    st: &AppState,
    conn: &Arc<ConnState>,
    doc: &Arc<SessionDoc>,
    bytes: Bytes,
) -> Result<(), Error> {
    doc.apply_awareness(s.id(), &bytes)?;
    let Some(fanout) = st.manager.fanout() else {
        return Ok(());
    };
    let mut held = lock(&conn.held_awareness);
    if let Some(pending) = held.get_mut(&doc.id) {
        // A flush is already scheduled: it will carry these states too.
        merge_awareness(pending, crate::core::decode_awareness(&bytes)?);
        metrics::counter!("tandem_awareness_coalesced_total").increment(1);
        return Ok(());
    }
    let wait = match conn.awareness_budget.check() {
        Ok(()) => {
            drop(held);
            fanout.awareness(&doc.id, &bytes, Some(s.id()));
            return Ok(());
        }
        Err(wait) => wait,
    };
    held.insert(doc.id.clone(), crate::core::decode_awareness(&bytes)?);
    drop(held);
    metrics::counter!("tandem_awareness_coalesced_total").increment(1);
    let (s, conn, doc, fanout) = (s.clone(), conn.clone(), doc.clone(), fanout.clone());
    tokio::spawn(async move {
        let mut wait = wait;
        loop {
            tokio::time::sleep(wait).await;
            match conn.awareness_budget.check() {
                Ok(()) => break,
                Err(w) => wait = w,
            }
        }
        let merged = lock(&conn.held_awareness).remove(&doc.id);
        if let Some(update) = merged.filter(|_| s.connected()) {
            let bytes = Bytes::from(update.encode_v1());
            fanout.awareness(&doc.id, &bytes, Some(s.id()));
        }
    });
    Ok(())
}

/// Folds `newer` into `into`, keeping each client's highest clock (a removal,
/// `null`, wins a tie, as in y-protocols).
fn merge_awareness(into: &mut AwarenessUpdate, newer: AwarenessUpdate) {
    for (id, entry) in newer.clients {
        match into.clients.get(&id) {
            Some(old)
                if old.clock > entry.clock
                    || (old.clock == entry.clock && &*entry.json != "null") => {}
            _ => {
                into.clients.insert(id, entry);
            }
        }
    }
}
