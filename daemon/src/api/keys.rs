//! `/v1/keys/…`: listing and reading keys, co-signing and decrypting with them, PIN change
//! and unlock, revocation, successors, platform grants.

use std::sync::Arc;

use axum::extract::{RawQuery, State};

use super::Api;
use super::caller::{Admin, AdminOrDevice, Device};
use super::extract::{EmptyObject, Ignored, NoBody, Params, StrictJson};
use super::views::{self, Reply};
use super::wire::{
    self, ChangePinRequest, DecryptRequest, PlatformRequest, RevokeRequest, SignRequest, SuccessorRequest,
};

pub async fn list(State(api): State<Arc<Api>>, who: AdminOrDevice, RawQuery(query): RawQuery, _: Ignored) -> Reply {
    let (subject, status) = wire::key_filters(query.as_deref().unwrap_or(""))?;
    let list = api.keys.list(&who.actor(), subject.as_deref(), status)?;
    views::ok(views::keys(&list, api.keys.pin_max_attempts()))
}

pub async fn get(State(api): State<Arc<Api>>, who: AdminOrDevice, Params(id): Params<String>, _: NoBody) -> Reply {
    let key = api.keys.key_for(&id, &who.actor())?;
    views::ok(views::key(&key, api.keys.pin_max_attempts()))
}

pub async fn sign(
    State(api): State<Arc<Api>>,
    Device(device): Device,
    Params(id): Params<String>,
    StrictJson(req): StrictJson<SignRequest>,
) -> Reply {
    let (e, q1, mode, proof) = req.validate()?;
    views::ok(views::signed(&api.keys.sign(&id, &device, e, q1, mode, proof).await?))
}

pub async fn decrypt(
    State(api): State<Arc<Api>>,
    Device(device): Device,
    Params(id): Params<String>,
    StrictJson(req): StrictJson<DecryptRequest>,
) -> Reply {
    let (t1, proof) = req.validate()?;
    views::ok(views::decrypted(&api.keys.decrypt(&id, &device, t1, proof).await?))
}

pub async fn change_pin(
    State(api): State<Arc<Api>>,
    Device(device): Device,
    Params(id): Params<String>,
    StrictJson(req): StrictJson<ChangePinRequest>,
) -> Reply {
    let (verifier, proof) = req.validate()?;
    api.keys.change_pin(&id, &device, verifier, proof).await?;
    views::no_content()
}

pub async fn unlock(State(api): State<Arc<Api>>, _: Admin, Params(id): Params<String>, _: EmptyObject) -> Reply {
    api.keys.unlock(&id).await?;
    views::no_content()
}

pub async fn revoke(
    State(api): State<Arc<Api>>,
    who: AdminOrDevice,
    Params(id): Params<String>,
    StrictJson(req): StrictJson<RevokeRequest>,
) -> Reply {
    let actor = who.actor();
    let proof = req.validate(&actor)?;
    let key = api.keys.revoke(&id, &actor, &req.reason, proof).await?;
    views::ok(views::key(&key, api.keys.pin_max_attempts()))
}

pub async fn successor(
    State(api): State<Arc<Api>>,
    _: Admin,
    Params(id): Params<String>,
    StrictJson(req): StrictJson<SuccessorRequest>,
) -> Reply {
    req.validate()?;
    let created = api.keys.create_successor(&id, &req.reason, req.subject, req.validity_days).await?;
    views::created(views::successor(&created, &id))
}

pub async fn authorize_platform(
    State(api): State<Arc<Api>>,
    _: Admin,
    Params(id): Params<String>,
    StrictJson(req): StrictJson<PlatformRequest>,
) -> Reply {
    let (until, once) = req.validate()?;
    let key = api.keys.authorize_platform(&id, &req.platform, until, once).await?;
    views::created(views::key(&key, api.keys.pin_max_attempts()))
}

pub async fn remove_platform(
    State(api): State<Arc<Api>>,
    _: Admin,
    Params((id, platform)): Params<(String, String)>,
    _: NoBody,
) -> Reply {
    api.keys.remove_platform(&id, &platform).await?;
    views::no_content()
}
