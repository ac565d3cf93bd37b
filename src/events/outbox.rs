//! The transactional outbox: events are inserted in the same transaction as the state change
//! they describe, so a committed change always has its event and a rolled-back one never does.

use chrono::{DateTime, Utc};

use super::envelope::{Envelope, Event};
use crate::store::{StoreError, Tx};

/// Writes `event` (which happened at `timestamp`) to the outbox within `tx`.
pub async fn enqueue(
    tx: &mut Tx<'_>,
    event: Event,
    timestamp: DateTime<Utc>,
    source: &str,
) -> Result<Envelope, StoreError> {
    let envelope = Envelope::new(event, timestamp, source);
    let body = envelope
        .to_json()
        .map_err(|e| StoreError::Conflict(format!("event does not serialise: {e}")))?;
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(envelope.event_id)
    .bind(envelope.event_type.as_str())
    .bind(envelope.event.aggregate_id())
    .bind(envelope.event_type.routing_key())
    .bind(&body)
    .execute(&mut **tx)
    .await?;
    Ok(envelope)
}

/// Rows one retention statement deletes (each is its own short transaction).
const PRUNE_CHUNK: i64 = 10_000;

/// Deletes events published more than `max_age` ago, oldest first, in chunks; returns how many
/// went. Unpublished events are never deleted, however old: they are what the relay still owes.
pub async fn prune_published(
    pool: &sqlx::PgPool,
    max_age: std::time::Duration,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    loop {
        // the chunk is written into the statement: the charger side's pool plans statements
        // once without their values (ADR 024), and a generic plan that does not know the limit
        // may scan the whole outbox for each chunk
        static STATEMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "DELETE FROM outbox WHERE id IN ( \
                     SELECT id FROM outbox WHERE published_at < now() - make_interval(secs => $1) \
                     ORDER BY id LIMIT {PRUNE_CHUNK})"
            )
        });
        let chunk = sqlx::query(&STATEMENT)
            .bind(max_age.as_secs_f64())
            .execute(pool)
            .await?
            .rows_affected();
        deleted += chunk;
        if chunk < u64::try_from(PRUNE_CHUNK).unwrap_or(u64::MAX) {
            return Ok(deleted);
        }
    }
}

/// Events a batch's statements produced, in the order they are to be written: the transaction
/// writer collects its set-based statements' events and writes them with one `enqueue_many`
/// before it commits (one round trip per batch instead of one per kind of item).
pub type Queued = Vec<(Event, DateTime<Utc>)>;

/// Events as the columns of one `INSERT INTO outbox ... SELECT ... FROM unnest(...)`, in order.
#[derive(Default)]
pub struct Columns {
    pub ids: Vec<uuid::Uuid>,
    pub types: Vec<&'static str>,
    pub aggregates: Vec<String>,
    pub keys: Vec<String>,
    pub bodies: Vec<String>,
}

impl Columns {
    pub fn new(events: Queued, source: &str) -> Result<Self, StoreError> {
        let n = events.len();
        let mut columns = Columns {
            ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            aggregates: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
            bodies: Vec::with_capacity(n),
        };
        for (event, timestamp) in events {
            let envelope = Envelope::new(event, timestamp, source);
            columns.bodies.push(
                envelope
                    .to_json()
                    .map_err(|e| StoreError::Conflict(format!("event does not serialise: {e}")))?,
            );
            columns.ids.push(envelope.event_id);
            columns.types.push(envelope.event_type.as_str());
            columns.aggregates.push(envelope.event.aggregate_id());
            columns.keys.push(envelope.event_type.routing_key());
        }
        Ok(columns)
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The insert, its arrays numbered from `$first`; its order (and so the events'
    /// publication order) is the order given.
    pub fn statement(first: usize) -> String {
        let arrays = crate::store::array_params(first, &["uuid", "text", "text", "text", "text"]);
        format!(
            "INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body) \
             SELECT e.event_id, e.event_type, e.aggregate_id, e.routing_key, e.body \
             FROM unnest({arrays}) \
                 WITH ORDINALITY AS e(event_id, event_type, aggregate_id, routing_key, body, n) \
             ORDER BY e.n"
        )
    }

    /// Binds the arrays, in the statement's order.
    pub fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.aggregates)
            .bind(&self.keys)
            .bind(&self.bodies)
    }
}

/// `Columns::statement(1)`, built once.
pub static EVENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| Columns::statement(1));

/// Writes several events within `tx` in one statement; their outbox order (and so their
/// publication order) is the order given.
pub async fn enqueue_many(
    tx: &mut Tx<'_>,
    events: Vec<(Event, DateTime<Utc>)>,
    source: &str,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let columns = Columns::new(events, source)?;
    columns
        .bind(sqlx::query(&EVENTS))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
