//! A test charger: a real OCPP-J WebSocket client (tokio-tungstenite) over loopback.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for a frame before failing.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestCharger {
    pub ws: Ws,
    /// The subprotocol the server picked.
    pub protocol: Option<String>,
    next_id: u64,
    /// Server-initiated calls that arrived while waiting for something else.
    pub server_calls: VecDeque<(String, String, Value)>,
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The server refused the handshake with this HTTP status.
    Status(u16),
    Other(String),
}

pub async fn connect(
    port: u16,
    path_id: &str,
    protocols: &str,
    basic: Option<(&str, &str)>,
) -> Result<TestCharger, ConnectError> {
    let url = format!("ws://127.0.0.1:{port}/ocpp/{path_id}");
    connect_url(&url, protocols, basic, None, &[]).await
}

/// `connect` with extra request headers (e.g. what a proxy adds).
pub async fn connect_with_headers(
    port: u16,
    path_id: &str,
    protocols: &str,
    basic: Option<(&str, &str)>,
    headers: &[(&'static str, &str)],
) -> Result<TestCharger, ConnectError> {
    let url = format!("ws://127.0.0.1:{port}/ocpp/{path_id}");
    connect_url(&url, protocols, basic, None, headers).await
}

/// Connects over TLS (`wss://`) with `tls` (its trusted roots and, for profile 3, its client
/// certificate).
pub async fn connect_tls(
    port: u16,
    path_id: &str,
    protocols: &str,
    basic: Option<(&str, &str)>,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<TestCharger, ConnectError> {
    let url = format!("wss://127.0.0.1:{port}/ocpp/{path_id}");
    connect_url(
        &url,
        protocols,
        basic,
        Some(tokio_tungstenite::Connector::Rustls(tls)),
        &[],
    )
    .await
}

async fn connect_url(
    url: &str,
    protocols: &str,
    basic: Option<(&str, &str)>,
    connector: Option<tokio_tungstenite::Connector>,
    headers: &[(&'static str, &str)],
) -> Result<TestCharger, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Other(e.to_string()))?;
    for (name, value) in headers {
        request.headers_mut().insert(
            *name,
            HeaderValue::from_str(value).map_err(|e| ConnectError::Other(e.to_string()))?,
        );
    }
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocols).map_err(|e| ConnectError::Other(e.to_string()))?,
        );
    }
    if let Some((user, pass)) = basic {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Basic {token}"))
                .map_err(|e| ConnectError::Other(e.to_string()))?,
        );
    }
    match tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await {
        Ok((ws, response)) => Ok(TestCharger {
            ws,
            protocol: response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            next_id: 1,
            server_calls: VecDeque::new(),
        }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(ConnectError::Status(response.status().as_u16()))
        }
        Err(e) => Err(ConnectError::Other(e.to_string())),
    }
}

/// The handshake's HTTP status: 101 when the socket opened, else the refusal's status.
pub fn handshake_status(result: Result<TestCharger, ConnectError>) -> u16 {
    match result {
        Ok(_) => 101,
        Err(ConnectError::Status(code)) => code,
        Err(ConnectError::Other(e)) => panic!("{e}"),
    }
}

/// Connects a 1.6 charger (panics on refusal).
pub async fn connect16(port: u16, id: &str, basic: Option<(&str, &str)>) -> TestCharger {
    match connect(port, id, "ocpp1.6", basic).await {
        Ok(c) => c,
        Err(e) => panic!("charger {id} could not connect: {e:?}"),
    }
}

/// Connects a 2.0.1 charging station (panics on refusal).
pub async fn connect201(port: u16, id: &str, basic: Option<(&str, &str)>) -> TestCharger {
    match connect(port, id, "ocpp2.0.1", basic).await {
        Ok(c) => c,
        Err(e) => panic!("station {id} could not connect: {e:?}"),
    }
}

impl TestCharger {
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_string()))
            .await
            .expect("send frame");
    }

    /// The next text frame as JSON; `None` on close or timeout.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match next {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Reads until the server's next WebSocket ping and returns when it was read (when it arrived,
    /// if the socket was being read); `None` on close or timeout. Text frames read meanwhile are
    /// dropped.
    pub async fn next_ping_within(&mut self, wait: Duration) -> Option<tokio::time::Instant> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
            {
                Ok(Message::Ping(_)) => return Some(tokio::time::Instant::now()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Waits for the close frame and returns its code and reason.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
            {
                Ok(Message::Close(Some(CloseFrame { code, reason }))) => {
                    return Some((u16::from(code), reason.to_string()))
                }
                Ok(Message::Close(None)) => return Some((1005, String::new())),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Sends a CALL and waits for the answer with the same id: `Ok(payload)` for a CALLRESULT,
    /// `Err((code, description))` for a CALLERROR. Server calls arriving meanwhile are queued.
    pub async fn call(&mut self, action: &str, payload: Value) -> Result<Value, (String, String)> {
        let id = format!("t{}", self.next_id);
        self.next_id += 1;
        self.send_text(&json!([2, id, action, payload]).to_string())
            .await;
        self.await_answer(&id).await
    }

    /// Like `call`, but `None` once the connection is gone instead of a panic (for tests that
    /// kill the server mid-conversation).
    pub async fn try_call(
        &mut self,
        action: &str,
        payload: Value,
    ) -> Option<Result<Value, (String, String)>> {
        let id = format!("t{}", self.next_id);
        self.next_id += 1;
        let frame = json!([2, id, action, payload]).to_string();
        self.ws.send(Message::Text(frame)).await.ok()?;
        loop {
            let frame = self.recv_within(WAIT).await?;
            if frame[1] != id.as_str() {
                continue;
            }
            return Some(match frame[0].as_u64() {
                Some(3) => Ok(frame[2].clone()),
                _ => Err((
                    frame[2].as_str().unwrap_or_default().to_string(),
                    frame[3].as_str().unwrap_or_default().to_string(),
                )),
            });
        }
    }

    pub async fn await_answer(&mut self, id: &str) -> Result<Value, (String, String)> {
        loop {
            let frame = self
                .recv_within(WAIT)
                .await
                .unwrap_or_else(|| panic!("no answer to {id}"));
            match frame[0].as_u64() {
                Some(3) if frame[1] == id => return Ok(frame[2].clone()),
                Some(4) if frame[1] == id => {
                    return Err((
                        frame[2].as_str().unwrap_or_default().to_string(),
                        frame[3].as_str().unwrap_or_default().to_string(),
                    ))
                }
                Some(2) => self.server_calls.push_back((
                    frame[1].as_str().unwrap_or_default().to_string(),
                    frame[2].as_str().unwrap_or_default().to_string(),
                    frame[3].clone(),
                )),
                _ => panic!("unexpected frame while waiting for {id}: {frame}"),
            }
        }
    }

    /// The next server-initiated call: (message id, action, payload).
    pub async fn next_server_call(&mut self) -> (String, String, Value) {
        if let Some(call) = self.server_calls.pop_front() {
            return call;
        }
        let frame = self.recv_within(WAIT).await.expect("a server call");
        assert_eq!(frame[0], 2, "expected a CALL, got {frame}");
        (
            frame[1].as_str().unwrap_or_default().to_string(),
            frame[2].as_str().unwrap_or_default().to_string(),
            frame[3].clone(),
        )
    }

    pub async fn reply(&mut self, id: &str, payload: Value) {
        self.send_text(&json!([3, id, payload]).to_string()).await;
    }

    /// A 2.0.1 BootNotification (reason PowerUp).
    pub async fn boot201(&mut self) -> Value {
        self.call(
            "BootNotification",
            json!({ "reason": "PowerUp", "chargingStation": { "vendorName": "TestVendor", "model": "TS-201", "firmwareVersion": "2.0.1-test" } }),
        )
        .await
        .expect("boot accepted")
    }

    pub async fn boot(&mut self) -> Value {
        self.call(
            "BootNotification",
            json!({ "chargePointVendor": "TestVendor", "chargePointModel": "TM-1", "firmwareVersion": "1.2.3" }),
        )
        .await
        .expect("boot accepted")
    }
}
