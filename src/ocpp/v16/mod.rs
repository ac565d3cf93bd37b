//! The OCPP 1.6J adapter: charger-initiated actions (one file per concern, behind `handle`) and
//! CSMS-initiated commands (`commands`).

mod authorize;
mod boot;
pub mod commands;
mod reports;
mod status;
mod transactions;

use serde_json::Value;

use super::error::{CallErrorCode, CallFailure};
use super::handler::enum_name;
pub use super::handler::{CallContext, Effect, Handled};

/// Every charger-initiated action of OCPP 1.6 Core, Firmware Management and Smart Charging that
/// a central system answers.
pub const ACTIONS: &[&str] = &[
    "Authorize",
    "BootNotification",
    "DataTransfer",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
];

/// Handles one CALL from a 1.6 charger.
pub async fn handle(
    ctx: CallContext,
    action: &str,
    payload: Value,
) -> Result<Handled, CallFailure> {
    match action {
        "BootNotification" => boot::boot_notification(&ctx, payload).await,
        "Heartbeat" => boot::heartbeat(&ctx, payload),
        "StatusNotification" => status::status_notification(&ctx, payload).await,
        "Authorize" => authorize::authorize(&ctx, payload).await,
        "StartTransaction" => transactions::start_transaction(&ctx, payload).await,
        "StopTransaction" => transactions::stop_transaction(&ctx, payload).await,
        "MeterValues" => transactions::meter_values(&ctx, payload).await,
        "DataTransfer" => reports::data_transfer(&ctx, payload).await,
        "DiagnosticsStatusNotification" => reports::diagnostics_status(&ctx, payload).await,
        "FirmwareStatusNotification" => reports::firmware_status(&ctx, payload).await,
        other => Err(CallFailure::new(
            CallErrorCode::NotImplemented,
            format!("unknown action {other:?}"),
        )),
    }
}
