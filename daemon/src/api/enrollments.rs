//! `POST /v1/enrollments` and `POST /v1/enrollments/{id}/activate`.

use axum::extract::State;

use super::Ctx;
use super::caller::{Admin, Device};
use super::error::ApiError;
use super::extract::{Id, Json};
use super::views::{self, Reply};
use super::wire;
use crate::keys::Activation;
use mcs_api::{ActivateRequest, EnrollmentRequest};

pub async fn create(State(api): Ctx, _: Admin, Json(req): Json<EnrollmentRequest>) -> Reply {
    let req = wire::new_enrollment(req)?;
    if !api.plugins.is_loaded(&req.ca) {
        return Err(ApiError::bad_request(format!("no CA adapter named `{}` is loaded", req.ca)));
    }
    views::created(views::enrollment(&api.keys.create_enrollment(req).await?))
}

pub async fn activate(State(api): Ctx, Device(device): Device, Id(id): Id, Json(req): Json<ActivateRequest>) -> Reply {
    let (p1, pin_verifier, recovery_key) = wire::activation(&req)?;
    let activation = Activation {
        enrollment_id: id,
        activation_code: req.activation_code,
        device_id: device,
        p1,
        pin_verifier,
        recovery_key,
    };
    let key = api.keys.activate(activation).await?;
    let csr = api.tasks.create_csr_task(&key).await?;
    views::created(views::activated(&key, &csr))
}
