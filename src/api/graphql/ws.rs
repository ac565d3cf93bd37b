//! GraphQL over WebSocket on actix-ws: both `graphql-transport-ws` and the legacy `graphql-ws`
//! subprotocols, authenticated by the `authorization` field of the `connection_init` payload.

use std::str::FromStr;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use async_graphql::http::{WebSocket, WebSocketProtocols, WsMessage};
use async_graphql::Data;
use futures_util::StreamExt;

use super::auth::Caller;
use super::AppSchema;
use crate::context::AppContext;

/// Largest client message accepted on a subscription socket.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const KEEPALIVE: Duration = Duration::from_secs(30);

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
    let (mut response, session, stream) = actix_ws::handle(&req, body)?;
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol.sec_websocket_protocol()),
    );
    let pong_session = session.clone();
    let input = stream
        .max_frame_size(MAX_MESSAGE_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_MESSAGE_BYTES)
        .take_while(|m| {
            std::future::ready(matches!(m, Ok(m) if !matches!(m, AggregatedMessage::Close(_))))
        })
        .filter_map(move |m| {
            let mut pong_session = pong_session.clone();
            async move {
                match m {
                    Ok(AggregatedMessage::Text(text)) => Some(text.as_bytes().to_vec()),
                    Ok(AggregatedMessage::Binary(bytes)) => Some(bytes.to_vec()),
                    Ok(AggregatedMessage::Ping(bytes)) => {
                        let _ = pong_session.pong(&bytes).await;
                        None
                    }
                    _ => None,
                }
            }
        });
    let keys = ctx.jwt.clone();
    let socket = WebSocket::new(schema.get_ref().clone(), input, protocol)
        .keepalive_timeout(KEEPALIVE)
        .on_connection_init(move |payload| async move {
            let authorization = payload
                .get("authorization")
                .or_else(|| payload.get("Authorization"))
                .and_then(|v| v.as_str())
                .map(String::from);
            let caller = Caller::from_authorization(authorization.as_deref(), &keys);
            if let Caller::Rejected(reason) = caller {
                return Err(async_graphql::Error::new(reason.to_string()));
            }
            let mut data = Data::default();
            data.insert(caller);
            Ok(data)
        });
    actix_rt::spawn(async move {
        let mut session = session;
        let mut socket = std::pin::pin!(socket);
        while let Some(message) = socket.next().await {
            match message {
                WsMessage::Text(text) => {
                    if session.text(text).await.is_err() {
                        return;
                    }
                }
                WsMessage::Close(code, reason) => {
                    let _ = session
                        .close(Some(CloseReason {
                            code: CloseCode::Other(code),
                            description: Some(reason),
                        }))
                        .await;
                    return;
                }
            }
        }
        let _ = session.close(None).await;
    });
    Ok(response)
}
