//! JSON arguments of the native Socket.IO events and the HTTP API bodies:
//! every type the server deserializes from client JSON, plus a parse /
//! re-serialize round trip of `serde_json::Value`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::auth::Claims;
use tandem::http::sessions::{ChatQuery, GuestBody, RoleBody, SessionFields};
use tandem::model::Role;
use tandem::protocol::native::{ChatArg, SessionArg};

fuzz_target!(
    init: tandem_fuzz::record_panics(),
    |data: &[u8]| tandem_fuzz::run(|| check(data))
);

fn check(data: &[u8]) {
    // Socket events: `join-session`, `leave-session`, `typing`, `stop-typing`;
    // `chat-message`; `yjs-sync-step-1`, `yjs-update`, `yjs-awareness` take
    // (sessionId, bytes).
    let _ = serde_json::from_slice::<SessionArg>(data);
    let _ = serde_json::from_slice::<ChatArg>(data);
    let _ = serde_json::from_slice::<(String, bytes::Bytes)>(data);
    // HTTP bodies and the chat query string.
    let _ = serde_json::from_slice::<SessionFields>(data);
    let _ = serde_json::from_slice::<RoleBody>(data);
    let _ = serde_json::from_slice::<GuestBody>(data);
    let _ = serde_urlencoded::from_bytes::<ChatQuery>(data);
    // Token claims and roles.
    let _ = serde_json::from_slice::<Claims>(data);
    let _ = serde_json::from_slice::<Role>(data);

    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let out = serde_json::to_vec(&v).expect("a parsed Value serializes");
        // Parses back; not compared: without serde_json's `float_roundtrip`
        // feature a float can come back one ulp off.
        let _: serde_json::Value = serde_json::from_slice(&out).expect("serialized Value parses");
    }
}
