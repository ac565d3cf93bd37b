//! Opening one charger connection: a TCP socket bound to a chosen source address (so one
//! machine can hold more connections than one address's ephemeral ports allow), then the
//! OCPP-J WebSocket handshake with the subprotocol and optional HTTP Basic credentials.
//! Failures are classified into stable reasons for the report.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::WebSocketStream;

/// A charger's WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// The OCPP version a charger speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OcppVersion {
    /// OCPP 1.6J.
    V16,
    /// OCPP 2.0.1.
    V201,
}

impl OcppVersion {
    /// The WebSocket subprotocol.
    pub fn subprotocol(self) -> &'static str {
        match self {
            OcppVersion::V16 => "ocpp1.6",
            OcppVersion::V201 => "ocpp2.0.1",
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Nothing listens there.
    #[error("connection refused")]
    Refused,
    /// TCP connect or handshake took longer than the configured timeout.
    #[error("connect or handshake timed out")]
    Timeout,
    /// The server did not offer the charger's OCPP version.
    #[error("subprotocol refused: the server does not speak {0}")]
    SubprotocolRefused(&'static str),
    /// The server answered the upgrade with an HTTP error.
    #[error("handshake refused with HTTP {0}")]
    Http(u16),
    /// No local port or address left (ephemeral ports exhausted, address not on this host).
    #[error("no local address or port available")]
    AddrUnavailable,
    /// The process ran out of file descriptors (`ulimit -n`).
    #[error("too many open files")]
    TooManyOpenFiles,
    /// The connection was reset or closed during the handshake.
    #[error("reset during the handshake")]
    Reset,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl ConnectFailure {
    /// A stable label for the report.
    pub fn reason(&self) -> String {
        match self {
            ConnectFailure::Refused => "refused".into(),
            ConnectFailure::Timeout => "timeout".into(),
            ConnectFailure::SubprotocolRefused(_) => "subprotocol_refused".into(),
            ConnectFailure::Http(status) => format!("http_{status}"),
            ConnectFailure::AddrUnavailable => "addr_unavailable".into(),
            ConnectFailure::TooManyOpenFiles => "too_many_open_files".into(),
            ConnectFailure::Reset => "reset".into(),
            ConnectFailure::Other(_) => "other".into(),
        }
    }

    /// Whether trying again later can help (a refused subprotocol never will).
    pub fn retryable(&self) -> bool {
        !matches!(self, ConnectFailure::SubprotocolRefused(_))
    }
}

fn io_failure(e: &io::Error) -> ConnectFailure {
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::ConnectionRefused, _) => ConnectFailure::Refused,
        (io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable, _) => {
            ConnectFailure::AddrUnavailable
        }
        (io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof, _) => ConnectFailure::Reset,
        // EMFILE, ENFILE
        (_, Some(23 | 24)) => ConnectFailure::TooManyOpenFiles,
        _ => ConnectFailure::Other(e.to_string()),
    }
}

fn ws_failure(e: WsError, version: OcppVersion) -> ConnectFailure {
    match e {
        WsError::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            if response.status().as_u16() == 400 && body.contains("subprotocol") {
                ConnectFailure::SubprotocolRefused(version.subprotocol())
            } else {
                ConnectFailure::Http(response.status().as_u16())
            }
        }
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(
            SubProtocolError::NoSubProtocol | SubProtocolError::InvalidSubProtocol,
        )) => ConnectFailure::SubprotocolRefused(version.subprotocol()),
        WsError::Io(e) => io_failure(&e),
        WsError::ConnectionClosed | WsError::AlreadyClosed => ConnectFailure::Reset,
        other => ConnectFailure::Other(other.to_string()),
    }
}

/// Where and how one charger connects.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Endpoint base URL (`ws://host:port/ocpp`).
    pub url: &'a str,
    /// Local address to bind to.
    pub source_ip: Option<IpAddr>,
    /// Charge point identity, appended to the URL and used as the Basic user.
    pub charger_id: &'a str,
    /// Protocol to offer (only this one).
    pub version: OcppVersion,
    /// Basic password.
    pub password: Option<&'a str>,
}

async fn tcp(url: &url::Url, source_ip: Option<IpAddr>) -> Result<TcpStream, ConnectFailure> {
    let host = url
        .host_str()
        .ok_or_else(|| ConnectFailure::Other(format!("{url} has no host")))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| io_failure(&e))?;
    let addr: SocketAddr = addrs
        .find(|a| source_ip.is_none_or(|ip| ip.is_ipv4() == a.is_ipv4()))
        .ok_or_else(|| ConnectFailure::Other(format!("{host} has no usable address")))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| io_failure(&e))?;
    if let Some(ip) = source_ip {
        // lets a reconnect storm reuse ports still in TIME_WAIT from the previous connection
        socket.set_reuseaddr(true).map_err(|e| io_failure(&e))?;
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| io_failure(&e))?;
    }
    let stream = socket.connect(addr).await.map_err(|e| io_failure(&e))?;
    // OCPP frames are small request/response pairs: never wait for Nagle
    stream.set_nodelay(true).map_err(|e| io_failure(&e))?;
    Ok(stream)
}

/// Connects and completes the WebSocket handshake within `timeout`.
pub async fn connect(target: &Target<'_>, timeout: Duration) -> Result<Ws, ConnectFailure> {
    tokio::time::timeout(timeout, connect_inner(target))
        .await
        .map_err(|_| ConnectFailure::Timeout)?
}

async fn connect_inner(target: &Target<'_>) -> Result<Ws, ConnectFailure> {
    let full = format!("{}/{}", target.url.trim_end_matches('/'), target.charger_id);
    let url = url::Url::parse(&full).map_err(|e| ConnectFailure::Other(e.to_string()))?;
    let stream = tcp(&url, target.source_ip).await?;
    let mut request = full
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectFailure::Other(e.to_string()))?;
    let headers = request.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(target.version.subprotocol()),
    );
    if let Some(password) = target.password {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{password}", target.charger_id));
        let value = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|e| ConnectFailure::Other(e.to_string()))?;
        headers.insert("Authorization", value);
    }
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| ws_failure(e, target.version))?;
    let agreed = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok());
    if agreed != Some(target.version.subprotocol()) {
        return Err(ConnectFailure::SubprotocolRefused(
            target.version.subprotocol(),
        ));
    }
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").ok();
        let port = listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
            .unwrap_or(1);
        drop(listener);
        let url = format!("ws://127.0.0.1:{port}/ocpp");
        let target = Target {
            url: &url,
            source_ip: None,
            charger_id: "CP1",
            version: OcppVersion::V16,
            password: None,
        };
        let result = connect(&target, Duration::from_secs(2)).await;
        assert_eq!(result.err(), Some(ConnectFailure::Refused));
    }

    #[tokio::test]
    async fn a_400_naming_the_subprotocol_is_a_refused_subprotocol_from_the_chosen_source_ip() {
        let listener = TcpListener::bind("127.0.0.1:0").await;
        let Ok(listener) = listener else {
            panic!("cannot listen on loopback");
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let server = tokio::spawn(async move {
            let (mut socket, peer) = listener.accept().await.ok()?;
            let mut buf = vec![0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let body =
                r#"{"error":"no supported OCPP subprotocol offered; this server speaks ocpp1.6"}"#;
            let response = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            Some(peer.ip())
        });
        let url = format!("ws://127.0.0.1:{port}/ocpp");
        let target = Target {
            url: &url,
            source_ip: Some("127.0.0.3".parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))),
            charger_id: "CP2",
            version: OcppVersion::V201,
            password: Some("secret"),
        };
        let result = connect(&target, Duration::from_secs(5)).await;
        assert_eq!(
            result.err(),
            Some(ConnectFailure::SubprotocolRefused("ocpp2.0.1"))
        );
        let peer = server.await.ok().flatten();
        assert_eq!(peer, Some(IpAddr::from([127, 0, 0, 3])));
    }
}
