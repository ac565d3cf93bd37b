//! The RabbitMQ connection, kept alive by a supervisor task that reconnects with exponential
//! backoff. Callers take channels from whatever connection is current.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use lapin::{Channel, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::configuration::{mask_url, AmqpSettings};

const INITIAL_RECONNECT_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("RabbitMQ at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("RabbitMQ is not connected")]
    NotConnected,
    #[error("RabbitMQ: {0}")]
    Protocol(#[from] lapin::Error),
}

/// A cloneable handle to the supervised connection.
#[derive(Clone)]
pub struct Amqp {
    inner: Arc<Inner>,
}

struct Inner {
    url: SecretString,
    /// Shown in the broker's management UI (`<namespace>/<node>`), and used to find us there.
    name: String,
    current: RwLock<Option<Arc<Connection>>>,
    /// Woken whenever a new connection is installed.
    connected: Notify,
    max_delay: Duration,
    stop: CancellationToken,
    /// Connections opened so far (the first one and every reconnection).
    opened: std::sync::atomic::AtomicU64,
}

impl Amqp {
    /// Starts the supervisor; the first connection attempt happens in the background.
    pub fn start(settings: &AmqpSettings, name: String) -> Self {
        let amqp = Self {
            inner: Arc::new(Inner {
                url: settings.url.clone(),
                name,
                current: RwLock::new(None),
                connected: Notify::new(),
                max_delay: Duration::from_secs(settings.max_reconnect_delay_secs.max(1)),
                stop: CancellationToken::new(),
                opened: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        let supervisor = amqp.clone();
        tokio::spawn(async move { supervisor.supervise().await });
        amqp
    }

    /// One connection attempt, for processes that cannot do anything without RabbitMQ.
    pub async fn connect_once(settings: &AmqpSettings) -> Result<Connection, AmqpError> {
        open(&settings.url, "chargegrid-cli").await
    }

    pub fn is_connected(&self) -> bool {
        self.current()
            .map(|c| c.status().connected())
            .unwrap_or(false)
    }

    /// How many connections the supervisor has opened: more than one means it reconnected.
    pub fn connections_opened(&self) -> u64 {
        self.inner.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn current(&self) -> Option<Arc<Connection>> {
        self.inner.current.read().ok().and_then(|c| c.clone())
    }

    /// A new channel on the current connection.
    pub async fn channel(&self) -> Result<Channel, AmqpError> {
        match self.current() {
            Some(conn) if conn.status().connected() => Ok(conn.create_channel().await?),
            _ => Err(AmqpError::NotConnected),
        }
    }

    /// Waits until a connection is up (or `timeout` passes), then opens a channel.
    pub async fn channel_when_ready(&self, timeout: Duration) -> Result<Channel, AmqpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.connected.notified();
            if self.is_connected() {
                return self.channel().await;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(AmqpError::NotConnected);
            }
        }
    }

    /// Stops the supervisor and closes the connection.
    pub async fn close(&self) {
        self.inner.stop.cancel();
        if let Some(conn) = self.current() {
            let _ = conn.close(200, "shutting down").await;
        }
    }

    async fn supervise(self) {
        let mut delay = INITIAL_RECONNECT_DELAY;
        let url = mask_url(self.inner.url.expose_secret());
        loop {
            if self.inner.stop.is_cancelled() {
                return;
            }
            match open(&self.inner.url, &self.inner.name).await {
                Ok(conn) => {
                    delay = INITIAL_RECONNECT_DELAY;
                    let lost = Arc::new(Notify::new());
                    let on_lost = lost.clone();
                    conn.on_error(move |err| {
                        tracing::warn!(error = %err, "RabbitMQ connection lost");
                        on_lost.notify_one();
                    });
                    if let Ok(mut current) = self.inner.current.write() {
                        *current = Some(Arc::new(conn));
                        // counted with the connection installed, under the same lock
                        self.inner
                            .opened
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    tracing::info!(%url, "connected to RabbitMQ");
                    self.inner.connected.notify_waiters();
                    tokio::select! {
                        _ = lost.notified() => {}
                        _ = self.inner.stop.cancelled() => return,
                    }
                    if let Ok(mut current) = self.inner.current.write() {
                        *current = None;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "RabbitMQ connect failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.inner.stop.cancelled() => return,
                    }
                    delay = (delay * 2).min(self.inner.max_delay);
                }
            }
        }
    }
}

async fn open(url: &SecretString, name: &str) -> Result<Connection, AmqpError> {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
        .with_connection_name(name.into());
    tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(url.expose_secret(), properties),
    )
    .await
    .map_err(|_| AmqpError::Unreachable {
        url: mask_url(url.expose_secret()),
        reason: "connection timed out".into(),
    })?
    .map_err(|e| AmqpError::Unreachable {
        url: mask_url(url.expose_secret()),
        reason: e.to_string(),
    })
}
