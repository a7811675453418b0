//! The native dialect on namespace `/` (PROTOCOL.md, "Native dialect"): one
//! socket, any number of sessions. Authentication happens in the connect
//! middleware; handlers are registered before any `.await` so no early event
//! is lost (socketioxide pitfall).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;

use super::{
    AppState, ConnState, Dialect, Presence, SioPeer, WantsAck, accept_update, authenticate,
    emit_or_kick, lock, relay_awareness, request_client_diff, resolve_session, room,
};
use crate::core::DocLease;
use crate::error::{Error, ErrorCode};
use crate::model::{ChatMessage, DocId, File, Participant, Role, validate_session_id};

/// Chat messages longer than this (in characters, after trimming) are refused.
pub const MAX_CHAT_CHARS: usize = 1000;
/// Chat messages returned in the `join-session` ack.
pub const JOIN_CHAT_HISTORY: i64 = 50;

/// Per-socket state, kept in the socket's extensions.
pub struct NativeSocket {
    conn: Arc<ConnState>,
    joined: Mutex<Joined>,
}

/// The sessions a socket joined. Once the socket disconnected (`closed`),
/// nothing may be added: a join that was still awaiting the database
/// finds the flag and registers no presence (else a ghost participant).
#[derive(Default)]
struct Joined {
    closed: bool,
    docs: HashMap<String, Presence>,
}

impl NativeSocket {
    /// A lease on a document this socket has open (a joined session's main
    /// document, or an opened file), for the duration of one request.
    /// Checked in PROTOCOL.md's order: id format, then joined/opened.
    fn doc(&self, doc_id: &str) -> Result<DocLease, Error> {
        DocId::parse(doc_id).map_err(|e| e.with_doc(doc_id))?;
        lock(&self.joined)
            .docs
            .get(doc_id)
            .map(|p| p.lease().clone())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::NotJoined,
                    "join the session or open the file first",
                )
                .with_doc(doc_id)
            })
    }

    /// A joined session's main document (chat, typing: sessions only).
    fn session_doc(&self, session_id: &str) -> Result<DocLease, Error> {
        validate_session_id(session_id)?;
        self.doc(session_id)
    }
}

/// The `connect_error` message: exactly the code.
#[derive(Debug)]
pub struct Refusal(pub ErrorCode);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionArg {
    session_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileArg {
    session_id: String,
    file_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatArg {
    session_id: String,
    content: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinReply {
    ok: bool,
    session_id: String,
    role: Role,
    participants: Vec<Participant>,
    chat: Vec<ChatMessage>,
    files: Vec<File>,
}

#[derive(Serialize)]
struct Failure<'a> {
    ok: bool,
    error: &'a Error,
}

fn invalid_payload() -> Error {
    Error::new(
        ErrorCode::InvalidPayload,
        "arguments of the wrong shape or type",
    )
}

/// The socket went away while its request was in flight: nothing to answer.
fn gone() -> Error {
    Error::new(ErrorCode::NotJoined, "the connection closed")
}

/// Answers a request: through its ack if it has one, else failures as an `error` event.
fn reply<T: Serialize>(s: &SocketRef, ack: AckSender, wants_ack: bool, result: Result<T, Error>) {
    match result {
        Ok(v) => {
            let _ = ack.send(&v);
        }
        Err(e) => {
            if e.code == ErrorCode::Internal {
                metrics::counter!("tandem_internal_errors_total").increment(1);
            }
            if wants_ack {
                let _ = ack.send(&Failure {
                    ok: false,
                    error: &e,
                });
            } else {
                emit_or_kick(s, "error", &e);
            }
        }
    }
}

fn ok() -> serde_json::Value {
    serde_json::json!({ "ok": true })
}

async fn authenticate_mw(
    s: SocketRef,
    TryData(auth): TryData<serde_json::Value>,
    State(st): State<AppState>,
) -> Result<(), Refusal> {
    let user = authenticate(&st, auth.ok().as_ref()).map_err(|e| Refusal(e.code))?;
    let ctx = Arc::new(NativeSocket {
        conn: ConnState::new(user, &st.config),
        joined: Mutex::new(Joined::default()),
    });
    // The user's room: per-user events reach every socket of the user
    // before its connection completes (PROTOCOL.md, "Per-user events").
    s.join(super::user_room(&ctx.conn.user.id));
    s.extensions.insert(ctx);
    // Handlers go on here, not in the connect handler: socketioxide sends
    // CONNECT and then spawns the connect handler, so events a client sends
    // right after CONNECT would find no handler and be dropped.
    register_handlers(&s);
    Ok(())
}

fn ctx(s: &SocketRef) -> Arc<NativeSocket> {
    s.extensions
        .get::<Arc<NativeSocket>>()
        .expect("set by the connect middleware")
}

/// Registers the namespace.
pub fn register(io: &SocketIo) {
    io.ns("/", on_connect.with(authenticate_mw));
}

async fn on_connect(s: SocketRef) {
    // Counted here: only a connected socket ever runs its disconnect handler.
    crate::telemetry::connection_opened("native");
    tracing::debug!(socket_id = %s.id, user_id = %ctx(&s).conn.user.id, "native socket connected");
}

fn register_handlers(s: &SocketRef) {
    s.on(
        "join-session",
        async |s: SocketRef,
               TryData(a): TryData<SessionArg>,
               ack: AckSender,
               WantsAck(w): WantsAck,
               State(st): State<AppState>| {
            let result = match a {
                Ok(a) => join(&s, &st, &a.session_id).await,
                Err(_) => Err(invalid_payload()),
            };
            let joined = result.as_ref().ok().map(|r| r.session_id.clone());
            reply(&s, ack, w, result);
            if let Some(id) = joined {
                after_join(&s, &st, &id);
            }
        },
    );
    s.on(
        "leave-session",
        async |s: SocketRef,
               TryData(a): TryData<SessionArg>,
               ack: AckSender,
               WantsAck(w): WantsAck| {
            let result = match a {
                Ok(a) => {
                    if leave(&s, &a.session_id) {
                        Ok(ok())
                    } else {
                        Err(Error::new(ErrorCode::NotJoined, "not joined")
                            .with_session(&a.session_id))
                    }
                }
                Err(_) => Err(invalid_payload()),
            };
            reply(&s, ack, w, result);
        },
    );
    s.on(
        "open-file",
        async |s: SocketRef,
               TryData(a): TryData<FileArg>,
               ack: AckSender,
               WantsAck(w): WantsAck,
               State(st): State<AppState>| {
            let result = match a {
                Ok(a) => open_file(&s, &st, &a.session_id, &a.file_id).await,
                Err(_) => Err(invalid_payload()),
            };
            let opened = result.as_ref().ok().map(|(doc_id, _)| doc_id.clone());
            reply(
                &s,
                ack,
                w,
                result.map(|(doc_id, file)| {
                    serde_json::json!({ "ok": true, "docId": doc_id.to_string(), "file": file })
                }),
            );
            if let Some(doc_id) = opened.filter(|d| !d.is_main()) {
                after_join(&s, &st, &doc_id.to_string());
            }
        },
    );
    s.on(
        "close-file",
        async |s: SocketRef,
               TryData(a): TryData<FileArg>,
               ack: AckSender,
               WantsAck(w): WantsAck| {
            let result = match a {
                Ok(a) => close_file(&s, &a.session_id, &a.file_id).map(|()| ok()),
                Err(_) => Err(invalid_payload()),
            };
            reply(&s, ack, w, result);
        },
    );
    s.on(
        "yjs-sync-step-1",
        async |s: SocketRef,
               TryData(a): TryData<(String, Bytes)>,
               ack: AckSender,
               WantsAck(w): WantsAck| {
            let result = match a {
                Ok((id, sv)) => ctx(&s)
                    .doc(&id)
                    .and_then(|d| d.diff(&sv))
                    .map_err(|e| e.with_doc(&id)),
                Err(_) => Err(invalid_payload()),
            };
            reply(&s, ack, w, result);
        },
    );
    s.on(
        "yjs-update",
        async |s: SocketRef,
               TryData(a): TryData<(String, Bytes)>,
               ack: AckSender,
               WantsAck(w): WantsAck,
               State(st): State<AppState>| {
            let result = match a {
                Ok((id, update)) => {
                    let c = ctx(&s);
                    match c.doc(&id) {
                        Ok(doc) => {
                            accept_update(
                                &SioPeer(s.clone(), Dialect::Native),
                                &st,
                                &c.conn,
                                &doc,
                                update,
                                w,
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    }
                    .map(|()| ok())
                    .map_err(|e| e.with_doc(&id))
                }
                Err(_) => Err(invalid_payload()),
            };
            reply(&s, ack, w, result);
        },
    );
    s.on(
        "yjs-awareness",
        async |s: SocketRef,
               TryData(a): TryData<(String, Bytes)>,
               ack: AckSender,
               WantsAck(w): WantsAck,
               State(st): State<AppState>| {
            let result = match a {
                Ok((id, bytes)) => {
                    let c = ctx(&s);
                    c.doc(&id)
                        .and_then(|d| {
                            relay_awareness(
                                &SioPeer(s.clone(), Dialect::Native),
                                &st,
                                &c.conn,
                                &d,
                                bytes,
                            )
                        })
                        .map_err(|e| e.with_doc(&id))
                }
                Err(_) => Err(invalid_payload()),
            };
            if result.is_err() || w {
                reply(&s, ack, w, result.map(|()| ok()));
            }
        },
    );
    s.on(
        "chat-message",
        async |s: SocketRef,
               TryData(a): TryData<ChatArg>,
               ack: AckSender,
               WantsAck(w): WantsAck,
               io: SocketIo,
               State(st): State<AppState>| {
            let result = match a {
                Ok(a) => chat(&s, &st, &io, &a.session_id, &a.content)
                    .await
                    .map_err(|e| e.with_session(&a.session_id)),
                Err(_) => Err(invalid_payload()),
            };
            reply(
                &s,
                ack,
                w,
                result.map(|m| serde_json::json!({ "ok": true, "message": m })),
            );
        },
    );
    for (event, typing) in [("typing", true), ("stop-typing", false)] {
        s.on(
            event,
            async move |s: SocketRef,
                        TryData(a): TryData<SessionArg>,
                        ack: AckSender,
                        WantsAck(w): WantsAck,
                        io: SocketIo,
                        State(st): State<AppState>| {
                let out = super::Broadcast::new(&st, &io);
                let result = match a {
                    Ok(a) => set_typing(&s, &out, &a.session_id, typing)
                        .map_err(|e| e.with_session(&a.session_id)),
                    Err(_) => Err(invalid_payload()),
                };
                if result.is_err() || w {
                    reply(&s, ack, w, result.map(|()| ok()));
                }
            },
        );
    }
    s.on_disconnect(async |s: SocketRef| {
        crate::telemetry::connection_closed("native");
        // Close first, then drop every presence outside the lock (dropping
        // one broadcasts its removal).
        let c = ctx(&s);
        let docs = {
            let mut j = lock(&c.joined);
            j.closed = true;
            std::mem::take(&mut j.docs)
        };
        drop(docs);
    });
}

async fn join(s: &SocketRef, st: &AppState, session_id: &str) -> Result<JoinReply, Error> {
    let c = ctx(s);
    c.conn
        .check_join()
        .map_err(|e| e.with_session(session_id))?;
    let (session, role) = resolve_session(st, &c.conn.user, session_id)
        .await
        .map_err(|e| e.with_session(session_id))?;
    let lease = st
        .manager
        .open_fresh(&session.id)
        .await
        .map_err(|e| e.with_session(session_id))?;
    let chat = st
        .manager
        .store()
        .list_chat(session_id, None, JOIN_CHAT_HISTORY)
        .await?;
    let files = st.manager.store().list_files(session_id).await?;
    // No `.await` from here on: presence is registered only on a socket
    // that is still connected, atomically with the disconnect handler.
    let mut joined = lock(&c.joined);
    if joined.closed {
        return Err(gone());
    }
    match joined.docs.get(session_id) {
        Some(presence) => presence.refresh(role),
        None => {
            let presence = Presence::join(st, lease, s.id.as_str(), c.conn.user.clone(), role);
            s.join(room(session_id));
            joined.docs.insert(session_id.to_owned(), presence);
        }
    }
    let participants = joined.docs[session_id].participants();
    Ok(JoinReply {
        ok: true,
        session_id: session_id.to_owned(),
        role,
        participants,
        chat,
        files,
    })
}

/// `open-file`: the file's document joins the socket's open documents,
/// with the connection's role in the session. `main` is always open.
async fn open_file(
    s: &SocketRef,
    st: &AppState,
    session_id: &str,
    file_id: &str,
) -> Result<(DocId, File), Error> {
    let c = ctx(s);
    let doc_id = file_doc_id(session_id, file_id)?;
    let key = doc_id.to_string();
    let role = {
        let joined = lock(&c.joined);
        joined.docs.get(session_id).and_then(|p| p.role())
    }
    .ok_or_else(|| Error::new(ErrorCode::NotJoined, "join the session first").with_doc(&key))?;
    let file = st
        .manager
        .store()
        .get_file(session_id, file_id)
        .await?
        .ok_or_else(|| Error::new(ErrorCode::FileNotFound, "no such file").with_doc(&key))?;
    if doc_id.is_main() || lock(&c.joined).docs.contains_key(&key) {
        return Ok((doc_id, file));
    }
    let lease = st
        .manager
        .open_fresh(&key)
        .await
        .map_err(|e| e.with_doc(&key))?;
    let mut joined = lock(&c.joined);
    if joined.closed {
        return Err(gone());
    }
    if !joined.docs.contains_key(session_id) {
        return Err(Error::new(ErrorCode::NotJoined, "the session was left").with_doc(&key));
    }
    if let std::collections::hash_map::Entry::Vacant(slot) = joined.docs.entry(key) {
        let presence = Presence::join(st, lease, s.id.as_str(), c.conn.user.clone(), role);
        s.join(room(slot.key()));
        slot.insert(presence);
    }
    Ok((doc_id, file))
}

/// The document of `file_id` in `session_id` (`main`: the session's own).
fn file_doc_id(session_id: &str, file_id: &str) -> Result<DocId, Error> {
    validate_session_id(session_id)?;
    DocId::for_file(session_id, file_id).ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidSessionId,
            "file ids match ^[A-Za-z0-9_-]{1,64}$",
        )
        .with_session(session_id)
    })
}

/// `close-file`: the socket's presence in the file's document goes (its
/// awareness states are removed at once). `main` stays open.
fn close_file(s: &SocketRef, session_id: &str, file_id: &str) -> Result<(), Error> {
    let doc_id = file_doc_id(session_id, file_id)?;
    let key = doc_id.to_string();
    let c = ctx(s);
    let presence = {
        let mut joined = lock(&c.joined);
        if !joined.docs.contains_key(session_id) {
            return Err(Error::new(ErrorCode::NotJoined, "join the session first").with_doc(&key));
        }
        if doc_id.is_main() {
            return Ok(());
        }
        joined.docs.remove(&key)
    };
    if presence.is_some() {
        s.leave(room(&key));
    }
    drop(presence);
    Ok(())
}

/// After a join (or an `open-file`) ack: ask the client for what it has
/// (sync step 1) and send the presence of everyone already there.
fn after_join(s: &SocketRef, st: &AppState, doc_id: &str) {
    let c = ctx(s);
    let Ok(doc) = c.doc(doc_id) else {
        return;
    };
    let states = doc.awareness_states();
    request_client_diff(s.clone(), st.clone(), c.conn.clone(), doc, Dialect::Native);
    if let Some(states) = states {
        emit_or_kick(s, "yjs-awareness", &(doc_id, states));
    }
}

async fn chat(
    s: &SocketRef,
    st: &AppState,
    io: &SocketIo,
    session_id: &str,
    content: &str,
) -> Result<ChatMessage, Error> {
    let c = ctx(s);
    c.session_doc(session_id)?;
    let content = validate_chat(content)?;
    let msg = st
        .manager
        .store()
        .insert_chat(session_id, &c.conn.user.id, &c.conn.user.name, content)
        .await?;
    super::Broadcast::new(st, io).emit(vec![room(session_id)], None, "chat-message", &msg);
    Ok(msg)
}

/// Trims and checks a chat message (PROTOCOL.md error codes).
pub fn validate_chat(content: &str) -> Result<&str, Error> {
    let content = content.trim();
    if content.is_empty() {
        return Err(Error::new(ErrorCode::MessageEmpty, "message is empty"));
    }
    if content.chars().count() > MAX_CHAT_CHARS {
        return Err(Error::new(
            ErrorCode::MessageTooLong,
            format!("messages are at most {MAX_CHAT_CHARS} characters"),
        ));
    }
    Ok(content)
}

fn set_typing(
    s: &SocketRef,
    out: &super::Broadcast,
    session_id: &str,
    typing: bool,
) -> Result<(), Error> {
    let c = ctx(s);
    let doc = c.session_doc(session_id)?;
    let changed = doc.set_typing(&c.conn.user.id, typing, tokio::time::Instant::now());
    if typing {
        // Always relay a refresh: the 5 s expiry restarts at the others too.
        let msg = serde_json::json!({ "sessionId": session_id, "userId": c.conn.user.id, "userName": c.conn.user.name });
        out.emit(
            vec![room(session_id)],
            Some(s.id.as_str()),
            "user-typing",
            &msg,
        );
    } else if changed {
        let msg = serde_json::json!({ "sessionId": session_id, "userId": c.conn.user.id });
        out.emit(
            vec![room(session_id)],
            Some(s.id.as_str()),
            "user-stopped-typing",
            &msg,
        );
    }
    Ok(())
}

/// Leaves one session and closes its files; `false` if the socket had not
/// joined it.
fn leave(s: &SocketRef, session_id: &str) -> bool {
    let c = ctx(s);
    let left: Vec<(String, Presence)> = {
        let mut joined = lock(&c.joined);
        if !joined.docs.contains_key(session_id) {
            return false;
        }
        let ids: Vec<String> = joined
            .docs
            .keys()
            .filter(|k| DocId::in_session(k, session_id))
            .cloned()
            .collect();
        ids.into_iter()
            .filter_map(|k| joined.docs.remove(&k).map(|p| (k, p)))
            .collect()
    };
    for (doc_id, presence) in left {
        s.leave(room(&doc_id));
        drop(presence);
    }
    true
}

/// Removes the given sockets from a session (their access was revoked):
/// each hears `error` `FORBIDDEN`, leaves the room and the presence list.
pub fn revoke(io: &SocketIo, session_id: &str, conns: &[String]) {
    let err = Error::new(
        ErrorCode::Forbidden,
        "your access to this session was removed",
    )
    .with_session(session_id);
    for s in io.to(room(session_id)).sockets() {
        if conns.iter().any(|c| c == s.id.as_str()) && leave(&s, session_id) {
            emit_or_kick(&s, "error", &err);
        }
    }
}

/// Closes document `doc_id` for every native socket that has it open: each
/// hears `error` (`err`), leaves the document's room, and its presence there
/// is dropped (awareness removed at once).
pub fn close_document(io: &SocketIo, doc_id: &str, err: &Error) {
    for s in io.to(room(doc_id)).sockets() {
        if let Some(c) = s.extensions.get::<Arc<NativeSocket>>() {
            let presence = lock(&c.joined).docs.remove(doc_id);
            drop(presence);
        }
        s.leave(room(doc_id));
        emit_or_kick(&s, "error", err);
    }
}
