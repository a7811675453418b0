//! The local folder: which files take part (ignore rules, text only, size
//! limit), reading them as the session sees them (UTF-8, LF) and writing
//! them back atomically with their own line endings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The agent's own folder inside the synced one.
pub const STATE_DIR: &str = ".tandem";

/// The per-folder ignore file read beside `.gitignore`.
pub const IGNORE_FILE: &str = ".tandemignore";

/// What a file on disk holds, as far as syncing goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// UTF-8 text with LF line endings; `crlf` if the file used CRLF.
    Text { text: String, crlf: bool },
    /// Not UTF-8, or contains NUL: never synced.
    Binary,
    /// Above the size limit: never synced.
    TooLarge(u64),
}

/// Size and modification time: when both are unchanged the file is not read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    pub modified: Option<SystemTime>,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// The synced folder.
#[derive(Debug, Clone)]
pub struct Tree {
    pub root: PathBuf,
    pub max_file_bytes: u64,
}

impl Tree {
    /// Every file that takes part, by session path (`a/b.rs`), with its
    /// stamp. Skips `.git/`, the state folder, whatever `.gitignore` and
    /// `.tandemignore` files (at any depth) exclude, and non-files.
    pub fn walk(&self) -> BTreeMap<String, Stamp> {
        let mut out = BTreeMap::new();
        let walker = ignore::WalkBuilder::new(&self.root)
            .hidden(false)
            .parents(false)
            .git_ignore(true)
            .git_global(false)
            .git_exclude(false)
            .require_git(false)
            .ignore(false)
            .add_custom_ignore_filename(IGNORE_FILE)
            .follow_links(false)
            .filter_entry(|e| {
                let name = e.file_name();
                !(e.depth() == 1 && name == STATE_DIR) && name != ".git"
            })
            .build();
        for entry in walker.flatten() {
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let Some(path) = self.session_path(entry.path()) else {
                continue;
            };
            if let Ok(meta) = entry.metadata() {
                out.insert(path, Stamp::of(&meta));
            }
        }
        out
    }

    /// Whether a path the watcher reported could matter (not under `.git/`
    /// or the state folder).
    pub fn is_relevant(&self, abs: &Path) -> bool {
        let Ok(rel) = abs.strip_prefix(&self.root) else {
            return false;
        };
        let mut parts = rel.components();
        match parts.next() {
            Some(std::path::Component::Normal(first)) if first == STATE_DIR => false,
            _ => !rel.components().any(|c| c.as_os_str() == ".git"),
        }
    }

    /// The session path of a file under the root (`/`-separated), if it is
    /// valid UTF-8.
    pub fn session_path(&self, abs: &Path) -> Option<String> {
        let rel = abs.strip_prefix(&self.root).ok()?;
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        let path = parts?.join("/");
        (!path.is_empty()).then_some(path)
    }

    /// The file on disk for a session path.
    pub fn abs(&self, path: &str) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(path.split('/'));
        p
    }

    /// Reads a file as the session would hold it; `None` if it is gone.
    pub fn read(&self, path: &str) -> std::io::Result<Option<(Content, Stamp)>> {
        let abs = self.abs(path);
        let meta = match std::fs::symlink_metadata(&abs) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if meta.len() > self.max_file_bytes {
            return Ok(Some((Content::TooLarge(meta.len()), Stamp::of(&meta))));
        }
        let bytes = match std::fs::read(&abs) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // The stamp from before the read: a write racing the read then
        // shows as a changed stamp on the next look, never the reverse.
        Ok(Some((decode(bytes), Stamp::of(&meta))))
    }

    /// Writes `text` (LF) to `path` with CRLF endings if `crlf`, atomically
    /// (a temporary file in the state folder renamed over it), creating
    /// parent folders. Returns the new stamp.
    pub fn write(&self, path: &str, text: &str, crlf: bool) -> std::io::Result<Stamp> {
        let abs = self.abs(path);
        if let Some(parent) = abs.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let body = if crlf {
            text.replace('\n', "\r\n")
        } else {
            text.to_owned()
        };
        write_atomic(&self.state_dir(), &abs, body.as_bytes())?;
        Ok(Stamp::of(&std::fs::metadata(&abs)?))
    }

    /// Moves a file to another session path (creating folders, removing
    /// the old folders that became empty).
    pub fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        let (a, b) = (self.abs(from), self.abs(to));
        if let Some(parent) = b.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&a, &b)?;
        self.prune_dirs(from);
        Ok(())
    }

    /// Deletes a file and the folders that became empty.
    pub fn remove(&self, path: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.abs(path)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.prune_dirs(path);
        Ok(())
    }

    /// Removes the (now empty) folders of `path`, deepest first, never the root.
    fn prune_dirs(&self, path: &str) {
        let mut dir = self.abs(path);
        while dir.pop() && dir != self.root && dir.starts_with(&self.root) {
            if std::fs::remove_dir(&dir).is_err() {
                break;
            }
        }
    }

    /// A free name beside `path` for a conflicting copy:
    /// `<name>.conflict-<timestamp><ext>`.
    pub fn conflict_path(&self, path: &str) -> String {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
            _ => (name, String::new()),
        };
        let mut candidate = format!("{dir}{stem}.conflict-{stamp}{ext}");
        let mut n = 1;
        while self.abs(&candidate).exists() {
            n += 1;
            candidate = format!("{dir}{stem}.conflict-{stamp}-{n}{ext}");
        }
        candidate
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }
}

/// Writes `bytes` to `target` atomically: a temporary file in
/// `<state_dir>/tmp` (same file system as the folder) renamed over it,
/// keeping the permissions of the file it replaces.
pub fn write_atomic(state_dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let tmp = state_dir.join("tmp").join(format!(
        "w{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)?;
    if let Ok(meta) = std::fs::metadata(target) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, target).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Bytes to [`Content`]: UTF-8 without NUL is text (CRLF folded to LF and
/// remembered), anything else binary.
pub fn decode(bytes: Vec<u8>) -> Content {
    if bytes.contains(&0) {
        return Content::Binary;
    }
    match String::from_utf8(bytes) {
        Ok(s) if s.contains("\r\n") => Content::Text {
            text: s.replace("\r\n", "\n"),
            crlf: true,
        },
        Ok(text) => Content::Text { text, crlf: false },
        Err(_) => Content::Binary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(STATE_DIR).join("tmp")).unwrap();
        let t = Tree {
            root: dir.path().to_path_buf(),
            max_file_bytes: 1024,
        };
        (dir, t)
    }

    #[test]
    fn decode_tells_text_crlf_and_binary_apart() {
        assert_eq!(
            decode(b"a\r\nb\r\n".to_vec()),
            Content::Text {
                text: "a\nb\n".into(),
                crlf: true
            }
        );
        assert_eq!(
            decode(b"a\nb".to_vec()),
            Content::Text {
                text: "a\nb".into(),
                crlf: false
            }
        );
        assert_eq!(decode(vec![0x89, b'P', b'N', b'G', 0]), Content::Binary);
        assert_eq!(decode(vec![0xff, 0xfe, b'a']), Content::Binary);
    }

    #[test]
    fn walk_honours_ignore_files_and_skips_git_and_state() {
        let (_d, t) = tree();
        for p in [
            "a.rs",
            "src/b.rs",
            "x.log",
            "build/out.txt",
            ".git/HEAD",
            "sub/.git/config",
            "keep/secret.env",
            ".tandem/files/x",
        ] {
            let abs = t.abs(p);
            std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
            std::fs::write(abs, "x").unwrap();
        }
        std::fs::write(t.abs(".gitignore"), "*.log\nbuild/\n").unwrap();
        std::fs::write(t.abs("keep/.tandemignore"), "*.env\n").unwrap();
        let paths: Vec<String> = t.walk().into_keys().collect();
        assert_eq!(
            paths,
            vec![".gitignore", "a.rs", "keep/.tandemignore", "src/b.rs"]
        );
        assert!(!t.is_relevant(&t.abs(".git/index")));
        assert!(!t.is_relevant(&t.abs(".tandem/state.json")));
        assert!(t.is_relevant(&t.abs("src/b.rs")));
    }

    #[test]
    fn writes_are_atomic_keep_crlf_and_prune_empty_folders() {
        let (_d, t) = tree();
        t.write("d/e/f.txt", "one\ntwo\n", true).unwrap();
        assert_eq!(
            std::fs::read(t.abs("d/e/f.txt")).unwrap(),
            b"one\r\ntwo\r\n"
        );
        let (content, _) = t.read("d/e/f.txt").unwrap().unwrap();
        assert_eq!(
            content,
            Content::Text {
                text: "one\ntwo\n".into(),
                crlf: true
            }
        );
        t.rename("d/e/f.txt", "g/f.txt").unwrap();
        assert!(!t.abs("d").exists());
        t.remove("g/f.txt").unwrap();
        assert!(!t.abs("g").exists());
        assert!(t.root.exists());
        std::fs::write(t.abs("big.txt"), vec![b'a'; 2000]).unwrap();
        assert!(matches!(
            t.read("big.txt").unwrap().unwrap().0,
            Content::TooLarge(2000)
        ));
        let c = t.conflict_path("src/main.rs");
        assert!(
            c.starts_with("src/main.conflict-") && c.ends_with(".rs"),
            "{c}"
        );
        assert_eq!(t.read("nope").unwrap(), None);
    }
}
