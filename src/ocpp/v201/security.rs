//! Security messages of a 2.0.1 station: SignCertificate (A02/A03: the CSR is signed by the
//! CSMS CA and sent back with CertificateSigned) and SecurityEventNotification (stored, the
//! critical ones published).

use rust_ocpp::v2_0_1::datatypes::status_info_type::StatusInfoType;
use rust_ocpp::v2_0_1::enumerations::generic_status_enum_type::GenericStatusEnumType;
use rust_ocpp::v2_0_1::messages::security_event_notification::{
    SecurityEventNotificationRequest, SecurityEventNotificationResponse,
};
use rust_ocpp::v2_0_1::messages::sign_certificate::{
    SignCertificateRequest, SignCertificateResponse,
};
use serde_json::{json, Value};

use crate::ocpp::command::ChargerCommand;
use crate::ocpp::handler::{enum_name, CallContext, Effect, Handled};
use crate::ocpp::payload::decode_shape;
use crate::ocpp::CallFailure;

pub async fn sign_certificate(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: SignCertificateRequest = decode_shape("SignCertificate", payload)?;
    let certificate_type = req
        .certificate_type
        .as_ref()
        .map(enum_name)
        .unwrap_or_else(|| "ChargingStationCertificate".into());
    match crate::security::certificates::sign_request(
        &ctx.app,
        &ctx.charger_id,
        &req.csr,
        &certificate_type,
    )
    .await
    {
        Ok(chain) => Ok(Handled::reply(&SignCertificateResponse {
            status: GenericStatusEnumType::Accepted,
            status_info: None,
        })?
        .with(Effect::Send {
            command: ChargerCommand::Raw {
                action: "CertificateSigned".into(),
                payload: json!({ "certificateChain": chain, "certificateType": certificate_type }),
            },
            what: "CertificateSigned",
        })),
        Err(reason) => Handled::reply(&SignCertificateResponse {
            status: GenericStatusEnumType::Rejected,
            status_info: Some(StatusInfoType {
                reason_code: "InvalidCSR".into(),
                additional_info: Some(reason.chars().take(512).collect()),
            }),
        }),
    }
}

pub async fn security_event(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: SecurityEventNotificationRequest = decode_shape("SecurityEventNotification", payload)?;
    crate::security::record_charger_event(
        &ctx.app,
        &ctx.charger_id,
        &req.kind,
        req.timestamp,
        req.tech_info.clone(),
    )
    .await
    .map_err(CallFailure::internal)?;
    Handled::reply(&SecurityEventNotificationResponse {})
}
