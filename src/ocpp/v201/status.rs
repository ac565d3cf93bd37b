//! StatusNotification. A 2.0.1 station reports per EVSE and connector; the API's connector is
//! the EVSE (the unit RequestStartTransaction targets), so the status is stored in
//! `connector_status` under `connector_id = evseId`, and the connector within the EVSE is kept
//! in `info` ("connector 2"). For an EVSE with several connectors the latest report wins.

use rust_ocpp::v2_0_1::enumerations::connector_status_enum_type::ConnectorStatusEnumType;
use rust_ocpp::v2_0_1::messages::status_notification::{
    StatusNotificationRequest, StatusNotificationResponse,
};
use serde_json::Value;

use crate::ocpp::handler::{CallContext, Handled};
use crate::ocpp::payload::decode_shape;
use crate::ocpp::{CallErrorCode, CallFailure};
use crate::store::chargers::StatusReport;

/// The API's `ConnectorStatus` spelling of a 2.0.1 status.
pub fn api_status(status: &ConnectorStatusEnumType) -> &'static str {
    match status {
        ConnectorStatusEnumType::Available => "AVAILABLE",
        ConnectorStatusEnumType::Occupied => "OCCUPIED",
        ConnectorStatusEnumType::Reserved => "RESERVED",
        ConnectorStatusEnumType::Unavailable => "UNAVAILABLE",
        ConnectorStatusEnumType::Faulted => "FAULTED",
    }
}

pub async fn status_notification(
    ctx: &CallContext,
    payload: Value,
) -> Result<Handled, CallFailure> {
    let req: StatusNotificationRequest = decode_shape("StatusNotification", payload)?;
    if req.evse_id < 0 || req.connector_id < 0 {
        return Err(CallFailure::new(
            CallErrorCode::PropertyConstraintViolation,
            "StatusNotification: evseId and connectorId must not be negative",
        ));
    }
    crate::ocpp::payload::connector_id("StatusNotification", i64::from(req.evse_id))?;
    crate::ocpp::payload::connector_id("StatusNotification", i64::from(req.connector_id))?;
    let status = api_status(&req.connector_status).to_string();
    let report = StatusReport {
        connector_id: req.evse_id,
        status,
        error_code: None,
        info: Some(format!("connector {}", req.connector_id)),
        vendor_error_code: None,
        reported_at: Some(req.timestamp),
    };
    let effect = ctx.store_status(report).await?;
    Ok(Handled::reply(&StatusNotificationResponse {})?.with(effect))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_2_0_1_status_has_an_api_value() {
        for (status, api) in [
            (ConnectorStatusEnumType::Available, "AVAILABLE"),
            (ConnectorStatusEnumType::Occupied, "OCCUPIED"),
            (ConnectorStatusEnumType::Reserved, "RESERVED"),
            (ConnectorStatusEnumType::Unavailable, "UNAVAILABLE"),
            (ConnectorStatusEnumType::Faulted, "FAULTED"),
        ] {
            assert_eq!(api_status(&status), api);
        }
    }
}
