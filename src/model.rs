//! Plain data shared by the core, the store and the adapters: roles, session
//! ids, document ids, workspace paths, and the JSON shapes of PROTOCOL.md
//! (`Participant`, `ChatMessage`, `Session`, `File`). No I/O here.

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
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::InvalidSessionId,
            "session ids match ^[A-Za-z0-9_-]{1,64}$",
        ))
    }
}

/// The id of every session's main file (PROTOCOL.md, "Workspaces").
pub const MAIN_FILE_ID: &str = "main";

/// Separates the session id from the file id in a document id.
pub const DOC_ID_SEPARATOR: char = '~';

/// Whether `id` matches `^[A-Za-z0-9_-]{1,64}$` (session ids and file ids).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A document id (PROTOCOL.md, "Workspaces: files in a session"): the main
/// file's document id is the session id itself; any other file's is
/// `<session-id>~<file-id>`. This is the one place that spells or parses
/// that form.
///
/// Invariant (kept by every constructor): `session` and `file` match
/// `^[A-Za-z0-9_-]{1,64}$`, and `file` is never `Some("main")` — the main
/// file is `file: None`, so `<session-id>~main` is not a document id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId {
    pub session: String,
    /// `None` for the main file.
    pub file: Option<String>,
}

impl DocId {
    /// Parses `<session-id>` or `<session-id>~<file-id>`; anything else
    /// (including `<session-id>~main`) is `INVALID_SESSION_ID`.
    pub fn parse(s: &str) -> Result<DocId, Error> {
        let invalid = || {
            Error::new(
                ErrorCode::InvalidSessionId,
                "document ids are <session-id> or <session-id>~<file-id>, both matching ^[A-Za-z0-9_-]{1,64}$ (the main file is <session-id>)",
            )
        };
        let (session, file) = match s.split_once(DOC_ID_SEPARATOR) {
            None => (s, None),
            Some((s, f)) => (s, Some(f)),
        };
        if !is_valid_id(session) {
            return Err(invalid());
        }
        match file {
            None => Ok(DocId::main(session)),
            Some(f) if is_valid_id(f) && f != MAIN_FILE_ID => Ok(DocId {
                session: session.to_owned(),
                file: Some(f.to_owned()),
            }),
            Some(_) => Err(invalid()),
        }
    }

    /// The main file's document of `session` (not validated: use [`DocId::parse`]
    /// or [`DocId::for_file`] for untrusted input).
    pub fn main(session: &str) -> DocId {
        DocId {
            session: session.to_owned(),
            file: None,
        }
    }

    /// The document of file `file_id` in `session`; `"main"` gives the main
    /// file's document. `None` if either id is malformed.
    pub fn for_file(session: &str, file_id: &str) -> Option<DocId> {
        if !is_valid_id(session) || !is_valid_id(file_id) {
            return None;
        }
        Some(DocId {
            session: session.to_owned(),
            file: (file_id != MAIN_FILE_ID).then(|| file_id.to_owned()),
        })
    }

    pub fn is_main(&self) -> bool {
        self.file.is_none()
    }

    /// Is `doc_id` a document of `session` (its main file or another)?
    pub fn in_session(doc_id: &str, session: &str) -> bool {
        DocId::parse(doc_id).is_ok_and(|d| d.session == session)
    }

    /// Is `doc_id` well formed and a session's main document?
    pub fn is_main_id(doc_id: &str) -> bool {
        DocId::parse(doc_id).is_ok_and(|d| d.is_main())
    }

    /// The file id: `"main"` for the main file.
    pub fn file_id(&self) -> &str {
        self.file.as_deref().unwrap_or(MAIN_FILE_ID)
    }
}

impl std::fmt::Display for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            None => f.write_str(&self.session),
            Some(file) => write!(f, "{}{DOC_ID_SEPARATOR}{file}", self.session),
        }
    }
}

impl std::str::FromStr for DocId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocId::parse(s)
    }
}

/// Longest workspace path, in bytes of UTF-8.
pub const MAX_PATH_BYTES: usize = 512;

/// Why a workspace path is refused; every variant is `INVALID_PATH` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty")]
    Empty,
    #[error("the path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("the path must be relative (no leading `/`)")]
    Absolute,
    #[error("the path has an empty, `.` or `..` segment")]
    BadSegment,
    #[error("the path contains a control character")]
    ControlCharacter,
}

/// Checks a workspace path (PROTOCOL.md, "Paths"): relative POSIX,
/// case-sensitive, `/`-separated, no empty, `.` or `..` segment, no leading
/// `/`, no control character (C0, DEL, C1), at most 512 bytes of UTF-8.
pub fn validate_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if path.chars().any(char::is_control) {
        // `char::is_control` is exactly Cc: C0, DEL and C1.
        return Err(PathError::ControlCharacter);
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(PathError::BadSegment);
    }
    Ok(())
}

/// The folders of a path, outermost first: `a/b/c` → `["a", "a/b"]`.
pub fn path_folders(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Languages and their file extensions (PROTOCOL.md, the main file's default
/// extension). The one table behind [`extension_for_language`] and
/// [`language_for_path`].
const LANGUAGE_EXTENSIONS: [(&str, &str); 17] = [
    ("rust", "rs"),
    ("typescript", "ts"),
    ("javascript", "js"),
    ("python", "py"),
    ("go", "go"),
    ("java", "java"),
    ("c", "c"),
    ("cpp", "cpp"),
    ("csharp", "cs"),
    ("ruby", "rb"),
    ("markdown", "md"),
    ("json", "json"),
    ("html", "html"),
    ("css", "css"),
    ("shell", "sh"),
    ("sql", "sql"),
    ("yaml", "yaml"),
];

/// The file extension of a language: `rust` → `rs`, anything unknown → `txt`.
pub fn extension_for_language(language: &str) -> &'static str {
    LANGUAGE_EXTENSIONS
        .iter()
        .find(|(l, _)| *l == language)
        .map_or("txt", |(_, e)| e)
}

/// The main file's default path for a session language: `main.<ext>`.
pub fn default_main_path(language: &str) -> String {
    format!("main.{}", extension_for_language(language))
}

/// The language a path's extension suggests (the inverse of
/// [`extension_for_language`], plus `yml`); `plaintext` when unknown.
pub fn language_for_path(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((_, ext)) = name.rsplit_once('.') else {
        return "plaintext";
    };
    if ext == "yml" {
        return "yaml";
    }
    LANGUAGE_EXTENSIONS
        .iter()
        .find(|(_, e)| *e == ext)
        .map_or("plaintext", |(l, _)| l)
}

/// `File = { id, path, language, size, createdAt, updatedAt, updatedBy }`:
/// `size` is the UTF-8 byte length of the text as of the latest snapshot,
/// `updatedBy` a user id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct File {
    pub id: String,
    pub path: String,
    pub language: String,
    pub size: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    pub updated_by: String,
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

    #[test]
    fn doc_ids_parse_and_print() {
        let main = DocId::parse("abc_DEF-1").unwrap();
        assert_eq!(
            (main.session.as_str(), main.file.as_deref()),
            ("abc_DEF-1", None)
        );
        assert!(main.is_main() && main.file_id() == "main");
        assert_eq!(main.to_string(), "abc_DEF-1");
        let f = DocId::parse("s1~f-2_x").unwrap();
        assert_eq!((f.session.as_str(), f.file_id()), ("s1", "f-2_x"));
        assert_eq!(f.to_string(), "s1~f-2_x");
        assert_eq!("s1~f-2_x".parse::<DocId>().unwrap(), f);
        assert_eq!(DocId::for_file("s1", "f-2_x"), Some(f));
        assert_eq!(DocId::for_file("s1", "main"), Some(DocId::main("s1")));
        assert_eq!(DocId::for_file("s1", "a~b"), None);
        assert_eq!(DocId::for_file("s/1", "a"), None);
        let long = "a".repeat(64);
        assert!(DocId::parse(&format!("{long}~{long}")).is_ok());
        for bad in [
            "",
            "~",
            "s~",
            "~f",
            "s~main",
            "s~f~g",
            "s~f/g",
            "s f",
            "ü~f",
            &format!("s~{long}a"),
            &format!("{long}a~f"),
        ] {
            assert_eq!(
                DocId::parse(bad).unwrap_err().code,
                ErrorCode::InvalidSessionId,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn paths_are_checked() {
        for ok in [
            "a",
            "main.rs",
            "src/lib.rs",
            "a/b/c/d.txt",
            ".gitignore",
            "a/.b/..c/...",
            "Ünïcödé/файл.md",
            "with space/x",
            "a\\b",
            &"x".repeat(512),
            &format!("{}é", "x".repeat(510)),
        ] {
            assert_eq!(validate_path(ok), Ok(()), "{ok:?}");
        }
        for (bad, why) in [
            ("", PathError::Empty),
            (&"x".repeat(513) as &str, PathError::TooLong),
            (&format!("{}é", "x".repeat(511)), PathError::TooLong),
            ("/a", PathError::Absolute),
            ("/", PathError::Absolute),
            ("a/", PathError::BadSegment),
            ("a//b", PathError::BadSegment),
            ("./a", PathError::BadSegment),
            ("a/./b", PathError::BadSegment),
            ("..", PathError::BadSegment),
            ("a/../b", PathError::BadSegment),
            ("a\0b", PathError::ControlCharacter),
            ("a\nb", PathError::ControlCharacter),
            ("a\tb", PathError::ControlCharacter),
            ("a\u{7f}", PathError::ControlCharacter),
            ("a\u{85}", PathError::ControlCharacter),
            ("a\u{9f}b", PathError::ControlCharacter),
        ] {
            assert_eq!(validate_path(bad), Err(why), "{bad:?}");
        }
        // U+00A0 (after C1) and U+200B are not control characters.
        assert_eq!(validate_path("a\u{a0}b\u{200b}"), Ok(()));
        assert_eq!(path_folders("a/b/c").collect::<Vec<_>>(), vec!["a", "a/b"]);
        assert_eq!(path_folders("a").count(), 0);
    }

    #[test]
    fn main_path_follows_the_language() {
        for (lang, path) in [
            ("rust", "main.rs"),
            ("typescript", "main.ts"),
            ("javascript", "main.js"),
            ("python", "main.py"),
            ("go", "main.go"),
            ("java", "main.java"),
            ("c", "main.c"),
            ("cpp", "main.cpp"),
            ("csharp", "main.cs"),
            ("ruby", "main.rb"),
            ("markdown", "main.md"),
            ("json", "main.json"),
            ("html", "main.html"),
            ("css", "main.css"),
            ("shell", "main.sh"),
            ("sql", "main.sql"),
            ("yaml", "main.yaml"),
            ("plaintext", "main.txt"),
            ("cobol", "main.txt"),
            ("", "main.txt"),
            ("Rust", "main.txt"),
        ] {
            assert_eq!(default_main_path(lang), path, "{lang:?}");
        }
        assert_eq!(language_for_path("src/lib.rs"), "rust");
        assert_eq!(language_for_path("a.b/c.yml"), "yaml");
        assert_eq!(language_for_path("notes.txt"), "plaintext");
        assert_eq!(language_for_path("a.rs/Makefile"), "plaintext");
        for (lang, ext) in LANGUAGE_EXTENSIONS {
            assert_eq!(language_for_path(&format!("x.{ext}")), lang);
        }
    }
}
