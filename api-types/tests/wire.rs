//! The answer types read the bodies the daemon writes today (the untagged `oneOf`s pick
//! the right kind), and requests serialize to what the daemon reads.

use mcs_api::*;
use serde_json::json;

fn read<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

#[test]
fn results_claims_and_plugins_pick_their_kind() {
    let k = "k_1";
    let sign: TaskResult = read(
        json!({ "signature": "MEU=", "key_id": k, "public_key": "04", "certificate": "MII=", "subject_dn": "CN=x" }),
    );
    assert!(matches!(sign, TaskResult::Sign(_)));
    let login: TaskResult = read(
        json!({ "signature": "MEU=", "key_id": k, "public_key": "04", "subject": { "kind": "person", "name": "Li" } }),
    );
    assert!(matches!(login, TaskResult::Login(_)));
    let pdf: TaskResult = read(json!({ "pdf": "JVBE", "seal_id": "s_1", "key_id": k, "certificate": null }));
    assert!(matches!(pdf, TaskResult::PdfSeal(_)));
    let enc: TaskResult = read(json!({ "ciphertext": "MA==", "certificate": null, "key_id": k, "public_key": "04" }));
    assert!(matches!(enc, TaskResult::Encrypt(_)));
    let env: TaskResult = read(json!({ "envelope": "MA==", "certificate": "MII=", "key_id": k, "public_key": "04" }));
    assert!(matches!(env, TaskResult::Encrypt(_)));
    assert!(matches!(read::<TaskResult>(json!({ "content_key": "00" })), TaskResult::ContentKey(_)));
    assert!(matches!(read::<TaskResult>(json!({ "plaintext": "aGk=" })), TaskResult::Decrypt(_)));
    assert!(matches!(read::<TaskResult>(json!({ "certificate": "MII=", "key_id": k })), TaskResult::Csr(_)));

    assert!(matches!(read::<ClaimAnswer>(json!({ "e": "ab", "to_be_signed": "MQ==" })), ClaimAnswer::SealDigest(_)));
    assert!(matches!(read::<ClaimAnswer>(json!({ "e": "ab" })), ClaimAnswer::Digest(_)));
    assert!(matches!(read::<ClaimAnswer>(json!({ "ciphertext": "MA==" })), ClaimAnswer::Ciphertext(_)));
    assert!(matches!(read::<ClaimAnswer>(json!({ "status": "completed" })), ClaimAnswer::Completed(_)));

    let batch: BatchCosignAnswer = read(json!({ "items": [
        { "task_id": "t1", "r": "1", "s2": "2", "s3": "3" },
        { "task_id": "t2", "error": { "code": "task_state", "message": "task is pending" } },
    ]}));
    assert!(matches!(batch.items[..], [BatchCosignResult::Signed(_), BatchCosignResult::Failed(_)]));
    let fixed: BatchCosignAnswer = read(json!({ "items": [{ "task_id": "t1", "r": "1", "s3": "3", "der": "30" }] }));
    assert!(matches!(fixed.items[..], [BatchCosignResult::SignedFixedK3(_)]));
    let cosigned: CosignAnswer = read(json!({ "r": "1", "s3": "3", "der": "30" }));
    assert!(matches!(cosigned, CosignAnswer::FixedK3(_)));

    let plugins: PluginList = read(json!({ "plugins": [
        { "name": "local", "status": "loaded", "adapter": "local-ca", "version": "1", "abi": 1,
          "algorithms": ["sm2"], "profiles": null, "library": "/x.so" },
        { "name": "bad", "status": "failed", "error": "no such file", "library": "/y.so" },
    ]}));
    assert!(matches!(plugins.plugins[..], [Plugin::Loaded { .. }, Plugin::Failed { .. }]));

    let view: TaskView = read(json!({ "task_id": "t", "kind": "pdf_seal", "status": "claimed", "platform": "P",
        "display": { "title": "x" }, "expires_at": "2026-01-01T00:00:00Z",
        "data": { "seal_id": null, "placement": { "keyword": "here" } }, "key_id": k }));
    assert!(matches!(view.data, Some(TaskViewData::PdfSeal(_))));
    let placement: Placement = read(json!({ "cross_page": { "side": "left" } }));
    assert!(matches!(placement, Placement::CrossPage(_)));
}

#[test]
fn optional_request_fields_are_left_out() {
    let req = RevokeRequest { reason: "unspecified".into(), pin_proof: None };
    assert_eq!(serde_json::to_value(&req).unwrap(), json!({ "reason": "unspecified" }));
    let req = CosignRequest { token: "t".into(), q1: Some("04".into()), t1: None, pin_proof: "p".into(), mode: None };
    assert_eq!(serde_json::to_value(&req).unwrap(), json!({ "token": "t", "q1": "04", "pin_proof": "p" }));
    for code in ErrorCode::ALL {
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
    }
}
