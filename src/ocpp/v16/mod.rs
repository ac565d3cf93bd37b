//! The OCPP 1.6J adapter: charger-initiated actions (one file per concern, behind `handle`) and
//! CSMS-initiated commands (`commands`).

mod authorize;
mod boot;
pub mod commands;
mod reports;
pub mod security;
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
    // the security extension (1.6 Security Whitepaper, edition 3)
    "LogStatusNotification",
    "SecurityEventNotification",
    "SignCertificate",
    "SignedFirmwareStatusNotification",
];

/// The status and requestId of a firmware or log status notification.
pub(crate) fn firmware_status_of(payload: &Value) -> (Option<String>, Option<i32>) {
    let status = payload
        .get("status")
        .and_then(Value::as_str)
        .map(String::from);
    let request_id = payload
        .get("requestId")
        .and_then(Value::as_i64)
        .and_then(|id| i32::try_from(id).ok());
    (status, request_id)
}

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
        "SignCertificate" => reports::sign_certificate(&ctx, payload).await,
        "SecurityEventNotification" => reports::security_event(&ctx, payload).await,
        "SignedFirmwareStatusNotification" => {
            let (status, request_id) = firmware_status_of(&payload);
            let handled = reports::keep_typed::<security::SignedFirmwareStatusNotificationRequest>(
                &ctx, action, payload,
            )
            .await?;
            if let Some(status) = status {
                crate::ocpp::firmware::progress(&ctx.app, &ctx.charger_id, &status, request_id)
                    .await;
            }
            Ok(handled)
        }
        "LogStatusNotification" => {
            let (status, request_id) = firmware_status_of(&payload);
            let handled = reports::keep_typed::<security::LogStatusNotificationRequest>(
                &ctx, action, payload,
            )
            .await?;
            if let Some(status) = status {
                reports::log_status(&ctx, &status, request_id).await;
            }
            Ok(handled)
        }
        other => Err(CallFailure::new(
            CallErrorCode::NotImplemented,
            format!("unknown action {other:?}"),
        )),
    }
}

/// The side-effect-free part of handling a 1.6 CALL: its payload decoded and validated against
/// the action's type, meter values normalised with checked arithmetic, exactly as the handlers
/// do before they store anything. What the fuzzer drives millions of frames through.
pub fn precheck(action: &str, payload: Value) -> Result<(), CallFailure> {
    use crate::ocpp::payload::{decode, decode_shape};
    use rust_ocpp::v1_6::messages as m;
    let out_of_range = |e: crate::ocpp::meter::OutOfRange| {
        CallFailure::new(CallErrorCode::PropertyConstraintViolation, e.to_string())
    };
    match action {
        "BootNotification" => {
            decode::<m::boot_notification::BootNotificationRequest>(action, payload).map(drop)
        }
        "Heartbeat" => decode::<m::heart_beat::HeartbeatRequest>(action, payload).map(drop),
        "StatusNotification" => {
            let req: m::status_notification::StatusNotificationRequest = decode(action, payload)?;
            crate::ocpp::payload::connector_id(action, i64::from(req.connector_id)).map(drop)
        }
        "Authorize" => decode::<m::authorize::AuthorizeRequest>(action, payload).map(drop),
        "StartTransaction" => {
            decode::<m::start_transaction::StartTransactionRequest>(action, payload).map(drop)
        }
        "StopTransaction" => {
            let req: m::stop_transaction::StopTransactionRequest = decode(action, payload)?;
            if let Some(values) = &req.transaction_data {
                let _ = crate::ocpp::meter::normalise_lenient(transactions::raw_samples(values));
            }
            Ok(())
        }
        "MeterValues" => {
            let req: m::meter_values::MeterValuesRequest = decode_shape(action, payload)?;
            i32::try_from(req.connector_id).map_err(CallFailure::internal)?;
            transactions::samples(&req.meter_value).map_err(out_of_range)?;
            Ok(())
        }
        "DataTransfer" => {
            decode::<m::data_transfer::DataTransferRequest>(action, payload).map(drop)
        }
        "DiagnosticsStatusNotification" => decode_shape::<
            m::diagnostics_status_notification::DiagnosticsStatusNotificationRequest,
        >(action, payload)
        .map(drop),
        "FirmwareStatusNotification" => decode_shape::<
            m::firmware_status_notification::FirmwareStatusNotificationRequest,
        >(action, payload)
        .map(drop),
        "SignCertificate" => {
            decode_shape::<security::SignCertificateRequest>(action, payload).map(drop)
        }
        "SecurityEventNotification" => {
            decode_shape::<security::SecurityEventNotificationRequest>(action, payload).map(drop)
        }
        "SignedFirmwareStatusNotification" => {
            decode_shape::<security::SignedFirmwareStatusNotificationRequest>(action, payload)
                .map(drop)
        }
        "LogStatusNotification" => {
            decode_shape::<security::LogStatusNotificationRequest>(action, payload).map(drop)
        }
        other => Err(CallFailure::new(
            CallErrorCode::NotImplemented,
            format!("unknown action {other:?}"),
        )),
    }
}
