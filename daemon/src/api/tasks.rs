//! `/v1/tasks/…`: scan tasks, created by gateways and carried out by phones.

use std::time::Duration;

use axum::extract::{RawQuery, State};

use super::Ctx;
use super::caller::{Caller, Device, Gateway};
use super::error::ApiError;
use super::extract::{Id, Json, NoBody};
use super::views::{self, Reply};
use super::wire::{self, Completion, Cosign};
use mcs_api::{
    BatchCosignRequest, ClaimRequest, CompleteRequest, CosignRequest, CreateTaskRequest, PlacementRequest,
    RejectRequest, TaskStatus,
};

pub async fn create(State(api): Ctx, Gateway { platform }: Gateway, Json(req): Json<CreateTaskRequest>) -> Reply {
    views::created(views::task_created(&api.tasks.create(&platform, wire::new_task(req)?).await?))
}

/// One PIN proof over a whole batch of signing tasks; each task answers on its own.
pub async fn batch_cosign(State(api): Ctx, Device(device): Device, Json(req): Json<BatchCosignRequest>) -> Reply {
    let (key_id, proof, mode, items) = wire::batch(req)?;
    let ids: Vec<String> = items.iter().map(|i| i.0.clone()).collect();
    let results = api.tasks.batch_cosign(&key_id, &device, items, mode, &proof).await?;
    views::ok(views::batch(&ids, results))
}

/// The creating gateway, or a phone with the task's token.
pub async fn get(State(api): Ctx, caller: Caller, Id(id): Id, RawQuery(query): RawQuery, _: NoBody) -> Reply {
    let task = match &caller {
        Caller::Gateway { platform, .. } => api.tasks.for_gateway(platform, &id)?,
        Caller::App { .. } => api.tasks.for_phone(&id, &wire::token_query(query.as_deref().unwrap_or(""))?).await?,
        Caller::Admin { .. } => return Err(ApiError::Forbidden("role `admin` may not call this endpoint".into())),
    };
    views::ok(views::task(&task))
}

pub async fn claim(State(api): Ctx, Device(device): Device, Id(id): Id, Json(req): Json<ClaimRequest>) -> Reply {
    match api.tasks.claim(&id, &req.token, &req.key_id, &device).await? {
        c @ (crate::tasks::Claimed::AwaitingApproval(_) | crate::tasks::Claimed::AwaitingPlacement) => {
            views::accepted(views::claimed(&c))
        }
        c => views::ok(views::claimed(&c)),
    }
}

/// `POST /v1/approvals/{id}`: the key's owner approves or denies a delegate's use.
pub async fn decide_approval(
    State(api): Ctx,
    Device(device): Device,
    Id(id): Id,
    Json(req): Json<mcs_api::ApprovalDecisionRequest>,
) -> Reply {
    let approve = match req.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return Err(ApiError::bad_request("decision must be approve or deny")),
    };
    wire::check_proof_encoding(&req.pin_proof)?;
    api.tasks.decide_approval(&id, &device, approve, &req.pin_proof).await?;
    views::ok(mcs_api::ApprovalDecided { approval_id: id, decision: req.decision })
}

pub async fn approval(State(api): Ctx, Device(device): Device, Id(id): Id, _: NoBody) -> Reply {
    let (task, _) = api.tasks.approval_task(&id, &device)?;
    views::ok(views::approval(&task).ok_or(ApiError::Internal)?)
}

pub async fn cosign(State(api): Ctx, Device(device): Device, Id(id): Id, Json(req): Json<CosignRequest>) -> Reply {
    let (token, proof) = (&req.token, &req.pin_proof);
    match wire::cosign(&req)? {
        Cosign::Sign { q1, q1_hex, mode } => {
            views::ok(views::task_signed(&api.tasks.cosign_sign(&id, token, &device, q1, q1_hex, mode, proof).await?))
        }
        Cosign::Decrypt { t1, t1_hex } => {
            views::ok(views::decrypted(&api.tasks.cosign_decrypt(&id, token, &device, t1, t1_hex, proof).await?))
        }
    }
}

pub async fn complete(State(api): Ctx, Device(device): Device, Id(id): Id, Json(req): Json<CompleteRequest>) -> Reply {
    match wire::completion(&req)? {
        Completion::Signature(sig) => api.tasks.complete_sign(&id, &req.token, &device, sig).await?,
        Completion::Plaintext(p) => api.tasks.complete_decrypt(&id, &req.token, &device, p).await?,
    }
    views::ok(views::status(TaskStatus::Completed))
}

pub async fn reject(State(api): Ctx, Device(device): Device, Id(id): Id, Json(req): Json<RejectRequest>) -> Reply {
    wire::reject(&req)?;
    api.tasks.reject(&id, &req.token, &device, &req.reason).await?;
    views::ok(views::status(TaskStatus::Rejected))
}

/// Long-polls up to `?wait=` seconds for the task to leave `pending`/`claimed`.
/// `GET /v1/tasks/{id}/seals`: a deferred `pdf_seal` task's seals to choose from.
pub async fn seals(State(api): Ctx, Gateway { platform }: Gateway, Id(id): Id, _: NoBody) -> Reply {
    views::ok(views::task_seals(&api.tasks.seals_to_choose(&platform, &id)?)?)
}

/// `POST /v1/tasks/{id}/placement`: the seal chosen on the PC, and where.
pub async fn place(
    State(api): Ctx,
    Gateway { platform }: Gateway,
    Id(id): Id,
    Json(req): Json<PlacementRequest>,
) -> Reply {
    let placement = wire::chosen_placement(&req.placement)?;
    views::ok(views::task(&api.tasks.place(&platform, &id, &req.seal_id, placement).await?))
}

pub async fn result(
    State(api): Ctx,
    Gateway { platform }: Gateway,
    Id(id): Id,
    RawQuery(query): RawQuery,
    _: NoBody,
) -> Reply {
    let wait = wire::wait_query(query.as_deref().unwrap_or(""))?;
    views::ok(views::outcome(api.tasks.result(&platform, &id, Duration::from_secs(wait)).await?))
}
