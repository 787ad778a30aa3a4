//! Decoding only, for `fuzz/` (the `api_bodies` target): each route's body goes through the
//! same decoders and validators ([`super::wire`]) as in its handler, with no domain call,
//! so any input that panics here would panic a request handler.

use mcs_api::{ClaimRequest, RevokeRequest, VerifyPdfRequest, VerifySealRequest};

use super::error::ApiError;
use super::wire::*;
use crate::keys::Actor;

/// The route names [`decode`] knows, one per request body (plus `query`: the query
/// string decoders).
pub const ROUTES: &[&str] = &[
    "enrollments",
    "activate",
    "sign",
    "decrypt",
    "pin",
    "unlock",
    "revoke",
    "successor",
    "platforms",
    "seals",
    "seal_revoke",
    "grants",
    "verify_seal",
    "verify_pdf",
    "tasks",
    "batch_cosign",
    "claim",
    "cosign",
    "complete",
    "reject",
    "query",
];

/// Decode `body` as route `route` would; results are discarded, errors are expected.
pub fn decode(route: &str, body: &[u8]) {
    let _ = decode_inner(route, body);
}

fn decode_inner(route: &str, body: &[u8]) -> Result<(), ApiError> {
    match route {
        "enrollments" => {
            let _ = new_enrollment(parse(body)?)?;
        }
        "activate" => {
            activation(&parse(body)?)?;
        }
        "sign" => {
            sign(&parse(body)?)?;
        }
        "decrypt" => {
            decrypt(&parse(body)?)?;
        }
        "pin" => {
            change_pin(&parse(body)?)?;
        }
        "unlock" | "seal_revoke" => {
            empty_object(body)?;
        }
        "revoke" => {
            let req: RevokeRequest = parse(body)?;
            let actor = if req.pin_proof.is_some() { Actor::Device("fuzz") } else { Actor::Admin };
            revoke(&req, &actor)?;
        }
        "successor" => {
            successor(&parse(body)?)?;
        }
        "platforms" => {
            platform_grant(&parse(body)?)?;
        }
        "seals" => {
            let _ = new_seal(parse(body)?)?;
        }
        "grants" => {
            seal_grant(&parse(body)?)?;
        }
        "verify_seal" => {
            let _ = b64(&parse::<VerifySealRequest>(body)?.seal, "seal")?;
        }
        "verify_pdf" => {
            let _ = b64(&parse::<VerifyPdfRequest>(body)?.pdf, "pdf")?;
        }
        "tasks" => {
            let _ = new_task(parse(body)?)?;
        }
        "batch_cosign" => {
            batch(parse(body)?)?;
        }
        "claim" => {
            let _ = parse::<ClaimRequest>(body)?;
        }
        "cosign" => {
            cosign(&parse(body)?)?;
        }
        "complete" => {
            completion(&parse(body)?)?;
        }
        "reject" => {
            reject(&parse(body)?)?;
        }
        "query" => {
            let query = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("query is not UTF-8"))?;
            for name in ["owner", "key_id", "token", "wait", "serial"] {
                query_param(query, name)?;
            }
            key_filters(query)?;
            AuditQuery::parse(query)?;
            let _ = (serial_query(query), wait_query(query), token_query(query));
        }
        _ => {}
    }
    Ok(())
}
