//! Untrusted Yjs updates through the live-document API: apply (in up to four
//! chunks), sync diffs, whole-state encoding, and loading that state back
//! (the snapshot path) and the accepted updates back (the log-replay path).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::core::{Applied, Limits, SessionDoc};
use tandem::store::StoredDocument;

fn limits() -> Limits {
    Limits {
        max_update_bytes: 1 << 20,
        max_document_bytes: 1 << 22,
        ..Limits::default()
    }
}

/// Encoded empty state vector (zero clients).
const EMPTY_SV: &[u8] = &[0];

fuzz_target!(
    init: tandem_fuzz::record_panics(),
    |data: &[u8]| tandem_fuzz::run(|| check(data))
);

fn check(data: &[u8]) {
    // Up to four updates; whatever follows them is a client state vector.
    let (frames, client_sv) = tandem_fuzz::split_frames(data, 4);
    let doc = SessionDoc::load("s", &StoredDocument::default(), &limits()).expect("empty document loads");
    let mut logged = Vec::new();
    for f in &frames {
        // What the manager would append to the durable log: the update
        // (also one held back for its predecessors: it is durable at once
        // and applied when they come), or the part yrs applied before
        // failing.
        match doc.apply_update(f, &limits()) {
            Ok(Applied::Changed | Applied::Parked) => logged.push(f.to_vec()),
            Ok(Applied::Partial { effective, .. }) => logged.push(effective.to_vec()),
            _ => {}
        }
    }
    let _ = doc.diff(client_sv);
    let text = doc.text();
    let own_sv = doc.state_vector();
    doc.diff(&own_sv)
        .expect("the server's own state vector decodes");
    let full = doc.diff(EMPTY_SV).expect("the empty state vector decodes");
    let state = doc.encode_state().expect("the document encodes");

    // Snapshot path: the encoded state loads into a fresh document.
    let snap = SessionDoc::load(
        "s",
        &StoredDocument {
            head: 0,
            snapshot: Some(state),
            updates: Vec::new(),
        },
        &limits(),
    )
    .expect("the document's own encoded state loads");
    assert_eq!(snap.text(), text, "snapshot reload changed the text");

    // Log-replay path: the updates that were logged replay on load.
    let replay = SessionDoc::load(
        "s",
        &StoredDocument {
            head: 0,
            snapshot: None,
            updates: logged,
        },
        &limits(),
    )
    .expect("logged updates replay");
    assert_eq!(replay.text(), text, "log replay changed the text");

    // Sync step 2 from the empty state vector brings a new peer level.
    let peer = SessionDoc::load("p", &StoredDocument::default(), &limits()).expect("empty document loads");
    peer.apply_update(&full, &limits())
        .expect("the server's own diff applies");
    assert_eq!(peer.text(), text, "a peer synced from scratch differs");
}
