//! `docs/api.md` and `docs/protocol.md` are the project's statement of the HTTP contract and
//! the protocol; these tests keep them in step with the code. They fail when
//! - an operation of the OpenAPI document (method and path) has no section in `api.md`, under
//!   its tag, or `api.md` has a section for one the document lacks;
//! - an error code of the `ErrorCode` schema is missing from `api.md`'s error table, or listed
//!   there with another HTTP status than `ErrorCode::status` gives it;
//! - a family of `docs/test-vectors.json`, or one of its fields, is not described in
//!   `protocol.md`;
//! - a PIN-proof `op` of the code (`sm2_2p::Transcript::op`, read from `sm2-2p/src/pin.rs`)
//!   is missing from `protocol.md`'s table, or the table names an op or a route the code does
//!   not have.
//!
//! They read only files of this repository.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mcs_api::ErrorCode;
use serde_json::Value;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The lines outside fenced code blocks, with their 1-based numbers.
fn prose(md: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in md.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// The text of the section that starts with the heading `heading` (exactly), up to the next
/// heading of the same or a higher level.
fn section<'a>(md: &'a str, heading: &str) -> Option<Vec<(usize, &'a str)>> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let lines = prose(md);
    let start = lines.iter().position(|(_, l)| l.trim_end() == heading)?;
    let rest = &lines[start + 1..];
    let end = rest
        .iter()
        .position(|(_, l)| {
            let hashes = l.chars().take_while(|c| *c == '#').count();
            hashes > 0 && hashes <= level && l[hashes..].starts_with(' ')
        })
        .unwrap_or(rest.len());
    Some(rest[..end].to_vec())
}

/// `` `x` `` → `x`, for a cell that is exactly one code span.
fn code_span(cell: &str) -> Option<&str> {
    let inner = cell.trim().strip_prefix('`')?.strip_suffix('`')?;
    (!inner.is_empty() && !inner.contains('`')).then_some(inner)
}

/// The cells of a Markdown table row (`| a | b |`), trimmed (an escaped `\|` stays in its
/// cell); `None` for other lines.
fn cells(line: &str) -> Option<Vec<String>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.replace("\\|", "\u{0}").split('|').map(|c| c.trim().replace('\u{0}', "|")).collect())
}

/// `POST /v1/keys/{id}/sign` → (`post`, `/v1/keys/{id}/sign`).
fn operation(text: &str) -> Option<(String, String)> {
    let (method, path) = text.split_once(' ')?;
    let known = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    (known.contains(&method) && path.starts_with('/') && !path.contains(' '))
        .then(|| (method.to_ascii_lowercase(), path.to_owned()))
}

/// Every operation of the OpenAPI document: (method, path) → its tag.
fn openapi_operations(doc: &Value) -> BTreeMap<(String, String), String> {
    let mut ops = BTreeMap::new();
    let paths = doc["paths"].as_object().expect("the OpenAPI document has paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("a path item is an object") {
            let tag = op["tags"][0].as_str().unwrap_or_else(|| panic!("{method} {path} has no tag")).to_owned();
            ops.insert((method.clone(), path.clone()), tag);
        }
    }
    assert!(!ops.is_empty(), "the OpenAPI document has no operations");
    ops
}

fn show((method, path): &(String, String)) -> String {
    format!("{} {path}", method.to_ascii_uppercase())
}

/// The operation sections of api.md: `### `METHOD /path`` → the tag of the `## … (`tag`)`
/// section it stands in (`None` outside such a section), with its line.
fn documented_operations(md: &str) -> BTreeMap<(String, String), (Option<String>, usize)> {
    let mut tag: Option<String> = None;
    let mut found = BTreeMap::new();
    for (n, line) in prose(md) {
        if let Some(title) = line.strip_prefix("## ") {
            tag = title.trim_end().strip_suffix("`)").and_then(|t| t.rsplit_once("(`")).map(|(_, t)| t.to_owned());
        } else if let Some(title) = line.strip_prefix("### ")
            && let Some(op) = code_span(title).and_then(operation)
        {
            let shown = show(&op);
            if let Some((_, first)) = found.insert(op, (tag.clone(), n)) {
                panic!("docs/api.md:{n}: `{shown}` has a second section (the first is at line {first}); merge them");
            }
        }
    }
    found
}

#[test]
fn every_operation_is_in_api_md_under_its_tag() {
    let doc = mcs_api::openapi::document();
    let ops = openapi_operations(&doc);
    let documented = documented_operations(&read("docs/api.md"));
    let mut problems = Vec::new();
    for (op, tag) in &ops {
        match documented.get(op) {
            None => problems.push(format!(
                "`{}` (tag `{tag}`) is in docs/openapi.yaml but not in docs/api.md: add a section \
                 \"### `{}`\" under the \"## … (`{tag}`)\" heading saying who may call it, the request, \
                 the answer and the errors that matter",
                show(op),
                show(op)
            )),
            Some((Some(t), _)) if t == tag => {}
            Some((t, line)) => problems.push(format!(
                "docs/api.md:{line}: `{}` stands under the tag {}, but docs/openapi.yaml tags it `{tag}`: \
                 move its section under \"## … (`{tag}`)\"",
                show(op),
                t.as_deref().map_or("of no section".to_owned(), |t| format!("`{t}`"))
            )),
        }
    }
    for (op, (_, line)) in &documented {
        if !ops.contains_key(op) {
            problems.push(format!(
                "docs/api.md:{line}: `{}` is documented but docs/openapi.yaml has no such operation: \
                 remove the section, or fix its method and path",
                show(op)
            ));
        }
    }
    assert!(problems.is_empty(), "docs/api.md is out of step with the OpenAPI document:\n- {}", problems.join("\n- "));
}

#[test]
fn every_error_code_is_in_api_md_with_its_status() {
    let md = read("docs/api.md");
    let errors = section(&md, "## Errors").expect("docs/api.md has no \"## Errors\" section");
    let mut table: BTreeMap<String, (u16, usize)> = BTreeMap::new();
    for (n, line) in errors {
        let Some(row) = cells(line) else { continue };
        let (Some(code), Some(status)) = (row.first().and_then(|c| code_span(c)), row.get(1)) else { continue };
        let Ok(status) = status.parse::<u16>() else { continue };
        if let Some((_, first)) = table.insert(code.to_owned(), (status, n)) {
            panic!("docs/api.md:{n}: `{code}` has a second row in the error table (the first is at line {first})");
        }
    }
    let doc = mcs_api::openapi::document();
    let schema =
        doc["components"]["schemas"]["ErrorCode"]["enum"].as_array().expect("the ErrorCode schema has an enum");
    let mut problems = Vec::new();
    let mut known = BTreeSet::new();
    for value in schema {
        let name = value.as_str().expect("error codes are strings");
        known.insert(name.to_owned());
        let code: ErrorCode = serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("the ErrorCode schema lists `{name}`, which ErrorCode does not read: {e}"));
        match table.get(name) {
            None => problems.push(format!(
                "`{name}` is missing: add the row \"| `{name}` | {} | <when> |\" to the table of \"## Errors\"",
                code.status()
            )),
            Some((status, line)) if *status != code.status() => problems.push(format!(
                "docs/api.md:{line}: `{name}` is listed with status {status}, but ErrorCode::status gives {}: \
                 fix the row (or, if the status really changed, ErrorCode::status and the daemon's ApiError::status)",
                code.status()
            )),
            Some(_) => {}
        }
    }
    for code in ErrorCode::ALL {
        assert!(known.contains(code.as_str()), "ErrorCode::{code:?} is not in the ErrorCode schema");
    }
    for (name, (_, line)) in &table {
        if !known.contains(name) {
            problems.push(format!(
                "docs/api.md:{line}: the error table lists `{name}`, which is not an error code of ErrorCode"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/api.md's error table is out of step with the code:\n- {}",
        problems.join("\n- ")
    );
}

#[test]
fn every_test_vector_family_and_field_is_described_in_protocol_md() {
    let md = read("docs/protocol.md");
    let vectors: Value = serde_json::from_str(&read("docs/test-vectors.json")).expect("docs/test-vectors.json is JSON");
    let families = vectors.as_object().expect("docs/test-vectors.json is an object");
    section(&md, "## Test vectors").expect("docs/protocol.md has no \"## Test vectors\" section");
    let mut problems = Vec::new();
    for (family, entries) in families {
        if family == "about" {
            continue;
        }
        let heading = format!("### `{family}`");
        let Some(text) = section(&md, &heading) else {
            problems.push(format!(
                "the family `{family}` of docs/test-vectors.json is not described: add a section \"{heading}\" \
                 under \"## Test vectors\" in docs/protocol.md saying what it tests and what each field is"
            ));
            continue;
        };
        let text = text.iter().map(|(_, l)| *l).collect::<Vec<_>>().join("\n");
        let fields: BTreeSet<&str> = entries
            .as_array()
            .unwrap_or_else(|| panic!("docs/test-vectors.json: `{family}` is not an array"))
            .iter()
            .flat_map(|entry| entry.as_object().into_iter().flat_map(|o| o.keys().map(String::as_str)))
            .collect();
        let missing: Vec<String> =
            fields.iter().filter(|f| !text.contains(&format!("`{f}`"))).map(|f| format!("`{f}`")).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "the section \"{heading}\" of docs/protocol.md does not name the field(s) {} of the family",
                missing.join(", ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/protocol.md is out of step with docs/test-vectors.json:\n- {}",
        problems.join("\n- ")
    );
}

/// The ops `Transcript::op` answers, as string literals in its body in `sm2-2p/src/pin.rs`.
fn transcript_ops() -> BTreeSet<String> {
    let src = read("sm2-2p/src/pin.rs");
    let start = src.find("pub fn op(&self)").expect(
        "sm2-2p/src/pin.rs has no `pub fn op(&self)` (Transcript::op): update transcript_ops in api-types/tests/docs.rs",
    );
    let body = &src[start..];
    let body = &body[..body[1..].find("pub fn ").map_or(body.len(), |i| i + 1)];
    let ops: BTreeSet<String> = body.split('"').skip(1).step_by(2).map(str::to_owned).collect();
    assert!(ops.len() >= 5, "found only {ops:?} in Transcript::op of sm2-2p/src/pin.rs: update transcript_ops");
    ops
}

#[test]
fn every_pin_proof_op_is_in_protocol_md_s_table() {
    let md = read("docs/protocol.md");
    let proof = section(&md, "### Proof").expect("docs/protocol.md has no \"### Proof\" section");
    let routes = openapi_operations(&mcs_api::openapi::document());
    let mut table: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (n, line) in proof {
        let Some(row) = cells(line) else { continue };
        let [request, op, _fields] = row.as_slice() else { continue };
        let Some(op) = code_span(op) else { continue };
        table.entry(op.to_owned()).or_insert(n);
        // The request cell starts with the route, in code: `POST /v1/…`, then any remark.
        let route = request.strip_prefix('`').and_then(|r| r.split_once('`')).and_then(|(r, _)| operation(r));
        match route {
            Some(route) if routes.contains_key(&route) => {}
            Some(route) => problems.push(format!(
                "docs/protocol.md:{n}: the PIN-proof table names `{}`, which docs/openapi.yaml does not have",
                show(&route)
            )),
            None => problems.push(format!("docs/protocol.md:{n}: the request cell must start with `METHOD /path`")),
        }
    }
    let mut code_ops = transcript_ops();
    let vectors: Value = serde_json::from_str(&read("docs/test-vectors.json")).expect("docs/test-vectors.json is JSON");
    for v in vectors["pin_proof"].as_array().into_iter().flatten() {
        let op = v["op"].as_str().expect("a pin_proof vector has an op");
        assert!(code_ops.contains(op), "docs/test-vectors.json has a pin_proof op `{op}` that Transcript::op lacks");
        code_ops.insert(op.to_owned());
    }
    for op in &code_ops {
        if !table.contains_key(op) {
            problems.push(format!(
                "the PIN-proof op `{op}` (sm2_2p::Transcript) is missing: add a row \
                 \"| `METHOD /path` | `{op}` | <fields in order> |\" to the table of \"### Proof\" in docs/protocol.md"
            ));
        }
    }
    for (op, line) in &table {
        if !code_ops.contains(op) {
            problems.push(format!(
                "docs/protocol.md:{line}: the PIN-proof table lists op `{op}`, which sm2_2p::Transcript::op never gives"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/protocol.md's PIN-proof table is out of step with the code:\n- {}",
        problems.join("\n- ")
    );
}
