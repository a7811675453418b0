//! docs/PROTOCOL.md is true to the code: every error code
//! (`ErrorCode::ALL`), every Socket.IO event name of `src/protocol/*.rs` and
//! every HTTP route of `src/http/mod.rs` is documented, and the document
//! names no error code, event or route the code lacks — except in its last
//! part, "Planned (not implemented yet)". No server needed.
//!
//! How the document is read:
//! - events: the first cell of every table whose header's first cell is
//!   `event` (backticked names; `a` / `b` lists several);
//! - error codes: the first cell of every table whose header's first cell is
//!   `code`, and any backticked SCREAMING_SNAKE_CASE word anywhere;
//! - routes: any backticked `METHOD /path` (query strings ignored,
//!   parameter names too: `{id}` and `{sessionId}` are the same slot);
//! - examples: in fenced code blocks, the names given to `socket.emit(…)`,
//!   `socket.emitWithAck(…)` and `socket.on(…)` must be events of the code
//!   (or Socket.IO's own `connect`, `connect_error`, `disconnect`).

#[path = "support/code_scan.rs"]
mod code_scan;

use std::collections::BTreeSet;

use regex::Regex;
use tandem::error::ErrorCode;

const DOC: &str = "docs/PROTOCOL.md";
const PLANNED_HEADING: &str = "## Planned (not implemented yet)";
const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// What the code has.
struct Code {
    error_codes: BTreeSet<String>,
    events: BTreeSet<String>,
    /// `METHOD /path` with parameter names erased.
    routes: BTreeSet<String>,
}

fn code() -> Code {
    Code {
        error_codes: ErrorCode::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        events: code_scan::socket_events().all(),
        routes: code_scan::http_routes()
            .into_iter()
            .map(|(m, p)| format!("{m} {}", code_scan::normalize_path(&p)))
            .collect(),
    }
}

/// What the document claims, outside its "Planned" part.
#[derive(Debug, Default)]
struct Claims {
    error_table: BTreeSet<String>,
    error_mentions: BTreeSet<String>,
    events: BTreeSet<String>,
    routes: BTreeSet<String>,
    example_events: BTreeSet<String>,
}

/// Socket.IO's reserved events, which examples may listen to.
const RESERVED_EVENTS: [&str; 3] = ["connect", "connect_error", "disconnect"];

fn backticked(s: &str) -> Vec<String> {
    Regex::new(r"`([^`]+)`")
        .unwrap()
        .captures_iter(s)
        .map(|c| c[1].to_owned())
        .collect()
}

fn cells(row: &str) -> Vec<&str> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    row.split('|').map(str::trim).collect()
}

fn claims(doc: &str) -> Claims {
    let current = doc.split(PLANNED_HEADING).next().unwrap();
    let mut c = Claims::default();
    // Fenced code blocks hold examples, not claims; their backticks would
    // also pair up with the inline ones.
    let mut prose = String::new();
    let mut in_fence = false;
    let example_event =
        Regex::new(r#"\bsocket\.(?:emit|emitWithAck|on|once)\(\s*['"]([^'"]+)['"]"#).unwrap();
    for line in current.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            c.example_events
                .extend(example_event.captures_iter(line).map(|m| m[1].to_owned()));
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    assert!(!in_fence, "unclosed code fence");
    let current = prose.as_str();
    // Tables: a header row, a `|---|` row, body rows.
    let lines: Vec<&str> = current.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let is_table = lines[i].trim_start().starts_with('|')
            && lines.get(i + 1).is_some_and(|l| {
                l.trim_start().starts_with("|--") || l.trim_start().starts_with("| --")
            });
        if !is_table {
            i += 1;
            continue;
        }
        let kind = cells(lines[i])[0].to_owned();
        i += 2;
        while i < lines.len() && lines[i].trim_start().starts_with('|') {
            let first = cells(lines[i])[0];
            match kind.as_str() {
                "event" => c.events.extend(backticked(first)),
                "code" => c.error_table.extend(backticked(first)),
                _ => {}
            }
            i += 1;
        }
    }
    let screaming = Regex::new(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$|^[A-Z]{4,}$").unwrap();
    let route = Regex::new(r"^([A-Z]+) (/[^\s?`]*)").unwrap();
    for span in backticked(current) {
        if let Some(r) = route.captures(&span)
            && HTTP_METHODS.contains(&&r[1])
        {
            c.routes
                .insert(format!("{} {}", &r[1], code_scan::normalize_path(&r[2])));
        } else if screaming.is_match(&span) && !HTTP_METHODS.contains(&span.as_str()) {
            c.error_mentions.insert(span);
        }
    }
    c
}

/// Every disagreement between the document and the code.
fn problems(doc: &str, code: &Code) -> Vec<String> {
    let mut out = Vec::new();
    if !doc.contains(PLANNED_HEADING) {
        out.push(format!("no `{PLANNED_HEADING}` heading"));
    }
    let c = claims(doc);
    for e in &code.error_codes {
        if !c.error_table.contains(e) {
            out.push(format!(
                "error code {e} is missing from the error-code table"
            ));
        }
    }
    for e in c.error_table.union(&c.error_mentions) {
        if !code.error_codes.contains(e) {
            out.push(format!(
                "the document names error code {e}, which ErrorCode lacks"
            ));
        }
    }
    for e in &code.events {
        if !c.events.contains(e) {
            out.push(format!("event `{e}` is missing from the event tables"));
        }
    }
    for e in &c.events {
        if !code.events.contains(e) {
            out.push(format!(
                "the document lists event `{e}`, which src/protocol lacks"
            ));
        }
    }
    for e in &c.example_events {
        if !code.events.contains(e) && !RESERVED_EVENTS.contains(&e.as_str()) {
            out.push(format!(
                "an example uses event `{e}`, which src/protocol lacks"
            ));
        }
    }
    for r in &code.routes {
        if !c.routes.contains(r) {
            out.push(format!("route `{r}` is not documented"));
        }
    }
    for r in &c.routes {
        if !code.routes.contains(r) {
            out.push(format!(
                "the document names route `{r}`, which src/http/mod.rs lacks"
            ));
        }
    }
    out
}

#[test]
fn protocol_md_matches_the_code() {
    let doc = code_scan::read(DOC);
    let code = code();
    let problems = problems(&doc, &code);
    assert!(
        problems.is_empty(),
        "{DOC} disagrees with the code:\n  {}",
        problems.join("\n  ")
    );
}

/// The checker itself catches each kind of drift.
#[test]
fn the_check_catches_drift() {
    let doc = code_scan::read(DOC);
    let code = code();
    let without_line = |needle: &str| -> String {
        let hits = doc.lines().filter(|l| l.starts_with(needle)).count();
        assert_eq!(hits, 1, "expected one line starting with {needle:?}");
        doc.lines()
            .filter(|l| !l.starts_with(needle))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let planned_at = doc.find(PLANNED_HEADING).expect("planned part");
    let cases: Vec<(&str, String)> = vec![
        ("a code missing", without_line("| `DOCUMENT_TOO_LARGE`")),
        ("an event missing", without_line("| `user-typing`")),
        (
            "a route missing",
            doc.replace(
                "`GET /api/sessions/{id}/chat",
                "`GET /api/sessions/{id}/talk",
            ),
        ),
        (
            "an unknown code",
            format!(
                "{}\nAlso `DISK_FULL`.\n{}",
                &doc[..planned_at],
                &doc[planned_at..]
            ),
        ),
        (
            "an unknown event",
            doc.replacen(
                "| `leave-session` |",
                "| `leave-session` / `leave-all` |",
                1,
            ),
        ),
        (
            "an unknown route",
            format!(
                "{}\n`GET /api/sessions/{{id}}/snapshots`\n{}",
                &doc[..planned_at],
                &doc[planned_at..]
            ),
        ),
        ("no planned part", doc.replace(PLANNED_HEADING, "## Later")),
    ];
    for (what, mutated) in cases {
        assert_ne!(mutated, doc, "{what}: the mutation changed nothing");
        assert!(!problems(&mutated, &code).is_empty(), "{what}: not caught");
    }
    // What only the Planned part names is not a claim.
    let with_plan = format!("{doc}\n- Later: `GET /api/sessions/{{id}}/snapshots`, `DISK_FULL`.\n");
    assert!(
        problems(&with_plan, &code).is_empty(),
        "{:?}",
        problems(&with_plan, &code)
    );
}

#[test]
fn the_scanners_see_both_dialects() {
    let ev = code_scan::socket_events();
    for e in [
        "join-session",
        "typing",
        "stop-typing",
        "sync-step-1",
        "sync-update",
        "awareness-update",
    ] {
        assert!(ev.listened.contains(e), "listener {e} not found: {ev:?}");
    }
    for e in [
        "yjs-update",
        "user-joined",
        "user-typing",
        "error",
        "sync-update",
        "awareness-update",
    ] {
        assert!(ev.emitted.contains(e), "emit {e} not found: {ev:?}");
    }
    let routes = code_scan::http_routes();
    assert!(routes.contains(&("PATCH".into(), "/api/sessions/{id}".into())));
    assert!(routes.contains(&(
        "DELETE".into(),
        "/api/sessions/{id}/participants/{user_id}".into()
    )));
}
