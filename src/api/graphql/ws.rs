//! GraphQL over WebSocket on actix-ws: both `graphql-transport-ws` and the legacy `graphql-ws`
//! subprotocols, authenticated by the `authorization` field of the `connection_init` payload. The
//! sign-in is checked again every few seconds: a socket whose token expired is closed with 4401,
//! one whose sign-in was revoked, blocked or changed role with 4403 (graphql-transport-ws).

use std::str::FromStr;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use async_graphql::http::{WebSocket, WebSocketProtocols, WsMessage};
use async_graphql::Data;
use futures_util::StreamExt;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::auth::Caller;
use super::limits::SocketGuard;
use super::AppSchema;
use crate::auth::access::Access;
use crate::auth::Claims;
use crate::context::AppContext;

/// Largest client message accepted on a subscription socket.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const KEEPALIVE: Duration = Duration::from_secs(30);
/// How often an open socket's sign-in is checked again (expiry, logout, blocking, role).
const RECHECK: Duration = Duration::from_secs(3);

/// Upgrades `GET /graphql` to a subscription socket.
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    schema: web::Data<AppSchema>,
    ctx: web::Data<AppContext>,
) -> Result<HttpResponse, actix_web::Error> {
    let protocol = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
        });
    let Some(protocol) = protocol else {
        return Ok(HttpResponse::BadRequest().json(serde_json::json!({
            "error": "offer the graphql-transport-ws or graphql-ws subprotocol"
        })));
    };
    let limits = &ctx.settings.graphql;
    let client = super::client_addr(&req, &ctx.settings.http);
    let Some(address_slot) = ctx
        .sockets
        .acquire(format!("addr:{client}"), limits.max_sockets_per_address)
    else {
        return Ok(HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, "30"))
            .json(serde_json::json!({
                "error": "too many subscription sockets from this address"
            })));
    };
    let (mut response, session, stream) = actix_ws::handle(&req, body)?;
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol.sec_websocket_protocol()),
    );
    let pong_session = session.clone();
    // the operations running on this socket, capped
    let active: Arc<Mutex<HashSet<String>>> = Arc::default();
    let max_subscriptions = limits.max_subscriptions_per_socket;
    let (refuse_session, input_active) = (session.clone(), active.clone());
    let input = stream
        .max_frame_size(MAX_MESSAGE_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_MESSAGE_BYTES)
        .take_while(|m| {
            std::future::ready(matches!(m, Ok(m) if !matches!(m, AggregatedMessage::Close(_))))
        })
        .filter_map(move |m| {
            let mut pong_session = pong_session.clone();
            let mut refuse_session = refuse_session.clone();
            let active = input_active.clone();
            async move {
                let bytes = match m {
                    Ok(AggregatedMessage::Text(text)) => text.as_bytes().to_vec(),
                    Ok(AggregatedMessage::Binary(bytes)) => bytes.to_vec(),
                    Ok(AggregatedMessage::Ping(bytes)) => {
                        let _ = pong_session.pong(&bytes).await;
                        return None;
                    }
                    _ => return None,
                };
                match admit(&bytes, &active, max_subscriptions, protocol) {
                    Ok(()) => Some(bytes),
                    Err(refusal) => {
                        let _ = refuse_session.text(refusal).await;
                        None
                    }
                }
            }
        });
    // who signed in at connection_init, re-checked while the socket lives
    let signed_in: Arc<Mutex<Option<Claims>>> = Arc::default();
    // the user's socket count is held as long as the socket
    let user_slot: Arc<Mutex<Option<SocketGuard>>> = Arc::default();
    let (app, init_claims, init_slot) =
        (ctx.get_ref().clone(), signed_in.clone(), user_slot.clone());
    let socket = WebSocket::new(schema.get_ref().clone(), input, protocol)
        .keepalive_timeout(KEEPALIVE)
        .on_connection_init(move |payload| async move {
            let authorization = payload
                .get("authorization")
                .or_else(|| payload.get("Authorization"))
                .and_then(|v| v.as_str())
                .map(String::from);
            let caller = Caller::resolve(authorization.as_deref(), &app).await;
            match &caller {
                Caller::Rejected(reason) => {
                    return Err(async_graphql::Error::new(reason.to_string()))
                }
                Caller::User(claims) => {
                    let Some(slot) = app.sockets.acquire(
                        format!("user:{}", claims.sub),
                        app.settings.graphql.max_sockets_per_user,
                    ) else {
                        return Err(async_graphql::Error::new(
                            "too many subscription sockets for this user",
                        ));
                    };
                    *init_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(slot);
                    *init_claims.lock().unwrap_or_else(|e| e.into_inner()) = Some(claims.clone())
                }
                // every subscription is a user's: no socket without a sign-in
                Caller::Anonymous => {
                    return Err(async_graphql::Error::new(
                        "authentication required: send {\"authorization\": \"Bearer <accessToken>\"} in connection_init",
                    ))
                }
            }
            let mut data = Data::default();
            data.insert(caller);
            Ok(data)
        });
    let app = ctx.get_ref().clone();
    actix_rt::spawn(async move {
        // uncounted when the socket ends
        let _slots = (address_slot, user_slot);
        let mut session = session;
        let mut socket = std::pin::pin!(socket);
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = socket.next() => match message {
                    Some(WsMessage::Text(text)) => {
                        finished(&text, &active);
                        if session.text(text).await.is_err() {
                            return;
                        }
                    }
                    Some(WsMessage::Close(code, reason)) => {
                        close(session, code, reason).await;
                        return;
                    }
                    None => break,
                },
                _ = recheck.tick() => {
                    let claims = signed_in.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    if let Some(claims) = claims {
                        if let Some((code, reason)) = still_allowed(&app, &claims).await {
                            // the operations of this socket end with it (subscriptions are
                            // dropped with the stream)
                            close(session, code, reason.into()).await;
                            return;
                        }
                    }
                }
            }
        }
        let _ = session.close(None).await;
    });
    Ok(response)
}

/// Lets a client message through, or answers the refusal to send instead: a new operation
/// beyond the socket's cap gets an error for its id (the socket stays).
fn admit(
    bytes: &[u8],
    active: &Mutex<HashSet<String>>,
    max: usize,
    protocol: WebSocketProtocols,
) -> Result<(), String> {
    let Ok(message) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(()); // the protocol layer answers malformed messages
    };
    let id = message["id"].as_str().map(String::from);
    let mut active = active.lock().unwrap_or_else(|e| e.into_inner());
    match (message["type"].as_str(), id) {
        (Some("subscribe" | "start"), Some(id)) => {
            if active.len() >= max && !active.contains(&id) {
                let error = serde_json::json!({
                    "message": format!("at most {max} operations at once on one socket"),
                    "extensions": { "code": "RATE_LIMITED" },
                });
                let payload = match protocol {
                    WebSocketProtocols::GraphQLWS => serde_json::json!([error]),
                    _ => error,
                };
                return Err(
                    serde_json::json!({ "type": "error", "id": id, "payload": payload })
                        .to_string(),
                );
            }
            active.insert(id);
        }
        (Some("complete" | "stop"), Some(id)) => {
            active.remove(&id);
        }
        _ => {}
    }
    Ok(())
}

/// Forgets an operation the server finished (its `complete`, or an `error` that ends it).
fn finished(text: &str, active: &Mutex<HashSet<String>>) {
    // the message type leads the serialized message; payloads (which may say "error" anywhere)
    // are not parsed again
    let head = text.get(..24).unwrap_or(text);
    if !(head.contains("complete") || head.contains("error")) {
        return;
    }
    if let Ok(message) = serde_json::from_str::<serde_json::Value>(text) {
        if matches!(message["type"].as_str(), Some("complete" | "error")) {
            if let Some(id) = message["id"].as_str() {
                active.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            }
        }
    }
}

/// `None` while the socket's sign-in may go on; else the close code (4401 expired, 4403 revoked,
/// blocked or role changed) and reason.
async fn still_allowed(app: &AppContext, claims: &Claims) -> Option<(u16, &'static str)> {
    if claims.exp <= chrono::Utc::now().timestamp() {
        return Some((4401, "the access token expired; reconnect with a fresh one"));
    }
    match app.access.check(&app.api_db, claims).await {
        Ok(Access::Revoked) => Some((4403, "the sign-in was revoked")),
        Ok(Access::Allowed(role)) if role != claims.role => {
            Some((4403, "the account's role changed; reconnect"))
        }
        _ => None,
    }
}

async fn close(session: actix_ws::Session, code: u16, reason: String) {
    let _ = session
        .close(Some(CloseReason {
            code: CloseCode::Other(code),
            description: Some(reason),
        }))
        .await;
}
