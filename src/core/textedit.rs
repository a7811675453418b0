//! Turning one text into another as Yjs edits: a character diff applied to a
//! `Y.Text` with the fewest inserted and deleted characters, so concurrent
//! editors converge and cursors (relative positions) in unchanged text stay
//! put. Used by `PUT …/content` and by `tandem sync` (saves from a local
//! editor). Offsets are UTF-8 bytes at character boundaries: the
//! [`yrs::OffsetKind::Bytes`] documents of this crate.

use std::time::Duration;

use yrs::{Text, TextRef, TransactionMut};

/// Applies to `text` (whose content is `old`) the edits that make it `new`.
/// Returns whether anything changed. A diff that runs out of time (2 s on
/// huge, very different texts) falls back to coarser hunks: still correct.
pub fn edit_text(txn: &mut TransactionMut, text: &TextRef, old: &str, new: &str) -> bool {
    if old == new {
        return false;
    }
    let diff = similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .timeout(Duration::from_secs(2))
        .diff_chars(old, new);
    // Byte offset of every character index (plus the end).
    let offsets = |s: &str| -> Vec<usize> {
        s.char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(s.len()))
            .collect()
    };
    let (old_at, new_at) = (offsets(old), offsets(new));
    // From the end backwards, so earlier offsets stay valid.
    for op in diff.ops().iter().rev() {
        let (tag, o, n) = op.as_tag_tuple();
        let (start, end) = (old_at[o.start], old_at[o.end]);
        if matches!(tag, similar::DiffTag::Delete | similar::DiffTag::Replace) {
            text.remove_range(txn, start as u32, (end - start) as u32);
        }
        if matches!(tag, similar::DiffTag::Insert | similar::DiffTag::Replace) {
            text.insert(txn, start as u32, &new[new_at[n.start]..new_at[n.end]]);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Doc, GetString, OffsetKind, Options, Transact};

    fn doc() -> Doc {
        Doc::with_options(Options {
            offset_kind: OffsetKind::Bytes,
            ..Options::default()
        })
    }

    #[test]
    fn turns_one_text_into_another_including_multibyte_characters() {
        let cases = [
            ("", "hello"),
            ("hello", ""),
            ("hello world", "hallo wörld!"),
            ("fn main() {}\n", "fn main() {\n    println!(\"é😀\");\n}\n"),
            ("αβγδ", "αγδε"),
        ];
        for (old, new) in cases {
            let d = doc();
            let t = d.get_or_insert_text("monaco");
            t.insert(&mut d.transact_mut(), 0, old);
            let changed = edit_text(&mut d.transact_mut(), &t, old, new);
            assert_eq!(changed, old != new);
            assert_eq!(t.get_string(&d.transact()), new, "{old:?} -> {new:?}");
        }
    }
}
