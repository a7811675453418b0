//! Inspection of untrusted Yjs v1 updates *before* yrs decodes them.
//!
//! yrs decodes and integrates recursively: JSON-like `Any` content nested a
//! few hundred thousand levels overflows the stack while decoding, and a
//! chain of ~10,000 nested shared types overflows it when the outermost is
//! deleted, encoded or garbage-collected. A stack overflow aborts the whole
//! process (`catch_unwind` cannot catch it), so such input must never reach
//! yrs. This module walks the struct section of an update iteratively,
//! mirroring yrs 0.28's decoder byte for byte, and reports:
//! - the ids of the nested shared types (`Y.Map`, `Y.Array`, `Y.Text`,
//!   `Y.Xml*` inside another type) the update creates, which the document
//!   counts against [`Limits::max_nested_types`](super::Limits) (a chain
//!   can never be deeper than the number of nested types in it);
//! - a refusal for content a code document never needs and yrs handles
//!   recursively or experimentally: subdocuments, weak links, `Any` values
//!   nested deeper than [`MAX_ANY_DEPTH`], and legacy `ContentJSON`, which
//!   yrs cannot re-encode.
//!
//! Every count in the update (clients, structs, delete ranges) is checked
//! against the bytes actually there before yrs, which reserves memory from
//! those counts, sees it: a 6-byte update claiming 2^28 clients is refused
//! here instead of making yrs set up a huge map.

use yrs::encoding::read::{Cursor, Read};

/// Deepest nesting of arrays/objects inside one embedded JSON-like value.
pub const MAX_ANY_DEPTH: usize = 64;

// Struct info bits and content refs of the v1 encoding (yrs `block.rs`).
const HAS_ORIGIN: u8 = 0b1000_0000;
const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
const HAS_PARENT_SUB: u8 = 0b0010_0000;
const GC: u8 = 0;
const SKIP: u8 = 10;
const DELETED: u8 = 1;
const JSON: u8 = 2;
const BINARY: u8 = 3;
const STRING: u8 = 4;
const EMBED: u8 = 5;
const FORMAT: u8 = 6;
const TYPE: u8 = 7;
const ANY: u8 = 8;
const DOC: u8 = 9;
// Shared type refs (yrs `types/mod.rs`).
const TYPE_XML_ELEMENT: u8 = 3;
const TYPE_XML_HOOK: u8 = 5;
const TYPE_WEAK: u8 = 7;
const TYPE_SUBDOC: u8 = 9;

/// Why an update was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a v1 update (truncated, unknown tags, …).
    Malformed,
    /// Content Tandem does not accept, with a reason for the log.
    Unsupported(&'static str),
}

/// What an acceptable update contains that the document must account for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// `(client, clock)` of every nested shared type the update creates.
    pub nested_types: Vec<(u64, u32)>,
    /// Per client in the struct section: `(client, first clock, clock just
    /// past its last struct)`. An update is a pure re-send only if the
    /// document's state vector already reaches every end, and it skips
    /// clocks if a start lies beyond the state vector.
    pub clock_ranges: Vec<(u64, u32, u32)>,
}

type R<T> = Result<T, Refused>;

fn m<T>(r: Result<T, yrs::encoding::read::Error>) -> R<T> {
    r.map_err(|_| Refused::Malformed)
}

/// Skips an item's origins, or its parent (and parent key) when it has
/// neither origin, up to its content.
fn skip_item_header(c: &mut Cursor<'_>, info: u8) -> R<()> {
    if info & HAS_ORIGIN != 0 {
        skip_id(c)?;
    }
    if info & HAS_RIGHT_ORIGIN != 0 {
        skip_id(c)?;
    }
    if info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0 {
        let named: u32 = m(c.read_var())?;
        if named == 1 {
            m(c.read_string())?;
        } else {
            skip_id(c)?;
        }
        if info & HAS_PARENT_SUB != 0 {
            m(c.read_string())?;
        }
    }
    Ok(())
}

/// Walks the struct section of a v1 update (see the module doc).
pub fn inspect_update(bytes: &[u8]) -> R<Inspection> {
    let mut c = Cursor::new(bytes);
    let mut out = Inspection::default();
    let clients: u32 = m(c.read_var())?;
    for _ in 0..clients {
        let structs: u32 = m(c.read_var())?;
        let client: u64 = m(c.read_var())?;
        let mut clock: u32 = m(c.read_var())?;
        let start = clock;
        for _ in 0..structs {
            let len = match m(c.read_u8())? {
                SKIP | GC => m(c.read_var::<u32>())?,
                info => {
                    skip_item_header(&mut c, info)?;
                    let len = content(&mut c, info & 0b1111)?;
                    if info & 0b1111 == TYPE {
                        out.nested_types.push((client, clock));
                    }
                    len
                }
            };
            // yrs drops zero-length blocks without advancing the clock.
            clock = clock.wrapping_add(len);
        }
        out.clock_ranges.push((client, start, clock));
    }
    // The delete set: flat, but its counts too must be backed by bytes
    // before yrs reserves memory for them.
    let ds_clients: u32 = m(c.read_var())?;
    for _ in 0..ds_clients {
        m(c.read_var::<u64>())?;
        let ranges: u32 = m(c.read_var())?;
        for _ in 0..ranges {
            m(c.read_var::<u32>())?;
            m(c.read_var::<u32>())?;
        }
    }
    Ok(out)
}

/// Does an update with these [`Inspection::clock_ranges`] skip clocks the
/// state vector `sv` has not reached (its predecessors are missing)?
pub fn skips_clocks(ranges: &[(u64, u32, u32)], sv: &yrs::StateVector) -> bool {
    ranges.iter().any(|(client, start, end)| {
        end > start && *start > sv.get(&yrs::block::ClientID::new(*client))
    })
}

/// An update cut at its `Skip` structs: `head` holds every client's structs
/// before its first skip and the whole delete set; each of `tails` holds one
/// client's run of structs between two skips (or after the last one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipSplit {
    pub head: Vec<u8>,
    pub tails: Vec<Vec<u8>>,
}

/// Cuts a v1 update at its `Skip` structs (see [`SkipSplit`]); `Ok(None)`
/// when it has none (the usual case: nothing is copied).
///
/// A skip marks clocks the sender did not have (Yjs and yrs write one when
/// they encode a document holding structs that arrived out of order). yrs
/// 0.28 integrates the structs after a skip at once, leaving a hole in its
/// own block list, and a document with a hole then leaves the structs past
/// the hole out of every diff it encodes for a peer whose state vector
/// reaches the hole (its own state vector stops there): replicas part for
/// good. Cut at the skips, each run can wait until the clocks before it have
/// arrived, as Yjs does with its pending structs. v1 structs carry no
/// back-references, so runs are copied byte for byte.
pub fn split_at_skips(bytes: &[u8]) -> R<Option<SkipSplit>> {
    struct Run {
        client: u64,
        clock: u32,
        start: usize,
        end: usize,
        structs: u32,
    }
    let mut c = Cursor::new(bytes);
    let mut heads: Vec<Run> = Vec::new();
    let mut tails: Vec<Run> = Vec::new();
    let mut skipped = false;
    let clients: u32 = m(c.read_var())?;
    for _ in 0..clients {
        let structs: u32 = m(c.read_var())?;
        let client: u64 = m(c.read_var())?;
        let mut clock: u32 = m(c.read_var())?;
        let mut run = Run {
            client,
            clock,
            start: c.next,
            end: c.next,
            structs: 0,
        };
        let mut first = true;
        for _ in 0..structs {
            let len = match m(c.read_u8())? {
                SKIP => {
                    let len: u32 = m(c.read_var())?;
                    skipped = true;
                    let done = std::mem::replace(
                        &mut run,
                        Run {
                            client,
                            clock: clock.wrapping_add(len),
                            start: c.next,
                            end: c.next,
                            structs: 0,
                        },
                    );
                    if done.structs > 0 {
                        if first { &mut heads } else { &mut tails }.push(done);
                    }
                    first = false;
                    clock = clock.wrapping_add(len);
                    continue;
                }
                GC => m(c.read_var::<u32>())?,
                info => {
                    skip_item_header(&mut c, info)?;
                    content(&mut c, info & 0b1111)?
                }
            };
            clock = clock.wrapping_add(len);
            run.structs += 1;
            run.end = c.next;
        }
        if run.structs > 0 {
            if first { &mut heads } else { &mut tails }.push(run);
        }
    }
    if !skipped {
        return Ok(None);
    }
    let encode = |runs: &[&Run], delete_set: &[u8]| {
        use yrs::encoding::write::Write;
        let mut out = Vec::new();
        out.write_var(runs.len() as u32);
        for r in runs {
            out.write_var(r.structs);
            out.write_var(r.client);
            out.write_var(r.clock);
            out.extend_from_slice(&bytes[r.start..r.end]);
        }
        out.extend_from_slice(delete_set);
        out
    };
    let delete_set = &bytes[c.next..];
    Ok(Some(SkipSplit {
        head: encode(&heads.iter().collect::<Vec<_>>(), delete_set),
        tails: tails.iter().map(|r| encode(&[r], &[0])).collect(),
    }))
}

fn skip_id(c: &mut Cursor<'_>) -> R<()> {
    m(c.read_var::<u64>())?;
    m(c.read_var::<u32>())?;
    Ok(())
}

/// Skips one item's content; returns its length in clock ticks.
fn content(c: &mut Cursor<'_>, content_ref: u8) -> R<u32> {
    Ok(match content_ref {
        DELETED => m(c.read_var())?,
        // Legacy `ContentJSON` (Yjs < 13 wrote it; current Yjs writes
        // `ContentAny`). yrs 0.28 decodes `len + 1` strings but encodes
        // `len`, so a document holding it cannot be re-encoded (fuzzing found
        // this: every sync and snapshot of the document then fails).
        JSON => return Err(Refused::Unsupported("legacy JSON content")),
        BINARY => {
            m(c.read_buf())?;
            1
        }
        STRING => {
            let s = m(c.read_string())?;
            s.encode_utf16().count() as u32
        }
        EMBED => {
            m(c.read_string())?;
            1
        }
        FORMAT => {
            m(c.read_string())?;
            m(c.read_string())?;
            1
        }
        TYPE => {
            match m(c.read_u8())? {
                TYPE_XML_ELEMENT | TYPE_XML_HOOK => {
                    m(c.read_string())?;
                }
                TYPE_WEAK => return Err(Refused::Unsupported("weak links")),
                TYPE_SUBDOC => return Err(Refused::Unsupported("subdocuments")),
                0..=6 | 15 => {}
                _ => return Err(Refused::Malformed),
            }
            1
        }
        ANY => {
            let n: u32 = m(c.read_var())?;
            for _ in 0..n {
                skip_any(c)?;
            }
            n
        }
        DOC => return Err(Refused::Unsupported("subdocuments")),
        _ => return Err(Refused::Malformed),
    })
}

/// Skips one lib0 `Any` value without recursion, refusing nesting deeper
/// than [`MAX_ANY_DEPTH`].
fn skip_any(c: &mut Cursor<'_>) -> R<()> {
    // Values still to read at each open array/object level (an object
    // entry is a key, read here, then a value).
    let mut pending: Vec<(u64, bool)> = Vec::new();
    let mut remaining_top = 1u64;
    loop {
        let (left, is_map) = match pending.last_mut() {
            Some(top) => (&mut top.0, top.1),
            None => (&mut remaining_top, false),
        };
        if *left == 0 {
            if pending.pop().is_none() {
                return Ok(());
            }
            continue;
        }
        *left -= 1;
        if is_map {
            m(c.read_string())?;
        }
        match m(c.read_u8())? {
            127 | 126 | 121 | 120 => {}
            125 => {
                m(c.read_var::<i64>())?;
            }
            124 => {
                m(c.read_exact(4))?;
            }
            123 | 122 => {
                m(c.read_exact(8))?;
            }
            119 => {
                m(c.read_string())?;
            }
            116 => {
                m(c.read_buf())?;
            }
            tag @ (118 | 117) => {
                let n: u64 = m(c.read_var())?;
                if pending.len() >= MAX_ANY_DEPTH {
                    return Err(Refused::Unsupported("JSON content nested too deeply"));
                }
                pending.push((n, tag == 118));
            }
            _ => return Err(Refused::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::types::ToJson;
    use yrs::updates::decoder::Decode;
    use yrs::{Any, Array, Doc, Map, MapPrelim, Text, Transact, WriteTxn};

    fn update(f: impl FnOnce(&Doc, &mut yrs::TransactionMut)) -> Vec<u8> {
        let d = Doc::with_client_id(7);
        let mut txn = d.transact_mut();
        f(&d, &mut txn);
        txn.encode_update_v1()
    }

    #[test]
    fn plain_text_edits_have_no_nested_types() {
        let u = update(|d, t| {
            let text = t.get_or_insert_text("monaco");
            text.insert(t, 0, "héllo wörld 🎉");
            text.remove_range(t, 1, 3);
            let _ = d;
        });
        assert_eq!(inspect_update(&u).unwrap().nested_types, vec![]);
    }

    #[test]
    fn counts_nested_types_with_their_ids() {
        let u = update(|_, t| {
            let root = t.get_or_insert_map("m");
            let a = root.insert(t, "a", MapPrelim::default());
            let b = a.insert(t, "b", MapPrelim::default());
            b.insert(t, "c", "leaf");
            let arr = t.get_or_insert_array("arr");
            arr.push_back(t, Any::from(vec![Any::from(1), Any::from("x")]));
            arr.push_back(t, yrs::TextPrelim::new("t"));
        });
        let found = inspect_update(&u).unwrap().nested_types;
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().all(|(c, _)| *c == 7));
    }

    #[test]
    fn matches_yrs_on_every_content_kind() {
        // A mix of content kinds: the walk must end exactly where yrs's does
        // (otherwise the ids it reports would be off).
        let u = update(|_, t| {
            let text = t.get_or_insert_text("monaco");
            text.insert(t, 0, "abc");
            let attrs = yrs::types::Attrs::from([("bold".into(), Any::Bool(true))]);
            text.format(t, 0, 2, attrs);
            text.insert_embed(t, 1, Any::from(vec![Any::from(2.5f64), Any::Null]));
            text.insert_embed(
                t,
                1,
                Any::from(std::collections::HashMap::from([(
                    "k".to_string(),
                    Any::from(1.5f32 as f64),
                )])),
            );
            let arr = t.get_or_insert_array("arr");
            arr.push_back(t, Any::Buffer(vec![1u8, 2, 3].into()));
            arr.push_back(t, Any::from(1i64 << 40));
            arr.push_back(t, MapPrelim::default());
        });
        let found = inspect_update(&u).unwrap().nested_types;
        assert_eq!(found.len(), 1);
        let d = Doc::new();
        d.transact_mut()
            .apply_update(yrs::Update::decode_v1(&u).unwrap())
            .unwrap();
        let arr = d.get_or_insert_array("arr");
        assert_eq!(arr.len(&d.transact()), 3);
        let _ = arr.to_json(&d.transact());
    }

    #[test]
    fn refuses_subdocs_deep_json_and_garbage() {
        let u = update(|_, t| {
            let arr = t.get_or_insert_array("arr");
            arr.push_back(t, Doc::new());
        });
        assert!(matches!(
            inspect_update(&u),
            Err(Refused::Unsupported("subdocuments"))
        ));
        // 100,000 nested arrays in one Any value (yrs would recurse on decode).
        let mut bytes = vec![1u8, 1, 7, 0, ANY, 1, 1, b'a', 1];
        bytes.extend(std::iter::repeat_n([117u8, 1], 100_000).flatten());
        bytes.push(126);
        bytes.extend([0]);
        assert!(matches!(
            inspect_update(&bytes),
            Err(Refused::Unsupported("JSON content nested too deeply"))
        ));
        for junk in [&b"\xff\xff\xff"[..], b"garbage!", &[1, 1, 7, 0, 0x0b]] {
            assert_eq!(inspect_update(junk), Err(Refused::Malformed), "{junk:?}");
        }
    }
}
