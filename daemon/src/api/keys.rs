//! `/v1/keys/…`: listing and reading keys, co-signing and decrypting with them, PIN change
//! and unlock, PIN reset, revocation, suspension and resumption, successors, platform grants.

use axum::extract::{RawQuery, State};

use super::Ctx;
use super::caller::{Admin, AdminOrDevice, Device};
use super::extract::{EmptyObject, Id, Ignored, Json, JsonOrNone, NoBody, Params};
use super::views::{self, Reply};
use super::wire;
use mcs_api::{
    ChangePinRequest, DecryptRequest, OpenPinResetRequest, PinResetRequest, PlatformRequest, RevokeRequest,
    SignRequest, SuccessorRequest, SuspendRequest,
};

pub async fn list(State(api): Ctx, who: AdminOrDevice, RawQuery(query): RawQuery, _: Ignored) -> Reply {
    let (subject, status) = wire::key_filters(query.as_deref().unwrap_or(""))?;
    let list = api.keys.list(&who.actor(), subject.as_deref(), status)?;
    views::ok(views::keys(&list, api.keys.pin_max_attempts()))
}

pub async fn get(State(api): Ctx, who: AdminOrDevice, Id(id): Id, _: NoBody) -> Reply {
    let key = api.keys.key_for(&id, &who.actor())?;
    views::ok(views::key(&key, api.keys.pin_max_attempts()))
}

pub async fn sign(State(api): Ctx, Device(device): Device, Id(id): Id, Json(req): Json<SignRequest>) -> Reply {
    let (e, q1, mode, proof) = wire::sign(&req)?;
    views::ok(views::signed(&api.keys.sign(&id, &device, e, q1, mode, proof).await?))
}

pub async fn decrypt(State(api): Ctx, Device(device): Device, Id(id): Id, Json(req): Json<DecryptRequest>) -> Reply {
    let (t1, proof) = wire::decrypt(&req)?;
    views::ok(views::decrypted(&api.keys.decrypt(&id, &device, t1, proof).await?))
}

pub async fn change_pin(
    State(api): Ctx,
    Device(device): Device,
    Id(id): Id,
    Json(req): Json<ChangePinRequest>,
) -> Reply {
    let (verifier, proof) = wire::change_pin(&req)?;
    api.keys.change_pin(&id, &device, verifier, proof).await?;
    views::no_content()
}

/// Operator: open a PIN reset (after the CA checked the person's identity).
pub async fn open_pin_reset(
    State(api): Ctx,
    _: Admin,
    Id(id): Id,
    JsonOrNone(req): JsonOrNone<OpenPinResetRequest>,
) -> Reply {
    let delegation = wire::open_pin_reset(&req)?;
    let opened = api.keys.open_pin_reset(&id, delegation).await?;
    views::created(views::pin_reset_opened(&opened, delegation))
}

/// The phone of the share: reset its PIN with the operator's code.
pub async fn reset_pin(State(api): Ctx, Device(device): Device, Id(id): Id, Json(req): Json<PinResetRequest>) -> Reply {
    let reset = wire::pin_reset(&req)?;
    let old = api.keys.reset_pin(&id, &device, reset).await?;
    views::ok(mcs_api::PinResetDone { recovery_key: zeroize::Zeroizing::new(hex::encode(old.as_slice())) })
}

pub async fn unlock(State(api): Ctx, _: Admin, Id(id): Id, _: EmptyObject) -> Reply {
    api.keys.unlock(&id).await?;
    views::no_content()
}

pub async fn revoke(State(api): Ctx, who: AdminOrDevice, Id(id): Id, Json(req): Json<RevokeRequest>) -> Reply {
    let actor = who.actor();
    let proof = wire::revoke(&req, &actor)?;
    let key = api.keys.revoke(&id, &actor, &req.reason, proof).await?;
    views::ok(views::key(&key, api.keys.pin_max_attempts()))
}

pub async fn suspend(State(api): Ctx, who: AdminOrDevice, Id(id): Id, Json(req): Json<SuspendRequest>) -> Reply {
    let actor = who.actor();
    let proof = wire::suspend(&req, &actor)?;
    let key = api.keys.suspend(&id, &actor, &req.reason, proof).await?;
    views::ok(views::key(&key, api.keys.pin_max_attempts()))
}

pub async fn resume(State(api): Ctx, _: Admin, Id(id): Id, _: EmptyObject) -> Reply {
    let key = api.keys.resume(&id).await?;
    views::ok(views::key(&key, api.keys.pin_max_attempts()))
}

pub async fn successor(State(api): Ctx, _: Admin, Id(id): Id, Json(req): Json<SuccessorRequest>) -> Reply {
    let subject = wire::successor(&req)?;
    if req.reason == "extend" {
        let (key, renewal) = api.keys.renewal_of(&id, req.validity_days)?;
        let serial = renewal.serial.clone();
        let task = api.tasks.create_renewal_task(&key, renewal).await?;
        return views::created(views::extension(&key.id, &serial, &task));
    }
    let created = api.keys.create_successor(&id, &req.reason, subject, req.validity_days).await?;
    views::created(views::successor(&created, &id))
}

pub async fn authorize_platform(State(api): Ctx, _: Admin, Id(id): Id, Json(req): Json<PlatformRequest>) -> Reply {
    let (until, once) = wire::platform_grant(&req)?;
    let key = api.keys.authorize_platform(&id, &req.platform, until, once).await?;
    views::created(views::key(&key, api.keys.pin_max_attempts()))
}

pub async fn remove_platform(
    State(api): Ctx,
    _: Admin,
    Params((id, platform)): Params<(String, String)>,
    _: NoBody,
) -> Reply {
    api.keys.remove_platform(&id, &platform).await?;
    views::no_content()
}
