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
mod reservation;
mod security;
mod smart_charging;
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
    "ClearedChargingLimit",
    "DataTransfer",
    "FirmwareStatusNotification",
    "Get15118EVCertificate",
    "GetCertificateStatus",
    "Heartbeat",
    "LogStatusNotification",
    "MeterValues",
    "NotifyChargingLimit",
    "NotifyCustomerInformation",
    "NotifyDisplayMessages",
    "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule",
    "NotifyEvent",
    "NotifyMonitoringReport",
    "NotifyReport",
    "PublishFirmwareStatusNotification",
    "ReportChargingProfiles",
    "ReservationStatusUpdate",
    "SecurityEventNotification",
    "SignCertificate",
    "StatusNotification",
    "TransactionEvent",
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
        "SecurityEventNotification" => security::security_event(&ctx, payload).await,
        "NotifyChargingLimit" => smart_charging::notify_charging_limit(&ctx, payload).await,
        "ClearedChargingLimit" => smart_charging::cleared_charging_limit(&ctx, payload).await,
        "NotifyEVChargingNeeds" => smart_charging::notify_ev_charging_needs(&ctx, payload).await,
        "NotifyEVChargingSchedule" => {
            smart_charging::notify_ev_charging_schedule(&ctx, payload).await
        }
        "ReportChargingProfiles" => smart_charging::report_charging_profiles(&ctx, payload).await,
        "ReservationStatusUpdate" => reservation::reservation_status_update(&ctx, payload).await,
        "SignCertificate" => security::sign_certificate(&ctx, payload).await,
        "Get15118EVCertificate" => security::ev_certificate(&ctx, payload).await,
        "GetCertificateStatus" => security::certificate_status(&ctx, payload).await,
        "FirmwareStatusNotification" => {
            use m::firmware_status_notification as f;
            let (status, request_id) = crate::ocpp::v16::firmware_status_of(&payload);
            let handled = keep::<
                f::FirmwareStatusNotificationRequest,
                f::FirmwareStatusNotificationResponse,
            >(&ctx, action, payload)
            .await?;
            if let Some(status) = status {
                crate::ocpp::firmware::progress(&ctx.app, &ctx.charger_id, &status, request_id)
                    .await;
            }
            Ok(handled)
        }
        "LogStatusNotification" => {
            use m::log_status_notification as l;
            let (status, request_id) = crate::ocpp::v16::firmware_status_of(&payload);
            let handled =
                keep::<l::LogStatusNotificationRequest, l::LogStatusNotificationResponse>(
                    &ctx, action, payload,
                )
                .await?;
            if let Some(status) = status {
                if let Err(e) = crate::store::charger_logs::charger_status(
                    &ctx.app.db,
                    &ctx.charger_id,
                    request_id,
                    &status,
                )
                .await
                {
                    tracing::error!(charger_id = %ctx.charger_id, error = %e, "log upload status not recorded");
                }
            }
            Ok(handled)
        }
        // the answers to operators' GetMonitoringReport, CustomerInformation,
        // GetDisplayMessages and PublishFirmware: kept for them to read (Charger.reports)
        "NotifyMonitoringReport" => {
            use m::notify_monitoring_report as r;
            keep::<r::NotifyMonitoringReportRequest, r::NotifyMonitoringReportResponse>(
                &ctx, action, payload,
            )
            .await
        }
        "NotifyCustomerInformation" => {
            use m::notify_customer_information as r;
            keep::<r::NotifyCustomerInformationRequest, r::NotifyCustomerInformationResponse>(
                &ctx, action, payload,
            )
            .await
        }
        "NotifyDisplayMessages" => {
            use m::notify_display_messages as r;
            keep::<r::NotifyDisplayMessagesRequest, r::NotifyDisplayMessagesResponse>(
                &ctx, action, payload,
            )
            .await
        }
        "PublishFirmwareStatusNotification" => {
            reports::publish_firmware_status(&ctx, payload).await
        }
        other => Err(CallFailure::new(
            CallErrorCode::NotImplemented,
            format!("unknown action {other:?}"),
        )),
    }
}

/// The side-effect-free part of handling a 2.0.1 CALL: its payload decoded and validated against
/// the action's type, meter values normalised with checked arithmetic, exactly as the handlers
/// do before they store anything. What the fuzzer drives millions of frames through.
pub fn precheck(action: &str, payload: Value) -> Result<(), CallFailure> {
    use crate::ocpp::payload::{check, decode, decode_shape};
    let out_of_range = |e: crate::ocpp::meter::OutOfRange| {
        CallFailure::new(CallErrorCode::PropertyConstraintViolation, e.to_string())
    };
    match action {
        "BootNotification" => {
            let req: m::boot_notification::BootNotificationRequest = decode_shape(action, payload)?;
            check(action, &req.charging_station)
        }
        "Heartbeat" => decode_shape::<m::heartbeat::HeartbeatRequest>(action, payload).map(drop),
        "StatusNotification" => {
            let req: m::status_notification::StatusNotificationRequest =
                decode_shape(action, payload)?;
            crate::ocpp::payload::connector_id(action, i64::from(req.evse_id))?;
            crate::ocpp::payload::connector_id(action, i64::from(req.connector_id)).map(drop)
        }
        "Authorize" => {
            let req: m::authorize::AuthorizeRequest = decode(action, payload)?;
            authorize::check_token(action, &req.id_token)
        }
        "TransactionEvent" => {
            use rust_ocpp::v2_0_1::enumerations::transaction_event_enum_type::TransactionEventEnumType;
            let req: m::transaction_event::TransactionEventRequest = decode_shape(action, payload)?;
            transactions::validate(&req)?;
            let values = req.meter_value.as_deref().unwrap_or_default();
            if req.event_type == TransactionEventEnumType::Ended {
                let _ = meter::samples_lenient(values);
            } else {
                meter::samples(values).map_err(out_of_range)?;
            }
            Ok(())
        }
        "MeterValues" => {
            let req: m::meter_values::MeterValuesRequest = decode_shape(action, payload)?;
            meter::samples(&req.meter_value).map_err(out_of_range)?;
            Ok(())
        }
        "NotifyReport" => {
            let req: m::notify_report::NotifyReportRequest = decode_shape(action, payload)?;
            for data in req.report_data.iter().flatten() {
                check(action, &data.component)?;
                check(action, &data.variable)?;
            }
            Ok(())
        }
        "DataTransfer" => decode::<m::datatransfer::DataTransferRequest>(action, payload).map(drop),
        "NotifyEvent" => {
            decode_shape::<m::notify_event::NotifyEventRequest>(action, payload).map(drop)
        }
        "SecurityEventNotification" => decode_shape::<
            m::security_event_notification::SecurityEventNotificationRequest,
        >(action, payload)
        .map(drop),
        "SignCertificate" => {
            decode_shape::<m::sign_certificate::SignCertificateRequest>(action, payload).map(drop)
        }
        "Get15118EVCertificate" => decode_shape::<
            m::get_15118ev_certificate::Get15118EVCertificateRequest,
        >(action, payload)
        .map(drop),
        "GetCertificateStatus" => {
            decode_shape::<m::get_certificate_status::GetCertificateStatusRequest>(action, payload)
                .map(drop)
        }
        "FirmwareStatusNotification" => decode_shape::<
            m::firmware_status_notification::FirmwareStatusNotificationRequest,
        >(action, payload)
        .map(drop),
        "LogStatusNotification" => decode_shape::<
            m::log_status_notification::LogStatusNotificationRequest,
        >(action, payload)
        .map(drop),
        "NotifyChargingLimit" => {
            decode_shape::<m::notify_charging_limit::NotifyChargingLimitRequest>(action, payload)
                .map(drop)
        }
        "ClearedChargingLimit" => {
            decode_shape::<m::cleared_charging_limit::ClearedChargingLimitRequest>(action, payload)
                .map(drop)
        }
        "NotifyEVChargingNeeds" => decode_shape::<
            m::notify_ev_charging_needs::NotifyEVChargingNeedsRequest,
        >(action, payload)
        .map(drop),
        "NotifyEVChargingSchedule" => decode_shape::<
            m::notify_ev_charging_schedule::NotifyEVChargingScheduleRequest,
        >(action, payload)
        .map(drop),
        "ReportChargingProfiles" => decode_shape::<
            m::report_charging_profiles::ReportChargingProfilesRequest,
        >(action, payload)
        .map(drop),
        "ReservationStatusUpdate" => decode_shape::<
            m::reservation_status_update::ReservationStatusUpdateRequest,
        >(action, payload)
        .map(drop),
        "NotifyMonitoringReport" => decode_shape::<
            m::notify_monitoring_report::NotifyMonitoringReportRequest,
        >(action, payload)
        .map(drop),
        "NotifyCustomerInformation" => decode_shape::<
            m::notify_customer_information::NotifyCustomerInformationRequest,
        >(action, payload)
        .map(drop),
        "NotifyDisplayMessages" => decode_shape::<
            m::notify_display_messages::NotifyDisplayMessagesRequest,
        >(action, payload)
        .map(drop),
        "PublishFirmwareStatusNotification" => decode_shape::<
            m::publish_firmware_status_notification::PublishFirmwareStatusNotificationRequest,
        >(action, payload)
        .map(drop),
        other => Err(CallFailure::new(
            CallErrorCode::NotImplemented,
            format!("unknown action {other:?}"),
        )),
    }
}
