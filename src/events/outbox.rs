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
