//! StatusNotification: connector status kept in Postgres (and in the actor).

use rust_ocpp::v1_6::messages::status_notification::{
    StatusNotificationRequest, StatusNotificationResponse,
};
use rust_ocpp::v1_6::types::ChargePointStatus;
use serde_json::Value;

use super::{enum_name, CallContext, Handled};
use crate::ocpp::payload::decode;
use crate::ocpp::CallFailure;
use crate::store::chargers::StatusReport;

/// The API's `ConnectorStatus` spelling of a 1.6 status.
pub fn api_status(status: &ChargePointStatus) -> &'static str {
    match status {
        ChargePointStatus::Available => "AVAILABLE",
        ChargePointStatus::Preparing => "PREPARING",
        ChargePointStatus::Charging => "CHARGING",
        ChargePointStatus::SuspendedEVSE => "SUSPENDED_EVSE",
        ChargePointStatus::SuspendedEV => "SUSPENDED_EV",
        ChargePointStatus::Finishing => "FINISHING",
        ChargePointStatus::Reserved => "RESERVED",
        ChargePointStatus::Unavailable => "UNAVAILABLE",
        ChargePointStatus::Faulted => "FAULTED",
    }
}

pub async fn status_notification(
    ctx: &CallContext,
    payload: Value,
) -> Result<Handled, CallFailure> {
    let req: StatusNotificationRequest = decode("StatusNotification", payload)?;
    let connector_id =
        crate::ocpp::payload::connector_id("StatusNotification", i64::from(req.connector_id))?;
    let status = api_status(&req.status).to_string();
    let error_code = enum_name(&req.error_code);
    let report = StatusReport {
        connector_id,
        status,
        error_code: (error_code != "NoError").then_some(error_code),
        info: req.info,
        vendor_error_code: req.vendor_error_code,
        reported_at: req.timestamp,
    };
    let effect = ctx.store_status(report).await?;
    Ok(Handled::reply(&StatusNotificationResponse {})?.with(effect))
}
