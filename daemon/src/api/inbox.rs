//! `GET /v1/inbox`: the calling device's items, long-polling like task results; and
//! `GET /v1/devices`: the devices that hold a share of the caller's keys.

use std::time::Duration;

use axum::extract::{RawQuery, State};

use super::Ctx;
use super::caller::Device;
use super::error::ApiError;
use super::extract::NoBody;
use super::views::{self, Reply};
use super::wire;

pub async fn get(State(api): Ctx, Device(device): Device, RawQuery(query): RawQuery, _: NoBody) -> Reply {
    let query = query.as_deref().unwrap_or("");
    let after = match wire::query_param(query, "after")? {
        None => 0,
        Some(c) => c.parse::<u64>().map_err(|_| ApiError::bad_request("after must be a cursor given by this API"))?,
    };
    let wait = Duration::from_secs(wire::wait_query(query)?).min(api.tasks.config().max_wait);
    let page = api.keys.inbox().read(&device, after, wait).await.map_err(crate::keys::KeyError::Store)?;
    views::ok(views::inbox(&page))
}

pub async fn devices(State(api): Ctx, Device(device): Device, _: NoBody) -> Reply {
    views::ok(views::devices(&api.keys.devices(&device)?))
}
