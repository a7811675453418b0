//! Workspace files over HTTP (PROTOCOL.md, "Workspaces: files in a
//! session"): list, create, rename / move / change language, delete, get and
//! replace content, and the whole workspace as a zip. Viewer+ reads, editor+
//! writes. Every committed change is announced to the session's sockets
//! ([`crate::protocol::events`]); a refused request changes and emits nothing.

use std::io::Write;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;

use super::extract::{AuthUser, JsonBody, RawBody};
use super::sessions::{ApiResult, authorize, session_json};
use super::{ApiError, HttpState};
use crate::auth::User;
use crate::error::{Error, ErrorCode};
use crate::model::{DocId, File, MAIN_FILE_ID, Role, SessionInfo, is_valid_id, validate_path};
use crate::protocol::events::{self, Actor, Origin};
use crate::store::NewFile;

/// The request header naming the caller's socket (`originSocketId`).
pub const SOCKET_ID_HEADER: &str = "x-socket-id";

/// `X-Socket-Id`, when it is a plausible socket id (printable, at most 128 bytes).
pub(super) fn origin_socket_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(SOCKET_ID_HEADER)?.to_str().ok()?.trim();
    (!v.is_empty() && v.len() <= 128 && !v.chars().any(char::is_control)).then(|| v.to_owned())
}

/// Who did it, with the role they hold, and from which socket.
pub(super) fn origin(user: &User, role: Role, headers: &HeaderMap) -> Origin {
    Origin {
        actor: Actor {
            user_id: user.id.clone(),
            user_name: user.name.clone(),
            role,
        },
        socket_id: origin_socket_id(headers),
    }
}

fn file_not_found() -> ApiError {
    ApiError::new(ErrorCode::FileNotFound, "no such file in this session")
}

/// The document of `file_id` in `session_id`; a malformed file id names no file.
fn doc_id(session_id: &str, file_id: &str) -> ApiResult<String> {
    DocId::for_file(session_id, file_id)
        .map(|d| d.to_string())
        .ok_or_else(file_not_found)
}

async fn get_file(st: &HttpState, session_id: &str, file_id: &str) -> ApiResult<File> {
    if !is_valid_id(file_id) {
        return Err(file_not_found());
    }
    st.app
        .manager
        .store()
        .get_file(session_id, file_id)
        .await?
        .ok_or_else(file_not_found)
}

/// A document's text: the live document if loaded, else the text of its
/// latest snapshot, else (a main file never snapshotted) the loaded document.
/// In cluster mode another node may hold the document with edits its
/// latest snapshot lacks: the document is loaded (or caught up) instead.
async fn current_text(st: &HttpState, doc_id: &str) -> ApiResult<String> {
    let manager = &st.app.manager;
    if let Some(doc) = manager.get_loaded(doc_id) {
        manager.refresh(&doc).await?;
        let text = doc.text();
        // What this shows must survive a crash right after it was shown.
        manager.durable(&doc).await;
        return Ok(text);
    }
    if !manager.replicated()
        && let Some(text) = manager.store().stored_text(doc_id).await?
    {
        return Ok(text);
    }
    Ok(manager.open_fresh(doc_id).await?.text())
}

fn check_language(language: Option<&str>) -> ApiResult<()> {
    match language {
        Some(l) if l.is_empty() || l.chars().count() > 64 => Err(ApiError::new(
            ErrorCode::InvalidPayload,
            "language must be 1 to 64 characters",
        )),
        _ => Ok(()),
    }
}

/// Refuses a workspace that would hold more than `--max-workspace-bytes`
/// once `added` bytes replace `removed` ones.
async fn check_workspace_bytes(
    st: &HttpState,
    session_id: &str,
    removed: u64,
    added: u64,
) -> ApiResult<()> {
    let now = st
        .app
        .manager
        .store()
        .workspace_bytes(session_id)
        .await?
        .max(0) as u64;
    let max = st.app.config.max_workspace_bytes;
    if now.saturating_sub(removed).saturating_add(added) > max {
        return Err(ApiError::new(
            ErrorCode::DocumentTooLarge,
            format!("the workspace would exceed its limit of {max} bytes"),
        ));
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/api/sessions/{id}/files",
    tag = "files",
    summary = "The session's files, sorted by path (viewer+)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every file, the main file included, sorted by path", body = Vec<File>),
        (status = 400, description = "INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: the role does not allow it", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<File>>> {
    authorize(&st, &user, &id, Role::Viewer).await?;
    Ok(Json(st.app.manager.store().list_files(&id).await?))
}

/// `POST /api/sessions/{id}/files`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFileBody {
    /// Relative POSIX path (see PROTOCOL.md, "Paths").
    path: String,
    /// Initial text (default empty).
    content: Option<String>,
    /// Default: guessed from the extension (`plaintext` when unknown).
    language: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/sessions/{id}/files",
    tag = "files",
    summary = "Create a file, optionally with content (editor+)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$")),
    request_body(content = NewFileBody),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new file; `file:created` went to the session's sockets", body = File),
        (status = 400, description = "INVALID_PAYLOAD, INVALID_SESSION_ID, INVALID_PATH or TOO_MANY_FILES", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: viewers cannot create files", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
        (status = 409, description = "PATH_EXISTS: the path, or a folder of it, is taken", body = super::openapi::ErrorBody),
        (status = 413, description = "UPDATE_TOO_LARGE (body above the limit) or DOCUMENT_TOO_LARGE (workspace above --max-workspace-bytes)", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewFileBody>,
) -> ApiResult<Response> {
    check_language(body.language.as_deref())?;
    let (_, role) = authorize(&st, &user, &id, Role::Editor).await?;
    validate_path(&body.path).map_err(crate::store::StoreError::from)?;
    let store = st.app.manager.store();
    let content_len = body.content.as_ref().map_or(0, |c| c.len() as u64);
    check_workspace_bytes(&st, &id, 0, content_len).await?;
    let language = body
        .language
        .clone()
        .unwrap_or_else(|| crate::model::language_for_path(&body.path).to_owned());
    let file = store
        .create_file(
            &id,
            &NewFile {
                path: body.path,
                language,
                content: body.content,
                created_by: user.id.clone(),
                max_files: st.app.config.max_files_per_session,
            },
        )
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::SessionNotFound, "no such session"))?;
    tracing::info!(session_id = %id, file_id = %file.id, by = %user.id, "file created");
    events::file_created(&st.out, &id, &file, &origin(&user, role, &headers));
    Ok((StatusCode::CREATED, Json(file)).into_response())
}

/// `PATCH /api/sessions/{id}/files/{fileId}`: at least one field.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePatch {
    /// New path: same folder renames, another folder moves.
    path: Option<String>,
    language: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/api/sessions/{id}/files/{file_id}",
    tag = "files",
    summary = "Rename, move or change the language of a file (editor+)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$"), ("file_id" = String, Path, description = "File id (`main` is the main file)")),
    request_body(content = FilePatch),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The file; one `file:renamed`, `file:moved` or `file:updated` went to the session's sockets", body = File),
        (status = 400, description = "INVALID_PAYLOAD (no field given), INVALID_SESSION_ID or INVALID_PATH", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: viewers cannot change files", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND or FILE_NOT_FOUND", body = super::openapi::ErrorBody),
        (status = 409, description = "PATH_EXISTS: the path, or a folder of it, is taken", body = super::openapi::ErrorBody),
    )
)]
pub async fn update(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path((id, file_id)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<FilePatch>,
) -> ApiResult<Json<File>> {
    check_language(body.language.as_deref())?;
    if body.path.is_none() && body.language.is_none() {
        return Err(ApiError::new(
            ErrorCode::InvalidPayload,
            "give `path`, `language` or both",
        ));
    }
    let (_, role) = authorize(&st, &user, &id, Role::Editor).await?;
    if let Some(p) = &body.path {
        validate_path(p).map_err(crate::store::StoreError::from)?;
    }
    if !is_valid_id(&file_id) {
        return Err(file_not_found());
    }
    let store = st.app.manager.store();
    let changed = store
        .rename_file(
            &id,
            &file_id,
            body.path.as_deref(),
            body.language.as_deref(),
            &user.id,
        )
        .await?
        .ok_or_else(file_not_found)?;
    let o = origin(&user, role, &headers);
    let file = &changed.file;
    if file.path != changed.old_path {
        events::file_path_changed(&st.out, &id, file, &changed.old_path, &o);
    } else if file.language != changed.old_language {
        events::file_updated(&st.out, &id, file, &o);
    }
    if file_id == MAIN_FILE_ID && file.language != changed.old_language {
        // The main file's language is the session's language.
        if let Some(session) = store.get_session(&id).await? {
            announce_session_updated(&st, session).await?;
        }
    }
    tracing::info!(session_id = %id, file_id = %file_id, by = %user.id, "file changed");
    Ok(Json(changed.file))
}

/// `session:updated` to every user with a participant row in the session.
pub(super) async fn announce_session_updated(
    st: &HttpState,
    session: SessionInfo,
) -> ApiResult<()> {
    let users: Vec<String> = st
        .app
        .manager
        .store()
        .list_participants(&session.id)
        .await?
        .into_iter()
        .map(|p| p.user_id)
        .collect();
    events::session_updated(&st.out, &users, &session_json(session, None));
    Ok(())
}

#[utoipa::path(
    delete,
    path = "/api/sessions/{id}/files/{file_id}",
    tag = "files",
    summary = "Delete a file and its history (editor+; not the main file)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$"), ("file_id" = String, Path, description = "File id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; sockets that had it open got `error` FILE_NOT_FOUND, the session's sockets `file:deleted`"),
        (status = 400, description = "INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: viewers cannot delete files; the main file cannot be deleted", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND or FILE_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path((id, file_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let (_, role) = authorize(&st, &user, &id, Role::Editor).await?;
    if file_id != MAIN_FILE_ID && !is_valid_id(&file_id) {
        return Err(file_not_found());
    }
    let file = st
        .app
        .manager
        .store()
        .delete_file(&id, &file_id)
        .await?
        .ok_or_else(file_not_found)?;
    let doc = doc_id(&id, &file_id)?;
    close_file_document(&st, &id, &doc);
    events::file_deleted(&st.out, &id, &file, &origin(&user, role, &headers));
    tracing::info!(session_id = %id, file_id = %file_id, by = %user.id, "file deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Tells the sockets that have a deleted file's document open
/// (`FILE_NOT_FOUND` with its `docId`) and drops the document from memory.
pub(super) fn close_file_document(st: &HttpState, session_id: &str, doc_id: &str) {
    let err = Error::new(ErrorCode::FileNotFound, "the file was deleted")
        .with_session(session_id)
        .with_doc(doc_id);
    crate::protocol::document_deleted(&st.app, &st.io, doc_id, &err);
}

#[utoipa::path(
    get,
    path = "/api/sessions/{id}/files/{file_id}/content",
    tag = "files",
    summary = "A file's text (viewer+), from the live document if loaded",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$"), ("file_id" = String, Path, description = "File id (`main` is the main file)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The text of the file's root Y.Text `monaco`", body = String, content_type = "text/plain"),
        (status = 400, description = "INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: the role does not allow it", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND or FILE_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_content(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path((id, file_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    authorize(&st, &user, &id, Role::Viewer).await?;
    get_file(&st, &id, &file_id).await?;
    let text = current_text(&st, &doc_id(&id, &file_id)?).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[utoipa::path(
    put,
    path = "/api/sessions/{id}/files/{file_id}/content",
    tag = "files",
    summary = "Replace a file's text by the minimal Yjs edit (editor+)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$"), ("file_id" = String, Path, description = "File id (`main` is the main file)")),
    request_body(content = String, content_type = "text/plain", description = "The new text (UTF-8)"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The file; the edit is applied, durably logged and relayed, and `file:updated` went to the session's sockets (unless the text was already that)", body = File),
        (status = 400, description = "INVALID_PAYLOAD (not UTF-8) or INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: viewers cannot edit", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND or FILE_NOT_FOUND", body = super::openapi::ErrorBody),
        (status = 413, description = "UPDATE_TOO_LARGE or DOCUMENT_TOO_LARGE (the document, or the workspace above --max-workspace-bytes)", body = super::openapi::ErrorBody),
    )
)]
pub async fn put_content(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path((id, file_id)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Json<File>> {
    let (_, role) = authorize(&st, &user, &id, Role::Editor).await?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(ErrorCode::InvalidPayload, "the body is not UTF-8 text"))?;
    let file = get_file(&st, &id, &file_id).await?;
    check_workspace_bytes(&st, &id, file.size.max(0) as u64, text.len() as u64).await?;
    let doc_id = doc_id(&id, &file_id)?;
    let manager = &st.app.manager;
    // The diff is taken against the text every node agrees on so far.
    let lease = manager.open_fresh(&doc_id).await?;
    let state = lease.encode_state()?;
    let update = tokio::task::spawn_blocking(move || replace_text_update(&state, &text))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "text diff task failed");
            Error::internal()
        })??;
    let Some(update) = update else {
        // Already that text: nothing replaced, nothing announced.
        return Ok(Json(file));
    };
    manager.limits().check_update_size(update.len())?;
    // No origin: the caller's socket does not hold this edit yet and must
    // receive it like everyone else.
    manager.submit(&lease, update, None, true).await?;
    // The new size and who changed it, as the file row tells them.
    if let Some(doc) = manager.get_loaded(&doc_id) {
        manager.flush(&doc).await;
    }
    drop(lease);
    let file = manager
        .store()
        .rename_file(&id, &file_id, None, None, &user.id)
        .await?
        .map(|r| r.file)
        .ok_or_else(file_not_found)?;
    events::file_updated(&st.out, &id, &file, &origin(&user, role, &headers));
    tracing::info!(session_id = %id, file_id = %file_id, by = %user.id, "file content replaced");
    Ok(Json(file))
}

/// The Yjs update that turns the `monaco` text of the document `state` into
/// `new_text` with the fewest inserted and deleted characters (a character
/// diff), so concurrent editors converge and their cursors (relative
/// positions) in unchanged text stay put. `None` if the text is already
/// `new_text`. Offsets are UTF-8 bytes at character boundaries, the
/// replica's offset kind.
pub fn replace_text_update(state: &[u8], new_text: &str) -> Result<Option<Bytes>, Error> {
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, GetString, OffsetKind, Options, Transact, Update};

    let replica = Doc::with_options(Options {
        offset_kind: OffsetKind::Bytes,
        ..Options::default()
    });
    let text = replica.get_or_insert_text("monaco");
    {
        let update = Update::decode_v1(state).map_err(|_| Error::internal())?;
        replica
            .transact_mut()
            .apply_update(update)
            .map_err(|_| Error::internal())?;
    }
    let old_text = text.get_string(&replica.transact());
    if old_text == new_text {
        return Ok(None);
    }
    let mut txn = replica.transact_mut();
    crate::core::edit_text(&mut txn, &text, &old_text, new_text);
    Ok(Some(Bytes::from(txn.encode_update_v1())))
}

#[utoipa::path(
    get,
    path = "/api/sessions/{id}/archive",
    tag = "files",
    summary = "The whole workspace as a zip (viewer+)",
    params(("id" = String, Path, description = "Session id, ^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A zip of every file at its path, texts from the live documents when loaded", body = super::openapi::ZipArchive, content_type = "application/zip"),
        (status = 400, description = "INVALID_SESSION_ID", body = super::openapi::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing, invalid or expired token", body = super::openapi::ErrorBody),
        (status = 403, description = "FORBIDDEN: the role does not allow it", body = super::openapi::ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = super::openapi::ErrorBody),
    )
)]
pub async fn archive(
    State(st): State<HttpState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    authorize(&st, &user, &id, Role::Viewer).await?;
    let files = st.app.manager.store().list_files(&id).await?;
    let st2 = st.clone();
    let sid = id.clone();
    let texts: Vec<(String, String)> = futures::stream::iter(files)
        .map(|f| {
            let (st, sid) = (st2.clone(), sid.clone());
            async move {
                let text = current_text(&st, &doc_id(&sid, &f.id)?).await?;
                Ok::<_, ApiError>((f.path, text))
            }
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let zip = tokio::task::spawn_blocking(move || build_zip(&texts))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "zip task failed");
            Error::internal()
        })??;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.zip\""),
            ),
        ],
        zip,
    )
        .into_response())
}

/// A zip of `(path, text)` entries, deflated.
pub fn build_zip(entries: &[(String, String)]) -> Result<Vec<u8>, Error> {
    let fail = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "building the zip failed");
        Error::internal()
    };
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (path, text) in entries {
        zip.start_file(path.as_str(), options)
            .map_err(|e| fail(&e))?;
        zip.write_all(text.as_bytes()).map_err(|e| fail(&e))?;
    }
    Ok(zip.finish().map_err(|e| fail(&e))?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

    fn doc_with(text: &str) -> Doc {
        let d = Doc::new();
        let t = d.get_or_insert_text("monaco");
        t.insert(&mut d.transact_mut(), 0, text);
        d
    }

    fn state(d: &Doc) -> Vec<u8> {
        d.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    fn apply(d: &Doc, u: &[u8]) -> String {
        d.transact_mut()
            .apply_update(Update::decode_v1(u).unwrap())
            .unwrap();
        d.get_or_insert_text("monaco").get_string(&d.transact())
    }

    #[test]
    fn replacing_text_converges_with_multibyte_characters() {
        for (old, new) in [
            ("", "hello"),
            ("hello", ""),
            ("hello world", "hello brave new world"),
            ("fn main() {}\n", "fn main() {\n    println!(\"hi\");\n}\n"),
            ("äöü €uro 😀 x", "äü € 😀😀 y"),
            ("日本語のテキスト", "日本のテキスト文字"),
            ("same", "same!"),
        ] {
            let d = doc_with(old);
            let u = replace_text_update(&state(&d), new).unwrap().unwrap();
            assert_eq!(apply(&d, &u), new, "{old:?} -> {new:?}");
        }
        let d = doc_with("unchanged");
        assert!(
            replace_text_update(&state(&d), "unchanged")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_edit_is_minimal_and_merges_with_concurrent_edits() {
        let server = doc_with("aaaa bbbb cccc");
        let editor = Doc::new();
        apply(&editor, &state(&server));
        // The HTTP edit touches only the middle word...
        let u = replace_text_update(&state(&server), "aaaa BBBB cccc")
            .unwrap()
            .unwrap();
        // ... while someone types at the end concurrently.
        let et = editor.get_or_insert_text("monaco");
        let concurrent = {
            let mut txn = editor.transact_mut();
            et.insert(&mut txn, 14, "!");
            txn.encode_update_v1()
        };
        assert_eq!(apply(&server, &u), "aaaa BBBB cccc");
        assert_eq!(apply(&server, &concurrent), "aaaa BBBB cccc!");
        assert_eq!(apply(&editor, &u), "aaaa BBBB cccc!");
        // A small change to a long text is a small update.
        let long = "x".repeat(100_000);
        let d = doc_with(&long);
        let mut changed = long.clone();
        changed.insert(50_000, 'y');
        let u = replace_text_update(&state(&d), &changed).unwrap().unwrap();
        assert!(u.len() < 200, "update of {} bytes", u.len());
        assert_eq!(apply(&d, &u), changed);
    }

    #[test]
    fn zip_holds_every_path() {
        let z = build_zip(&[
            ("main.rs".into(), "fn main() {}".into()),
            ("src/a/b.txt".into(), "ü".into()),
        ])
        .unwrap();
        let mut r = zip::ZipArchive::new(std::io::Cursor::new(z)).unwrap();
        assert_eq!(r.len(), 2);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut r.by_name("src/a/b.txt").unwrap(), &mut s).unwrap();
        assert_eq!(s, "ü");
    }
}
