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
    Handled::reply(&DiagnosticsStatusNotificationResponse {})
}

pub async fn firmware_status(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let _: FirmwareStatusNotificationRequest =
        decode_shape("FirmwareStatusNotification", payload.clone())?;
    record(ctx, "FirmwareStatusNotification", &payload).await?;
    Handled::reply(&FirmwareStatusNotificationResponse {})
}
