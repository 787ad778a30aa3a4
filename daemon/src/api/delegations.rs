//! `/v1/keys/{id}/delegations` and `/v1/delegations/…`: inviting another device to a key,
//! the re-share steps, activation, reading and ending delegations.

use axum::extract::State;

use super::Ctx;
use super::caller::{AdminOrDevice, Device};
use super::extract::{Id, Json, NoBody};
use super::views::{self, Reply};
use super::wire;
use crate::keys::Actor;
use mcs_api::{AcceptDelegationRequest, ActivateDelegationRequest, DelegationProof, DelegationRequest, ShareRequest};

pub async fn create(State(api): Ctx, who: AdminOrDevice, Id(id): Id, Json(req): Json<DelegationRequest>) -> Reply {
    let actor = who.actor();
    let (new, proof) = wire::new_delegation(&req, &actor)?;
    let created = api.keys.create_delegation(&id, &actor, new, proof).await?;
    views::created(views::delegation_created(&created))
}

pub async fn list(State(api): Ctx, who: AdminOrDevice, Id(id): Id, _: NoBody) -> Reply {
    let max = api.keys.pin_max_attempts();
    let items = api.keys.delegations_of(&id, &who.actor())?.iter().map(|d| views::delegation(d, max, None)).collect();
    views::ok(mcs_api::DelegationList { items })
}

pub async fn get(State(api): Ctx, who: AdminOrDevice, Id(id): Id, _: NoBody) -> Reply {
    let actor = who.actor();
    let d = api.keys.delegation_for(&id, &actor)?;
    // The sealed share and p2 are the delegate's alone.
    let handover = match actor {
        Actor::Device(device) if d.device_id.as_deref() == Some(device) => api.keys.handover(&d).await?,
        _ => None,
    };
    views::ok(views::delegation(&d, api.keys.pin_max_attempts(), handover))
}

pub async fn accept(
    State(api): Ctx,
    Device(device): Device,
    Id(id): Id,
    Json(req): Json<AcceptDelegationRequest>,
) -> Reply {
    let transport = wire::accept_delegation(&req)?;
    let d = api.keys.accept_delegation(&id, &device, &req.invitation_code, &transport).await?;
    views::ok(views::delegation(&d, api.keys.pin_max_attempts(), None))
}

pub async fn reshare(State(api): Ctx, Device(device): Device, Id(id): Id, Json(req): Json<DelegationProof>) -> Reply {
    let proof = wire::reshare(&req, &id)?;
    let u = api.keys.reshare(&id, &device, proof).await?;
    views::ok(mcs_api::Reshare { u })
}

pub async fn share(State(api): Ctx, Device(device): Device, Id(id): Id, Json(req): Json<ShareRequest>) -> Reply {
    let (wrapped, proof) = wire::share(&req, &id)?;
    api.keys.share(&id, &device, wrapped, proof).await?;
    views::no_content()
}

pub async fn activate(
    State(api): Ctx,
    Device(device): Device,
    Id(id): Id,
    Json(req): Json<ActivateDelegationRequest>,
) -> Reply {
    let (_, verifier) = wire::decode_pin(&req.pin)?;
    let recovery_key = wire::optional_recovery_key(req.recovery_key.as_ref())?;
    let key = api.keys.activate_delegation(&id, &device, verifier, recovery_key).await?;
    views::ok(mcs_api::DelegatedKey { key_id: key.id, public_key: key.public_key })
}

pub async fn revoke(State(api): Ctx, who: AdminOrDevice, Id(id): Id, Json(req): Json<DelegationProof>) -> Reply {
    let actor = who.actor();
    let proof = wire::revoke_delegation(&req, &actor, &id)?;
    let d = api.keys.revoke_delegation(&id, &actor, proof).await?;
    views::ok(views::delegation(&d, api.keys.pin_max_attempts(), None))
}
