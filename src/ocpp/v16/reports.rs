//! DataTransfer, DiagnosticsStatusNotification and FirmwareStatusNotification: stored as charger
//! reports so nothing a charger says is lost.

use rust_ocpp::v1_6::messages::data_transfer::{DataTransferRequest, DataTransferResponse};
use rust_ocpp::v1_6::messages::diagnostics_status_notification::{
    DiagnosticsStatusNotificationRequest, DiagnosticsStatusNotificationResponse,
};
use rust_ocpp::v1_6::messages::firmware_status_notification::{
    FirmwareStatusNotificationRequest, FirmwareStatusNotificationResponse,
};
use rust_ocpp::v1_6::types::DataTransferStatus;
use serde_json::Value;

use super::{CallContext, Handled};
use crate::ocpp::payload::{decode, decode_shape};
use crate::ocpp::CallFailure;
use crate::store::chargers;

async fn record(ctx: &CallContext, kind: &str, payload: &Value) -> Result<(), CallFailure> {
    let mut tx = ctx.app.db.begin().await.map_err(CallFailure::internal)?;
    chargers::record_report(&mut tx, &ctx.charger_id, kind, payload)
        .await
        .map_err(CallFailure::internal)?;
    tx.commit().await.map_err(CallFailure::internal)
}

/// No vendor extension is known to this server: the data is kept and `UnknownVendorId` answered.
pub async fn data_transfer(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: DataTransferRequest = decode("DataTransfer", payload.clone())?;
    record(ctx, "DataTransfer", &payload).await?;
    tracing::info!(charger_id = %ctx.charger_id, vendor = %req.vendor_string, "DataTransfer stored");
    Handled::reply(&DataTransferResponse {
        status: DataTransferStatus::UnknownVendorId,
        data: None,
    })
}

pub async fn diagnostics_status(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let _: DiagnosticsStatusNotificationRequest =
        decode_shape("DiagnosticsStatusNotification", payload.clone())?;
    record(ctx, "DiagnosticsStatusNotification", &payload).await?;
    if let Some(status) = payload.get("status").and_then(Value::as_str) {
        log_status(ctx, status, None).await;
    }
    Handled::reply(&DiagnosticsStatusNotificationResponse {})
}

/// A charger's word on a log upload it was asked for (the request's row in `charger_logs`).
pub(crate) async fn log_status(ctx: &CallContext, status: &str, request_id: Option<i32>) {
    if let Err(e) =
        crate::store::charger_logs::charger_status(&ctx.app.db, &ctx.charger_id, request_id, status)
            .await
    {
        tracing::error!(charger_id = %ctx.charger_id, error = %e, "log upload status not recorded");
    }
}

pub async fn firmware_status(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let _: FirmwareStatusNotificationRequest =
        decode_shape("FirmwareStatusNotification", payload.clone())?;
    record(ctx, "FirmwareStatusNotification", &payload).await?;
    if let Some(status) = payload.get("status").and_then(Value::as_str) {
        crate::ocpp::firmware::progress(&ctx.app, &ctx.charger_id, status, None).await;
    }
    Handled::reply(&FirmwareStatusNotificationResponse {})
}

/// A security-extension notification (SignedFirmwareStatusNotification,
/// LogStatusNotification): checked against its type and kept as a report.
pub async fn keep_typed<Req: serde::de::DeserializeOwned>(
    ctx: &CallContext,
    action: &str,
    payload: Value,
) -> Result<Handled, CallFailure> {
    let _: Req = decode_shape(action, payload.clone())?;
    record(ctx, action, &payload).await?;
    Handled::reply(&super::security::Empty {})
}

/// SignCertificate (security extension): the CSR is signed by the CSMS CA and the certificate
/// sent back with CertificateSigned once the answer is out.
pub async fn sign_certificate(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    use super::security::{GenericStatus, SignCertificateRequest, SignCertificateResponse};
    let req: SignCertificateRequest = decode_shape("SignCertificate", payload)?;
    match crate::security::certificates::sign_request(
        &ctx.app,
        &ctx.charger_id,
        &req.csr,
        "ChargingStationCertificate",
    )
    .await
    {
        Ok(chain) => Ok(Handled::reply(&SignCertificateResponse {
            status: GenericStatus::Accepted,
        })?
        .with(super::Effect::Send {
            command: crate::ocpp::command::ChargerCommand::Raw {
                action: "CertificateSigned".into(),
                payload: serde_json::json!({ "certificateChain": chain }),
            },
            what: "CertificateSigned",
        })),
        Err(_) => Handled::reply(&SignCertificateResponse {
            status: GenericStatus::Rejected,
        }),
    }
}

/// SecurityEventNotification (security extension): stored, the critical ones published.
pub async fn security_event(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: super::security::SecurityEventNotificationRequest =
        decode_shape("SecurityEventNotification", payload)?;
    crate::ocpp::payload::check_len("SecurityEventNotification", "type", &req.kind, 50)?;
    if let Some(tech_info) = &req.tech_info {
        crate::ocpp::payload::check_len("SecurityEventNotification", "techInfo", tech_info, 255)?;
    }
    crate::security::record_charger_event(
        &ctx.app,
        &ctx.charger_id,
        &req.kind,
        req.timestamp,
        req.tech_info,
    )
    .await
    .map_err(CallFailure::internal)?;
    Handled::reply(&super::security::Empty {})
}
