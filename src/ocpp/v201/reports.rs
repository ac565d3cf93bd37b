//! Notifications a 2.0.1 station sends that need no table of their own (NotifyEvent,
//! SecurityEventNotification, FirmwareStatusNotification, LogStatusNotification, DataTransfer):
//! checked against their `rust-ocpp` type and kept in `charger_reports` as sent, so nothing a
//! charger says is lost.

use rust_ocpp::v2_0_1::enumerations::data_transfer_status_enum_type::DataTransferStatusEnumType;
use rust_ocpp::v2_0_1::messages::datatransfer::{DataTransferRequest, DataTransferResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::ocpp::handler::{CallContext, Handled};
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

/// Decodes `payload` as `Req`, keeps it as a report of kind `action` and answers with the
/// (empty) `Resp`.
pub async fn keep<Req, Resp>(
    ctx: &CallContext,
    action: &str,
    payload: Value,
) -> Result<Handled, CallFailure>
where
    Req: DeserializeOwned,
    Resp: Serialize + Default,
{
    let _: Req = decode_shape(action, payload.clone())?;
    record(ctx, action, &payload).await?;
    tracing::info!(charger_id = %ctx.charger_id, action, "charger report stored");
    Handled::reply(&Resp::default())
}

/// No vendor extension is known to this server: the data is kept and `UnknownVendorId` answered.
pub async fn data_transfer(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: DataTransferRequest = decode("DataTransfer", payload.clone())?;
    record(ctx, "DataTransfer", &payload).await?;
    tracing::info!(charger_id = %ctx.charger_id, vendor = %req.vendor_id, "DataTransfer stored");
    Handled::reply(&DataTransferResponse {
        status: DataTransferStatusEnumType::UnknownVendorId,
        data: None,
        status_info: None,
    })
}

/// L05: a local controller's progress in publishing firmware; kept as sent and applied to the
/// publication its requestId names (`publishFirmware`). A notification for a publication the
/// server does not know (or without a requestId: Idle) is kept and answered all the same.
pub async fn publish_firmware_status(
    ctx: &CallContext,
    payload: Value,
) -> Result<Handled, CallFailure> {
    use rust_ocpp::v2_0_1::messages::publish_firmware_status_notification as r;
    let _: r::PublishFirmwareStatusNotificationRequest =
        decode_shape("PublishFirmwareStatusNotification", payload.clone())?;
    record(ctx, "PublishFirmwareStatusNotification", &payload).await?;
    let status = payload["status"].as_str().unwrap_or_default();
    if let Some(request_id) = payload["requestId"]
        .as_i64()
        .and_then(|id| i32::try_from(id).ok())
    {
        let locations: Vec<String> = payload["location"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|u| u.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let known = crate::store::firmware_publications::record_notification(
            &ctx.app.db,
            &ctx.charger_id,
            request_id,
            status,
            &locations,
        )
        .await
        .map_err(CallFailure::internal)?;
        tracing::info!(charger_id = %ctx.charger_id, request_id, status, known, "firmware publication status");
    }
    Handled::reply(&r::PublishFirmwareStatusNotificationResponse::default())
}
