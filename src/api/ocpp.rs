//! `/ocpp/{chargePointId}`: the OCPP-J WebSocket handshake. Everything that can be refused is
//! refused here, before the upgrade: a malformed id (400), no supported subprotocol (400), an
//! unknown charger (404), a charger without a credential outside `--dev` (401) or wrong Basic
//! credentials (401). Accepted sockets become a `ChargerActor`; a quarantined charger's actor
//! answers its BootNotification Pending and refuses everything else but Heartbeat.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::actors::charger::{ChargerParams, FRAME_HARD_LIMIT_FACTOR};
use crate::actors::ChargerActor;
use crate::auth::charger_auth::BasicAuth;
use crate::context::AppContext;
use crate::domain::ChargePointId;
use crate::ocpp::version::{negotiate, OcppVersion};
use crate::security::tls::TlsPeer;
use crate::store::chargers;

/// Protocol versions this build speaks. The order does not matter: negotiation follows the
/// client's order of preference.
pub const SUPPORTED: &[OcppVersion] = &[OcppVersion::V16, OcppVersion::V201];

fn refuse(
    ctx: &AppContext,
    status: actix_web::http::StatusCode,
    result: &str,
    message: &str,
) -> HttpResponse {
    ctx.metrics
        .ocpp_handshakes_total
        .with_label_values(&[result])
        .inc();
    HttpResponse::build(status).json(json!({ "error": message }))
}

pub async fn handshake(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    ctx: web::Data<AppContext>,
) -> Result<HttpResponse, actix_web::Error> {
    use actix_web::http::StatusCode;
    // admission control: a bounded number of handshakes in progress; a storm queues for a
    // while, then is told when to come back
    let Ok(Ok(permit)) = tokio::time::timeout(
        std::time::Duration::from_millis(ctx.settings.cluster.handshake_wait_ms),
        ctx.handshakes.clone().acquire_owned(),
    )
    .await
    else {
        let mut response = refuse(
            &ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many connections at once; retry shortly",
        );
        let retry = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=10u32);
        if let Ok(value) = HeaderValue::from_str(&retry.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(response);
    };
    // decoded exactly once, from the raw request path (`CP%252D1` is `CP%2D1`, an invalid id,
    // never `CP-1`)
    let raw_path = req.uri().path();
    let encoded = raw_path.strip_prefix("/ocpp/").unwrap_or(path.as_str());
    let raw_id = percent_encoding::percent_decode_str(encoded)
        .decode_utf8_lossy()
        .to_string();
    let id = match ChargePointId::parse(&raw_id) {
        Ok(id) => id,
        Err(e) => return Ok(refuse(&ctx, StatusCode::BAD_REQUEST, "bad_id", &e.0)),
    };
    let offered = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    let Some(version) = negotiate(offered, SUPPORTED) else {
        let supported: Vec<&str> = SUPPORTED.iter().map(|v| v.subprotocol()).collect();
        return Ok(refuse(
            &ctx,
            StatusCode::BAD_REQUEST,
            "no_subprotocol",
            &format!(
                "no supported OCPP subprotocol offered; this server speaks {}",
                supported.join(", ")
            ),
        ));
    };
    let charger = match ctx.charger_store.find(id.as_str()).await {
        Ok(Some(charger)) => charger,
        Ok(None) if ctx.settings.ocpp.auto_provision => {
            let accept = ctx.settings.ocpp.auto_accept_provisioned;
            match chargers::auto_provision(&ctx.db, id.as_str(), accept).await {
                Ok(charger) => {
                    tracing::info!(charger_id = %id, quarantined = charger.quarantined, "unknown charger auto-provisioned");
                    charger
                }
                Err(e) => {
                    tracing::error!(charger_id = %id, error = %e, "auto-provisioning failed");
                    return Ok(refuse(
                        &ctx,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "error",
                        "try again later",
                    ));
                }
            }
        }
        Ok(None) => {
            return Ok(refuse(
                &ctx,
                StatusCode::NOT_FOUND,
                "unknown_charger",
                "unknown charger",
            ))
        }
        Err(e) => {
            tracing::error!(charger_id = %id, error = %e, "charger look-up failed");
            return Ok(refuse(
                &ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "error",
                "try again later",
            ));
        }
    };
    // the security profile this connection achieves: 3 with a verified client certificate in
    // the charger's own name (TLS listener), 2 over TLS (ours, or a trusted proxy's), else 1
    let peer = req.conn_data::<TlsPeer>().cloned();
    let achieved: i16 = match &peer {
        Some(TlsPeer {
            certificate: Some(cert),
        }) => {
            // checked here too, whatever the TLS layer did: a certificate revoked or expired
            // since the TLS session began never counts
            let revoked = ctx
                .security
                .tls
                .as_ref()
                .is_none_or(|tls| tls.is_revoked(&cert.serial));
            if revoked || cert.not_after <= chrono::Utc::now() {
                return Ok(refuse(
                    &ctx,
                    StatusCode::FORBIDDEN,
                    "certificate_invalid",
                    "the client certificate is revoked or expired",
                ));
            }
            if cert.common_name.as_deref() != Some(id.as_str()) {
                tracing::warn!(charger_id = %id, certificate_cn = ?cert.common_name, "a certificate of another charger was presented");
                crate::security::record_server_event(
                    &ctx.db,
                    Some(id.as_str()),
                    "CertificateOfAnotherCharger",
                    format!(
                        "client certificate CN {:?} serial {}",
                        cert.common_name.as_deref().unwrap_or(""),
                        cert.serial
                    ),
                    true,
                )
                .await;
                return Ok(refuse(
                    &ctx,
                    StatusCode::FORBIDDEN,
                    "certificate_mismatch",
                    "the client certificate does not belong to this charger",
                ));
            }
            3
        }
        Some(_) => 2,
        None if forwarded_tls(&req, &ctx.settings.http) => 2,
        None => 1,
    };
    if achieved < charger.security_profile {
        tracing::warn!(charger_id = %id, achieved, required = charger.security_profile, "charger connected below its security profile");
        crate::security::record_server_event(
            &ctx.db,
            Some(id.as_str()),
            "SecurityProfileViolation",
            format!(
                "connected with security profile {achieved}, needs {}",
                charger.security_profile
            ),
            false,
        )
        .await;
        return Ok(refuse(
            &ctx,
            StatusCode::FORBIDDEN,
            "security_profile",
            &format!(
                "this charger must connect with security profile {} ({})",
                charger.security_profile,
                match charger.security_profile {
                    3 => "TLS with its client certificate",
                    2 => "TLS and its password",
                    _ => "its password",
                }
            ),
        ));
    }
    let open_door = ctx.settings.ocpp.auto_provision && ctx.settings.ocpp.auto_accept_provisioned;
    if achieved < 3
        && charger.password_hash.is_none()
        && !charger.quarantined
        && !ctx.settings.dev
        && !open_door
    {
        // outside --dev (and the load-test setting that accepts anyone) every charger needs a
        // credential; one without can only be quarantined (Pending until an operator adopts it
        // and sets its password) or prove itself with a certificate (profile 3)
        tracing::warn!(charger_id = %id, "charger without a credential refused");
        let mut response = refuse(
            &ctx,
            StatusCode::UNAUTHORIZED,
            "no_credential",
            "this charger has no credential; an operator must set its password",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"chargegrid\", charset=\"UTF-8\""),
        );
        return Ok(response);
    }
    // the password check runs outside the admission slot: handshakes waiting for argon2 (a
    // flood of wrong passwords) never keep honest chargers from being admitted
    drop(permit);
    // profile 3 proves the charger with its certificate; below it, its Basic password (the
    // current one, or one the server has just set on the charger)
    let password = charger.password_hash.as_deref().filter(|_| achieved < 3);
    if let Some(phc) = password {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let client = crate::api::graphql::client_addr(&req, &ctx.settings.http);
        let mut candidates = vec![phc];
        candidates.extend(charger.pending_password_hash.as_deref());
        let (verdict, matched) = ctx
            .charger_auth
            .check_against(id.as_str(), authorization, &candidates, &client)
            .await;
        if let BasicAuth::Limited { retry_after_secs } = verdict {
            tracing::warn!(charger_id = %id, retry_after_secs, "charger login refused: too many failed attempts");
            let mut response = refuse(
                &ctx,
                StatusCode::TOO_MANY_REQUESTS,
                "auth_limited",
                "too many failed logins for this charger or from this address; retry later",
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Ok(response);
        }
        if verdict == BasicAuth::Busy {
            let mut response = refuse(
                &ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many logins at once; retry shortly",
            );
            let retry = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=10u32);
            if let Ok(value) = HeaderValue::from_str(&retry.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Ok(response);
        }
        if verdict != BasicAuth::Ok {
            tracing::warn!(charger_id = %id, ?verdict, "charger authentication failed");
            crate::security::record_server_event(
                &ctx.db,
                Some(id.as_str()),
                "InvalidCredentials",
                format!(
                    "{} Basic credentials from {client}",
                    if verdict == BasicAuth::Missing {
                        "no"
                    } else {
                        "wrong"
                    }
                ),
                false,
            )
            .await;
            let mut response = refuse(
                &ctx,
                StatusCode::UNAUTHORIZED,
                "bad_password",
                "invalid charger credentials",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"chargegrid\", charset=\"UTF-8\""),
            );
            return Ok(response);
        }
        if matched == 1 {
            // the charger uses the password the server set: from now on it is the only one
            if let Some(pending) = &charger.pending_password_hash {
                match crate::store::security::promote_password(&ctx.db, id.as_str(), pending).await
                {
                    Ok(_) => {
                        tracing::info!(charger_id = %id, "the charger uses its new password; the old one no longer works")
                    }
                    Err(e) => {
                        tracing::warn!(charger_id = %id, error = %e, "could not retire the old password")
                    }
                }
            }
        }
    }
    if charger
        .pending_security_profile
        .is_some_and(|pending| pending <= achieved)
    {
        match crate::store::security::promote_profile(&ctx.db, id.as_str(), achieved).await {
            Ok(_) => {
                tracing::info!(charger_id = %id, profile = achieved, "the charger moved to its new security profile")
            }
            Err(e) => {
                tracing::warn!(charger_id = %id, error = %e, "could not record the new security profile")
            }
        }
    }

    let (mut response, session, stream) = actix_ws::handle(&req, body)?;
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(version.subprotocol()),
    );
    let max_frame_bytes = ctx.settings.ocpp.max_frame_bytes;
    let hard_limit = max_frame_bytes * FRAME_HARD_LIMIT_FACTOR;
    let stream = stream
        .max_frame_size(hard_limit)
        .aggregate_continuations()
        .max_continuation_size(hard_limit);
    ctx.metrics
        .ocpp_handshakes_total
        .with_label_values(&["accepted"])
        .inc();
    ChargerActor::launch(
        ChargerParams {
            charger_id: id.to_string(),
            version,
            app: ctx.get_ref().clone(),
            registry: ctx.registry.clone(),
            previously_accepted: charger.last_boot_at.is_some() && !charger.quarantined,
            quarantined: charger.quarantined,
            max_frame_bytes,
        },
        session,
        stream,
    );
    Ok(response)
}

/// A plain connection from a trusted proxy (`http.trusted_proxies`) that terminated TLS and
/// says so with `X-Forwarded-Proto: https`: security profile 2 without our TLS listener.
fn forwarded_tls(req: &HttpRequest, http: &crate::configuration::HttpSettings) -> bool {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return false;
    };
    let trusted = http
        .trusted_proxies
        .iter()
        .filter_map(|p| crate::configuration::parse_net(p))
        .any(|net| net.contains(&peer));
    // the last value is the one the nearest (trusted) proxy wrote; earlier ones may come
    // from the client itself
    trusted
        && req
            .headers()
            .get_all("X-Forwarded-Proto")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}
