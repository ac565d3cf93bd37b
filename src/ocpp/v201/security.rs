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
    crate::ocpp::payload::check_len("SecurityEventNotification", "type", &req.kind, 50)?;
    if let Some(tech_info) = &req.tech_info {
        crate::ocpp::payload::check_len("SecurityEventNotification", "techInfo", tech_info, 255)?;
    }
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

/// Get15118EVCertificate (M01/M02): the car's EXI request goes to the contract-certificate
/// provider and its EXI answer back; without a provider, or when it fails, `Failed` with the
/// reason.
pub async fn ev_certificate(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    use rust_ocpp::v2_0_1::messages::get_15118ev_certificate::Get15118EVCertificateRequest;
    let req: Get15118EVCertificateRequest = decode_shape("Get15118EVCertificate", payload)?;
    let action = enum_name(&req.action);
    let answer = ctx
        .app
        .security
        .pnc
        .ev_certificate(
            &ctx.charger_id,
            &req.iso_15118_schema_version,
            &action,
            &req.exi_request,
        )
        .await;
    Ok(Handled {
        response: match answer {
            Ok((status, exi)) => {
                tracing::info!(charger_id = %ctx.charger_id, %action, %status, "EV contract certificate request forwarded");
                json!({ "status": status, "exiResponse": exi })
            }
            Err(reason) => {
                tracing::warn!(charger_id = %ctx.charger_id, %action, %reason, "EV contract certificate request failed");
                json!({ "status": "Failed", "exiResponse": "",
                        "statusInfo": { "reasonCode": "InternalError", "additionalInfo": reason.chars().take(512).collect::<String>() } })
            }
        },
        effects: Vec::new(),
    })
}

/// GetCertificateStatus (M06): the OCSP request is built from the station's hash data and
/// sent to its responder (if allowed); the DER answer is relayed base64-encoded.
pub async fn certificate_status(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    use base64::Engine;
    use rust_ocpp::v2_0_1::messages::get_certificate_status::GetCertificateStatusRequest;
    let req: GetCertificateStatusRequest = decode_shape("GetCertificateStatus", payload)?;
    let data = &req.ocsp_request_data;
    let query = crate::security::pnc::OcspQuery {
        hash_algorithm: enum_name(&data.hash_algorithm),
        issuer_name_hash: data.issuer_name_hash.clone(),
        issuer_key_hash: data.issuer_key_hash.clone(),
        serial_number: data.serial_number.clone(),
        responder_url: data.responder_url.clone(),
    };
    let response = match ctx.app.security.pnc.certificate_status(&query).await {
        Ok(der) => json!({
            "status": "Accepted",
            "ocspResult": base64::engine::general_purpose::STANDARD.encode(der),
        }),
        Err(reason) => {
            tracing::warn!(charger_id = %ctx.charger_id, %reason, "certificate status unavailable");
            json!({ "status": "Failed",
                    "statusInfo": { "reasonCode": "InternalError", "additionalInfo": reason.chars().take(512).collect::<String>() } })
        }
    };
    Ok(Handled {
        response,
        effects: Vec::new(),
    })
}
