//! `docs/openapi.yaml` is generated from the wire types and checked in: it must be what the
//! types generate now, so the document cannot drift from the code.

use std::path::Path;

fn checked_in() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn checked_in_document_is_the_generated_one() {
    let generated = mcs_api::openapi::yaml();
    let current = checked_in();
    if generated != current {
        let line = generated
            .lines()
            .zip(current.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| generated.lines().count().min(current.lines().count()) + 1, |i| i + 1);
        panic!(
            "docs/openapi.yaml differs from the document the mcs-api types generate (first at line {line}); \
             regenerate it with `cargo xtask openapi` and commit it"
        );
    }
}

#[test]
fn every_operation_is_typed_and_secured() {
    let doc = mcs_api::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["components"]["securitySchemes"]["mutualTLS"]["type"], "mutualTLS");
    assert!(doc["servers"][0]["url"].as_str().is_some_and(|u| u.starts_with("https://")));
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("4XX") && responses.contains_key("5XX"), "{method} {path}: error answers");
            let ok = responses.iter().find(|(s, _)| s.starts_with('2')).unwrap_or_else(|| panic!("{method} {path}"));
            // RFC 3161's DER bodies are typed by their media types.
            let (answer, request) = match path.as_str() {
                "/v1/timestamp" => ("application/timestamp-reply", "application/timestamp-query"),
                _ => ("application/json", "application/json"),
            };
            if ok.0 != "204" {
                assert!(ok.1["content"][answer]["schema"].is_object(), "{method} {path}: untyped answer");
            }
            if method == "post" && !["/v1/keys/{id}/unlock", "/v1/seals/{id}/revoke"].contains(&path.as_str()) {
                let schema = &op["requestBody"]["content"][request]["schema"];
                assert!(
                    schema["$ref"].is_string() || request != "application/json",
                    "{method} {path}: untyped request body"
                );
                assert!(schema.is_object(), "{method} {path}: no request body");
            }
        }
    }
    assert_eq!(ids.len(), 53);
}

/// Requests refuse unknown fields, as API.md requires, and keep the daemon's optional ones.
#[test]
fn requests_are_strict() {
    let err = serde_json::from_str::<mcs_api::SignRequest>(r#"{"e":"00","q1":"00","pin_proof":"00","extra":1}"#);
    assert!(err.is_err());
    let ok: mcs_api::SignRequest = serde_json::from_str(r#"{"e":"00","q1":"00","pin_proof":"00"}"#).unwrap();
    assert_eq!(ok.mode, None);
    assert!(serde_json::from_str::<mcs_api::Empty>("{}").is_ok());
    assert!(serde_json::from_str::<mcs_api::Empty>(r#"{"reason":"x"}"#).is_err());
}
