//! What the source code says the protocol is, read from the source files
//! themselves: the HTTP routes registered in `src/http/mod.rs` and the
//! Socket.IO event names of `src/protocol/*.rs`. Shared by
//! `tests/docs_consistency.rs` and `tests/openapi.rs` (`#[path]` include).
//!
//! The scanners refuse what they cannot read (a route added with `nest`, an
//! event registered under a name that is not a string literal) instead of
//! silently missing it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;

pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// The text from `open` (the index of a `(`) to its matching `)`, exclusive,
/// skipping string literals.
fn parenthesized(src: &str, open: usize) -> &str {
    let bytes = src.as_bytes();
    assert_eq!(bytes[open], b'(');
    let (mut depth, mut i, mut in_str) = (0usize, open, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_str {
            match b {
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_str = true,
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return &src[open + 1..i];
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    panic!("unbalanced parentheses after byte {open}");
}

/// A route template with its parameter names erased: `/a/{id}` -> `/a/{}`.
pub fn normalize_path(path: &str) -> String {
    Regex::new(r"\{[^}]*\}")
        .unwrap()
        .replace_all(path, "{}")
        .into_owned()
}

/// `(METHOD, path)` of every `.route(...)` in `src/http/mod.rs`, path as
/// written there (e.g. `/api/sessions/{id}`).
pub fn http_routes() -> BTreeSet<(String, String)> {
    let src = read("src/http/mod.rs");
    for unreadable in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
        assert!(
            !src.contains(unreadable),
            "src/http/mod.rs uses `{unreadable}`: teach tests/support/code_scan.rs to read it"
        );
    }
    let method = Regex::new(r"\b(get|post|put|patch|delete|head|options)\(").unwrap();
    let first_literal = Regex::new(r#"^\s*"([^"]+)""#).unwrap();
    let mut out = BTreeSet::new();
    for (at, _) in src.match_indices(".route(") {
        let args = parenthesized(&src, at + ".route".len());
        let path = first_literal
            .captures(args)
            .unwrap_or_else(|| panic!("route path is not a string literal: {args}"))[1]
            .to_owned();
        let methods: Vec<_> = method
            .captures_iter(args)
            .map(|c| c[1].to_owned())
            .collect();
        assert!(!methods.is_empty(), "no method for route {path}");
        for m in methods {
            out.insert((m.to_uppercase(), path.clone()));
        }
    }
    assert!(out.len() >= 10, "suspiciously few routes found: {out:?}");
    out
}

/// Socket.IO event names the server listens for (`.on(...)`) and emits, in
/// `src/protocol/*.rs`.
#[derive(Debug, Default)]
pub struct Events {
    pub listened: BTreeSet<String>,
    pub emitted: BTreeSet<String>,
}

impl Events {
    pub fn all(&self) -> BTreeSet<String> {
        self.listened.union(&self.emitted).cloned().collect()
    }
}

pub fn protocol_sources() -> Vec<(String, String)> {
    let dir = repo_file("src/protocol");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "expected mod.rs, native.rs, ysocketio.rs");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.display().to_string(), text)
        })
        .collect()
}

/// Scans one source file's text for event names.
pub fn scan_events(file: &str, src: &str, into: &mut Events) {
    // Listeners: `.on("name", …)`, or `.on(var, …)` inside
    // `for (var, …) in [("a", …), ("b", …)]`.
    let on = Regex::new(r"\.on\(\s*").unwrap();
    let literal = Regex::new(r#"^"([^"]+)""#).unwrap();
    let ident = Regex::new(r"^([a-z_][a-z0-9_]*)\s*,").unwrap();
    let tuple_first = Regex::new(r#"\(\s*"([^"]+)""#).unwrap();
    for m in on.find_iter(src) {
        let rest = &src[m.end()..];
        if let Some(c) = literal.captures(rest) {
            into.listened.insert(c[1].to_owned());
        } else if let Some(c) = ident.captures(rest) {
            let var = &c[1];
            // Depends on the variable's name: built per use (rare).
            #[allow(clippy::regex_creation_in_loops)]
            let looped = Regex::new(&format!(
                r#"(?s)for\s*\(\s*{var}\s*,[^)]*\)\s*in\s*\[(.*?)\]\s*\{{"#
            ))
            .unwrap();
            let before = &src[..m.start()];
            let list = looped.captures_iter(before).last().unwrap_or_else(|| {
                panic!("{file}: cannot tell which events `.on({var}, …)` names")
            });
            let names: Vec<_> = tuple_first
                .captures_iter(&list[1])
                .map(|c| c[1].to_owned())
                .collect();
            assert!(!names.is_empty(), "{file}: empty event list for `{var}`");
            into.listened.extend(names);
        } else {
            panic!(
                "{file}: unreadable event registration `.on({}`",
                &rest[..rest.len().min(40)]
            );
        }
    }
    // Emits: `emit_or_kick(target, "name", …)`, `.emit("name", …)`,
    // `.emit_with_ack::<…>("name", …)`. The one non-literal allowed is
    // `event`, the parameter `emit_or_kick` forwards.
    let emit =
        Regex::new(r"(?:\bemit_or_kick\(\s*[^,()]+,|\.emit(?:_with_ack)?(?:::<[^>]*>)?\()\s*")
            .unwrap();
    // `Broadcast::emit(rooms, except, "name", …)`.
    let broadcast = Regex::new(r#"^[^,"]+,\s*[^,"]+,\s*"([^"]+)""#).unwrap();
    for m in emit.find_iter(src) {
        let rest = &src[m.end()..];
        if let Some(c) = literal.captures(rest).or_else(|| broadcast.captures(rest)) {
            into.emitted.insert(c[1].to_owned());
        } else if !rest.starts_with("event,") {
            panic!(
                "{file}: unreadable emit `{}`",
                &src[m.start()..(m.end() + 30).min(src.len())]
            );
        }
    }
}

pub fn socket_events() -> Events {
    let mut ev = Events::default();
    for (file, src) in protocol_sources() {
        scan_events(&file, &src, &mut ev);
    }
    assert!(
        ev.listened.len() >= 8 && ev.emitted.len() >= 8,
        "suspiciously few events: {ev:?}"
    );
    ev
}
