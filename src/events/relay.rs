//! The outbox relay, run by every process that writes events; one publishes at a time (a
//! PostgreSQL advisory lock), the others stand by. It takes the oldest unpublished events in id
//! order, publishes them to `chargegrid.events` with publisher confirms and persistent
//! delivery, and marks them published only once every message of the batch is confirmed, so
//! the events of one aggregate leave in order. It survives RabbitMQ and Postgres outages:
//! nothing is marked published that was not confirmed.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::Channel;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::publish::event_properties;

/// The advisory lock of the publishing relay ("cgrelay" in ASCII); one database, one outbox.
const RELAY_LOCK: i64 = 0x0063_6772_656c_6179;
use super::topology::Topology;
use crate::metrics::Metrics;
use crate::store::amqp::Amqp;

const NOTIFY_CHANNEL: &str = "chargegrid_outbox";
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the relay needs.
#[derive(Clone)]
pub struct Relay {
    pub db: PgPool,
    pub amqp: Amqp,
    pub metrics: Arc<Metrics>,
    pub batch_size: i64,
    pub poll_interval: Duration,
    pub topology: Topology,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ refused an event (nack)")]
    Nacked,
    #[error("RabbitMQ is not connected")]
    NotConnected,
}

#[derive(sqlx::FromRow)]
struct Pending {
    id: i64,
    event_id: uuid::Uuid,
    event_type: String,
    routing_key: String,
    body: String,
}

impl Relay {
    /// Relays until `shutdown`, then flushes what is left (bounded by `flush_within`).
    pub async fn run(self, shutdown: CancellationToken, flush_within: Duration) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_cancelled() {
                self.flush(flush_within).await;
                return;
            }
            let channel = match self.open_channel().await {
                Ok(channel) => channel,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay waiting for RabbitMQ");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            let mut listener = PgListener::connect_with(&self.db).await.ok();
            if let Some(l) = listener.as_mut() {
                if l.listen(NOTIFY_CHANNEL).await.is_err() {
                    listener = None;
                }
            }
            let mut lag_tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                if shutdown.is_cancelled() {
                    break;
                }
                match self.relay_batch(&channel).await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox relay batch failed; reconnecting");
                        break;
                    }
                }
                let wake = async {
                    match listener.as_mut() {
                        Some(l) => {
                            let _ = l.try_recv().await;
                            // one look covers every commit notified so far: a burst of
                            // commits must not become a burst of polls
                            while l.next_buffered().is_some() {}
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = wake => {}
                    _ = tokio::time::sleep(self.poll_interval) => {}
                    _ = lag_tick.tick() => self.record_lag().await,
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }

    async fn open_channel(&self) -> Result<Channel, RelayError> {
        let channel = self
            .amqp
            .channel_when_ready(Duration::from_secs(2))
            .await
            .map_err(|_| RelayError::NotConnected)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.topology.declare_exchanges(&channel).await?;
        Ok(channel)
    }

    /// Publishes everything pending, for shutdown. When another process's relay holds the
    /// publishing lock the outbox is in its hands and this returns at once.
    pub async fn flush(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let Ok(channel) = self.open_channel().await else {
            tracing::warn!("outbox not flushed: RabbitMQ unavailable (events stay in the outbox)");
            return;
        };
        while tokio::time::Instant::now() < deadline {
            match self.relay_batch(&channel).await {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox flush interrupted (events stay in the outbox)");
                    return;
                }
            }
        }
    }

    /// Publishes one batch; returns how many events it published (0 also when another
    /// process's relay is publishing: one relay works at a time, the others stand by).
    async fn relay_batch(&self, channel: &Channel) -> Result<usize, RelayError> {
        let mut tx = self.db.begin().await?;
        // Relays compete for rows with SKIP LOCKED; when several scanned the queue at once,
        // each had to step over the rows the others held and everything queued behind them
        // (a reconnect storm's 20,000 events made that the database's main work). One holder
        // of this transaction lock publishes; if it dies, the lock goes with its transaction.
        let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !leader {
            tx.commit().await?;
            return Ok(0);
        }
        // The oldest pending events in id order: a prefix of what is owed, so every older
        // event of an aggregate is in the same batch, published before it on one channel, and
        // marked with it. (Taking only each aggregate's oldest event, as when relays shared the
        // work, put at most one event per aggregate in a batch, and its anti-join read the whole
        // backlog per batch: a relay behind fell further behind.)
        let rows = sqlx::query_as::<_, Pending>(
            "SELECT id, event_id, event_type, routing_key, body FROM outbox \
             WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let exchange = self.topology.events_exchange();
        let mut confirms = Vec::with_capacity(rows.len());
        for row in &rows {
            let properties = event_properties(&row.event_id.to_string(), &row.event_type, None);
            confirms.push(
                channel
                    .basic_publish(
                        &exchange,
                        &row.routing_key,
                        BasicPublishOptions::default(),
                        row.body.as_bytes(),
                        properties,
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            if let Confirmation::Nack(_) = confirm.await? {
                return Err(RelayError::Nacked);
            }
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        sqlx::query(
            "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for row in &rows {
            self.metrics
                .outbox_published_total
                .with_label_values(&[row.event_type.as_str()])
                .inc();
        }
        Ok(rows.len())
    }

    async fn record_lag(&self) {
        // the oldest pending event is the first in id order (the pending index), no scan
        let lag: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM now() - created_at)::float8 FROM outbox \
             WHERE published_at IS NULL ORDER BY id LIMIT 1",
        )
        .fetch_one(&self.db)
        .await
        .ok()
        .flatten();
        self.metrics
            .outbox_lag_seconds
            .set(lag.unwrap_or(0.0) as i64);
    }
}
