//! The OpenAPI 3.1 document of the API listener, derived from the wire types.
//!
//! Each route is declared once below (method, path template, operation id, body, answers);
//! the schemas come from the types' derives. What utoipa's macros do not express is added
//! to the generated document in [`document`]: every 4xx/5xx answer is the API.md error
//! body, and `POST /v1/tasks` has its callback. `docs/openapi.yaml` is [`yaml`]'s output,
//! written by `cargo xtask openapi` and compared by this crate's `openapi` test.

use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::SecurityScheme;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mcsd API",
        version = "0.1.0",
        description = "Mutual-TLS JSON API of mcsd, generated from the `mcs-api` crate (`cargo xtask openapi`). \
            Normative contract: API.md; extensions in docs/api-extensions.md. Unknown JSON fields are rejected \
            with 400 bad_request. Encodings: points are 130 lowercase hex characters (04 ‖ x ‖ y), scalars and \
            digests 64; byte strings are standard base64; times are RFC 3339 UTC. The caller's role (admin, \
            gateway, app) is decided by its client certificate.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers(
        (
            url = "https://{host}:{port}",
            description = "The API listener (`[api] listen`; `[tasks] public_url` is what QR codes carry)",
            variables(
                ("host" = (default = "localhost", description = "The daemon's host name")),
                ("port" = (default = "8443", description = "The API listener's port"))
            )
        )
    ),
    paths(
        ops::create_enrollment,
        ops::activate_enrollment,
        ops::list_keys,
        ops::get_key,
        ops::sign_digest,
        ops::decrypt_share,
        ops::change_pin,
        ops::open_pin_reset,
        ops::reset_pin,
        ops::unlock_key,
        ops::revoke_key,
        ops::suspend_key,
        ops::resume_key,
        ops::create_successor,
        ops::authorize_platform,
        ops::remove_platform,
        ops::create_delegation,
        ops::list_delegations,
        ops::get_delegation,
        ops::accept_delegation,
        ops::reshare_delegation,
        ops::share_delegation,
        ops::activate_delegation,
        ops::revoke_delegation,
        ops::get_inbox,
        ops::decide_approval,
        ops::get_approval,
        ops::list_devices,
        ops::create_task,
        ops::batch_cosign,
        ops::get_task,
        ops::claim_task,
        ops::cosign_task,
        ops::complete_task,
        ops::reject_task,
        ops::get_task_result,
        ops::list_task_seals,
        ops::place_task_seal,
        ops::create_seal,
        ops::list_seals,
        ops::get_seal,
        ops::revoke_seal,
        ops::grant_seal,
        ops::ungrant_seal,
        ops::change_seal_image,
        ops::verify_signature,
        ops::verify_seal,
        ops::verify_pdf,
        ops::timestamp,
        ops::get_audit,
        ops::list_plugins,
        ops::get_crl,
        ops::get_certificate_status,
    ),
    components(schemas(crate::Callback, crate::ErrorBody, crate::TaskData, crate::Placement, crate::ErrorCode)),
    modifiers(&MutualTls),
    tags(
        (name = "keys", description = "Enrollment and keys"),
        (name = "delegations", description = "Organisation keys on employees' phones, and moving a key to a new phone"),
        (name = "tasks", description = "Scan tasks (QR flows)"),
        (name = "seals", description = "Electronic seals"),
        (name = "verify", description = "Verification (any role)"),
        (name = "operations", description = "Audit and CA adapters"),
    )
)]
struct ApiDoc;

/// Every request is authenticated by the client certificate of the TLS connection.
struct MutualTls;

impl utoipa::Modify for MutualTls {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = SecurityScheme::MutualTls {
            description: Some(
                "Client certificate chaining to a configured trust anchor; it decides the role \
                 (admin, gateway with its platform id, app with its device id)."
                    .into(),
            ),
            extensions: None,
        };
        doc.components.get_or_insert_with(Default::default).security_schemes.insert("mutualTLS".into(), scheme);
        doc.security =
            Some(vec![utoipa::openapi::security::SecurityRequirement::new("mutualTLS", Vec::<String>::new())]);
    }
}

/// The document as JSON.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    doc["components"]["responses"]["Error"] = json!({
        "description": "The API.md error body; the code says why.",
        "headers": { "Retry-After": {
            "description": "Seconds, with rate_limited and hsm_unavailable",
            "schema": { "type": "integer" },
        }},
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in item.values_mut().filter_map(Value::as_object_mut) {
                if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                    for range in ["4XX", "5XX"] {
                        responses.insert(range.into(), json!({ "$ref": "#/components/responses/Error" }));
                    }
                }
            }
        }
    }
    // Routes without fields take no body at all just as well.
    for path in ["/v1/keys/{id}/unlock", "/v1/keys/{id}/resume", "/v1/seals/{id}/revoke"] {
        doc["paths"][path]["post"]["requestBody"]["required"] = json!(false);
    }
    exclusive_one_ofs(&mut doc);
    doc["paths"]["/v1/tasks"]["post"]["callbacks"] = json!({
        "taskFinished": { "{$request.body#/callback_url}": { "post": {
            "summary": "The task ended (mutual TLS, the daemon's API certificate; retried with backoff)",
            "operationId": "taskCallback",
            "requestBody": {
                "required": true,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Callback" } } },
            },
            "responses": {
                "2XX": { "description": "Delivered (the body is not read)" },
                "4XX": { "description": "Not delivered: retried with backoff, up to `[tasks] callback_max_attempts`" },
                "5XX": { "description": "Not delivered: retried with backoff, up to `[tasks] callback_max_attempts`" },
            },
        }}},
    });
    doc
}

/// Serde's untagged unions pick the first variant that reads; JSON Schema's `oneOf` wants
/// exactly one to match, and answers are open (a client ignores fields it does not know),
/// so `{r, s2, s3}` would match both signing answers. Each object option therefore also
/// forbids its siblings' fields: `properties: {f: false}` for every field another option
/// declares and it does not. What the daemon sends then matches one option only, as the
/// end-to-end answer check requires.
fn exclusive_one_ofs(doc: &mut Value) {
    let schemas = doc["components"]["schemas"].clone();
    let fields = |option: &Value| -> Option<std::collections::BTreeSet<String>> {
        let target = match option.get("$ref").and_then(Value::as_str) {
            Some(r) => schemas.get(r.strip_prefix("#/components/schemas/")?)?,
            None => option,
        };
        Some(target.get("properties")?.as_object()?.keys().cloned().collect())
    };
    fn visit(v: &mut Value, f: &dyn Fn(&mut Vec<Value>)) {
        match v {
            Value::Object(o) => {
                if let Some(Value::Array(options)) = o.get_mut("oneOf") {
                    f(options);
                }
                o.values_mut().for_each(|c| visit(c, f));
            }
            Value::Array(a) => a.iter_mut().for_each(|c| visit(c, f)),
            _ => {}
        }
    }
    let exclude = |options: &mut Vec<Value>| {
        let declared: Vec<_> = options.iter().map(fields).collect();
        for (i, option) in options.iter_mut().enumerate() {
            let Some(own) = &declared[i] else { continue };
            let others: std::collections::BTreeSet<&String> =
                declared.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, d)| d.iter().flatten()).collect();
            let foreign: serde_json::Map<String, Value> =
                others.into_iter().filter(|f| !own.contains(*f)).map(|f| (f.clone(), Value::Bool(false))).collect();
            if foreign.is_empty() {
                continue;
            }
            match option.get_mut("properties").and_then(Value::as_object_mut) {
                Some(props) => props.extend(foreign),
                None => option["properties"] = Value::Object(foreign),
            }
        }
    };
    visit(doc, &exclude);
}

/// The document as YAML, as checked in at `docs/openapi.yaml`.
pub fn yaml() -> String {
    let mut out =
        String::from("# Generated from the mcs-api crate (api-types/) by `cargo xtask openapi`; do not edit.\n");
    out.push_str(&crate::yaml::to_yaml(&document()));
    out
}

/// The route table, one stub per operation: utoipa reads the attributes; the functions
/// are never called.
#[allow(dead_code)]
mod ops {
    use crate::*;

    /// Create an enrollment
    ///
    /// Admin. The activation code is shown in the answer, once. `ca` must name a loaded CA adapter.
    #[utoipa::path(post, path = "/v1/enrollments", operation_id = "createEnrollment", tag = "keys",
        request_body = EnrollmentRequest,
        responses((status = 201, description = "Created", body = Enrollment)))]
    fn create_enrollment() {}

    /// Activate an enrollment from a phone
    ///
    /// App. The key is `pending` until the phone co-signs its certificate request through the
    /// `csr_task`. A repeat of the same request by the same phone gets the same key again.
    #[utoipa::path(post, path = "/v1/enrollments/{id}/activate", operation_id = "activateEnrollment", tag = "keys",
        params(("id" = String, Path, description = "Enrollment id")),
        request_body = ActivateRequest,
        responses((status = 201, description = "Key created", body = Activation)))]
    fn activate_enrollment() {}

    /// List keys
    ///
    /// App: its own; admin: all. Ordered by creation time.
    #[utoipa::path(get, path = "/v1/keys", operation_id = "listKeys", tag = "keys",
        params(
            ("subject" = Option<String>, Query, description = "Subject name"),
            ("status" = Option<KeyStatus>, Query, description = "Key status"),
        ),
        responses((status = 200, description = "Keys", body = KeyList)))]
    fn list_keys() {}

    /// One key
    ///
    /// App: its own; admin: any.
    #[utoipa::path(get, path = "/v1/keys/{id}", operation_id = "getKey", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        responses((status = 200, description = "The key", body = Key)))]
    fn get_key() {}

    /// Create a delegation (an invitation for another device)
    ///
    /// The key's owner app (with `pin_proof`) or admin. `delegate`: an employee's phone gets
    /// its own share of the key until `not_after`; `transfer`: the key moves to a new phone.
    #[utoipa::path(post, path = "/v1/keys/{id}/delegations", operation_id = "createDelegation", tag = "delegations",
        params(("id" = String, Path, description = "Key id")),
        request_body = DelegationRequest,
        responses((status = 201, description = "The invitation", body = DelegationCreated)))]
    fn create_delegation() {}

    /// A key's delegations
    ///
    /// The key's owner app, or admin.
    #[utoipa::path(get, path = "/v1/keys/{id}/delegations", operation_id = "listDelegations", tag = "delegations",
        params(("id" = String, Path, description = "Key id")),
        responses((status = 200, description = "Delegations", body = DelegationList)))]
    fn list_delegations() {}

    /// One delegation
    ///
    /// The key's owner, the delegate (which also gets `wrapped_share` and `p2` while
    /// `awaiting_pin`), or admin.
    #[utoipa::path(get, path = "/v1/delegations/{id}", operation_id = "getDelegation", tag = "delegations",
        params(("id" = String, Path, description = "Delegation id")),
        responses((status = 200, description = "The delegation", body = Delegation)))]
    fn get_delegation() {}

    /// Accept an invitation
    ///
    /// App: the new device, with its transport key. Wrong code: `token_invalid`; a used or
    /// expired invitation: `conflict`.
    #[utoipa::path(post, path = "/v1/delegations/{id}/accept", operation_id = "acceptDelegation", tag = "delegations",
        params(("id" = String, Path, description = "Delegation id")),
        request_body = AcceptDelegationRequest,
        responses((status = 200, description = "The delegation", body = Delegation)))]
    fn accept_delegation() {}

    /// The re-share factor `u`
    ///
    /// The key's owner app, while `awaiting_share`; repeating it replaces the pending share.
    #[utoipa::path(post, path = "/v1/delegations/{id}/reshare", operation_id = "reshareDelegation", tag = "delegations",
        params(("id" = String, Path, description = "Delegation id")),
        request_body = DelegationProof,
        responses((status = 200, description = "u", body = Reshare)))]
    fn reshare_delegation() {}

    /// Hand the sealed `d1'` to the new device
    ///
    /// The key's owner app, after `reshare`, while `awaiting_share`.
    #[utoipa::path(post, path = "/v1/delegations/{id}/share", operation_id = "shareDelegation", tag = "delegations",
        params(("id" = String, Path, description = "Delegation id")),
        request_body = ShareRequest,
        responses((status = 204, description = "Stored for the new device")))]
    fn share_delegation() {}

    /// Activate a delegation with the new device's PIN
    ///
    /// App: the delegate, while `awaiting_pin`. For `transfer` the old owner's share is
    /// erased in the same durable step and the caller becomes the owner.
    #[utoipa::path(post, path = "/v1/delegations/{id}/activate", operation_id = "activateDelegation", tag = "delegations",
        params(("id" = String, Path, description = "Delegation id")),
        request_body = ActivateDelegationRequest,
        responses((status = 200, description = "The key", body = DelegatedKey)))]
    fn activate_delegation() {}

    /// End a delegation
    ///
    /// The key's owner app (with `pin_proof`) or admin; the delegate's server share is erased
    /// before the answer.
    #[utoipa::path(post, path = "/v1/delegations/{id}/revoke", operation_id = "revokeDelegation", tag = "delegations",
        params(("id" = String, Path, description = "Delegation id")),
        request_body = DelegationProof,
        responses((status = 200, description = "The delegation", body = Delegation)))]
    fn revoke_delegation() {}

    /// Server half of a signature over a digest `e`
    ///
    /// App (the key's device).
    #[utoipa::path(post, path = "/v1/keys/{id}/sign", operation_id = "signDigest", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        request_body = SignRequest,
        responses((status = 200, description = "`{r, s2, s3}` (canonical) or `{r, s3}` (fixed_k3)", body = SignAnswer)))]
    fn sign_digest() {}

    /// Server half of a blinded decryption
    ///
    /// App (the key's device).
    #[utoipa::path(post, path = "/v1/keys/{id}/decrypt", operation_id = "decryptShare", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        request_body = DecryptRequest,
        responses((status = 200, description = "T2", body = DecryptShare)))]
    fn decrypt_share() {}

    /// Change the PIN verifier
    ///
    /// App; the proof is made with the old PIN.
    #[utoipa::path(post, path = "/v1/keys/{id}/pin", operation_id = "changePin", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        request_body = ChangePinRequest,
        responses((status = 204, description = "Changed")))]
    fn change_pin() {}

    /// Open a PIN reset (忘记密码 / 重置密码)
    ///
    /// Admin, after the CA re-checked the person's identity. The one-time `reset_code`
    /// (80 bits) is shown once; the operator tells it to the person out of band. No body
    /// (the owner's share) or `{delegation_id}` (a delegate's). A share without a recovery
    /// key cannot be reset (`conflict`); opening again replaces the earlier code.
    #[utoipa::path(post, path = "/v1/keys/{id}/pin-reset", operation_id = "openPinReset", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        request_body(content = OpenPinResetRequest, description = "None, `{}`, or `{delegation_id}`"),
        responses((status = 201, description = "The reset code", body = PinResetOpened)))]
    fn open_pin_reset() {}

    /// Reset the PIN with the operator's code
    ///
    /// App: the device of the share. In one durable step the verifier and recovery key are
    /// replaced, the failure counter cleared and the key unlocked; the answer is the
    /// **previous** recovery key, with which the phone decrypts `d1` and masks it under the
    /// new PIN. Wrong code: `token_invalid` with `remaining_attempts` (five void the reset);
    /// no open reset, a used or expired code, or no recovery key: `conflict`.
    #[utoipa::path(post, path = "/v1/keys/{id}/pin/reset", operation_id = "resetPin", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        request_body = PinResetRequest,
        responses((status = 200, description = "The previous recovery key", body = PinResetDone)))]
    fn reset_pin() {}

    /// Clear the PIN failure counter and lock
    ///
    /// Admin. No body, or exactly `{}`.
    #[utoipa::path(post, path = "/v1/keys/{id}/unlock", operation_id = "unlockKey", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        request_body(content = Empty, description = "None, or `{}`"),
        responses((status = 204, description = "Unlocked")))]
    fn unlock_key() {}

    /// Revoke the key and destroy its share
    ///
    /// Admin (no `pin_proof`), or the key's phone (with `pin_proof`). The CA is asked first.
    #[utoipa::path(post, path = "/v1/keys/{id}/revoke", operation_id = "revokeKey", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        request_body = RevokeRequest,
        responses((status = 200, description = "The revoked key", body = Key)))]
    fn revoke_key() {}

    /// Suspend the key (挂失 / 冻结)
    ///
    /// Admin (no `pin_proof`), or the key's owner phone (with `pin_proof`). Every use of a
    /// suspended key gets `key_inactive`; where the CA adapter supports it, the certificate
    /// is put on hold. Only an active key can be suspended (`conflict`).
    #[utoipa::path(post, path = "/v1/keys/{id}/suspend", operation_id = "suspendKey", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        request_body = SuspendRequest,
        responses((status = 200, description = "The key, `status: suspended`", body = Key)))]
    fn suspend_key() {}

    /// Resume a suspended key (解冻)
    ///
    /// Admin. No body, or exactly `{}`. The certificate's hold is released first. A key
    /// suspended by a `reissue` successor stays suspended (`conflict`).
    #[utoipa::path(post, path = "/v1/keys/{id}/resume", operation_id = "resumeKey", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        request_body(content = Empty, description = "None, or `{}`"),
        responses((status = 200, description = "The key, `status: active`", body = Key)))]
    fn resume_key() {}

    /// An enrollment replacing this key
    ///
    /// Admin. `renew` and `change` (new subject) supersede the old key when the successor's
    /// certificate is installed; `reissue` suspends it now.
    #[utoipa::path(post, path = "/v1/keys/{id}/successor", operation_id = "createSuccessor", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        request_body = SuccessorRequest,
        responses((status = 201, description = "The new enrollment, with `predecessor`; for `extend`, the \
            certificate request task of the same key", body = SuccessorAnswer)))]
    fn create_successor() {}

    /// Authorise a key on a platform (roaming)
    ///
    /// Admin. A new grant replaces the key's grant of the same kind for that platform.
    #[utoipa::path(post, path = "/v1/keys/{id}/platforms", operation_id = "authorizePlatform", tag = "keys",
        params(("id" = String, Path, description = "Key id")),
        request_body = PlatformRequest,
        responses((status = 201, description = "The key", body = Key)))]
    fn authorize_platform() {}

    /// Withdraw a key's grants for a platform
    ///
    /// Admin.
    #[utoipa::path(delete, path = "/v1/keys/{id}/platforms/{platform}", operation_id = "removePlatform", tag = "keys",
        params(
            ("id" = String, Path, description = "Key id"),
            ("platform" = String, Path, description = "Platform id"),
        ),
        responses((status = 204, description = "Withdrawn")))]
    fn remove_platform() {}

    /// Create a scan task
    ///
    /// Gateway. `data` by `kind` (see TaskData). With `callback_url` the daemon POSTs the
    /// outcome there when the task ends.
    #[utoipa::path(post, path = "/v1/tasks", operation_id = "createTask", tag = "tasks",
        request_body = CreateTaskRequest,
        responses(
            (status = 201, description = "Created", body = CreatedTask),
            (status = 429, description = "rate_limited: the platform's quota of open tasks (count or bytes) is \
                used up; nothing was created. Retry-After says when one will have finished.",
                headers(("Retry-After" = u64, description = "Seconds")), body = ErrorBody),
        ))]
    fn create_task() {}

    /// Co-sign several claimed signing tasks with one PIN proof
    ///
    /// App. Each item is answered on its own, in order.
    #[utoipa::path(post, path = "/v1/tasks/batch/cosign", operation_id = "batchCosign", tag = "tasks",
        request_body = BatchCosignRequest,
        responses((status = 200, description = "One result per item", body = BatchCosignAnswer)))]
    fn batch_cosign() {}

    /// A task
    ///
    /// The gateway that created it, or a phone with `?token=`.
    #[utoipa::path(get, path = "/v1/tasks/{id}", operation_id = "getTask", tag = "tasks",
        params(
            ("id" = String, Path, description = "Task id"),
            ("token" = Option<String>, Query, description = "The task token (phones)"),
        ),
        responses((status = 200, description = "The task", body = TaskView)))]
    fn get_task() {}

    /// Bind a key to a pending task
    ///
    /// App. Checks key state, device, platform authorisation, grants and the recipient certificate.
    #[utoipa::path(post, path = "/v1/tasks/{id}/claim", operation_id = "claimTask", tag = "tasks",
        params(("id" = String, Path, description = "Task id")),
        request_body = ClaimRequest,
        responses(
            (status = 200, description = "What the phone co-signs or decrypts", body = ClaimAnswer),
            (status = 202, description = "Claimed, waiting: for the owner's approval (`awaiting_approval`) or for the seal's placement on the PC (`placement: deferred`); claim again", body = ClaimAnswer),
        ))]
    fn claim_task() {}

    /// Server half for a claimed task
    ///
    /// App. `q1` for the signing kinds, `t1` for decrypt. A lost answer is retried with a fresh
    /// point; a point already answered is `task_state`.
    #[utoipa::path(post, path = "/v1/tasks/{id}/cosign", operation_id = "cosignTask", tag = "tasks",
        params(("id" = String, Path, description = "Task id")),
        request_body = CosignRequest,
        responses((status = 200, description = "The server half", body = CosignAnswer)))]
    fn cosign_task() {}

    /// Finish a task
    ///
    /// App. The signature is verified against the key and the task's `e` before it is accepted.
    #[utoipa::path(post, path = "/v1/tasks/{id}/complete", operation_id = "completeTask", tag = "tasks",
        params(("id" = String, Path, description = "Task id")),
        request_body = CompleteRequest,
        responses((status = 200, description = "`{status: completed}`", body = TaskStatusAnswer)))]
    fn complete_task() {}

    /// Refuse a task
    ///
    /// App.
    #[utoipa::path(post, path = "/v1/tasks/{id}/reject", operation_id = "rejectTask", tag = "tasks",
        params(("id" = String, Path, description = "Task id")),
        request_body = RejectRequest,
        responses((status = 200, description = "`{status: rejected}`", body = TaskStatusAnswer)))]
    fn reject_task() {}

    /// The outcome, long-polling
    ///
    /// The creating gateway. Waits until the task leaves pending/claimed or `wait` seconds
    /// pass. A decrypt plaintext is returned once.
    #[utoipa::path(get, path = "/v1/tasks/{id}/result", operation_id = "getTaskResult", tag = "tasks",
        params(
            ("id" = String, Path, description = "Task id"),
            ("wait" = Option<u64>, Query, description = "Seconds to wait (default 0)"),
        ),
        responses((status = 200, description = "The outcome", body = TaskOutcome)))]
    fn get_task_result() {}

    /// The seals to choose from (deferred placement)
    ///
    /// The creating gateway, once a phone has claimed a `pdf_seal` task with `placement:
    /// "deferred"`: the seals the claiming key may use, with their faces.
    #[utoipa::path(get, path = "/v1/tasks/{id}/seals", operation_id = "listTaskSeals", tag = "tasks",
        params(("id" = String, Path, description = "Task id")),
        responses((status = 200, description = "The seals", body = TaskSeals)))]
    fn list_task_seals() {}

    /// Place the chosen seal (deferred placement)
    ///
    /// The creating gateway: the seal the user chose on the PC and where it goes; the
    /// phone's next claim gets the digest. Until then `cosign` is `task_state`.
    #[utoipa::path(post, path = "/v1/tasks/{id}/placement", operation_id = "placeTaskSeal", tag = "tasks",
        params(("id" = String, Path, description = "Task id")),
        request_body = PlacementRequest,
        responses((status = 200, description = "The task", body = TaskView)))]
    fn place_task_seal() {}

    /// A new face for a seal
    ///
    /// Admin. A new seal (new id and esID, the same grants) with the new face; the old
    /// one is revoked.
    #[utoipa::path(post, path = "/v1/seals/{id}/image", operation_id = "changeSealImage", tag = "seals",
        params(("id" = String, Path, description = "Seal id")),
        request_body = SealImageRequest,
        responses((status = 201, description = "The new seal", body = Seal)))]
    fn change_seal_image() {}

    /// Make an electronic seal
    ///
    /// Admin. GB/T 38540 SESeal v4, signed by the seal maker.
    #[utoipa::path(post, path = "/v1/seals", operation_id = "createSeal", tag = "seals",
        request_body = SealRequest,
        responses((status = 201, description = "The seal", body = Seal)))]
    fn create_seal() {}

    /// List seals
    ///
    /// Admin; a phone sees its keys' seals. `owner` matches any value of the owner object.
    #[utoipa::path(get, path = "/v1/seals", operation_id = "listSeals", tag = "seals",
        params(
            ("owner" = Option<String>, Query, description = "Any value of the owner object"),
            ("key_id" = Option<String>, Query, description = "A signer or grantee key"),
        ),
        responses((status = 200, description = "Seals", body = SealList)))]
    fn list_seals() {}

    /// One seal
    ///
    /// Admin.
    #[utoipa::path(get, path = "/v1/seals/{id}", operation_id = "getSeal", tag = "seals",
        params(("id" = String, Path, description = "Seal id")),
        responses((status = 200, description = "The seal", body = Seal)))]
    fn get_seal() {}

    /// Revoke a seal; it no longer seals
    ///
    /// Admin. No body, or exactly `{}`.
    #[utoipa::path(post, path = "/v1/seals/{id}/revoke", operation_id = "revokeSeal", tag = "seals",
        params(("id" = String, Path, description = "Seal id")),
        request_body(content = Empty, description = "None, or `{}`"),
        responses((status = 200, description = "The seal", body = Seal)))]
    fn revoke_seal() {}

    /// Grant the seal to a key for a period
    ///
    /// Admin. The seal is re-made (same esID) with the key's certificate.
    #[utoipa::path(post, path = "/v1/seals/{id}/grants", operation_id = "grantSeal", tag = "seals",
        params(("id" = String, Path, description = "Seal id")),
        request_body = SealGrantRequest,
        responses((status = 201, description = "The seal", body = Seal)))]
    fn grant_seal() {}

    /// Withdraw a grant
    ///
    /// Admin. The seal is re-made without the key's certificate.
    #[utoipa::path(delete, path = "/v1/seals/{id}/grants/{key_id}", operation_id = "ungrantSeal", tag = "seals",
        params(
            ("id" = String, Path, description = "Seal id"),
            ("key_id" = String, Path, description = "Key id"),
        ),
        responses((status = 204, description = "Withdrawn")))]
    fn ungrant_seal() {}

    /// Check an SM2 signature by a certificate
    ///
    /// Any role: the signature, the certificate's validity, its chain to a CA this daemon
    /// trusts, its revocation.
    #[utoipa::path(post, path = "/v1/verify/signature", operation_id = "verifySignature", tag = "verify",
        request_body = VerifySignatureRequest,
        responses((status = 200, description = "The verdict", body = SignatureVerdict)))]
    fn verify_signature() {}

    /// Check a seal
    ///
    /// Any role: format, maker signature, maker chain, validity, revocation.
    #[utoipa::path(post, path = "/v1/verify/seal", operation_id = "verifySeal", tag = "verify",
        request_body = VerifySealRequest,
        responses((status = 200, description = "The verdict", body = SealVerdict)))]
    fn verify_seal() {}

    /// Check every signature of a PDF
    ///
    /// Any role: coverage, digest, SM2 signature, seal, chains, revocation.
    #[utoipa::path(post, path = "/v1/verify/pdf", operation_id = "verifyPdf", tag = "verify",
        request_body = VerifyPdfRequest,
        responses((status = 200, description = "One verdict per signature", body = PdfVerdict)))]
    fn verify_pdf() {}

    /// Time-stamp (RFC 3161)
    ///
    /// Any role. A DER `TimeStampReq` (`application/timestamp-query`) in, a DER
    /// `TimeStampResp` (`application/timestamp-reply`) out; refused requests are rejection
    /// responses. `409 conflict` when no TSA is configured.
    #[utoipa::path(post, path = "/v1/timestamp", operation_id = "timestamp", tag = "verify",
        request_body(content = String, content_type = "application/timestamp-query", description = "DER TimeStampReq"),
        responses((status = 200, description = "The DER TimeStampResp", content_type = "application/timestamp-reply", body = String)))]
    fn timestamp() {}

    /// Approve or deny a delegate's use of the key
    ///
    /// App: the key's owner, with a PIN proof over `approve` (`aid`, `decision`).
    #[utoipa::path(post, path = "/v1/approvals/{id}", operation_id = "decideApproval", tag = "delegations",
        params(("id" = String, Path, description = "Approval id")),
        request_body = ApprovalDecisionRequest,
        responses((status = 200, description = "The decision", body = ApprovalDecided)))]
    fn decide_approval() {}

    /// An approval
    ///
    /// App: the key's owner or the delegate that asked.
    #[utoipa::path(get, path = "/v1/approvals/{id}", operation_id = "getApproval", tag = "delegations",
        params(("id" = String, Path, description = "Approval id")),
        responses((status = 200, description = "The approval", body = ApprovalView)))]
    fn get_approval() {}

    /// The calling device's inbox
    ///
    /// App: items addressed to this device, after `after`; waits up to `wait` seconds for
    /// one when there is none. Passing a cursor drops the items up to it.
    #[utoipa::path(get, path = "/v1/inbox", operation_id = "getInbox", tag = "delegations",
        params(
            ("after" = Option<String>, Query, description = "The cursor of the last answer (default: from the start)"),
            ("wait" = Option<u64>, Query, description = "Seconds to wait for an item (capped like task results)"),
        ),
        responses((status = 200, description = "Items and the next cursor", body = InboxPage)))]
    fn get_inbox() {}

    /// The devices that hold a share of the caller's keys
    ///
    /// App: for every key the caller owns, its own device and each active delegate's.
    #[utoipa::path(get, path = "/v1/devices", operation_id = "listDevices", tag = "delegations",
        responses((status = 200, description = "Owner and delegate devices", body = DeviceList)))]
    fn list_devices() {}

    /// Audit entries, oldest first
    ///
    /// Admin: all; gateway: its platform's scan report; app: `key_id` of its own key.
    #[utoipa::path(get, path = "/v1/audit", operation_id = "getAudit", tag = "operations",
        params(
            ("key_id" = Option<String>, Query, description = "Entries naming this key"),
            ("platform" = Option<String>, Query, description = "Entries naming this platform"),
            ("seal_id" = Option<String>, Query, description = "Entries about uses of this seal (detail.seal_id)"),
            ("since" = Option<u64>, Query, description = "First sequence number"),
            ("limit" = Option<u32>, Query, description = "At most this many (default 1000, at most 10000)"),
        ),
        responses((status = 200, description = "Entries", body = AuditLog)))]
    fn get_audit() {}

    /// Configured CA adapters, loaded or failed
    ///
    /// Admin.
    #[utoipa::path(get, path = "/v1/plugins", operation_id = "listPlugins", tag = "operations",
        responses((status = 200, description = "Adapters", body = PluginList)))]
    fn list_plugins() {}

    /// The adapter's current CRL
    ///
    /// Any role.
    #[utoipa::path(get, path = "/v1/plugins/{name}/crl", operation_id = "getCrl", tag = "operations",
        params(("name" = String, Path, description = "Adapter name")),
        responses((status = 200, description = "The CRL", body = Crl)))]
    fn get_crl() {}

    /// Status of a certificate serial at the adapter's CA
    ///
    /// Any role.
    #[utoipa::path(get, path = "/v1/plugins/{name}/status", operation_id = "getCertificateStatus", tag = "operations",
        params(
            ("name" = String, Path, description = "Adapter name"),
            ("serial" = String, Query, description = "Hex serial"),
        ),
        responses((status = 200, description = "The status", body = CertificateStatus)))]
    fn get_certificate_status() {}
}
