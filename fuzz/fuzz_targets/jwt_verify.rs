//! Token verification: arbitrary strings, the input spliced into a valid
//! token, and tokens issued for input-derived claims (which must verify and
//! give back the same user).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use tandem::auth::Auth;
use tandem::model::Role;

fuzz_target!(
    init: tandem_fuzz::record_panics(),
    |data: &[u8]| tandem_fuzz::run(|| check(data))
);

fn check(data: &[u8]) {
    let auth = Auth::new(b"k");
    let s = String::from_utf8_lossy(data);
    let _ = auth.verify(&s);

    // Splice: the first two bytes pick a position in a valid token, the
    // third how many of its characters to replace, the rest go in there.
    let token = auth.issue("u1", "Ann", HashMap::from([("s".into(), Role::Editor)]), 60);
    if data.len() >= 3 {
        let at = usize::from(u16::from_le_bytes([data[0], data[1]])) % (token.len() + 1);
        let cut = (at + usize::from(data[2] % 8)).min(token.len());
        let patch = String::from_utf8_lossy(&data[3..]);
        let mutated = format!("{}{}{}", &token[..at], patch, &token[cut..]);
        if let Ok(u) = auth.verify(&mutated) {
            // Only an edit that leaves the signed content as it was can pass.
            assert_eq!((u.id.as_str(), u.name.as_str()), ("u1", "Ann"));
        }
    }

    // Claims made of the input round-trip.
    let mid = s.len() / 2;
    let (id, name) = if s.is_char_boundary(mid) {
        s.split_at(mid)
    } else {
        (&s[..], "")
    };
    let t = auth.issue(
        id,
        name,
        HashMap::from([(name.to_owned(), Role::Viewer)]),
        60,
    );
    let u = auth.verify(&t).expect("a token we issued verifies");
    assert_eq!((u.id.as_str(), u.name.as_str()), (id, name));
    assert_eq!(u.sessions.get(name), Some(&Role::Viewer));
}
