//! Writes the committed seed corpus under `fuzz/seeds/<target>/`:
//! real Yjs updates and awareness updates made with yrs, real tokens, and
//! well-formed JSON arguments. Run from `fuzz/`:
//! `cargo run --example gen_seeds`.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use tandem::auth::Auth;
use tandem::model::Role;
use tandem_fuzz::join_frames;
use yrs::sync::Awareness;
use yrs::types::Attrs;
use yrs::updates::encoder::Encode;
use yrs::{Any, Array, Doc, Map, ReadTxn, StateVector, Text, Transact};

const TEXT: &str = "monaco";

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("seeds").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

/// One edit of `doc`'s text, as the update it produced.
fn edit(doc: &Doc, f: impl FnOnce(&mut yrs::TransactionMut, &yrs::TextRef)) -> Vec<u8> {
    let t = doc.get_or_insert_text(TEXT);
    let mut txn = doc.transact_mut();
    f(&mut txn, &t);
    txn.encode_update_v1()
}

fn update_seeds() {
    let a = Doc::with_client_id(1);
    let u1 = edit(&a, |txn, t| t.insert(txn, 0, "fn main() {}\n"));
    let u2 = edit(&a, |txn, t| t.insert(txn, 11, "println!(\"hi\");"));
    let u3 = edit(&a, |txn, t| t.remove_range(txn, 0, 3));
    let sv_a = a.transact().state_vector().encode_v1();
    write("update_apply", "insert", &join_frames(&[&u1], &[]));
    write(
        "update_apply",
        "three-edits",
        &join_frames(&[&u1, &u2, &u3], &[]),
    );
    // Out of order: dependencies arrive after the updates that need them.
    write(
        "update_apply",
        "out-of-order",
        &join_frames(&[&u3, &u2, &u1], &[]),
    );
    write(
        "update_apply",
        "duplicate",
        &join_frames(&[&u1, &u1], &sv_a),
    );

    // Two clients editing concurrently.
    let b = Doc::with_client_id(2);
    let v1 = edit(&b, |txn, t| t.insert(txn, 0, "let x = 1;"));
    let v2 = edit(&b, |txn, t| {
        let mut attrs = Attrs::new();
        attrs.insert("bold".into(), Any::Bool(true));
        t.format(txn, 0, 3, attrs);
    });
    write(
        "update_apply",
        "two-clients",
        &join_frames(&[&u1, &v1, &v2, &u2], &[]),
    );

    // Other shared types next to the text: a map and an array with JSON values.
    let c = Doc::with_client_id(3);
    let m = c.get_or_insert_map("meta");
    let arr = c.get_or_insert_array("list");
    let w = {
        let mut txn = c.transact_mut();
        m.insert(&mut txn, "lang", "rust");
        m.insert(&mut txn, "n", 42);
        arr.push_back(&mut txn, Any::from(vec![Any::from(1), Any::from("two")]));
        txn.encode_update_v1()
    };
    write("update_apply", "map-array", &join_frames(&[&w], &[]));

    // A whole state with a state vector to diff against.
    let full = a
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    write("update_apply", "full-state", &join_frames(&[&full], &sv_a));
}

fn awareness_seeds() {
    let mut p = Awareness::new(Doc::with_client_id(42));
    p.set_local_state_raw(
        r##"{"user":{"name":"Ann","color":"#f00"},"cursor":{"anchor":3,"head":5}}"##,
    );
    let set = p.update().unwrap().encode_v1();
    p.clean_local_state();
    let removal = p.update().unwrap().encode_v1();
    let mut q = Awareness::new(Doc::with_client_id(7));
    q.set_local_state_raw(r#"{"user":"u2"}"#);
    let other = q.update().unwrap().encode_v1();
    write("awareness_apply", "set", &join_frames(&[&set], &[]));
    write(
        "awareness_apply",
        "set-then-remove",
        &join_frames(&[&set, &other, &removal], &[]),
    );
    write(
        "awareness_apply",
        "same-client-two-conns",
        &join_frames(&[&set, &set], &[]),
    );
}

fn jwt_seeds() {
    let auth = Auth::new(b"k");
    let t = auth.issue(
        "u1",
        "Ann",
        HashMap::from([("s".into(), Role::Owner)]),
        3600 * 24 * 365 * 50,
    );
    write("jwt_verify", "valid", t.as_bytes());
    write("jwt_verify", "splice", b"\x10\x00\x02e30");
    write(
        "jwt_verify",
        "wrong-key",
        Auth::new(b"other")
            .issue("u", "U", HashMap::new(), 60)
            .as_bytes(),
    );
}

fn json_seeds() {
    for (name, json) in [
        ("session-arg", r#"{"sessionId":"abc123"}"#),
        (
            "chat-arg",
            r#"{"sessionId":"abc123","content":"hello \u00e9"}"#,
        ),
        ("update-arg", r#"["abc123",[1,0,0]]"#),
        (
            "session-fields",
            r#"{"title":"T","language":"rust","public":true,"publicRole":"viewer"}"#,
        ),
        ("role-body", r#"{"role":"editor"}"#),
        ("guest-body", r#"{"name":"Guest"}"#),
        ("chat-query", "before=1700000000000&limit=20"),
        (
            "claims",
            r#"{"sub":"u","name":"U","exp":4102444800,"sessions":{"s":"owner"}}"#,
        ),
        (
            "numbers",
            r#"[0,-0,1e308,-1.5e-300,18446744073709551615,-9223372036854775808,0.1]"#,
        ),
    ] {
        write("json_args", name, json.as_bytes());
    }
}

fn main() {
    update_seeds();
    awareness_seeds();
    jwt_seeds();
    json_seeds();
    println!("seeds written under fuzz/seeds/");
}
