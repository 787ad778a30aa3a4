//! A small YAML emitter for JSON values, so `docs/openapi.yaml` needs no YAML library.
//!
//! Block style, two spaces per level; every string value is written JSON-quoted (a JSON
//! string is a valid YAML double-quoted scalar), keys plain where YAML cannot read them
//! as anything but that string. The paths therefore appear as `  /v1/...:` lines.

use serde_json::Value;

pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key(k));
        out.push(':');
        value(out, v, indent);
    }
}

/// A value after `key:` or `-`: inline if scalar or empty, else on the following lines.
fn value(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            seq(out, a, indent + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn seq(out: &mut String, a: &[Value], indent: usize) {
    for item in a {
        match item {
            // `- first: …` with the other keys under it: the map rendered two spaces
            // deeper, its first indentation replaced by the dash.
            Value::Object(m) if !m.is_empty() => {
                let mut inner = String::new();
                map(&mut inner, m, indent + 2);
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                out.push_str(&inner[indent + 2..]);
            }
            other => {
                out.push_str(&" ".repeat(indent));
                out.push('-');
                value(out, other, indent);
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        // Null, booleans and numbers print the same in YAML; strings JSON-quoted.
        other => other.to_string(),
    }
}

fn key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || "_/$".contains(c))
        && k.chars().all(|c| c.is_ascii_alphanumeric() || "_/{}.$-".contains(c))
        && !["y", "n", "yes", "no", "on", "off", "true", "false", "null"].contains(&k.to_ascii_lowercase().as_str());
    if plain { k.to_owned() } else { Value::from(k).to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nesting_sequences_and_quoting() {
        let v = json!({
            "paths": { "/v1/keys/{id}": { "get": { "responses": { "200": {}, "4XX": { "$ref": "#/x" } } } } },
            "list": [ { "a": 1, "b": [true, null] }, "s", [] ],
            "on": "a \"quoted\"\nline",
        });
        let expected = "\
list:
  - a: 1
    b:
      - true
      - null
  - \"s\"
  - []
\"on\": \"a \\\"quoted\\\"\\nline\"
paths:
  /v1/keys/{id}:
    get:
      responses:
        \"200\": {}
        \"4XX\":
          $ref: \"#/x\"
";
        assert_eq!(to_yaml(&v), expected);
    }
}
