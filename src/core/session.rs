//! One loaded session: the yrs document, its awareness, who is connected and
//! who is typing. Sans-IO: bytes in, bytes out; every lock is a std mutex held
//! briefly and never across `.await`.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use tokio::time::Instant;
use yrs::encoding::read::{Cursor, Read};
use yrs::sync::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, GetString, ReadTxn, StateVector, TextRef, Transact, Update};

use super::inspect::{Refused, inspect_update, skips_clocks, split_at_skips};
use super::{AWARENESS_TIMEOUT_MS, Limits, TEXT_NAME, TYPING_TIMEOUT};
use crate::auth::User;
use crate::error::{Error, ErrorCode};
use crate::model::{Participant, Role, user_color};
use crate::store::{StoreError, StoredDocument};

mod remote;
pub(super) use remote::LogPos;
pub use remote::{RemotePresence, is_remote};

/// Decodes a Yjs v1 update from untrusted bytes. Never panics (yrs has debug
/// assertions on client ids that hostile input can trip).
pub fn decode_update(bytes: &[u8]) -> Result<Update, Error> {
    let invalid = || Error::new(ErrorCode::InvalidUpdate, "bytes are not a Yjs v1 update");
    match std::panic::catch_unwind(AssertUnwindSafe(|| Update::decode_v1(bytes))) {
        Ok(Ok(u)) => Ok(u),
        _ => Err(invalid()),
    }
}

/// Decodes an awareness update, refusing client ids Yjs could not have made.
pub fn decode_awareness(bytes: &[u8]) -> Result<AwarenessUpdate, Error> {
    let invalid = || {
        Error::new(
            ErrorCode::InvalidUpdate,
            "bytes are not a y-protocols awareness update",
        )
    };
    // Pre-scan with the same varint reader: client ids must fit in 53 bits.
    let mut c = Cursor::new(bytes);
    let n: u64 = c.read_var().map_err(|_| invalid())?;
    for _ in 0..n {
        let id: u64 = c.read_var().map_err(|_| invalid())?;
        let _clock: u32 = c.read_var().map_err(|_| invalid())?;
        let json = c.read_string().map_err(|_| invalid())?;
        if id >= 1 << 53 || serde_json::from_str::<serde::de::IgnoredAny>(json).is_err() {
            return Err(invalid());
        }
    }
    AwarenessUpdate::decode_v1(bytes).map_err(|_| invalid())
}

/// Most awareness client ids one connection may announce in one document.
pub const MAX_AWARENESS_STATES_PER_CONN: usize = 8;
/// Largest awareness state (its JSON) accepted, in bytes.
pub const MAX_AWARENESS_STATE_BYTES: usize = 8 * 1024;

/// Outcome of [`SessionDoc::apply_update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The update changed the document: relay and log it.
    Changed,
    /// Already known here: relay it, do not log it.
    Known,
    /// No content at all: drop it.
    Empty,
    /// yrs integrated part of the update and then failed. The document did
    /// change: `effective` (exactly what changed) must be relayed and logged
    /// like any change, and the sender still hears `error`.
    Partial { effective: Bytes, error: Error },
    /// Held back: for some client the update starts past the clock the
    /// document has (its predecessor has not arrived yet: socketioxide runs
    /// each event in its own task, so one socket's updates can overtake each
    /// other). yrs 0.28 integrates such structs without moving its state
    /// vector and its block search then panics (found by fuzzing), so the gap
    /// is never handed to yrs: the update waits here and is applied as soon
    /// as its predecessors are. Relay and log it like a change.
    Parked,
}

/// Most updates one document holds back waiting for predecessors, and
/// their bytes; above either, an update that skips clocks is refused
/// (`Error::out_of_order`) and its sender asked for a resync.
const MAX_PARKED_UPDATES: usize = 512;
const MAX_PARKED_BYTES: usize = 8 << 20;

/// An update held back until its predecessors arrive.
struct ParkedUpdate {
    bytes: Bytes,
    ranges: Vec<(u64, u32, u32)>,
    /// The connection it came from: not echoed back to it when released.
    origin: Option<Arc<str>>,
}

/// Checks an untrusted update before yrs decodes it, then decodes it.
/// Returns the update and the nested shared types it creates.
fn decode_checked(bytes: &[u8]) -> Result<(Update, super::inspect::Inspection), Error> {
    let inspection = inspect_update(bytes).map_err(|r| match r {
        Refused::Malformed => Error::new(ErrorCode::InvalidUpdate, "bytes are not a Yjs v1 update"),
        Refused::Unsupported(what) => Error::new(
            ErrorCode::InvalidUpdate,
            format!("documents do not accept {what}"),
        ),
    })?;
    Ok((decode_update(bytes)?, inspection))
}

fn too_many_nested_types(limit: usize) -> Error {
    Error::new(
        ErrorCode::InvalidUpdate,
        format!("a document holds at most {limit} nested shared types"),
    )
}

/// What a connection joining the session changed.
#[derive(Debug)]
pub struct JoinOutcome {
    /// This was the user's first connection: announce `user-joined`.
    pub first_for_user: bool,
    pub participant: Participant,
}

/// What a connection leaving the session changed.
#[derive(Debug, Default)]
pub struct LeaveOutcome {
    /// Awareness removal of the client ids the connection announced.
    pub awareness_removal: Option<Bytes>,
    /// The user's last connection left: announce `user-left`.
    pub user_left: Option<String>,
    /// The user was typing: announce `user-stopped-typing`.
    pub stopped_typing: bool,
}

struct UserEntry {
    name: String,
    color: String,
    connections: usize,
}

/// One connection in the session. Roles live here, not per user: two
/// connections of one user may hold different roles (a token that pins a
/// role for this session on one of them).
struct Conn {
    user_id: String,
    role: Role,
    /// Role fixed by the token's `sessions` claim; role changes do not apply.
    pinned: bool,
    /// `Some(cap)` for a token-less guest (role = public role, capped).
    guest_cap: Option<Role>,
    /// Awareness client ids this connection announced.
    clients: HashSet<ClientID>,
}

/// A connection whose role follows the session's settings (not pinned by a
/// token), for [`SessionDoc::set_conn_role`].
#[derive(Debug, Clone)]
pub struct RoleTarget {
    pub conn: String,
    pub user_id: String,
    pub guest_cap: Option<Role>,
}

/// Bookkeeping the manager uses for snapshots and eviction.
pub(super) struct Lifecycle {
    pub leases: usize,
    pub evicted: bool,
    /// Bumped by every applied change.
    pub generation: u64,
    /// Generation the store holds.
    pub stored_generation: u64,
    pub dirty_since: Option<Instant>,
    pub last_change: Instant,
    pub last_used: Instant,
    pub snapshotting: bool,
    /// The user behind the latest change from a socket, until a snapshot
    /// records it as the file's `updatedBy`.
    pub last_editor: Option<String>,
    /// A log commit failed while the document was at this generation: the
    /// log lacks some change up to here, so only a snapshot that reached it
    /// (`stored_generation >= unlogged_through`) makes the store whole again.
    pub unlogged_through: u64,
    /// Upper bound of the encoded state size (exact after a snapshot).
    pub approx_size: usize,
}

impl Lifecycle {
    pub fn dirty(&self) -> bool {
        self.generation != self.stored_generation
    }
}

struct Inner {
    awareness: Awareness,
    /// Which connection introduced each awareness client id: only it may
    /// change or remove that state.
    awareness_owner: HashMap<ClientID, String>,
    /// Nested shared types the document holds (see [`Limits::max_nested_types`]).
    nested_types: HashSet<(u64, u32)>,
    /// Updates waiting for their predecessors ([`Applied::Parked`]).
    parked: Vec<ParkedUpdate>,
    parked_bytes: usize,
    conns: HashMap<String, Conn>,
    users: HashMap<String, UserEntry>,
    typing: HashMap<String, Instant>,
    life: Lifecycle,
    /// Which log rows this copy holds (cluster mode, see [`LogPos`]).
    log: LogPos,
}

/// The highest role among a user's connections.
fn user_role(conns: &HashMap<String, Conn>, user_id: &str) -> Option<Role> {
    conns
        .values()
        .filter(|c| c.user_id == user_id)
        .map(|c| c.role)
        .max()
}

/// Registers connection `conn` (or refreshes its role and pinning if it
/// exists) for a user named `name`: the one path for local connections and
/// other nodes' users ([`SessionDoc::join`], `set_node_presence`).
fn register(inner: &mut Inner, conn: &str, new: Conn, name: &str) -> JoinOutcome {
    let (user_id, role) = (new.user_id.clone(), new.role);
    let fresh = match inner.conns.get_mut(conn) {
        Some(c) => {
            c.role = new.role;
            c.pinned = new.pinned;
            false
        }
        None => {
            inner.conns.insert(conn.to_owned(), new);
            true
        }
    };
    let entry = inner
        .users
        .entry(user_id.clone())
        .or_insert_with(|| UserEntry {
            name: name.to_owned(),
            color: user_color(&user_id),
            connections: 0,
        });
    entry.name = name.to_owned();
    if fresh {
        entry.connections += 1;
    }
    let first_for_user = fresh && entry.connections == 1;
    let (name, color) = (entry.name.clone(), entry.color.clone());
    JoinOutcome {
        first_for_user,
        participant: Participant {
            role: user_role(&inner.conns, &user_id).unwrap_or(role),
            id: user_id,
            name,
            color,
        },
    }
}

/// A loaded session document.
pub struct SessionDoc {
    pub id: Arc<str>,
    doc: Doc,
    text: TextRef,
    inner: Mutex<Inner>,
    /// Updates applied in memory whose log row is not committed yet; a
    /// document is never evicted while this is non-zero.
    pub(super) pending_log: AtomicUsize,
    /// Held by a catch-up from the log (one at a time per document; the
    /// next one waits, then reads on from where this one left off).
    pub(super) catching_up: tokio::sync::Mutex<()>,
}

impl SessionDoc {
    /// Builds the live document from what the store holds. Stored bytes
    /// pass the same inspection as incoming ones (a database written before
    /// the nesting limit existed must not crash the process on load).
    pub fn load(id: &str, stored: &StoredDocument, limits: &Limits) -> Result<Self, StoreError> {
        let doc = Doc::new();
        // Root type first, before any transaction (yrs pitfall).
        let text = doc.get_or_insert_text(TEXT_NAME);
        let now = Instant::now();
        let this = Self {
            id: id.into(),
            text,
            inner: Mutex::new(Inner {
                awareness: Awareness::new(doc.clone()),
                awareness_owner: HashMap::new(),
                nested_types: HashSet::new(),
                parked: Vec::new(),
                parked_bytes: 0,
                conns: HashMap::new(),
                users: HashMap::new(),
                typing: HashMap::new(),
                life: Lifecycle {
                    leases: 0,
                    evicted: false,
                    generation: 0,
                    stored_generation: 0,
                    dirty_since: None,
                    last_change: now,
                    last_used: now,
                    snapshotting: false,
                    last_editor: None,
                    unlogged_through: 0,
                    approx_size: 0,
                },
                log: LogPos::at(stored.head),
            }),
            doc,
            pending_log: AtomicUsize::new(0),
            catching_up: tokio::sync::Mutex::new(()),
        };
        // Stored bytes take the same path as incoming ones (size limits
        // aside: what was accepted once loads whatever the flags say now).
        let relaxed = Limits {
            max_update_bytes: usize::MAX,
            max_document_bytes: usize::MAX,
            max_nested_types: limits.max_nested_types,
        };
        let mut size = 0;
        for bytes in stored.snapshot.iter().chain(stored.updates.iter()) {
            size += bytes.len();
            match this.apply_update(bytes, &relaxed) {
                Ok(Applied::Partial { error, .. }) => {
                    // Kept as far as it applies: the live document was the same.
                    tracing::warn!(session_id = id, error = %error, "stored update applied in part");
                }
                Ok(_) => {}
                Err(e) => {
                    let hint = if e.message.contains("nested shared types") {
                        " (raise --max-nested-types to load it)"
                    } else {
                        ""
                    };
                    return Err(StoreError::Corrupt(format!(
                        "document {id}: {}{hint}",
                        e.message
                    )));
                }
            }
        }
        let dirty = !stored.updates.is_empty();
        this.with_life(|l| {
            // Log rows not folded into the snapshot yet: compact soon.
            l.generation = u64::from(dirty);
            l.stored_generation = 0;
            l.dirty_since = dirty.then_some(now);
            l.approx_size = size;
        });
        Ok(this)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the document down with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn with_life<R>(&self, f: impl FnOnce(&mut Lifecycle) -> R) -> R {
        f(&mut self.lock().life)
    }

    /// Applies an update. Size limits are checked before anything is
    /// applied; a rejected update leaves the document untouched.
    ///
    /// `Ok(Applied::Empty)`: no structs, no deletions (nothing to relay).
    /// `Ok(Applied::Known)`: everything in it was already here; it must still
    /// be relayed (a peer may have missed the update that brought it, which
    /// was not sent back to its own origin), but not logged again.
    pub fn apply_update(&self, bytes: &[u8], limits: &Limits) -> Result<Applied, Error> {
        self.apply_update_relaying(bytes, limits, None, &mut |_, _| {})
    }

    /// [`apply_update`](Self::apply_update), handing `relay` what peers must
    /// receive, in the order the document integrated it and under the
    /// document's lock (so two concurrent updates reach peers in that order
    /// too), each with the connection not to send it to (its sender): the
    /// update itself when it was integrated or already known, what yrs
    /// integrated of a `Partial` one, and every parked update this one
    /// released (not echoed to the connection that sent it either).
    /// A parked update is relayed only once it is integrated: a yrs peer
    /// handed structs past a gap would integrate them with a hole (see
    /// [`split_at_skips`](super::inspect::split_at_skips)).
    pub fn apply_update_relaying(
        &self,
        bytes: &[u8],
        limits: &Limits,
        origin: Option<&str>,
        relay: &mut dyn FnMut(&Bytes, Option<&str>),
    ) -> Result<Applied, Error> {
        limits.check_update_size(bytes.len())?;
        let (update, inspection) = decode_checked(bytes)?;
        if update.is_empty() {
            return Ok(Applied::Empty);
        }
        // Structs after a skip wait like any update that starts past the
        // document's clock; the rest (and the delete set) goes on now.
        let split = split_at_skips(bytes)
            .map_err(|_| Error::new(ErrorCode::InvalidUpdate, "bytes are not a Yjs v1 update"))?;
        let mut inner = self.lock();
        if inner.life.evicted {
            // Unloaded (or its session deleted) while this update was on its
            // way: applying it here would lose it, as nobody reads this copy.
            return Err(Error::new(
                ErrorCode::SessionNotFound,
                "the document is no longer loaded",
            ));
        }
        if inner.life.approx_size + bytes.len() > limits.max_document_bytes {
            return Err(Error::new(
                ErrorCode::DocumentTooLarge,
                format!(
                    "the document would exceed {} bytes",
                    limits.max_document_bytes
                ),
            ));
        }
        let new_types = inspection
            .nested_types
            .iter()
            .filter(|id| !inner.nested_types.contains(id))
            .count();
        if inner.nested_types.len() + new_types > limits.max_nested_types {
            return Err(too_many_nested_types(limits.max_nested_types));
        }
        let Some(split) = split else {
            return self.apply_piece(&mut inner, bytes, update, inspection, origin, relay);
        };
        let tails: Vec<ParkedUpdate> = split
            .tails
            .into_iter()
            .filter_map(|t| {
                let ranges = inspect_update(&t).ok()?.clock_ranges;
                Some(ParkedUpdate {
                    bytes: Bytes::from(t),
                    ranges,
                    origin: origin.map(Arc::from),
                })
            })
            .collect();
        let tail_bytes: usize = tails.iter().map(|t| t.bytes.len()).sum();
        if inner.parked.len() + tails.len() + 1 > MAX_PARKED_UPDATES
            || inner.parked_bytes + tail_bytes + bytes.len() > MAX_PARKED_BYTES
        {
            return Err(Error::out_of_order());
        }
        inner.nested_types.extend(inspection.nested_types);
        inner.parked_bytes += tail_bytes;
        inner.parked.extend(tails);
        inner.life.approx_size += tail_bytes;
        let (head, head_inspection) = decode_checked(&split.head)?;
        let head_applied = if head.is_empty() {
            Applied::Known
        } else {
            self.apply_piece(
                &mut inner,
                &split.head,
                head,
                head_inspection,
                origin,
                relay,
            )?
        };
        // Whatever the head did, the tails may go now (the document may
        // hold the skipped clocks already).
        let released = self.drain_parked(&mut inner, relay);
        Ok(match head_applied {
            // Not relayed as a whole: the skips would reach peers.
            Applied::Known | Applied::Empty if released => Applied::Changed,
            Applied::Known | Applied::Empty => Applied::Parked,
            other => other,
        })
    }

    /// One update without skips (or the head of a split one), the document
    /// checks passed, under the lock.
    fn apply_piece(
        &self,
        inner: &mut Inner,
        bytes: &[u8],
        update: Update,
        inspection: super::inspect::Inspection,
        origin: Option<&str>,
        relay: &mut dyn FnMut(&Bytes, Option<&str>),
    ) -> Result<Applied, Error> {
        let nested = inspection.nested_types;
        // One state vector serves the whole update: every write to the
        // document happens under its lock, which is held from here on.
        let before = self.doc.transact().state_vector();
        if skips_clocks(&inspection.clock_ranges, &before) {
            if inner.parked.len() >= MAX_PARKED_UPDATES
                || inner.parked_bytes + bytes.len() > MAX_PARKED_BYTES
            {
                return Err(Error::out_of_order());
            }
            inner.nested_types.extend(nested);
            inner.parked_bytes += bytes.len();
            inner.parked.push(ParkedUpdate {
                bytes: Bytes::copy_from_slice(bytes),
                ranges: inspection.clock_ranges,
                origin: origin.map(Arc::from),
            });
            inner.life.approx_size += bytes.len();
            return Ok(Applied::Parked);
        }
        inner.nested_types.extend(nested);
        let (changed, failure) = {
            let mut txn = self.doc.transact_mut();
            // A pure re-send: every struct is below the state vector already.
            let resend = inspection
                .clock_ranges
                .iter()
                .all(|(client, _, end)| *end <= before.get(&ClientID::new(*client)));
            // yrs has panicked on fuzzed input inside integration; a panic
            // must not take the task (or the next transaction) down.
            let result =
                match std::panic::catch_unwind(AssertUnwindSafe(|| txn.apply_update(update))) {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => {
                        tracing::error!(session_id = %self.id, "yrs panicked applying an update");
                        Err("yrs panicked".to_owned())
                    }
                };
            // New structs, new deletions, or anything parked waiting for a
            // missing dependency (an update that arrived out of order) count
            // as a change; a pure re-send does not. Compared whatever the
            // result: yrs may integrate part of an update and then fail.
            // And whatever yrs reports, structs the document did not have
            // count as a change (fuzzing found updates with a clock gap that
            // yrs integrates without moving its state vector).
            let changed = txn.state_vector() != before
                || !txn.delete_set().is_empty()
                || txn.has_missing_updates()
                || !resend;
            let failure = result.err().map(|e| {
                tracing::warn!(session_id = %self.id, error = %e, changed, "update refused by yrs");
                let error = Error::new(
                    ErrorCode::InvalidUpdate,
                    "the update does not apply to this document",
                );
                (error, changed.then(|| Bytes::from(txn.encode_update_v1())))
            });
            (changed, failure)
        };
        if !changed {
            return match failure {
                Some((error, _)) => Err(error),
                None => {
                    relay(&Bytes::copy_from_slice(bytes), origin);
                    Ok(Applied::Known)
                }
            };
        }
        match &failure {
            Some((_, Some(effective))) => relay(effective, origin),
            _ => relay(&Bytes::copy_from_slice(bytes), origin),
        }
        let now = Instant::now();
        let life = &mut inner.life;
        life.generation += 1;
        life.dirty_since.get_or_insert(now);
        life.last_change = now;
        life.last_used = now;
        life.approx_size += bytes.len();
        self.drain_parked(inner, relay);
        Ok(match failure {
            Some((error, Some(effective))) => Applied::Partial { effective, error },
            _ => Applied::Changed,
        })
    }

    /// Applies every parked update whose predecessors have arrived, until
    /// none is left that can go; each is relayed as it is integrated (they
    /// were logged when they came). Returns whether any was applied.
    fn drain_parked(&self, inner: &mut Inner, relay: &mut dyn FnMut(&Bytes, Option<&str>)) -> bool {
        let mut any = false;
        while !inner.parked.is_empty() {
            let sv = self.doc.transact().state_vector();
            let Some(i) = inner
                .parked
                .iter()
                .position(|p| !skips_clocks(&p.ranges, &sv))
            else {
                break;
            };
            let p = inner.parked.swap_remove(i);
            inner.parked_bytes -= p.bytes.len();
            let Ok(update) = decode_update(&p.bytes) else {
                continue;
            };
            let mut txn = self.doc.transact_mut();
            let applied = std::panic::catch_unwind(AssertUnwindSafe(|| txn.apply_update(update)));
            drop(txn);
            if matches!(applied, Ok(Ok(()))) {
                relay(&p.bytes, p.origin.as_deref());
            } else {
                tracing::warn!(session_id = %self.id, "a parked update did not apply");
            }
            inner.life.generation += 1;
            any = true;
        }
        if any {
            let now = Instant::now();
            inner.life.dirty_since.get_or_insert(now);
            inner.life.last_change = now;
        }
        any
    }

    /// The server's state vector (sync step 1).
    pub fn state_vector(&self) -> Bytes {
        Bytes::from(self.doc.transact().state_vector().encode_v1())
    }

    /// Everything the server has that `state_vector` lacks (sync step 2).
    pub fn diff(&self, state_vector: &[u8]) -> Result<Bytes, Error> {
        let sv = std::panic::catch_unwind(|| StateVector::decode_v1(state_vector))
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                Error::new(ErrorCode::InvalidUpdate, "bytes are not a Yjs state vector")
            })?;
        self.encode(&sv).map(Bytes::from)
    }

    /// The whole document as one update.
    pub fn encode_state(&self) -> Result<Vec<u8>, Error> {
        self.encode(&StateVector::default())
    }

    /// Encodes what `sv` lacks. yrs re-encodes parked (pending) structs on
    /// the way and has been seen to panic doing so on fuzzed input; a panic
    /// here must not take a socket handler or the maintenance task down.
    fn encode(&self, sv: &StateVector) -> Result<Vec<u8>, Error> {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.doc.transact().encode_state_as_update_v1(sv)
        }))
        .map_err(|_| {
            tracing::error!(session_id = %self.id, "yrs panicked while encoding the document");
            Error::internal()
        })
    }

    /// The `monaco` text.
    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    // ---- presence -------------------------------------------------------

    /// Registers a connection of `user` with `role`. Idempotent per connection.
    pub fn join(&self, conn: &str, user: &User, role: Role) -> JoinOutcome {
        let pinned = user.sessions.contains_key(&*self.id);
        let c = Conn {
            user_id: user.id.clone(),
            role,
            pinned,
            guest_cap: user.guest_cap,
            clients: HashSet::new(),
        };
        register(&mut self.lock(), conn, c, &user.name)
    }

    /// Removes a connection: its awareness states, its typing flag if it was
    /// the user's last connection.
    pub fn leave(&self, conn: &str) -> LeaveOutcome {
        let mut inner = self.lock();
        let Some(c) = inner.conns.remove(conn) else {
            return LeaveOutcome::default();
        };
        let mut out = LeaveOutcome::default();
        if !c.clients.is_empty() {
            let ids: Vec<ClientID> = c.clients.into_iter().collect();
            for id in &ids {
                inner.awareness.remove_state(*id);
                inner.awareness_owner.remove(id);
            }
            out.awareness_removal = inner
                .awareness
                .update_with_clients(ids)
                .ok()
                .map(|u| Bytes::from(u.encode_v1()));
        }
        let last = match inner.users.get_mut(&c.user_id) {
            Some(u) => {
                u.connections = u.connections.saturating_sub(1);
                u.connections == 0
            }
            None => false,
        };
        if last {
            inner.users.remove(&c.user_id);
            out.stopped_typing = inner.typing.remove(&c.user_id).is_some();
            out.user_left = Some(c.user_id);
        }
        out
    }

    /// Connected users now, each with the highest role of their connections.
    pub fn participants(&self) -> Vec<Participant> {
        self.participants_where(|_| true)
    }

    /// Users with a connection `counts` accepts, each with the highest role
    /// of those connections, sorted by id.
    fn participants_where(&self, counts: impl Fn(&str) -> bool) -> Vec<Participant> {
        let inner = self.lock();
        let mut v: Vec<Participant> = inner
            .users
            .iter()
            .filter_map(|(id, u)| {
                let role = inner
                    .conns
                    .iter()
                    .filter(|(c, conn)| conn.user_id == *id && counts(c))
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

    /// Number of connections (sockets) in the session.
    pub fn connection_count(&self) -> usize {
        self.lock().conns.len()
    }

    /// The current role of connection `conn` (`None` = not joined).
    pub fn role_of(&self, conn: &str) -> Option<Role> {
        self.lock().conns.get(conn).map(|c| c.role)
    }

    /// The user behind a connection: `(id, name)`.
    pub fn user_of(&self, conn: &str) -> Option<(String, String)> {
        let inner = self.lock();
        let user_id = &inner.conns.get(conn)?.user_id;
        inner
            .users
            .get(user_id)
            .map(|u| (user_id.clone(), u.name.clone()))
    }

    /// Connections whose role follows the session's settings (not pinned by
    /// their token): what [`set_conn_role`](Self::set_conn_role) may change.
    pub fn role_targets(&self) -> Vec<RoleTarget> {
        self.lock()
            .conns
            .iter()
            .filter(|(_, c)| !c.pinned)
            .map(|(id, c)| RoleTarget {
                conn: id.clone(),
                user_id: c.user_id.clone(),
                guest_cap: c.guest_cap,
            })
            .collect()
    }

    /// Sets an unpinned connection's role at once (HTTP role and visibility
    /// changes). `None` = no access left: the connection can no longer edit,
    /// and `true` tells the caller to remove it from the session.
    pub fn set_conn_role(&self, conn: &str, role: Option<Role>) -> bool {
        let mut inner = self.lock();
        let Some(c) = inner.conns.get_mut(conn).filter(|c| !c.pinned) else {
            return false;
        };
        c.role = role.unwrap_or(Role::Viewer);
        role.is_none()
    }

    /// Applies an awareness update from `conn` and remembers which client ids
    /// it speaks for. A connection may announce at most
    /// [`MAX_AWARENESS_STATES_PER_CONN`] client ids, each state at most
    /// [`MAX_AWARENESS_STATE_BYTES`], and may change or remove only the
    /// client ids it introduced itself.
    pub fn apply_awareness(&self, conn: &str, bytes: &[u8]) -> Result<(), Error> {
        let update = decode_awareness(bytes)?;
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(c) = inner.conns.get_mut(conn) else {
            return Err(Error::new(ErrorCode::NotJoined, "join the session first"));
        };
        let mut new_ids = 0;
        for (id, entry) in &update.clients {
            if entry.json.len() > MAX_AWARENESS_STATE_BYTES {
                return Err(Error::new(
                    ErrorCode::InvalidUpdate,
                    format!("awareness states are at most {MAX_AWARENESS_STATE_BYTES} bytes"),
                ));
            }
            match inner.awareness_owner.get(id) {
                Some(owner) if owner != conn => {
                    return Err(Error::new(
                        ErrorCode::InvalidUpdate,
                        "awareness client id announced by another connection",
                    ));
                }
                Some(_) => {}
                None if &*entry.json != "null" => new_ids += 1,
                None => {}
            }
        }
        if c.clients.len() + new_ids > MAX_AWARENESS_STATES_PER_CONN {
            return Err(Error::new(
                ErrorCode::InvalidUpdate,
                format!(
                    "a connection announces at most {MAX_AWARENESS_STATES_PER_CONN} awareness states"
                ),
            ));
        }
        for (id, entry) in &update.clients {
            if &*entry.json == "null" {
                if c.clients.remove(id) {
                    inner.awareness_owner.remove(id);
                }
            } else if c.clients.insert(*id) {
                inner.awareness_owner.insert(*id, conn.to_owned());
            }
        }
        inner
            .awareness
            .apply_update(update)
            .map_err(|_| Error::new(ErrorCode::InvalidUpdate, "awareness update refused"))?;
        inner.life.last_used = Instant::now();
        Ok(())
    }

    /// All present awareness states as one update (for a joiner).
    pub fn awareness_states(&self) -> Option<Bytes> {
        let inner = self.lock();
        let u = inner.awareness.update().ok()?;
        (!u.clients.is_empty()).then(|| Bytes::from(u.encode_v1()))
    }

    /// Removes states nobody refreshed for 30 s; returns the removal to broadcast.
    pub fn sweep_awareness(&self, now_ms: u64) -> Option<Bytes> {
        let mut inner = self.lock();
        let stale: Vec<ClientID> = inner
            .awareness
            .iter()
            .filter(|(_, st)| {
                st.data.is_some() && now_ms.saturating_sub(st.last_updated) > AWARENESS_TIMEOUT_MS
            })
            .map(|(id, _)| id)
            .collect();
        if stale.is_empty() {
            return None;
        }
        for id in &stale {
            inner.awareness.remove_state(*id);
            inner.awareness_owner.remove(id);
        }
        for c in inner.conns.values_mut() {
            for id in &stale {
                c.clients.remove(id);
            }
        }
        inner
            .awareness
            .update_with_clients(stale)
            .ok()
            .map(|u| Bytes::from(u.encode_v1()))
    }

    // ---- typing ---------------------------------------------------------

    /// Marks the user typing; `true` if they were not already.
    pub fn set_typing(&self, user_id: &str, typing: bool, now: Instant) -> bool {
        let mut inner = self.lock();
        if typing {
            inner
                .typing
                .insert(user_id.to_owned(), now + TYPING_TIMEOUT)
                .is_none()
        } else {
            inner.typing.remove(user_id).is_some()
        }
    }

    /// Users whose typing indicator expired at `now` (removed).
    pub fn expire_typing(&self, now: Instant) -> Vec<String> {
        let mut inner = self.lock();
        let expired: Vec<String> = inner
            .typing
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(u, _)| u.clone())
            .collect();
        for u in &expired {
            inner.typing.remove(u);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::Text;

    fn limits() -> Limits {
        Limits {
            max_update_bytes: 1 << 20,
            max_document_bytes: 1 << 20,
            ..Limits::default()
        }
    }

    fn edit(text: &str) -> Vec<u8> {
        let d = Doc::new();
        let t = d.get_or_insert_text(TEXT_NAME);
        let mut txn = d.transact_mut();
        t.insert(&mut txn, 0, text);
        txn.encode_update_v1()
    }

    pub(super) fn user(id: &str) -> User {
        User {
            id: id.into(),
            name: id.to_uppercase(),
            sessions: Default::default(),
            guest_cap: None,
        }
    }

    #[test]
    fn applies_diffs_and_ignores_duplicates_and_garbage() {
        let d = SessionDoc::load("s", &StoredDocument::default(), &Limits::default()).unwrap();
        let u = edit("hello");
        assert_eq!(d.apply_update(&u, &limits()).unwrap(), Applied::Changed);
        assert_eq!(
            d.apply_update(&u, &limits()).unwrap(),
            Applied::Known,
            "a duplicate changes nothing"
        );
        assert_eq!(d.text(), "hello");
        for junk in [
            &b"\xff\xff\xff"[..],
            &[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f][..],
            b"garbage!",
        ] {
            assert_eq!(
                d.apply_update(junk, &limits()).unwrap_err().code,
                ErrorCode::InvalidUpdate
            );
        }
        assert_eq!(d.text(), "hello");
        // A fresh replica syncing from the empty state vector gets everything.
        let empty_sv = StateVector::default().encode_v1();
        let diff = d.diff(&empty_sv).unwrap();
        let other = SessionDoc::load("t", &StoredDocument::default(), &Limits::default()).unwrap();
        other.apply_update(&diff, &limits()).unwrap();
        assert_eq!(other.text(), "hello");
        assert_eq!(d.diff(b"\xff").unwrap_err().code, ErrorCode::InvalidUpdate);
    }

    #[test]
    fn size_limits_leave_the_document_untouched() {
        let d = SessionDoc::load("s", &StoredDocument::default(), &Limits::default()).unwrap();
        let small = Limits {
            max_update_bytes: 10,
            max_document_bytes: 1 << 20,
            ..Limits::default()
        };
        assert_eq!(
            d.apply_update(&edit("a long insert"), &small)
                .unwrap_err()
                .code,
            ErrorCode::UpdateTooLarge
        );
        let tiny_doc = Limits {
            max_update_bytes: 1 << 20,
            max_document_bytes: 60,
            ..Limits::default()
        };
        d.apply_update(&edit("ok"), &tiny_doc).unwrap();
        assert_eq!(
            d.apply_update(&edit("x".repeat(80).as_str()), &tiny_doc)
                .unwrap_err()
                .code,
            ErrorCode::DocumentTooLarge
        );
        assert_eq!(d.text(), "ok");
    }

    #[test]
    fn presence_tracks_users_connections_and_awareness() {
        let d = SessionDoc::load("s", &StoredDocument::default(), &Limits::default()).unwrap();
        assert!(d.join("c1", &user("u1"), Role::Editor).first_for_user);
        assert!(!d.join("c2", &user("u1"), Role::Editor).first_for_user);
        assert!(d.join("c3", &user("u2"), Role::Viewer).first_for_user);
        assert_eq!(d.participants().len(), 2);
        assert_eq!(d.role_of("c3"), Some(Role::Viewer));

        // c1 announces awareness client 42.
        let peer = Awareness::new(Doc::with_client_id(42));
        peer.doc();
        let mut peer = peer;
        peer.set_local_state_raw(r#"{"user":"u1"}"#);
        let bytes = peer.update().unwrap().encode_v1();
        d.apply_awareness("c1", &bytes).unwrap();
        assert!(d.awareness_states().is_some());
        assert_eq!(
            d.apply_awareness("c1", b"\x01\xff").unwrap_err().code,
            ErrorCode::InvalidUpdate
        );

        let out = d.leave("c1");
        assert!(out.awareness_removal.is_some(), "announced state removed");
        assert_eq!(out.user_left, None, "u1 still has c2");
        assert!(d.awareness_states().is_none());
        assert_eq!(d.leave("c2").user_left.as_deref(), Some("u1"));
        assert_eq!(d.participants().len(), 1);
    }

    #[test]
    fn typing_expires() {
        let d = SessionDoc::load("s", &StoredDocument::default(), &Limits::default()).unwrap();
        let t0 = Instant::now();
        assert!(d.set_typing("u", true, t0));
        assert!(!d.set_typing("u", true, t0));
        assert!(
            d.expire_typing(t0 + std::time::Duration::from_secs(4))
                .is_empty()
        );
        assert_eq!(d.expire_typing(t0 + TYPING_TIMEOUT), vec!["u".to_string()]);
    }
}

#[cfg(test)]
mod ooo_tests {
    use super::*;
    use yrs::Text;

    /// An update that skips clocks is not handed to yrs (which integrates
    /// it without moving its state vector and later panics in its block
    /// search): it is parked, and applied as soon as its predecessors are.
    #[test]
    fn updates_that_skip_clocks_wait_for_their_predecessors() {
        let limits = Limits {
            max_update_bytes: 1 << 20,
            max_document_bytes: 1 << 20,
            ..Limits::default()
        };
        let a = Doc::with_client_id(1);
        let ta = a.get_or_insert_text(TEXT_NAME);
        let mut ups = Vec::new();
        for i in 0..20u32 {
            let mut txn = a.transact_mut();
            let len = ta.len(&txn);
            ta.insert(&mut txn, (i * 7) % (len + 1), "x");
            ups.push(txn.encode_update_v1());
        }
        let d = SessionDoc::load("s", &StoredDocument::default(), &limits).unwrap();
        // Reverse order: every update but the first skips clocks.
        for (i, u) in ups.iter().enumerate().rev() {
            let r = d.apply_update(u, &limits).unwrap();
            if i == 0 {
                assert_eq!(r, Applied::Changed);
            } else {
                assert_eq!(r, Applied::Parked, "update {i}");
                assert_eq!(d.text(), "", "nothing applied before its predecessors");
            }
        }
        // The first one released every parked update.
        assert_eq!(d.text(), ta.get_string(&a.transact()));
        // A stored log in that order loads to the same text.
        let stored = StoredDocument {
            head: 0,
            snapshot: None,
            updates: ups.iter().rev().cloned().collect(),
        };
        let again = SessionDoc::load("s", &stored, &limits).unwrap();
        assert_eq!(again.text(), ta.get_string(&a.transact()));
    }
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    #[test]
    fn awareness_not_refreshed_for_30_s_is_swept() {
        let d = SessionDoc::load("s", &StoredDocument::default(), &Limits::default()).unwrap();
        let user = User {
            id: "u".into(),
            name: "U".into(),
            sessions: Default::default(),
            guest_cap: None,
        };
        d.join("c1", &user, Role::Editor);
        let mut peer = Awareness::new(Doc::with_client_id(7));
        peer.set_local_state_raw(r#"{"cursor":1}"#);
        d.apply_awareness("c1", &peer.update().unwrap().encode_v1())
            .unwrap();
        let now = crate::model::now_ms() as u64;
        assert!(
            d.sweep_awareness(now + 29_000).is_none(),
            "fresh states stay"
        );
        let removal = d
            .sweep_awareness(now + 31_000)
            .expect("stale state removed");
        let u = AwarenessUpdate::decode_v1(&removal).unwrap();
        assert_eq!(&*u.clients[&ClientID::new(7)].json, "null");
        assert!(d.awareness_states().is_none());
        // The socket no longer speaks for it: leaving removes nothing twice.
        assert!(d.leave("c1").awareness_removal.is_none());
    }
}

#[cfg(test)]
mod hardening_tests {
    use super::*;
    use yrs::{Map, MapPrelim, WriteTxn};

    /// The limit is safe: a chain as deep as the default allows can be
    /// created, deleted, encoded and reloaded on a thread with a tokio
    /// worker's stack (2 MiB), in a debug build.
    #[test]
    fn a_chain_at_the_nesting_limit_is_safe_on_a_worker_stack() {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let limits = Limits::default();
                let d = SessionDoc::load("s", &StoredDocument::default(), &limits).unwrap();
                let src = Doc::with_client_id(5);
                let root = src.get_or_insert_map("m");
                let mut cur: Option<yrs::MapRef> = None;
                for _ in 0..limits.max_nested_types {
                    let mut txn = src.transact_mut();
                    let next = match &cur {
                        None => root.insert(&mut txn, "k", MapPrelim::default()),
                        Some(m) => m.insert(&mut txn, "k", MapPrelim::default()),
                    };
                    cur = Some(next);
                    let u = txn.encode_update_v1();
                    drop(txn);
                    assert_eq!(d.apply_update(&u, &limits).unwrap(), Applied::Changed);
                }
                // One more level is refused.
                let mut txn = src.transact_mut();
                cur.as_ref()
                    .unwrap()
                    .insert(&mut txn, "k", MapPrelim::default());
                let u = txn.encode_update_v1();
                drop(txn);
                assert_eq!(
                    d.apply_update(&u, &limits).unwrap_err().code,
                    ErrorCode::InvalidUpdate
                );
                // Delete the outermost, encode, reload.
                let del = {
                    let mut txn = src.transact_mut();
                    txn.get_or_insert_map("m").remove(&mut txn, "k");
                    txn.encode_update_v1()
                };
                d.apply_update(&del, &limits).unwrap();
                let state = d.encode_state().unwrap();
                let again = SessionDoc::load(
                    "s",
                    &StoredDocument {
                        head: 0,
                        snapshot: Some(state),
                        updates: vec![],
                    },
                    &limits,
                )
                .unwrap();
                assert_eq!(again.text(), "");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn an_evicted_copy_refuses_updates() {
        let d = SessionDoc::load("s", &StoredDocument::default(), &Limits::default()).unwrap();
        d.with_life(|l| l.evicted = true);
        let src = Doc::new();
        let t = src.get_or_insert_text(TEXT_NAME);
        let u = {
            let mut x = src.transact_mut();
            yrs::Text::insert(&t, &mut x, 0, "lost?");
            x.encode_update_v1()
        };
        assert_eq!(
            d.apply_update(&u, &Limits::default()).unwrap_err().code,
            ErrorCode::SessionNotFound
        );
        assert_eq!(d.text(), "");
    }

    #[test]
    fn roles_are_per_connection() {
        let d = SessionDoc::load("s", &StoredDocument::default(), &Limits::default()).unwrap();
        let mut pinned = User {
            id: "u".into(),
            name: "U".into(),
            sessions: Default::default(),
            guest_cap: None,
        };
        pinned.sessions.insert("s".into(), Role::Viewer);
        let plain = User {
            sessions: Default::default(),
            ..pinned.clone()
        };
        d.join("c1", &pinned, Role::Viewer);
        d.join("c2", &plain, Role::Editor);
        assert_eq!(d.role_of("c1"), Some(Role::Viewer));
        assert_eq!(d.role_of("c2"), Some(Role::Editor));
        assert_eq!(d.participants()[0].role, Role::Editor);
        let targets = d.role_targets();
        assert_eq!(targets.len(), 1, "the pinned connection is not a target");
        assert!(d.set_conn_role("c2", None), "revoked");
        assert!(!d.set_conn_role("c1", None), "pinned: untouched");
        assert_eq!(d.role_of("c1"), Some(Role::Viewer));
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// The fuzz harness's framing: 2-byte little-endian lengths, at most four.
    fn frames(mut data: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while out.len() < 4 && data.len() >= 2 {
            let len = u16::from_le_bytes([data[0], data[1]]) as usize;
            let rest = &data[2..];
            let (f, tail) = rest.split_at(len.min(rest.len()));
            out.push(f);
            data = tail;
        }
        out
    }

    /// Every input `cargo fuzz` found for `update_apply` (see
    /// docs/FUZZING.md) is a regression test: applying it never panics, the
    /// document stays encodable, and what would be logged replays to the
    /// same text.
    #[test]
    fn update_apply_findings_stay_fixed() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-regressions");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("update_apply-") {
                continue;
            }
            seen += 1;
            let data = std::fs::read(&path).unwrap();
            let limits = Limits::default();
            let d = SessionDoc::load("s", &StoredDocument::default(), &limits).unwrap();
            let mut logged = Vec::new();
            for f in frames(&data) {
                match d.apply_update(f, &limits) {
                    // The manager logs a held-back update at once.
                    Ok(Applied::Changed | Applied::Parked) => logged.push(f.to_vec()),
                    Ok(Applied::Partial { effective, .. }) => logged.push(effective.to_vec()),
                    _ => {}
                }
            }
            d.diff(&d.state_vector())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let state = d.encode_state().unwrap_or_else(|e| panic!("{name}: {e}"));
            let snap = SessionDoc::load(
                "s",
                &StoredDocument {
                    head: 0,
                    snapshot: Some(state),
                    updates: vec![],
                },
                &limits,
            )
            .unwrap();
            assert_eq!(snap.text(), d.text(), "{name}: snapshot reload");
            let replay = SessionDoc::load(
                "s",
                &StoredDocument {
                    head: 0,
                    snapshot: None,
                    updates: logged,
                },
                &limits,
            )
            .unwrap();
            assert_eq!(replay.text(), d.text(), "{name}: log replay");
        }
        assert!(seen >= 4, "regression inputs missing: {seen}");
    }
}
