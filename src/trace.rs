//! Real editing traces (Joseph Gentle's editing-traces, CC BY 4.0) turned
//! into Yjs updates, for benchmarks, tests and the load generator. The ones
//! used are shipped in `tests/data/traces/` (credits in its `LICENSE.md`).
//!
//! Sequential format (gzipped JSON): `{ startContent, endContent, txns: [ {
//! patches: [[pos, delCount, insertText], …] } ] }`, positions in Unicode
//! code points. The shipped sequential traces are ASCII, so code points and
//! yrs' default byte offsets agree; [`load_sequential`] refuses others.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use yrs::{Doc, GetString, Text, Transact};

use crate::core::TEXT_NAME;

/// One patch: delete `1` characters at `0`, then insert `2` there.
#[derive(Debug, Clone, Deserialize)]
pub struct Patch(pub usize, pub usize, pub String);

#[derive(Debug, Clone, Deserialize)]
pub struct Txn {
    pub patches: Vec<Patch>,
}

/// A sequential editing trace.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    #[serde(default)]
    pub start_content: String,
    pub end_content: String,
    pub txns: Vec<Txn>,
}

/// Loads a `.json.gz` (or plain `.json`) sequential trace.
pub fn load_sequential(path: impl AsRef<Path>) -> anyhow::Result<Trace> {
    let path = path.as_ref();
    let raw =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let json = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut s)?;
        s
    } else {
        String::from_utf8(raw)?
    };
    let trace: Trace = serde_json::from_str(&json)?;
    anyhow::ensure!(
        trace.end_content.is_ascii()
            && trace
                .txns
                .iter()
                .all(|t| t.patches.iter().all(|p| p.2.is_ascii())),
        "{}: only ASCII sequential traces are supported",
        path.display()
    );
    Ok(trace)
}

/// The traces shipped in the repository (`tests/data/traces`, see its
/// `LICENSE.md`), or the folder `TANDEM_TRACES` names.
pub fn traces_dir() -> std::path::PathBuf {
    std::env::var_os("TANDEM_TRACES")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/traces"))
}

/// Replays the trace into a fresh document and returns each transaction's
/// Yjs v1 update (one editing client's stream) and the final text.
pub fn updates(trace: &Trace) -> (Vec<Vec<u8>>, String) {
    let doc = Doc::new();
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut out = Vec::with_capacity(trace.txns.len() + 1);
    if !trace.start_content.is_empty() {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, &trace.start_content);
        out.push(txn.encode_update_v1());
    }
    for t in &trace.txns {
        let mut txn = doc.transact_mut();
        for Patch(pos, del, ins) in &t.patches {
            if *del > 0 {
                text.remove_range(&mut txn, *pos as u32, *del as u32);
            }
            if !ins.is_empty() {
                text.insert(&mut txn, *pos as u32, ins);
            }
        }
        out.push(txn.encode_update_v1());
    }
    let final_text = text.get_string(&doc.transact());
    (out, final_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sveltecomponent_replays_to_its_end_content() {
        let path = traces_dir().join("sveltecomponent.json.gz");
        if !path.exists() {
            panic!("trace missing at {} (set TANDEM_TRACES)", path.display());
        }
        let trace = load_sequential(&path).unwrap();
        let (updates, text) = updates(&trace);
        assert_eq!(updates.len(), trace.txns.len());
        assert_eq!(text, trace.end_content);
    }
}
