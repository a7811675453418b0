//! Untrusted awareness (presence) updates: the decoder, applying them for a
//! joined connection (and one that never joined), the states a joiner is
//! sent, and the removal sent when a connection leaves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::auth::User;
use tandem::core::{SessionDoc, decode_awareness};
use tandem::model::Role;
use tandem::store::StoredDocument;

fn user(id: &str) -> User {
    User {
        id: id.into(),
        name: id.to_uppercase(),
        sessions: Default::default(),
        guest_cap: None,
    }
}

fuzz_target!(
    init: tandem_fuzz::record_panics(),
    |data: &[u8]| tandem_fuzz::run(|| check(data))
);

fn check(data: &[u8]) {
    let _ = decode_awareness(data);
    let (frames, _) = tandem_fuzz::split_frames(data, 3);
    let doc = SessionDoc::load("s", &StoredDocument::default(), &Default::default()).expect("empty document loads");
    doc.join("c1", &user("u1"), Role::Editor);
    doc.join("c2", &user("u2"), Role::Viewer);
    // Frame i comes from c1, c2, then a connection that never joined.
    for (f, conn) in frames.iter().zip(["c1", "c2", "ghost"]) {
        let _ = doc.apply_awareness(conn, f);
    }
    // What the server sends must be what it accepts.
    if let Some(states) = doc.awareness_states() {
        decode_awareness(&states).expect("the server's own awareness states decode");
    }
    for conn in ["c1", "c2", "ghost"] {
        if let Some(removal) = doc.leave(conn).awareness_removal {
            decode_awareness(&removal).expect("the server's own removal decodes");
        }
    }
    let _ = doc.awareness_states();
    let _ = doc.sweep_awareness(u64::MAX);
}
