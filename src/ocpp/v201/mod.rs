//! The OCPP 2.0.1 adapter: charger-initiated actions (one file per concern, behind `handle`) and
//! CSMS-initiated commands (`commands`). It maps 2.0.1 onto the same domain as 1.6: an EVSE is
//! what the API calls a connector, a transaction's string id is kept as `transaction_ref`, and
//! sessions, billing and events do not know which version a charger speaks.

mod authorize;
mod boot;
pub mod commands;
mod device_model;
mod meter;
mod reports;
mod status;
mod transactions;

use rust_ocpp::v2_0_1::messages as m;
use serde_json::Value;

use super::error::{CallErrorCode, CallFailure};
use super::handler::{CallContext, Handled};

/// Every charger-initiated 2.0.1 action this server answers.
pub const ACTIONS: &[&str] = &[
    "Authorize",
    "BootNotification",
    "DataTransfer",
    "FirmwareStatusNotification",
    "Heartbeat",
    "LogStatusNotification",
    "MeterValues",
    "NotifyEvent",
    "NotifyReport",
    "SecurityEventNotification",
    "StatusNotification",
    "TransactionEvent",
];

/// Charger-initiated 2.0.1 actions this server knows but does not implement (ISO 15118
/// certificates, display messages, monitoring, reservations, external charging limits): they
/// get `NotSupported`, unknown names get `NotImplemented`.
pub const NOT_SUPPORTED: &[&str] = &[
    "ClearedChargingLimit",
    "Get15118EVCertificate",
    "GetCertificateStatus",
    "NotifyChargingLimit",
    "NotifyCustomerInformation",
    "NotifyDisplayMessages",
    "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule",
    "NotifyMonitoringReport",
    "PublishFirmwareStatusNotification",
    "ReportChargingProfiles",
    "ReservationStatusUpdate",
    "SignCertificate",
];

/// Handles one CALL from a 2.0.1 charger.
pub async fn handle(
    ctx: CallContext,
    action: &str,
    payload: Value,
) -> Result<Handled, CallFailure> {
    use reports::keep;
    match action {
        "BootNotification" => boot::boot_notification(&ctx, payload).await,
        "Heartbeat" => boot::heartbeat(&ctx, payload),
        "StatusNotification" => status::status_notification(&ctx, payload).await,
        "Authorize" => authorize::authorize(&ctx, payload).await,
        "TransactionEvent" => transactions::transaction_event(&ctx, payload).await,
        "MeterValues" => meter::meter_values(&ctx, payload).await,
        "NotifyReport" => device_model::notify_report(&ctx, payload).await,
        "DataTransfer" => reports::data_transfer(&ctx, payload).await,
        "NotifyEvent" => {
            keep::<m::notify_event::NotifyEventRequest, m::notify_event::NotifyEventResponse>(
                &ctx, action, payload,
            )
            .await
        }
        "SecurityEventNotification" => {
            use m::security_event_notification as s;
            keep::<s::SecurityEventNotificationRequest, s::SecurityEventNotificationResponse>(
                &ctx, action, payload,
            )
            .await
        }
        "FirmwareStatusNotification" => {
            use m::firmware_status_notification as f;
            keep::<f::FirmwareStatusNotificationRequest, f::FirmwareStatusNotificationResponse>(
                &ctx, action, payload,
            )
            .await
        }
        "LogStatusNotification" => {
            use m::log_status_notification as l;
            keep::<l::LogStatusNotificationRequest, l::LogStatusNotificationResponse>(
                &ctx, action, payload,
            )
            .await
        }
        other if NOT_SUPPORTED.contains(&other) => Err(CallFailure::new(
            CallErrorCode::NotSupported,
            format!("{other} is not supported by this CSMS"),
        )),
        other => Err(CallFailure::new(
            CallErrorCode::NotImplemented,
            format!("unknown action {other:?}"),
        )),
    }
}
