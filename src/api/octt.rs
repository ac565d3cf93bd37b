//! `POST /api/octt/{version}/{chargerId}/{action}`: the trigger external OCPP test tools (the
//! OCA's OCTT and its open re-implementations) use to make a CSMS send one of its calls, so
//! that an independent harness can drive the CSMS-initiated test cases. The body is the call's
//! payload (validated against the action's schema type like `sendChargerCommand`), the answer
//! is the charger's. Off unless `ocpp.octt_trigger_token` is set; every call needs
//! `Authorization: Bearer <token>` and is audited. Never enable it on a production system.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::context::AppContext;
use crate::domain::ChargePointId;
use crate::ocpp::command::{ChargerCommand, CommandError};
use crate::ocpp::version::OcppVersion;
use crate::store::chargers;

/// The largest payload a trigger may carry.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": code, "message": message }))
}

/// Constant-time comparison of the presented token with the configured one.
fn authorized(req: &HttpRequest, expected: &str) -> bool {
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The protocol a version segment names.
fn protocol(version: &str) -> Option<OcppVersion> {
    match version {
        "1.6" | "ocpp1.6" | "16" => Some(OcppVersion::V16),
        "2.0.1" | "ocpp2.0.1" | "201" => Some(OcppVersion::V201),
        _ => None,
    }
}

pub async fn trigger(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
    ctx: web::Data<AppContext>,
) -> HttpResponse {
    // a token shorter than 16 characters (an empty variable, say) leaves the trigger off
    let Some(token) = ctx
        .settings
        .ocpp
        .octt_trigger_token
        .as_ref()
        .filter(|t| t.expose_secret().len() >= 16)
    else {
        return error(StatusCode::NOT_FOUND, "disabled", "the OCTT trigger is off");
    };
    if !authorized(&req, token.expose_secret()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is needed",
        );
    }
    let (version, charger_id, action) = path.into_inner();
    let Some(protocol) = protocol(&version) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_version",
            "version is 1.6 or 2.0.1",
        );
    };
    let Ok(charger_id) = ChargePointId::parse(&charger_id) else {
        return error(StatusCode::BAD_REQUEST, "bad_id", "not a charge point id");
    };
    let payload: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(value @ Value::Object(_)) => value,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_payload",
                    "the body is a JSON object",
                )
            }
        }
    };
    let charger = match chargers::find(&ctx.db, charger_id.as_str()).await {
        Ok(Some(charger)) => charger,
        Ok(None) => return error(StatusCode::NOT_FOUND, "unknown_charger", "unknown charger"),
        Err(e) => {
            tracing::error!(error = %e, "OCTT trigger: charger look-up failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "error", "try again");
        }
    };
    if charger.online && charger.protocol.as_deref() != Some(protocol.as_db()) {
        return error(
            StatusCode::CONFLICT,
            "wrong_version",
            "the charger is connected with the other protocol version",
        );
    }
    let details = json!({ "action": action, "version": protocol.subprotocol() });
    crate::api::graphql::chargers::record_audit(
        &ctx,
        None,
        "octtTrigger",
        Some(charger_id.as_str()),
        details,
    )
    .await;
    let command = ChargerCommand::Raw {
        action: action.clone(),
        payload,
    };
    match crate::actors::message_limits::execute(&ctx, charger_id.as_str(), command).await {
        Ok(response) => HttpResponse::Ok().json(json!({ "action": action, "response": response })),
        Err(e) => {
            let status = match &e {
                CommandError::Offline => StatusCode::SERVICE_UNAVAILABLE,
                CommandError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                CommandError::Invalid(_) => StatusCode::BAD_REQUEST,
                CommandError::Busy => StatusCode::TOO_MANY_REQUESTS,
                CommandError::CallError { .. } | CommandError::BadReply(_) => {
                    StatusCode::BAD_GATEWAY
                }
            };
            HttpResponse::build(status).json(json!({ "action": action, "error": e }))
        }
    }
}
