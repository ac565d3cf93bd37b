//! BootNotification and Heartbeat.

use chrono::Utc;
use rust_ocpp::v1_6::messages::boot_notification::{
    BootNotificationRequest, BootNotificationResponse,
};
use rust_ocpp::v1_6::messages::heart_beat::{HeartbeatRequest, HeartbeatResponse};
use rust_ocpp::v1_6::types::RegistrationStatus;
use serde_json::Value;

use super::{CallContext, Effect, Handled};
use crate::ocpp::payload::decode;
use crate::ocpp::CallFailure;
use crate::store::charger_writer::ChargerWrite;
use crate::store::chargers::BootInfo;

/// Stores what the charger says about itself and accepts it with the configured interval.
pub async fn boot_notification(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: BootNotificationRequest = decode("BootNotification", payload)?;
    if !ctx.app.boots.admit() {
        // a reconnect storm: come back later, spread out, instead of all at once
        let retry = rand::Rng::gen_range(&mut rand::thread_rng(), 10..=60u32);
        tracing::info!(charger_id = %ctx.charger_id, retry, "boot deferred (admission control)");
        return Ok(Handled::reply(&BootNotificationResponse {
            current_time: Utc::now(),
            interval: retry,
            status: RegistrationStatus::Pending,
        })?
        .with(Effect::BootPending));
    }
    let info = BootInfo {
        vendor: req.charge_point_vendor,
        model: req.charge_point_model,
        serial_number: req
            .charge_point_serial_number
            .or(req.charge_box_serial_number),
        firmware_version: req.firmware_version,
        iccid: req.iccid,
        imsi: req.imsi,
        meter_type: req.meter_type,
        meter_serial: req.meter_serial_number,
        reason: None,
    };
    ctx.app
        .charger_store
        .write(ChargerWrite::Boot {
            charger_id: ctx.charger_id.clone(),
            info: info.clone(),
        })
        .await
        .map_err(CallFailure::internal)?;
    if ctx.quarantined {
        tracing::info!(charger_id = %ctx.charger_id, vendor = %info.vendor, model = %info.model, "quarantined charger booted: Pending");
        return Ok(Handled::reply(&BootNotificationResponse {
            current_time: Utc::now(),
            interval: ctx.app.settings.ocpp.heartbeat_interval_secs,
            status: RegistrationStatus::Pending,
        })?
        .with(Effect::BootPending));
    }
    tracing::info!(charger_id = %ctx.charger_id, vendor = %info.vendor, model = %info.model, "charger booted");
    Ok(Handled::reply(&BootNotificationResponse {
        current_time: Utc::now(),
        interval: ctx.app.settings.ocpp.heartbeat_interval_secs,
        status: RegistrationStatus::Accepted,
    })?
    .with(Effect::Accepted))
}

/// Answers with the server time; liveness is tracked by the actor, not written per heartbeat.
pub fn heartbeat(_ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let _: HeartbeatRequest = decode("Heartbeat", payload)?;
    Handled::reply(&HeartbeatResponse {
        current_time: Utc::now(),
    })
}
