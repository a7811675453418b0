//! A socket's document updates: role, size and budget checks, then the core;
//! after a rate-limit refusal, the server heals the gap itself by asking the
//! client for what it lacks (PROTOCOL.md, "Convergence rules"). Every update
//! applied for a socket counts against its budget, resync replies included.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use socketioxide::extract::SocketRef;

use super::{AppState, ConnState, Dialect, Peer, emit_or_kick, lock};
use crate::core::DocLease;
use crate::error::Error;
use crate::model::Role;

/// A document update from a socket. With `want_ack`, returns once the update
/// is durably logged.
pub async fn accept_update<P: Peer>(
    s: &P,
    st: &AppState,
    conn: &Arc<ConnState>,
    doc: &DocLease,
    update: Bytes,
    want_ack: bool,
) -> Result<(), Error> {
    let len = update.len();
    let result = check_and_submit(s, st, conn, doc, update, want_ack).await;
    crate::telemetry::update_received(len, result.as_ref().err());
    result
}

async fn check_and_submit<P: Peer>(
    s: &P,
    st: &AppState,
    conn: &Arc<ConnState>,
    doc: &DocLease,
    update: Bytes,
    want_ack: bool,
) -> Result<(), Error> {
    if !doc.role_of(s.id()).is_some_and(Role::can_edit) {
        return Err(Error::new(
            crate::error::ErrorCode::Forbidden,
            "viewers cannot edit",
        ));
    }
    st.manager.limits().check_update_size(update.len())?;
    take_budget(s, st, conn, doc)?;
    let result = st.manager.submit(doc, update, Some(s.id()), want_ack).await;
    if let Err(e) = &result
        && e.is_out_of_order()
    {
        // Too many updates already wait for predecessors: ask the client
        // for a diff once things had time to land.
        schedule_heal(s, st, conn, doc, Duration::from_millis(50));
    }
    result
}

/// One unit of the socket's update budget; when it is spent, a resync is
/// scheduled for when it allows and `RATE_LIMITED` returned.
fn take_budget<P: Peer>(
    s: &P,
    st: &AppState,
    conn: &Arc<ConnState>,
    doc: &DocLease,
) -> Result<(), Error> {
    conn.budget.check().map_err(|wait| {
        metrics::counter!("tandem_updates_rate_limited_total").increment(1);
        schedule_heal(s, st, conn, doc, wait);
        Error::rate_limited(wait.as_millis().max(1) as u64)
    })
}

/// After a rate-limit refusal: once the budget allows, ask the socket for
/// what the server lacks, so replicas converge without client cooperation.
fn schedule_heal<P: Peer>(
    s: &P,
    st: &AppState,
    conn: &Arc<ConnState>,
    doc: &DocLease,
    wait: Duration,
) {
    if !lock(&conn.healing).insert(doc.id.clone()) {
        return;
    }
    let (s, st, conn, doc) = (s.clone(), st.clone(), conn.clone(), doc.clone());
    tokio::spawn(async move {
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
        lock(&conn.healing).remove(&doc.id);
        if s.connected() && doc.role_of(s.id()).is_some() {
            s.request_diff(&st, &conn, &doc);
        }
    });
}

/// Sends sync step 1 (the server's state vector) with an ack and applies the
/// client's diff from the reply, within the socket's update budget (above
/// it, the resync is asked for again later). A viewer's diff is not applied.
pub fn request_client_diff(
    s: SocketRef,
    st: AppState,
    conn: Arc<ConnState>,
    doc: DocLease,
    dialect: Dialect,
) {
    let sv = doc.state_vector();
    let sent = match dialect {
        Dialect::Native => s.emit_with_ack::<_, Bytes>("yjs-sync-step-1", &(&*doc.id, sv)),
        Dialect::YSocketIo => s.emit_with_ack::<_, Bytes>("sync-step-1", &sv),
    };
    let stream = match sent {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(socket_id = %s.id, error = %e, "sync-step-1 not sent");
            return;
        }
    };
    tokio::spawn(async move {
        match stream.await {
            Ok(diff) => {
                if !doc.role_of(s.id.as_str()).is_some_and(Role::can_edit) {
                    return;
                }
                // An empty diff costs nothing and needs no budget.
                if diff.len() <= 2 && diff.iter().all(|b| *b == 0) {
                    return;
                }
                let peer = SioPeer(s.clone(), dialect);
                let result = match take_budget(&peer, &st, &conn, &doc) {
                    Ok(()) => st
                        .manager
                        .submit_update(&doc, diff, Some(s.id.as_str()), false)
                        .await
                        .map(drop),
                    Err(e) => Err(e),
                };
                // Over the budget, the resync is already rescheduled: no error.
                if let Err(e) = result
                    && e.code != crate::error::ErrorCode::RateLimited
                {
                    emit_or_kick(&s, "error", &e.with_doc(&doc.id));
                }
            }
            Err(e) => tracing::debug!(socket_id = %s.id, error = %e, "no sync-step-1 reply"),
        }
    });
}

/// A Socket.IO socket of either dialect as a [`Peer`].
#[derive(Clone)]
pub struct SioPeer(pub SocketRef, pub Dialect);

impl Peer for SioPeer {
    fn id(&self) -> &str {
        self.0.id.as_str()
    }

    fn connected(&self) -> bool {
        self.0.connected()
    }

    fn request_diff(&self, st: &AppState, conn: &Arc<ConnState>, doc: &DocLease) {
        request_client_diff(
            self.0.clone(),
            st.clone(),
            conn.clone(),
            doc.clone(),
            self.1,
        );
    }
}
