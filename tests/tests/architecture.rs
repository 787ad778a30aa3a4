//! The invariants ARCHITECTURE.md states, checked on the source so the picture cannot drift
//! from the code: every workspace member is on the map; the daemon's modules form the
//! layers of its "Layers" block (imports point down only, no cycle); sled, PostgreSQL,
//! cryptoki and the HTTP stack each stay in their module; `unsafe` only where the list
//! allows it; a `//!` doc on every file; the system clock read in one place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn architecture_md() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap()
}

/// Every `.rs` file under `dir`, as (path relative to `dir`, contents).
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if !p.ends_with("target") {
                    todo.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The source without comments (line comments, doc comments): a doc link to a module is
/// not a dependency on it.
fn code_of(src: &str) -> String {
    src.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The daemon's top-level module a file belongs to (`api/keys.rs` → `api`).
fn module_of(rel: &str) -> &str {
    rel.split('/').next().unwrap().trim_end_matches(".rs")
}

/// The crate-local modules a source refers to: `crate::x…` and `crate::{x…, y…}`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group only; nested groups belong to their item.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident(group[start..i].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(group[start..i].trim()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            // `crate::m!` is an exported macro, not a module.
            if !rest[name.len()..].starts_with('!') {
                out.insert(name);
            }
        }
    }
    out.remove("");
    out
}

/// ARCHITECTURE.md's "Layers" block: one line per layer, top first; the modules of one
/// layer are separated by spaces; a line starting with `*` lists the modules every layer
/// may use (which use none of the layered ones).
struct Layers {
    rank: BTreeMap<String, usize>,
    anywhere: BTreeSet<String>,
}

fn layers() -> Layers {
    let md = architecture_md();
    let block = md.split("```text layers\n").nth(1).expect("ARCHITECTURE.md has a ```text layers block");
    let block = &block[..block.find("```").unwrap()];
    let mut rank = BTreeMap::new();
    let mut anywhere = BTreeSet::new();
    for (i, line) in block.lines().map(|l| l.split('#').next().unwrap().trim()).filter(|l| !l.is_empty()).enumerate() {
        if let Some(free) = line.strip_prefix('*') {
            anywhere.extend(free.split_whitespace().map(str::to_owned));
        } else {
            for m in line.split_whitespace() {
                rank.insert(m.to_owned(), i);
            }
        }
    }
    Layers { rank, anywhere }
}

fn daemon_src() -> PathBuf {
    root().join("daemon/src")
}

#[test]
fn every_workspace_member_is_in_architecture_md() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let arch = architecture_md();
    let members: Vec<&str> = manifest
        .split("members = [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap()
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .collect();
    assert!(members.len() >= 6, "{members:?}");
    for m in members {
        assert!(arch.contains(&format!("`{m}/`")), "ARCHITECTURE.md does not mention `{m}/`");
    }
}

/// Imports between the daemon's modules point down the layers only, so there is no cycle;
/// every module is placed in a layer.
#[test]
fn daemon_imports_point_down_the_layers() {
    let Layers { rank, anywhere } = layers();
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for (rel, src) in sources(&daemon_src()) {
        if rel == "lib.rs" || rel == "main.rs" {
            continue;
        }
        let from = module_of(&rel).to_owned();
        seen.insert(from.clone());
        let code = code_of(&src);
        if code.contains("super::super::") {
            violations.push(format!("{rel}: reaches above its module with super::super::"));
        }
        for to in crate_refs(&code) {
            if to == from {
                continue;
            }
            let allowed = match (rank.get(&from), rank.get(&to)) {
                // A module every layer may use uses none of the layered ones.
                _ if anywhere.contains(&from) => anywhere.contains(&to),
                _ if anywhere.contains(&to) => true,
                (Some(f), Some(t)) => t > f,
                _ => false,
            };
            if !allowed {
                violations.push(format!("{rel}: `{from}` uses `crate::{to}`"));
            }
        }
    }
    for m in &seen {
        assert!(rank.contains_key(m) || anywhere.contains(m), "module `{m}` is in no layer of ARCHITECTURE.md");
    }
    for m in rank.keys().chain(&anywhere) {
        assert!(seen.contains(m), "ARCHITECTURE.md lists `{m}`, which daemon/src does not have");
    }
    assert!(violations.is_empty(), "imports against the layers of ARCHITECTURE.md:\n{}", violations.join("\n"));
}

/// Where each outside crate may be named in the daemon: the storage engines (sled, and
/// PostgreSQL's client and pool) in `store/`, the PKCS#11 binding in `hsm/`, the HTTP stack
/// at the edges.
#[test]
fn outside_crates_stay_in_their_modules() {
    let rules: &[(&str, &[&str])] = &[
        ("sled::", &["store/"]),
        ("tokio_postgres", &["store/"]),
        ("deadpool_postgres", &["store/"]),
        ("cryptoki", &["hsm/"]),
        ("libloading", &["plugins/"]),
        ("hyper::", &["api/", "server/", "tasks/callbacks.rs"]),
        ("hyper_util", &["server/", "tasks/callbacks.rs"]),
        ("axum", &["api/", "server/"]),
        ("http_body_util", &["api/", "server/", "tasks/callbacks.rs"]),
        ("tokio_rustls", &["server/", "tasks/callbacks.rs"]),
        // The wire types are converted at the edge: the domain never sees them.
        ("mcs_api", &["api/"]),
    ];
    let mut violations = Vec::new();
    for (rel, src) in sources(&daemon_src()) {
        if rel == "main.rs" {
            continue;
        }
        let code = code_of(&src);
        for (needle, places) in rules {
            if code.contains(needle) && !places.iter().any(|p| rel.starts_with(p)) {
                violations.push(format!("{rel} uses `{needle}` (allowed in {places:?})"));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// JSON is built (`json!`) only at the edges — the API's views, the server, the CA adapters'
/// JSON protocol — and for the audit entries' free-form `detail`; the domain works on
/// types. Test code may build what it likes.
#[test]
fn json_is_built_only_at_the_edges() {
    const PLACES: &[&str] = &["api/", "server/", "plugins/", "audit/"];
    let mut violations = Vec::new();
    for (rel, src) in sources(&daemon_src()) {
        let test_file = rel.contains("test") || rel.contains("conformance/") || rel == "main.rs";
        if test_file || PLACES.iter().any(|p| rel.starts_with(p)) {
            continue;
        }
        let code = code_of(&src);
        let code = code.split("#[cfg(test)]").next().unwrap_or("");
        if code.contains("json!(") {
            violations.push(rel);
        }
    }
    assert!(violations.is_empty(), "`json!` below the API (type it, or render it in api/views.rs): {violations:?}");
}

/// `unsafe` is denied workspace-wide (`[workspace.lints]`); these are the only files that
/// allow it, each for the reason ARCHITECTURE.md gives.
#[test]
fn unsafe_only_where_listed() {
    const ALLOWED: &[&str] = &[
        "daemon/src/lib.rs",             // the #[allow] on `plugins` and `os`
        "daemon/src/server/mod.rs",      // the #[allow] on `sdnotify`
        "daemon/src/plugins/mod.rs",     // the C ABI of CA adapters
        "daemon/src/plugins/host.rs",    // (the same, once split)
        "daemon/src/server/sdnotify.rs", // its test sets NOTIFY_SOCKET
        "daemon/src/os.rs",              // umask, rlimits, the wiping allocator
        "sm2-2p/src/fast/mod.rs",        // the assembly's dispatch
        "sm2-2p/src/fast/adx.rs",        // the assembly
        "sm2-2p/src/fast/field.rs",      // its call sites
        "plugins/abi/src/lib.rs",        // the C ABI
        "plugins/test-adapter-future/src/lib.rs",
        "pkcs11-mock/src/lib.rs", // a PKCS#11 module
        "pkcs11-mock/tests/softhsm.rs",
    ];
    let mut violations = Vec::new();
    for dir in ["daemon", "client", "sm2-2p", "pdfseal", "plugins", "pkcs11-mock", "tests", "bench", "xtask"] {
        for (rel, src) in sources(&root().join(dir)) {
            let path = format!("{dir}/{rel}");
            let code = code_of(&src);
            let uses = code.contains("unsafe ") || code.contains("unsafe{") || code.contains("allow(unsafe_code)");
            // This file names the words it looks for.
            if uses && !ALLOWED.contains(&path.as_str()) && path != "tests/tests/architecture.rs" {
                violations.push(path);
            }
        }
    }
    assert!(violations.is_empty(), "`unsafe` outside the listed files: {violations:?}");
}

/// Every daemon source file says what it is for.
#[test]
fn every_daemon_file_starts_with_a_module_doc() {
    let missing: Vec<String> = sources(&daemon_src())
        .into_iter()
        .filter(|(_, src)| !src.trim_start().starts_with("//!"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(missing.is_empty(), "files without a `//!` doc: {missing:?}");
}

/// Time comes from `clock`: a fake clock can then move it in tests.
#[test]
fn the_system_clock_is_read_in_clock_rs_only() {
    let readers: Vec<String> = sources(&daemon_src())
        .into_iter()
        .filter(|(rel, src)| rel != "clock.rs" && rel != "main.rs" && code_of(src).contains("SystemTime::now"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(readers.is_empty(), "read the time through crate::clock, not SystemTime::now: {readers:?}");
}

#[test]
fn the_reference_scanner_finds_groups_and_paths() {
    let refs = crate_refs("use crate::{a::X, b::{Y, Z}, c};\nlet _ = crate::d::f();\ncrate::m!(x);");
    assert_eq!(refs, ["a", "b", "c", "d"].into_iter().map(String::from).collect());
    assert_eq!(module_of("api/keys.rs"), "api");
    assert_eq!(module_of("clock.rs"), "clock");
}
