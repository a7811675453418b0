//! The one client-facing error: a stable [`ErrorCode`] (PROTOCOL.md, "Error
//! codes") plus a human message. Internal details are logged where they occur
//! and never put into an [`Error`] sent to a client.

use serde::{Deserialize, Serialize};

/// Stable error codes of PROTOCOL.md. The wire form is SCREAMING_SNAKE_CASE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    SessionNotFound,
    InvalidSessionId,
    NotJoined,
    InvalidPayload,
    InvalidUpdate,
    UpdateTooLarge,
    DocumentTooLarge,
    RateLimited,
    MessageEmpty,
    MessageTooLong,
    FileNotFound,
    PathExists,
    InvalidPath,
    TooManyFiles,
    Internal,
}

impl ErrorCode {
    /// Every code, in PROTOCOL.md's order (docs/PROTOCOL.md, "Error codes";
    /// `tests/docs_consistency.rs` checks the two agree).
    pub const ALL: [ErrorCode; 17] = [
        Self::Unauthorized,
        Self::Forbidden,
        Self::SessionNotFound,
        Self::InvalidSessionId,
        Self::NotJoined,
        Self::InvalidPayload,
        Self::InvalidUpdate,
        Self::UpdateTooLarge,
        Self::DocumentTooLarge,
        Self::RateLimited,
        Self::MessageEmpty,
        Self::MessageTooLong,
        Self::FileNotFound,
        Self::PathExists,
        Self::InvalidPath,
        Self::TooManyFiles,
        Self::Internal,
    ];

    /// The wire name, e.g. `SESSION_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::SessionNotFound => "SESSION_NOT_FOUND",
            Self::InvalidSessionId => "INVALID_SESSION_ID",
            Self::NotJoined => "NOT_JOINED",
            Self::InvalidPayload => "INVALID_PAYLOAD",
            Self::InvalidUpdate => "INVALID_UPDATE",
            Self::UpdateTooLarge => "UPDATE_TOO_LARGE",
            Self::DocumentTooLarge => "DOCUMENT_TOO_LARGE",
            Self::RateLimited => "RATE_LIMITED",
            Self::MessageEmpty => "MESSAGE_EMPTY",
            Self::MessageTooLong => "MESSAGE_TOO_LONG",
            Self::FileNotFound => "FILE_NOT_FOUND",
            Self::PathExists => "PATH_EXISTS",
            Self::InvalidPath => "INVALID_PATH",
            Self::TooManyFiles => "TOO_MANY_FILES",
            Self::Internal => "INTERNAL",
        }
    }

    /// HTTP status of PROTOCOL.md's HTTP API for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::SessionNotFound | Self::FileNotFound => 404,
            Self::PathExists => 409,
            Self::UpdateTooLarge | Self::DocumentTooLarge => 413,
            Self::RateLimited => 429,
            Self::Internal => 500,
            _ => 400,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Error = { code, message, sessionId?, docId?, retryAfterMs? }` of PROTOCOL.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The document the failed request named (workspace files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            session_id: None,
            doc_id: None,
            retry_after_ms: None,
        }
    }

    /// An `INTERNAL` error. Log the cause before calling this; it is not sent.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal server error")
    }

    pub fn with_session(mut self, session_id: &str) -> Self {
        self.session_id = Some(session_id.to_owned());
        self
    }

    /// Names the document (and its session) a failed request was about.
    /// A malformed id is kept as the session id only.
    pub fn with_doc(mut self, doc_id: &str) -> Self {
        match crate::model::DocId::parse(doc_id) {
            Ok(d) => {
                self.session_id = Some(d.session.clone());
                self.doc_id = Some(doc_id.to_owned());
            }
            Err(_) => self.session_id = Some(doc_id.to_owned()),
        }
        self
    }

    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self::rate_limited_with(retry_after_ms, "update rate limit exceeded")
    }

    /// An update that skips clocks the server has not seen while too many
    /// such updates already wait for their predecessors: not applied; a
    /// socket is asked to resync (`INVALID_UPDATE` with this message).
    pub fn out_of_order() -> Self {
        Self::new(ErrorCode::InvalidUpdate, OUT_OF_ORDER)
    }

    /// Was this [`Error::out_of_order`]?
    pub fn is_out_of_order(&self) -> bool {
        self.code == ErrorCode::InvalidUpdate && self.message == OUT_OF_ORDER
    }

    /// `RATE_LIMITED` with its own message (which budget ran out).
    pub fn rate_limited_with(retry_after_ms: u64, message: &str) -> Self {
        Self {
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::MainFileUndeletable => Self::new(ErrorCode::Forbidden, e.to_string()),
            StoreError::TooManyFiles { .. } => Self::new(ErrorCode::TooManyFiles, e.to_string()),
            StoreError::InvalidPath(_) | StoreError::PathExists { .. } => {
                let code = if matches!(e, StoreError::PathExists { .. }) {
                    ErrorCode::PathExists
                } else {
                    ErrorCode::InvalidPath
                };
                Self::new(code, e.to_string())
            }
            e => {
                tracing::error!(error = %e, "store error");
                Self::internal()
            }
        }
    }
}

const OUT_OF_ORDER: &str =
    "the update skips clocks the server has not seen; the server asks for a resync";

/// Result with the client-facing [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Each variant's place in [`ErrorCode::ALL`]. The match is exhaustive,
    /// so a new variant does not compile until it is given the next index
    /// here, the reminder to append it to `ALL` (and to docs/PROTOCOL.md).
    fn index(c: ErrorCode) -> usize {
        match c {
            ErrorCode::Unauthorized => 0,
            ErrorCode::Forbidden => 1,
            ErrorCode::SessionNotFound => 2,
            ErrorCode::InvalidSessionId => 3,
            ErrorCode::NotJoined => 4,
            ErrorCode::InvalidPayload => 5,
            ErrorCode::InvalidUpdate => 6,
            ErrorCode::UpdateTooLarge => 7,
            ErrorCode::DocumentTooLarge => 8,
            ErrorCode::RateLimited => 9,
            ErrorCode::MessageEmpty => 10,
            ErrorCode::MessageTooLong => 11,
            ErrorCode::FileNotFound => 12,
            ErrorCode::PathExists => 13,
            ErrorCode::InvalidPath => 14,
            ErrorCode::TooManyFiles => 15,
            ErrorCode::Internal => 16,
        }
    }

    #[test]
    fn all_lists_every_code_once_with_unique_wire_names() {
        for (i, c) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(index(c), i, "{c} out of place in ErrorCode::ALL");
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::Value::String(c.as_str().to_owned()),
                "serde and as_str disagree"
            );
        }
        let names: std::collections::HashSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "duplicate wire names");
    }
}
