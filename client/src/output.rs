//! How the `mcs` CLI prints an answer: the daemon's JSON as it came (`--output json`, the
//! default, for scripts), or a table for a person (`--output table`).
//!
//! One renderer for every command: a list of objects (an answer's array field, e.g.
//! `{"keys": [...]}`, or a bare array) becomes one row per object with a column per field
//! — the sequence number and the ids first, then what a person scans for (time, event,
//! kind, status, name), other fields, and nested values (compact JSON) and hashes last; any
//! other object becomes `field  value` lines. Columns are aligned by display width (CJK characters
//! take two cells).

use serde_json::Value;

/// `--output`: the two ways of printing — `Json`, pretty-printed, exactly the daemon's
/// fields; `Table`, aligned columns for a terminal. (Described here rather than on the
/// variants, which clap would list as per-value help.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    #[default]
    Json,
    Table,
}

/// `v` printed as `output` says, ending with a newline; nothing for `null`.
pub fn render(v: &Value, output: Output) -> String {
    match (v, output) {
        (Value::Null, _) => String::new(),
        (_, Output::Json) => format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()),
        (_, Output::Table) => table(v),
    }
}

/// The table form of `v` (see the module's documentation).
pub fn table(v: &Value) -> String {
    if let Some(rows) = rows_of(v) {
        let mut out = String::new();
        // Scalars beside the list (a cursor, a count) first, as `field  value` lines.
        if let Value::Object(map) = v {
            let rest: serde_json::Map<String, Value> =
                map.iter().filter(|(_, x)| !x.is_array()).map(|(k, x)| (k.clone(), x.clone())).collect();
            out.push_str(&fields(&rest));
        }
        out.push_str(&columns(rows));
        return out;
    }
    match v {
        Value::Object(map) => fields(map),
        other => format!("{}\n", cell(other)),
    }
}

/// The list an answer is about: `v` itself, or its one array field, if its items are objects.
fn rows_of(v: &Value) -> Option<&[Value]> {
    let list = match v {
        Value::Array(items) => items,
        Value::Object(map) => {
            let mut arrays = map.values().filter_map(Value::as_array);
            match (arrays.next(), arrays.next()) {
                (Some(only), None) => only,
                _ => return None,
            }
        }
        _ => return None,
    };
    list.iter().all(Value::is_object).then_some(list.as_slice())
}

fn columns(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "(none)\n".into();
    }
    let mut names: Vec<&str> = Vec::new();
    for row in rows.iter().filter_map(Value::as_object) {
        for k in row.keys() {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
    }
    let nested = |n: &str| rows.iter().any(|r| r.get(n).is_some_and(|v| v.is_object() || v.is_array()));
    names.sort_by_key(|n| column_rank(n, nested(n)));
    let grid: Vec<Vec<String>> = std::iter::once(names.iter().map(|n| n.to_uppercase()).collect())
        .chain(rows.iter().map(|row| names.iter().map(|n| row.get(*n).map(cell).unwrap_or_default()).collect()))
        .collect();
    let widths: Vec<usize> = (0..names.len()).map(|i| grid.iter().map(|r| width(&r[i])).max().unwrap_or(0)).collect();
    grid.iter().map(|r| line(r, &widths)).collect()
}

/// Where a column goes (stable within a rank).
fn column_rank(name: &str, nested: bool) -> u8 {
    match name {
        "seq" => 0,
        _ if name == "id" || name.ends_with("_id") => 1,
        "at" | "created_at" | "event" | "kind" | "status" | "name" | "platform" | "outcome" => 2,
        "hash" => 5,
        _ if nested => 4,
        _ => 3,
    }
}

fn fields(map: &serde_json::Map<String, Value>) -> String {
    let w = map.keys().map(|k| width(k)).max().unwrap_or(0);
    map.iter().map(|(k, v)| line(&[k.clone(), cell(v)], &[w, 0])).collect()
}

fn line(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
        out.push_str(c);
        if i + 1 < cells.len() {
            out.push_str(&" ".repeat(w - width(c) + 2));
        }
    }
    out.trim_end().to_owned() + "\n"
}

/// One value in one cell: strings bare, `null` empty, nested values as compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.replace(['\n', '\r', '\t'], " "),
        other => other.to_string(),
    }
}

/// Terminal cells `s` takes: East Asian wide characters (CJK, Hangul, full-width forms) two.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF => 2,
            0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 => 2,
            0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD => 2,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_answer_is_one_row_per_item_aligned_by_display_width() {
        let v = json!({"keys": [
            {"key_id": "k1", "status": "active", "subject": {"name": "张三"}},
            {"key_id": "key-22", "status": "revoked", "note": null},
        ]});
        assert_eq!(
            table(&v),
            "KEY_ID  STATUS   NOTE  SUBJECT\n\
             k1      active         {\"name\":\"张三\"}\n\
             key-22  revoked\n"
        );
        let names = json!([{"name": "中国电子"}, {"name": "ab"}]);
        assert_eq!(table(&names), "NAME\n中国电子\nab\n");
    }

    #[test]
    fn an_object_is_field_value_lines_and_scalars_beside_a_list_come_first() {
        assert_eq!(table(&json!({"key_id": "k1", "locked": false})), "key_id  k1\nlocked  false\n");
        assert_eq!(table(&json!({"cursor": "7", "items": [{"kind": "task"}]})), "cursor  7\nKIND\ntask\n");
        assert_eq!(table(&json!({"entries": []})), "(none)\n");
        assert_eq!(render(&Value::Null, Output::Table), "");
        assert_eq!(render(&json!({"a": 1}), Output::Json), "{\n  \"a\": 1\n}\n");
    }
}
