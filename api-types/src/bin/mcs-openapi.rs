//! `mcs-openapi [PATH]` writes the OpenAPI document derived from the wire types: to the
//! path given, or to standard output (`cargo xtask openapi` runs it for
//! `docs/openapi.yaml`).
//!
//! `mcs-openapi check-answers DIR` checks every answer in the `answers-*.jsonl` logs the
//! reference client wrote under `MCS_ANSWER_LOG=DIR` against the document: the status must
//! be documented for its operation and the body must match the schema. It prints which
//! operations were seen, and fails on any mismatch (printing the first ten, or
//! `MCS_CHECK_SHOW` of them) or an empty log.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let result = match args.as_slice() {
        [] => {
            print!("{}", mcs_api::openapi::yaml());
            Ok(())
        }
        [cmd, dir] if cmd == "check-answers" => check_answers(Path::new(dir)),
        [path] => {
            std::fs::write(path, mcs_api::openapi::yaml()).map_err(|e| format!("{}: {e}", path.to_string_lossy()))
        }
        _ => Err("usage: mcs-openapi [PATH] | mcs-openapi check-answers DIR".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_answers(dir: &Path) -> Result<(), String> {
    let doc = mcs_api::openapi::document();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    entries.sort();
    let (mut answers, mut failures) = (0usize, Vec::new());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for path in &entries {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let place = format!("{}:{}", path.display(), n + 1);
            let entry: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line).map_err(|e| format!("{place}: not a log line: {e}"))?;
            answers += 1;
            let (called, verdict) = mcs_api::schema::check_logged(&doc, &entry);
            if let Some(op) = called {
                *seen.entry(op).or_default() += 1;
            }
            if let Err(e) = verdict {
                failures.push(format!("{place}: {e}"));
            }
        }
    }
    let operations: usize =
        doc["paths"].as_object().map_or(0, |p| p.values().filter_map(|i| i.as_object()).map(|i| i.len()).sum());
    println!("checked {answers} answers against the OpenAPI document; {} of {operations} operations seen", seen.len());
    for (op, count) in &seen {
        println!("  {count:6}  {op}");
    }
    for (template, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m.to_ascii_uppercase()) {
            if !seen.contains_key(&format!("{method} {template}")) {
                println!("  not seen: {method} {template}");
            }
        }
    }
    if answers == 0 {
        return Err(format!("{}: no answers were logged", dir.display()));
    }
    if !failures.is_empty() {
        for f in failures.iter().take(std::env::var("MCS_CHECK_SHOW").ok().and_then(|n| n.parse().ok()).unwrap_or(10)) {
            eprintln!("{f}");
        }
        return Err(format!("{} answers do not match the OpenAPI document", failures.len()));
    }
    Ok(())
}
