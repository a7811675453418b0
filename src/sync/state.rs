//! What the agent remembers between runs, in `<dir>/.tandem/`:
//!
//! - `state.json`: the server and session, and per file id its path and
//!   whether it uses CRLF on disk;
//! - `files/<file-id>.state`: the text last known to be on disk (the common
//!   base of a three-way merge) and the file's Yjs document as last synced
//!   (so edits made while the agent was stopped merge with the session's
//!   instead of overwriting them), in one file;
//! - `tmp/`: temporary files of atomic writes.
//!
//! Every write is atomic (temporary file + rename). The order of writes is
//! what makes a crash harmless; see [`super::agent`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::tree::write_atomic;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub version: u32,
    pub server: String,
    pub session_id: String,
    /// File id → where it lives.
    pub files: BTreeMap<String, FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub path: String,
    #[serde(default)]
    pub crlf: bool,
}

/// The `.tandem` folder, locked for as long as this value lives: one agent
/// per folder.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    _lock: std::fs::File,
}

const VERSION: u32 = 1;

impl Store {
    /// Opens (creating) the state folder.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        for sub in ["files", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        let lock_path = dir.join("lock");
        let lock = std::fs::File::create(&lock_path)
            .with_context(|| format!("cannot create {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            anyhow::bail!(super::agent::Fatal(format!(
                "another tandem sync is already running on {}",
                dir.parent().unwrap_or(dir).display()
            )));
        }
        // Left-overs of writes a crash interrupted (ours alone: we hold the lock).
        if let Ok(entries) = std::fs::read_dir(dir.join("tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The saved index, if this folder was synced before.
    pub fn load_index(&self) -> anyhow::Result<Option<Index>> {
        let path = self.dir.join("state.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let index: Index = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is damaged", path.display()))?;
                anyhow::ensure!(
                    index.version == VERSION,
                    "{} was written by another version of tandem sync",
                    path.display()
                );
                Ok(Some(index))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save_index(&self, index: &Index) -> anyhow::Result<()> {
        let mut index = index.clone();
        index.version = VERSION;
        let bytes = serde_json::to_vec_pretty(&index)?;
        self.write(&self.dir.join("state.json"), &bytes)
    }

    /// A file's saved document and base text.
    pub fn load_file(&self, file_id: &str) -> Option<(Vec<u8>, String)> {
        let bytes = std::fs::read(self.file(file_id)).ok()?;
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let base = std::str::from_utf8(bytes.get(4..4 + len)?).ok()?.to_owned();
        Some((bytes[4 + len..].to_vec(), base))
    }

    /// Saves a file's document and base text together, in one atomic write:
    /// a crash can never leave one without the other.
    pub fn save_file(&self, file_id: &str, doc: &[u8], base: &str) -> anyhow::Result<()> {
        let mut bytes = Vec::with_capacity(4 + base.len() + doc.len());
        bytes.extend_from_slice(&(base.len() as u32).to_le_bytes());
        bytes.extend_from_slice(base.as_bytes());
        bytes.extend_from_slice(doc);
        self.write(&self.file(file_id), &bytes)
    }

    pub fn forget_file(&self, file_id: &str) {
        let _ = std::fs::remove_file(self.file(file_id));
    }

    fn file(&self, file_id: &str) -> PathBuf {
        self.dir.join("files").join(format!("{file_id}.state"))
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        write_atomic(&self.dir, path, bytes)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_files_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join(".tandem")).unwrap();
        assert_eq!(s.load_index().unwrap(), None);
        let mut index = Index {
            server: "http://x".into(),
            session_id: "abc".into(),
            ..Default::default()
        };
        index.files.insert(
            "main".into(),
            FileEntry {
                path: "a.rs".into(),
                crlf: true,
            },
        );
        s.save_index(&index).unwrap();
        index.version = VERSION;
        assert_eq!(s.load_index().unwrap(), Some(index));
        assert_eq!(s.load_file("main"), None);
        s.save_file("main", b"\x00\x00", "téxt").unwrap();
        assert_eq!(s.load_file("main"), Some((vec![0, 0], "téxt".into())));
        s.forget_file("main");
        assert_eq!(s.load_file("main"), None);
        let again = Store::open(&d.path().join(".tandem")).unwrap_err();
        assert!(again.to_string().contains("already running"), "{again}");
        drop(s);
        Store::open(&d.path().join(".tandem")).unwrap();
    }
}
