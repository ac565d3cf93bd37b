//! The outbox relay, run by every process that writes events; one publishes at a time (a
//! PostgreSQL session advisory lock held on a connection of its own), the others stand by. It
//! takes the oldest unpublished events in id order, publishes them to `chargegrid.events` with
//! publisher confirms and persistent delivery, and marks a batch published only once every
//! message of it is confirmed, so the events of one aggregate leave in order. Up to
//! `IN_FLIGHT` batches are published and awaiting their confirms at once (ADR 016): the next
//! batch is read and published while RabbitMQ confirms the last, and batches are marked in the
//! order they were published. It survives RabbitMQ and Postgres outages: nothing is marked
//! published that was not confirmed, and what was published but not marked is published again
//! (delivery is at least once).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::Channel;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use super::publish::event_properties;

/// The advisory lock of the publishing relay ("cgrelay" in ASCII); one database, one outbox.
const RELAY_LOCK: i64 = 0x0063_6772_656c_6179;
/// Batches published and not yet confirmed and marked, at most.
const IN_FLIGHT: usize = 4;
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

/// A published batch awaiting its confirms.
struct InFlight {
    ids: Vec<i64>,
    types: Vec<String>,
    confirms: Vec<PublisherConfirm>,
}

/// The relay's own connection, and whether it holds the publishing lock.
struct Leader {
    conn: PgConnection,
    leading: bool,
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
        // kept across reconnections to RabbitMQ: the publishing lock goes only with it
        let mut leader: Option<Leader> = None;
        loop {
            if shutdown.is_cancelled() {
                self.flush(leader.take(), flush_within).await;
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
                match self.publish_as_leader(&channel, &mut leader).await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox relay batch failed; reconnecting");
                        // a broken database connection takes the lock with it; a healthy one
                        // keeps it, and what was published but not marked goes out again
                        if matches!(e, RelayError::Database(_)) {
                            leader = None;
                        }
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
    async fn flush(&self, leader: Option<Leader>, within: Duration) {
        let Ok(channel) = self.open_channel().await else {
            tracing::warn!("outbox not flushed: RabbitMQ unavailable (events stay in the outbox)");
            return;
        };
        let mut leader = leader;
        match tokio::time::timeout(within, self.publish_as_leader(&channel, &mut leader)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "outbox flush interrupted (events stay in the outbox)")
            }
            Err(_) => tracing::warn!("outbox flush timed out (events stay in the outbox)"),
        }
    }

    /// Publishes every pending event when this process holds (or takes) the publishing lock;
    /// returns how many it published (0 also when another process's relay is publishing: one
    /// relay works at a time, the others stand by and take over when its connection ends).
    async fn publish_as_leader(
        &self,
        channel: &Channel,
        leader: &mut Option<Leader>,
    ) -> Result<usize, RelayError> {
        if leader.is_none() {
            let mut conn = PgConnection::connect_with(&self.db.connect_options()).await?;
            // The pending events are read in id order from the partial index of unpublished
            // ids. A published event leaves its entry in that index until vacuum; a plain index
            // scan marks such entries dead as it passes (and skips them from then on), a
            // bitmap scan does not. With statistics that took the backlog for small, the
            // planner chose bitmap scans, which read 4,400 dead entries and 300 pages to find
            // nothing (8 ms a read under load). This connection runs only the relay's reads and
            // its marks by id, so the setting touches nothing else.
            sqlx::query("SET enable_bitmapscan = off")
                .execute(&mut conn)
                .await?;
            *leader = Some(Leader {
                conn,
                leading: false,
            });
        }
        let Some(held) = leader.as_mut() else {
            return Ok(0);
        };
        if !held.leading {
            // Relays competing for rows with SKIP LOCKED each stepped over the rows the others
            // held (a reconnect storm's 20,000 events made that the database's main work). One
            // holder of this lock publishes; if it dies, the lock goes with its connection.
            held.leading = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(RELAY_LOCK)
                .fetch_one(&mut held.conn)
                .await?;
        }
        if !held.leading {
            return Ok(0);
        }
        self.publish_pending(channel, &mut held.conn).await
    }

    /// Publishes the pending events in id order, up to `IN_FLIGHT` batches ahead of their
    /// confirms, until a read finds fewer than a batch; marks each batch published, in order,
    /// once all of it is confirmed. The caller holds the publishing lock on `conn`.
    async fn publish_pending(
        &self,
        channel: &Channel,
        conn: &mut PgConnection,
    ) -> Result<usize, RelayError> {
        let exchange = self.topology.events_exchange();
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(IN_FLIGHT);
        let mut caught_up = false;
        let mut published = 0;
        loop {
            while !caught_up && in_flight.len() < IN_FLIGHT {
                // The oldest pending events in id order that are not on their way: a prefix
                // of what is owed, so every older event of an aggregate was published before
                // them on this one channel. (Taking only each aggregate's oldest event, as when
                // relays shared the work, put at most one event per aggregate in a batch, and
                // its anti-join read the whole backlog per batch.)
                let sent: Vec<i64> = in_flight.iter().flat_map(|b| b.ids.clone()).collect();
                let rows = sqlx::query_as::<_, Pending>(
                    "SELECT id, event_id, event_type, routing_key, body FROM outbox \
                     WHERE published_at IS NULL AND id <> ALL($2) ORDER BY id LIMIT $1",
                )
                .bind(self.batch_size)
                .bind(&sent)
                // planned at each run (an unnamed statement): a plan cached on this
                // long-lived connection while the outbox was small read the whole table per
                // batch once it had grown (the relay fell to ~700 events/s)
                .persistent(false)
                .fetch_all(&mut *conn)
                .await?;
                caught_up = i64::try_from(rows.len()).unwrap_or(i64::MAX) < self.batch_size;
                if rows.is_empty() {
                    break;
                }
                let mut batch = InFlight {
                    ids: Vec::with_capacity(rows.len()),
                    types: Vec::with_capacity(rows.len()),
                    confirms: Vec::with_capacity(rows.len()),
                };
                for row in rows {
                    let properties =
                        event_properties(&row.event_id.to_string(), &row.event_type, None);
                    batch.confirms.push(
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
                    batch.ids.push(row.id);
                    batch.types.push(row.event_type);
                }
                in_flight.push_back(batch);
            }
            let Some(batch) = in_flight.pop_front() else {
                return Ok(published);
            };
            for confirm in batch.confirms {
                if let Confirmation::Nack(_) = confirm.await? {
                    return Err(RelayError::Nacked);
                }
            }
            sqlx::query(
                "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
            )
            .bind(&batch.ids)
            .persistent(false)
            .execute(&mut *conn)
            .await?;
            published += batch.ids.len();
            for event_type in &batch.types {
                self.metrics
                    .outbox_published_total
                    .with_label_values(&[event_type.as_str()])
                    .inc();
            }
        }
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
