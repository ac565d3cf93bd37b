//! BootNotification and Heartbeat.

use chrono::Utc;
use rust_ocpp::v2_0_1::enumerations::registration_status_enum_type::RegistrationStatusEnumType;
use rust_ocpp::v2_0_1::messages::boot_notification::{
    BootNotificationRequest, BootNotificationResponse,
};
use rust_ocpp::v2_0_1::messages::heartbeat::{HeartbeatRequest, HeartbeatResponse};
use serde_json::Value;

use crate::ocpp::handler::{enum_name, CallContext, Effect, Handled};
use crate::ocpp::payload::{check, decode_shape};
use crate::ocpp::CallFailure;
use crate::store::charger_writer::ChargerWrite;
use crate::store::chargers::BootInfo;

/// Stores what the station says about itself and why it booted, and accepts it with the
/// configured heartbeat interval.
pub async fn boot_notification(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: BootNotificationRequest = decode_shape("BootNotification", payload)?;
    check("BootNotification", &req.charging_station)?;
    if !ctx.app.boots.admit() {
        // a reconnect storm: come back later, spread out, instead of all at once
        let retry = rand::Rng::gen_range(&mut rand::thread_rng(), 10..=60u16);
        tracing::info!(charger_id = %ctx.charger_id, retry, "boot deferred (admission control)");
        return Ok(Handled::reply(&BootNotificationResponse {
            current_time: Utc::now(),
            interval: retry,
            status: RegistrationStatusEnumType::Pending,
            status_info: None,
        })?
        .with(Effect::BootPending));
    }
    let station = req.charging_station;
    let (iccid, imsi) = station
        .modem
        .map(|modem| (modem.iccid, modem.imsi))
        .unwrap_or_default();
    let info = BootInfo {
        vendor: station.vendor_name,
        model: station.model,
        serial_number: station.serial_number,
        firmware_version: station.firmware_version,
        iccid,
        imsi,
        meter_type: None,
        meter_serial: None,
        reason: Some(enum_name(&req.reason)),
    };
    ctx.app
        .charger_store
        .write(ChargerWrite::Boot {
            charger_id: ctx.charger_id.clone(),
            info: info.clone(),
        })
        .await
        .map_err(CallFailure::internal)?;
    tracing::info!(charger_id = %ctx.charger_id, vendor = %info.vendor, model = %info.model, reason = ?info.reason, "charging station booted");
    // the 2.0.1 type holds the interval in 16 bits; longer intervals are capped
    let interval = u16::try_from(ctx.app.settings.ocpp.heartbeat_interval_secs).unwrap_or(u16::MAX);
    if ctx.quarantined {
        tracing::info!(charger_id = %ctx.charger_id, "quarantined charging station booted: Pending");
        return Ok(Handled::reply(&BootNotificationResponse {
            current_time: Utc::now(),
            interval,
            status: RegistrationStatusEnumType::Pending,
            status_info: None,
        })?
        .with(Effect::BootPending));
    }
    Ok(Handled::reply(&BootNotificationResponse {
        current_time: Utc::now(),
        interval,
        status: RegistrationStatusEnumType::Accepted,
        status_info: None,
    })?
    .with(Effect::Accepted))
}

/// Answers with the server time; liveness is tracked by the actor, not written per heartbeat.
pub fn heartbeat(_ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let _: HeartbeatRequest = decode_shape("Heartbeat", payload)?;
    Handled::reply(&HeartbeatResponse {
        current_time: Utc::now(),
    })
}
