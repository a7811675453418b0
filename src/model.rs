//! Plain data shared by the core, the store and the adapters: roles, session
//! ids, and the JSON shapes of PROTOCOL.md (`Participant`, `ChatMessage`,
//! `Session`). No I/O here.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode};

/// `owner` > `editor` > `viewer`; `Ord` follows that order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    /// May this role change the document?
    pub fn can_edit(self) -> bool {
        self >= Role::Editor
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::parse(s).ok_or_else(|| format!("unknown role `{s}` (owner, editor, viewer)"))
    }
}

/// Checks a session id against `^[A-Za-z0-9_-]{1,64}$`.
pub fn validate_session_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::InvalidSessionId,
            "session ids match ^[A-Za-z0-9_-]{1,64}$",
        ))
    }
}

/// A stable `#rrggbb` colour per user id (FNV-1a hash into a pleasant palette).
pub fn user_color(user_id: &str) -> String {
    const PALETTE: [&str; 12] = [
        "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#469990",
        "#9a6324", "#800000", "#808000", "#000075",
    ];
    let mut h: u32 = 0x811c_9dc5;
    for b in user_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    PALETTE[(h as usize) % PALETTE.len()].to_owned()
}

/// `Participant = { id, name, role, color }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Participant {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub color: String,
}

/// `ChatMessage = { id, sessionId, userId, userName, content, createdAt }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub id: i64,
    pub session_id: String,
    pub user_id: String,
    pub user_name: String,
    pub content: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A session row (metadata only; the document lives in the core and the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    pub title: String,
    pub language: String,
    pub owner_id: String,
    pub public: bool,
    pub public_role: Role,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Milliseconds since the Unix epoch, the store's timestamp unit.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 (UTC, milliseconds) from epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_pattern() {
        assert!(validate_session_id("abc_DEF-123").is_ok());
        assert!(validate_session_id(&"a".repeat(64)).is_ok());
        for bad in ["", "a?b", "a#b", "a b", "ü", &"a".repeat(65), "a/b"] {
            assert_eq!(
                validate_session_id(bad).unwrap_err().code,
                ErrorCode::InvalidSessionId,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn roles_order_and_colors_are_stable() {
        assert!(Role::Owner > Role::Editor && Role::Editor > Role::Viewer);
        assert!(!Role::Viewer.can_edit() && Role::Editor.can_edit());
        assert_eq!(user_color("alice"), user_color("alice"));
        assert_eq!(user_color("bob").len(), 7);
    }
}
