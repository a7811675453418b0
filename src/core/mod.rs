//! The core: live documents and everything decided about them, with no
//! sockets and no SQL. [`DocManager`] owns the LRU of loaded [`SessionDoc`]s,
//! loads and evicts them, feeds the durable update log and schedules
//! snapshots. Adapters call it; it reports what must reach sockets through the
//! [`Fanout`] trait they implement.

mod held;
pub mod inspect;
mod limits;
mod log;
mod manager;
mod replica;
mod session;
mod textedit;

pub use held::HeldBack;
pub use limits::{DEFAULT_MAX_NESTED_TYPES, Limits, UpdateBudget};
pub use manager::{DocLease, DocManager, ManagerConfig};
pub use session::{
    Applied, JoinOutcome, LeaveOutcome, RemotePresence, SessionDoc, decode_awareness,
    decode_update, is_remote,
};
pub use textedit::edit_text;

use bytes::Bytes;

/// Name of the root `Y.Text` that holds the editor text.
pub const TEXT_NAME: &str = "monaco";

/// Awareness states not refreshed for this long are removed (y-protocols' timeout).
pub const AWARENESS_TIMEOUT_MS: u64 = 30_000;

/// A typing indicator not refreshed for this long clears itself.
pub const TYPING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where the core sends what must reach connected clients. Implemented by
/// the protocol layer; `except` is the connection id of the originator.
pub trait Fanout: Send + Sync + 'static {
    /// A document update every other replica of the session must apply.
    fn doc_update(&self, session_id: &str, update: &Bytes, except: Option<&str>);
    /// An awareness update (presence, cursors, removals).
    fn awareness(&self, session_id: &str, update: &Bytes, except: Option<&str>);
    /// A user's first connection joined the session (`user-joined`).
    fn user_joined(&self, session_id: &str, user: &crate::model::Participant, except: Option<&str>);
    /// A user's last connection left the session (`user-left`).
    fn user_left(&self, session_id: &str, user_id: &str);
    /// A user's typing indicator expired.
    fn typing_stopped(&self, session_id: &str, user_id: &str);
    /// The document was unloaded; per-document resources may go.
    fn unloaded(&self, session_id: &str);
    /// The document was loaded from the store (cluster mode: ask the other
    /// nodes who is there).
    fn loaded(&self, _doc_id: &str) {}
    /// A connection of this node joined or left the document, or its role
    /// changed (cluster mode: tell the other nodes).
    fn presence_changed(&self, _doc_id: &str) {}
    /// A group commit wrote these rows: `(document id, its row number
    /// there, the update)`, in commit order (cluster mode: tell the other
    /// nodes, one message per commit).
    fn committed(&self, _rows: &[(&str, i64, &Bytes)]) {}
}
