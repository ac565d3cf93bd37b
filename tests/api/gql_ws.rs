//! A GraphQL-over-WebSocket test client for both subprotocols.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::charger_client::Ws;

pub struct GqlSocket {
    ws: Ws,
    legacy: bool,
}

impl GqlSocket {
    /// Connects with `graphql-transport-ws` (or the legacy `graphql-ws`) and sends
    /// `connection_init` with the token; returns the socket or the close code.
    pub async fn connect(port: u16, token: Option<&str>, legacy: bool) -> Result<Self, u16> {
        let mut request = format!("ws://127.0.0.1:{port}/graphql")
            .into_client_request()
            .expect("request");
        let protocol = if legacy {
            "graphql-ws"
        } else {
            "graphql-transport-ws"
        };
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("upgrade");
        let mut socket = Self { ws, legacy };
        let payload = match token {
            Some(t) => json!({ "authorization": format!("Bearer {t}") }),
            None => json!({}),
        };
        socket
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let msg: Value = serde_json::from_str(&text).expect("json");
                    match msg["type"].as_str() {
                        Some("connection_ack") => return Ok(socket),
                        Some("ka") => continue,
                        Some("connection_error") => return Err(4403),
                        _ => panic!("unexpected {msg}"),
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Err(frame.map(|f| u16::from(f.code)).unwrap_or(1005))
                }
                Ok(Some(Ok(_))) => continue,
                other => panic!("no ack: {other:?}"),
            }
        }
    }

    async fn send(&mut self, msg: Value) {
        self.ws
            .send(Message::Text(msg.to_string()))
            .await
            .expect("send");
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.legacy { "start" } else { "subscribe" };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next data payload (`next` / `data`), or an `error` message as `Err`.
    pub async fn next(&mut self) -> Result<Value, Value> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a subscription message in time")
                .expect("socket open")
                .expect("frame");
            if let Message::Text(text) = frame {
                let msg: Value = serde_json::from_str(&text).expect("json");
                match msg["type"].as_str() {
                    Some("next") | Some("data") => {
                        let payload = msg["payload"].clone();
                        if payload["errors"].is_array() {
                            return Err(payload);
                        }
                        return Ok(payload["data"].clone());
                    }
                    Some("error") => return Err(msg["payload"].clone()),
                    _ => continue,
                }
            }
        }
    }

    /// Waits for the server to close the socket and returns the close code (messages before
    /// it are skipped); `None` if it is still open after `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Some(frame.map(|f| u16::from(f.code)).unwrap_or(1005))
                }
                Ok(Some(Ok(_))) => continue,
                Ok(_) => return Some(1006),
            }
        }
    }
}
