//! The log and the CA adapters: `GET /v1/audit` and `/v1/plugins/…`.

use axum::extract::{RawQuery, State};

use super::Ctx;
use super::caller::{Admin, Caller};
use super::error::ApiError;
use super::extract::{Id, NoBody};
use super::views::{self, Reply};
use super::wire::{self, AuditQuery};
use crate::plugins::ca::{CaAdapter, StatusRequest};

/// Operators see the whole chain; a platform its own scan report; a phone the log of one
/// of its keys: the owner every use of it (each delegate's entry names its device, the
/// actor, and its delegation, `detail.delegation_id`), a delegate only its own entries.
pub async fn audit(State(api): Ctx, caller: Caller, RawQuery(query): RawQuery, _: NoBody) -> Reply {
    let mut q = AuditQuery::parse(query.as_deref().unwrap_or(""))?;
    let mut actor = None;
    match &caller {
        Caller::Admin { .. } => {}
        Caller::Gateway { platform, .. } => q.platform = Some(platform.clone()),
        Caller::App { device_id } => {
            let k = q.key_id.clone().ok_or_else(|| ApiError::bad_request("key_id is required"))?;
            if !api.keys.owner_or_delegate(&k, device_id)? {
                actor = Some(super::audit_actor(Some(&caller)));
            }
        }
    }
    let entries = api
        .audit
        .query(
            &crate::audit::Filter {
                key_id: q.key_id.as_deref(),
                platform: q.platform.as_deref(),
                actor: actor.as_deref(),
                seal_id: q.seal_id.as_deref(),
            },
            q.since,
            q.limit,
        )
        .map_err(crate::keys::KeyError::from)?;
    views::ok(views::audit_entries(&entries))
}

pub async fn plugins(State(api): Ctx, _: Admin, _: NoBody) -> Reply {
    views::ok(views::plugins(&api.plugins.list()))
}

pub async fn crl(State(api): Ctx, _: Caller, Id(name): Id, _: NoBody) -> Reply {
    // The façade refuses an answer without `crl` (plugin_error).
    views::ok(CaAdapter::crl(&*api.plugins, &name).await?)
}

pub async fn status(State(api): Ctx, _: Caller, Id(name): Id, RawQuery(query): RawQuery, _: NoBody) -> Reply {
    let serial = wire::serial_query(query.as_deref().unwrap_or(""))?;
    let answer = CaAdapter::status(&*api.plugins, &name, &StatusRequest { serial }).await?;
    views::ok(answer)
}
