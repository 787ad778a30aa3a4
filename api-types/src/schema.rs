//! Checking JSON against the OpenAPI document's schemas: the keywords the document uses
//! (JSON Schema 2020-12 as OpenAPI 3.1 has it: `$ref`, `type` (one or a list), `enum`,
//! `const`, `properties`, `required`, `additionalProperties`, `items`, `oneOf` (exactly
//! one), `anyOf`, `allOf`, `not`, `pattern`, string and array lengths, `minimum`/`maximum`, and the
//! formats `int32`, `int64`, `double`, `date-time`). A keyword it does not know is an
//! error, not a pass, so the check cannot go quietly blind when the document grows.
//!
//! [`check_answer`] finds the operation an answer belongs to (method, path template,
//! status) and checks the body; the end-to-end suite runs it over every answer its
//! clients received (`mcs-openapi check-answers`, from `cargo xtask test`).

use serde_json::{Map, Value};

/// Keywords that describe and do not constrain.
const ANNOTATIONS: [&str; 7] = ["description", "title", "example", "examples", "default", "deprecated", "readOnly"];

/// `value` against `schema`, `$ref`s resolved in `doc`. The error names the place in the
/// value (a JSON pointer) and the rule.
pub fn validate(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    check(doc, schema, value, "", 0)
}

fn check(doc: &Value, schema: &Value, value: &Value, at: &str, depth: usize) -> Result<(), String> {
    if depth > 64 {
        return Err(format!("{at}: schema nesting too deep"));
    }
    let schema = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("{at}: nothing is allowed here")),
        Value::Object(s) => s,
        _ => return Err(format!("{at}: the schema is not an object")),
    };
    let fail = |rule: String| Err(format!("{}: {rule}", if at.is_empty() { "/" } else { at }));
    for (keyword, rule) in schema {
        match keyword.as_str() {
            "$ref" => {
                let target = resolve(doc, rule.as_str().unwrap_or_default())?;
                check(doc, target, value, at, depth + 1)?;
            }
            "type" => {
                let allowed: Vec<&str> = match rule {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => return fail("`type` is neither a name nor a list".into()),
                };
                if !allowed.iter().any(|t| is_type(value, t)) {
                    return fail(format!("{} is not of type {}", kind(value), allowed.join(" or ")));
                }
            }
            "enum" => {
                if !rule.as_array().is_some_and(|vs| vs.contains(value)) {
                    return fail(format!("{value} is not one of {rule}"));
                }
            }
            "const" if rule != value => return fail(format!("{value} is not {rule}")),
            "properties" => {
                if let (Some(props), Some(obj)) = (rule.as_object(), value.as_object()) {
                    for (name, sub) in props {
                        match obj.get(name) {
                            Some(_) if sub == &Value::Bool(false) => {
                                return fail(format!("`{name}` is not a field of this object"));
                            }
                            Some(v) => check(doc, sub, v, &format!("{at}/{name}"), depth + 1)?,
                            None => {}
                        }
                    }
                }
            }
            "required" => {
                if let Some(obj) = value.as_object() {
                    for name in rule.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        if !obj.contains_key(name) {
                            return fail(format!("`{name}` is required"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(obj) = value.as_object() {
                    let known = schema.get("properties").and_then(Value::as_object);
                    for (name, v) in obj.iter().filter(|(n, _)| !known.is_some_and(|k| k.contains_key(*n))) {
                        if rule == &Value::Bool(false) {
                            return fail(format!("`{name}` is not a field of this object"));
                        }
                        check(doc, rule, v, &format!("{at}/{name}"), depth + 1)?;
                    }
                }
            }
            "items" => {
                for (i, v) in value.as_array().into_iter().flatten().enumerate() {
                    check(doc, rule, v, &format!("{at}/{i}"), depth + 1)?;
                }
            }
            "oneOf" | "anyOf" => {
                let options = rule.as_array().map(Vec::as_slice).unwrap_or_default();
                let results: Vec<Result<(), String>> =
                    options.iter().map(|o| check(doc, o, value, at, depth + 1)).collect();
                let passed = results.iter().filter(|r| r.is_ok()).count();
                if passed == 0 {
                    let why: Vec<String> = results.into_iter().filter_map(Result::err).collect();
                    return fail(format!("matches none of {keyword}: {}", why.join("; ")));
                }
                if keyword == "oneOf" && passed > 1 {
                    return fail(format!("matches {passed} of oneOf's {} options, not exactly one", options.len()));
                }
            }
            "not" => {
                if check(doc, rule, value, at, depth + 1).is_ok() {
                    return fail(format!("matches what `not` excludes: {rule}"));
                }
            }
            "allOf" => {
                for o in rule.as_array().into_iter().flatten() {
                    check(doc, o, value, at, depth + 1)?;
                }
            }
            "pattern" => {
                if let Some(s) = value.as_str() {
                    let re = regex::Regex::new(rule.as_str().unwrap_or_default())
                        .map_err(|e| format!("{at}: bad pattern {rule}: {e}"))?;
                    if !re.is_match(s) {
                        return fail(format!("{value} does not match {rule}"));
                    }
                }
            }
            "minLength" | "maxLength" => {
                if let (Some(s), Some(n)) = (value.as_str(), rule.as_u64()) {
                    let len = s.chars().count() as u64;
                    if (keyword == "minLength" && len < n) || (keyword == "maxLength" && len > n) {
                        return fail(format!("length {len} breaks {keyword} {n}"));
                    }
                }
            }
            "minItems" | "maxItems" => {
                if let (Some(a), Some(n)) = (value.as_array(), rule.as_u64()) {
                    let len = a.len() as u64;
                    if (keyword == "minItems" && len < n) || (keyword == "maxItems" && len > n) {
                        return fail(format!("{len} items break {keyword} {n}"));
                    }
                }
            }
            "minimum" | "maximum" => {
                if let (Some(v), Some(limit)) = (value.as_f64(), rule.as_f64())
                    && ((keyword == "minimum" && v < limit) || (keyword == "maximum" && v > limit))
                {
                    return fail(format!("{v} breaks {keyword} {limit}"));
                }
            }
            "format" => {
                if let Some(why) = format_error(rule.as_str().unwrap_or_default(), value) {
                    return fail(why);
                }
            }
            k if ANNOTATIONS.contains(&k) => {}
            k => return fail(format!("the checker does not know the keyword `{k}`")),
        }
    }
    Ok(())
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> Result<&'a Value, String> {
    reference
        .strip_prefix('#')
        .and_then(|pointer| doc.pointer(pointer))
        .ok_or_else(|| format!("unresolvable $ref {reference}"))
}

fn is_type(value: &Value, t: &str) -> bool {
    match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Why `value` breaks `format`, if it does; formats apply to their own types only.
fn format_error(format: &str, value: &Value) -> Option<String> {
    let range = |lo: i128, hi: i128| {
        let n = value.as_i64().map(i128::from).or(value.as_u64().map(i128::from))?;
        (n < lo || n > hi).then(|| format!("{n} is out of {format}'s range"))
    };
    match format {
        "int32" => range(i32::MIN.into(), i32::MAX.into()),
        "int64" => range(i64::MIN.into(), i64::MAX.into()),
        "double" | "float" | "byte" | "binary" | "uri" => None,
        "date-time" => value.as_str().filter(|s| !is_rfc3339(s)).map(|s| format!("{s:?} is not an RFC 3339 time")),
        other => Some(format!("the checker does not know the format `{other}`")),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    matches!(rest, "Z" | "z")
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':'
            && rest[1..3].bytes().chain(rest[4..].bytes()).all(|d| d.is_ascii_digit()))
}

/// The operation `method path` names: its path template and its object. Literal segments
/// win over parameters (`/v1/tasks/batch/cosign` before `/v1/tasks/{id}/cosign`).
pub fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<(&'a str, &'a Value)> {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    let paths = doc.get("paths")?.as_object()?;
    paths
        .iter()
        .filter_map(|(template, item)| {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            for (p, s) in parts.iter().zip(&segments) {
                if p.starts_with('{') && p.ends_with('}') {
                    if s.is_empty() {
                        return None;
                    }
                } else if p == s {
                    literal += 1;
                } else {
                    return None;
                }
            }
            let op = item.get(method.to_ascii_lowercase())?;
            Some((literal, template.as_str(), op))
        })
        .max_by_key(|(literal, _, _)| *literal)
        .map(|(_, template, op)| (template, op))
}

/// The documented answer of `op` for `status`: its own code, else its range (`4XX`).
fn response<'a>(doc: &'a Value, op: &'a Value, status: u16) -> Option<&'a Value> {
    let responses = op.get("responses")?.as_object()?;
    let found = responses.get(&status.to_string()).or_else(|| responses.get(&format!("{}XX", status / 100)))?;
    match found.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r).ok(),
        None => Some(found),
    }
}

/// One answer the API gave: is its status documented for the operation, and does its
/// JSON body (`Value::Null` for none) match the documented schema? A path no operation
/// has may only answer the error body (404, 405).
pub fn check_answer(doc: &Value, method: &str, path: &str, status: u16, body: &Value) -> Result<(), String> {
    check_at(doc, method, path, operation(doc, documented_method(method), path), status, body)
}

/// The method whose operation documents an answer to `method`: HEAD is GET without the
/// body (RFC 9110 §9.3.2), and the document lists GET only.
fn documented_method(method: &str) -> &str {
    if method.eq_ignore_ascii_case("HEAD") { "GET" } else { method }
}

/// [`check_answer`] with the operation already looked up.
fn check_at(
    doc: &Value,
    method: &str,
    path: &str,
    found: Option<(&str, &Value)>,
    status: u16,
    body: &Value,
) -> Result<(), String> {
    if method.eq_ignore_ascii_case("HEAD") {
        if !body.is_null() {
            return Err(format!("HEAD {path} → {status}: an answer to HEAD has no body"));
        }
        return match found {
            Some((template, op)) => response(doc, op, status)
                .map(|_| ())
                .ok_or_else(|| format!("HEAD {template} → {status}: status not documented for GET")),
            None if status >= 400 => Ok(()),
            None => Err(format!("HEAD {path} → {status}: no operation has this path")),
        };
    }
    let error_body = || {
        let schema = serde_json::json!({ "$ref": "#/components/schemas/ErrorBody" });
        validate(doc, &schema, body).map_err(|e| format!("{method} {path} → {status}: {e}"))
    };
    let Some((template, op)) = found else {
        return match status {
            400..=599 => error_body(),
            _ => Err(format!("{method} {path} → {status}: no operation has this path and method")),
        };
    };
    let where_ = format!("{method} {template} → {status}");
    let answer = response(doc, op, status).ok_or_else(|| format!("{where_}: status not documented"))?;
    match answer.get("content").and_then(Value::as_object).filter(|c| !c.is_empty()) {
        None if body.is_null() => Ok(()),
        None => Err(format!("{where_}: documented without a body, answered {body}")),
        Some(content) => {
            let schema = content
                .get("application/json")
                .and_then(|c| c.get("schema"))
                .ok_or_else(|| format!("{where_}: no application/json schema"))?;
            validate(doc, schema, body).map_err(|e| format!("{where_}: {e}"))
        }
    }
}

/// A line of the answer log the reference client writes under `MCS_ANSWER_LOG`: the
/// operation it called (`METHOD /template`; none for HEAD, which is checked against GET
/// but does not exercise it) and whether the answer matches the document.
pub fn check_logged(doc: &Value, line: &Map<String, Value>) -> (Option<String>, Result<(), String>) {
    let text = |k: &str| line.get(k).and_then(Value::as_str).ok_or_else(|| format!("log line without `{k}`"));
    let status = line.get("status").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok());
    let (method, path, status) = match (text("method"), text("path"), status) {
        (Ok(m), Ok(p), Some(s)) => (m, p, s),
        (Err(e), _, _) | (_, Err(e), _) => return (None, Err(e)),
        (_, _, None) => return (None, Err("log line without `status`".into())),
    };
    let found = operation(doc, documented_method(method), path);
    let called = found.filter(|_| documented_method(method) == method).map(|(t, _)| format!("{method} {t}"));
    (called, check_at(doc, method, path, found, status, line.get("body").unwrap_or(&Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        crate::openapi::document()
    }

    #[test]
    fn a_task_answer_passes_and_each_break_is_named() {
        let doc = doc();
        let created =
            json!({ "task_id": "t_1", "token": "ab", "qr": "mcs://task?v=1", "expires_at": "2026-12-03T10:00:00Z" });
        check_answer(&doc, "POST", "/v1/tasks", 201, &created).unwrap();
        // Answers may grow fields (clients ignore what they do not know); requests may not.
        let mut extra = created.clone();
        extra["surprise"] = json!(1);
        check_answer(&doc, "POST", "/v1/tasks", 201, &extra).unwrap();
        let sign = json!({ "$ref": "#/components/schemas/SignRequest" });
        let request = json!({ "e": "00", "q1": "04", "pin_proof": "00", "surprise": 1 });
        assert!(validate(&doc, &sign, &request).unwrap_err().contains("`surprise`"));
        let mut missing = created.clone();
        missing.as_object_mut().unwrap().remove("token");
        assert!(check_answer(&doc, "POST", "/v1/tasks", 201, &missing).unwrap_err().contains("`token` is required"));
        let mut typed = created.clone();
        typed["token"] = json!(5);
        assert!(check_answer(&doc, "POST", "/v1/tasks", 201, &typed).unwrap_err().contains("/token"));
        assert!(check_answer(&doc, "POST", "/v1/tasks", 200, &json!({})).unwrap_err().contains("not documented"));
    }

    #[test]
    fn errors_and_unknown_paths_answer_the_error_body() {
        let doc = doc();
        let err = json!({ "error": { "code": "not_found", "message": "no such key" } });
        check_answer(&doc, "GET", "/v1/keys/k_1", 404, &err).unwrap();
        check_answer(&doc, "GET", "/v1/nothing/here", 404, &err).unwrap();
        let bad = json!({ "error": { "code": "no_such_code", "message": "x" } });
        assert!(check_answer(&doc, "GET", "/v1/keys/k_1", 404, &bad).is_err());
        assert!(check_answer(&doc, "GET", "/v1/nothing/here", 200, &json!({})).is_err());
        check_answer(&doc, "HEAD", "/v1/keys", 200, &Value::Null).unwrap();
        assert!(check_answer(&doc, "HEAD", "/v1/keys", 200, &json!({})).is_err(), "HEAD has no body");
    }

    #[test]
    fn literal_segments_win_over_parameters() {
        let doc = doc();
        assert_eq!(operation(&doc, "POST", "/v1/tasks/batch/cosign").unwrap().0, "/v1/tasks/batch/cosign");
        assert_eq!(operation(&doc, "POST", "/v1/tasks/t_1/cosign").unwrap().0, "/v1/tasks/{id}/cosign");
        assert_eq!(operation(&doc, "GET", "/v1/tasks/t_1/result?wait=5").unwrap().0, "/v1/tasks/{id}/result");
        assert!(operation(&doc, "GET", "/v1/tasks//result").is_none());
    }

    #[test]
    fn the_keywords_behave_as_json_schema_says() {
        let doc = json!({});
        let one_of = json!({ "oneOf": [{ "type": "integer" }, { "type": "number" }] });
        assert!(validate(&doc, &one_of, &json!(1)).unwrap_err().contains("exactly one"));
        validate(&doc, &one_of, &json!(1.5)).unwrap();
        let nullable = json!({ "type": ["string", "null"], "pattern": "^[0-9a-f]{4}$" });
        validate(&doc, &nullable, &Value::Null).unwrap();
        validate(&doc, &nullable, &json!("00ff")).unwrap();
        assert!(validate(&doc, &nullable, &json!("00FF")).is_err());
        assert!(validate(&doc, &json!({ "type": "integer", "format": "int32" }), &json!(1u64 << 40)).is_err());
        assert!(validate(&doc, &json!({ "minimum": 0 }), &json!(-1)).is_err());
        assert!(validate(&doc, &json!({ "items": { "enum": ["a"] }, "maxItems": 2 }), &json!(["a", "b"])).is_err());
        assert!(validate(&doc, &json!({ "items": { "enum": ["a"] }, "maxItems": 1 }), &json!(["a", "a"])).is_err());
        assert!(
            validate(&doc, &json!({ "unevaluatedProperties": false }), &json!({})).unwrap_err().contains("keyword")
        );
        for (t, ok) in [("2026-12-03T10:00:00Z", true), ("2026-12-03T10:00:00.123+08:00", true), ("2026-12-03", false)]
        {
            assert_eq!(is_rfc3339(t), ok, "{t}");
        }
    }
}
