//! `/v1/seals/…`: electronic seals and their grants.

use axum::extract::{RawQuery, State};

use super::Ctx;
use super::caller::{Admin, Caller};
use super::error::ApiError;
use super::extract::{EmptyObject, Id, Json, NoBody, Params};
use super::views::{self, Reply};
use super::wire;
use crate::keys::Actor;
use mcs_api::{SealGrantRequest, SealImageRequest, SealRequest};

pub async fn create(State(api): Ctx, _: Admin, Json(req): Json<SealRequest>) -> Reply {
    views::created(views::seal(&api.seals.create(wire::new_seal(req)?).await?)?)
}

/// Operators see every seal; a phone the seals of its own keys.
pub async fn list(State(api): Ctx, caller: Caller, RawQuery(query): RawQuery, _: NoBody) -> Reply {
    let query = query.unwrap_or_default();
    let owner = wire::query_param(&query, "owner")?;
    let key_id = wire::query_param(&query, "key_id")?;
    let list = match &caller {
        Caller::Admin { .. } => api.seals.list(owner.as_deref(), key_id.as_deref())?,
        Caller::App { device_id } => {
            let own: Vec<String> =
                api.keys.list(&Actor::Device(device_id), None, None)?.into_iter().map(|k| k.id).collect();
            api.seals
                .list(owner.as_deref(), key_id.as_deref())?
                .into_iter()
                .filter(|s| own.iter().any(|k| s.signer_key_ids.contains(k) || s.grants.iter().any(|g| &g.key_id == k)))
                .collect()
        }
        Caller::Gateway { .. } => return Err(ApiError::Forbidden("gateways do not list seals".into())),
    };
    views::ok(views::seals(&list)?)
}

pub async fn get(State(api): Ctx, _: Admin, Id(id): Id, _: NoBody) -> Reply {
    views::ok(views::seal(&api.seals.get(&id)?)?)
}

pub async fn revoke(State(api): Ctx, _: Admin, Id(id): Id, _: EmptyObject) -> Reply {
    views::ok(views::seal(&api.seals.revoke(&id).await?)?)
}

/// A new face: a new seal with the same grants; the old one revoked.
pub async fn change_image(State(api): Ctx, _: Admin, Id(id): Id, Json(req): Json<SealImageRequest>) -> Reply {
    views::created(views::seal(&api.seals.change_face(&id, wire::face_spec(&req.image)?).await?)?)
}

pub async fn grant(State(api): Ctx, _: Admin, Id(id): Id, Json(req): Json<SealGrantRequest>) -> Reply {
    let terms = wire::seal_grant(&req)?;
    views::created(views::seal(&api.seals.grant(&id, &req.key_id, terms).await?)?)
}

pub async fn ungrant(State(api): Ctx, _: Admin, Params((id, key_id)): Params<(String, String)>, _: NoBody) -> Reply {
    api.seals.ungrant(&id, &key_id).await?;
    views::no_content()
}
