//! `/v1/verify/…`: signatures, seals and sealed PDFs checked for anyone authenticated.
//! Read-only, so not in the audit chain.

use axum::extract::State;

use super::Ctx;
use super::caller::Caller;
use super::error::ApiError;
use super::extract::Json;
use super::views::{self, Reply};
use super::wire;
use mcs_api::{VerifyPdfRequest, VerifySealRequest, VerifySignatureRequest};

pub async fn signature(State(api): Ctx, _: Caller, Json(req): Json<VerifySignatureRequest>) -> Reply {
    let check = wire::signature_check(&req)?;
    let verdict =
        api.seals.verify_signature(check.signed(), &check.signature, check.certificate.as_deref(), &check.chain)?;
    views::ok(views::signature_verdict(&verdict))
}

pub async fn seal(State(api): Ctx, _: Caller, Json(req): Json<VerifySealRequest>) -> Reply {
    let seal = wire::b64(&req.seal, "seal")?;
    views::ok(views::seal_verdict(&api.seals.verify_seal(&seal)?))
}

pub async fn pdf(State(api): Ctx, _: Caller, Json(req): Json<VerifyPdfRequest>) -> Reply {
    let pdf = wire::b64(&req.pdf, "pdf")?;
    let seals = api.seals.clone();
    // Parsing and checking a whole PDF is CPU work: off the async workers.
    let verdict =
        tokio::task::spawn_blocking(move || seals.verify_pdf(&pdf)).await.map_err(|_| ApiError::Internal)??;
    views::ok(views::pdf_verdict(&verdict))
}

/// `POST /v1/timestamp` (RFC 3161): a DER `TimeStampReq` in, a DER `TimeStampResp` out
/// (`application/timestamp-reply`) — a refused request is a rejection response (200), as
/// RFC 3161 wants; no TSA configured is `409 conflict`.
pub async fn timestamp(
    State(api): Ctx,
    _: Caller,
    super::extract::TimestampQuery(body): super::extract::TimestampQuery,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let tsa =
        api.seals.tsa().ok_or_else(|| ApiError::Conflict("no time-stamp authority is configured ([tsa])".into()))?;
    let reply = tsa.respond(&body).await?;
    let content_type = axum::http::HeaderValue::from_static("application/timestamp-reply");
    Ok(([(axum::http::header::CONTENT_TYPE, content_type)], reply).into_response())
}
