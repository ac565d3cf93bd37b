//! Everything a connected charger writes about itself (connection presence, `last_seen`, boot
//! data, connector status) goes through one batching writer per process, and the look-ups a
//! connecting charger needs (its record at the handshake, its open sessions once it is
//! registered) through batching readers. A reconnect storm then costs one commit and a handful
//! of set-based statements per batch instead of several commits per charger; each caller still
//! gets its own durable answer, after its batch committed.
//!
//! Order: a charger's writes are submitted in the order its actor makes them and batches run
//! one at a time, so they are applied in that order. Within a batch the items are split into
//! segments in which each charger appears at most once (a charger's disconnect and its next
//! connect fall into consecutive segments), and events are written in the same order.
//!
//! Failure: a batch is one transaction. When it fails on a statement (one charger's bad row),
//! every item is retried alone so only the culprit gets the error; when the database is
//! unreachable every item gets that error at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::batch::{BatchFuture, BatchObserver, Batcher};
use super::chargers::{self, BootInfo, ChargerRecord, StatusReport};
use super::sessions::{self, SessionRecord};
use super::{StoreError, Tx};
use crate::events::wake::OutboxWake;
use crate::events::{outbox, Event};

/// The most items one batch takes (bounds statement size and transaction length).
const MAX_BATCH: usize = 1_000;

/// One write of a connected charger.
#[derive(Debug, Clone)]
pub enum ChargerWrite {
    /// This node now holds the charger's socket (emits CHARGER_CONNECTED).
    Connected {
        charger_id: String,
        connection_id: Uuid,
        protocol: &'static str,
    },
    /// The connection closed; takes the charger offline only if `connection_id` is still its
    /// current one (emits CHARGER_DISCONNECTED when it does).
    Disconnected {
        charger_id: String,
        connection_id: Uuid,
        last_seen: DateTime<Utc>,
    },
    /// Persists `last_seen` (kept in memory by the actor, written now and then).
    Touch {
        charger_id: String,
        connection_id: Uuid,
        last_seen: DateTime<Utc>,
    },
    /// What a BootNotification said.
    Boot { charger_id: String, info: BootInfo },
    /// A StatusNotification, stored unless a newer report is (emits CONNECTOR_STATUS_CHANGED
    /// when the status changed).
    Status {
        charger_id: String,
        report: StatusReport,
    },
}

impl ChargerWrite {
    fn charger_id(&self) -> &str {
        match self {
            ChargerWrite::Connected { charger_id, .. }
            | ChargerWrite::Disconnected { charger_id, .. }
            | ChargerWrite::Touch { charger_id, .. }
            | ChargerWrite::Boot { charger_id, .. }
            | ChargerWrite::Status { charger_id, .. } => charger_id,
        }
    }
}

/// The result of a write: whether it changed something that emits an event (`Disconnected`,
/// `Status`); `true` for the others once stored.
pub type WriteResult = Result<bool, StoreError>;

/// The batching writer, reader of charger records and reader of open sessions of one process.
#[derive(Clone)]
pub struct ChargerWriter {
    writes: Batcher<ChargerWrite, WriteResult>,
    records: Batcher<String, Result<Option<ChargerRecord>, StoreError>>,
    open_sessions: Batcher<String, Result<Vec<SessionRecord>, StoreError>>,
}

impl ChargerWriter {
    /// Starts the batching tasks on the current runtime. `node_id` and `source` go into the
    /// rows and events this process writes; `observe` gets (batch kind, size) of every batch.
    pub fn start(
        pool: PgPool,
        wake: OutboxWake,
        node_id: String,
        source: String,
        observe: Option<Arc<dyn Fn(&'static str, usize) + Send + Sync>>,
    ) -> Self {
        let observer = |kind: &'static str| -> Option<BatchObserver> {
            observe
                .clone()
                .map(|f| Arc::new(move |n| f(kind, n)) as BatchObserver)
        };
        let context = Arc::new((pool.clone(), node_id, source));
        let writes = Batcher::start(MAX_BATCH, observer("charger_writes"), move |items| {
            let (context, wake) = (context.clone(), wake.clone());
            Box::pin(async move {
                let (pool, node, source) = &*context;
                // the pool's inserts do not notify: the relay is woken here when an event was
                // written, i.e. when a connection, a disconnection or a status changed something
                // (presence touches and boots write none)
                let may_write: Vec<bool> = items
                    .iter()
                    .map(|i| !matches!(i, ChargerWrite::Touch { .. } | ChargerWrite::Boot { .. }))
                    .collect();
                let results = write_batch(pool, node, source, items).await;
                if may_write
                    .iter()
                    .zip(&results)
                    .any(|(may, result)| *may && matches!(result, Ok(true)))
                {
                    wake.committed();
                }
                results
            }) as BatchFuture<WriteResult>
        });
        let records = {
            let pool = pool.clone();
            Batcher::start(MAX_BATCH, observer("charger_records"), move |ids| {
                let pool = pool.clone();
                Box::pin(async move {
                    let found = chargers::find_many(&pool, &ids).await;
                    spread(ids, found, |map, id| Ok(map.get(id).cloned()))
                }) as BatchFuture<_>
            })
        };
        let open_sessions = Batcher::start(MAX_BATCH, observer("open_sessions"), move |ids| {
            let pool = pool.clone();
            Box::pin(async move {
                let found = sessions::open_sessions_for_chargers(&pool, &ids).await;
                spread(ids, found, |map, id| {
                    Ok(map.get(id).cloned().unwrap_or_default())
                })
            }) as BatchFuture<_>
        });
        Self {
            writes,
            records,
            open_sessions,
        }
    }

    /// Queues `write` now, behind the charger's earlier writes, and returns its outcome
    /// once its batch is durable. The write happens whether or not the future is polled.
    pub fn write(
        &self,
        write: ChargerWrite,
    ) -> impl std::future::Future<Output = WriteResult> + Send + 'static {
        let result = self.writes.submit(write);
        async move {
            result.await.unwrap_or_else(|| {
                Err(StoreError::Unavailable("the charger writer stopped".into()))
            })
        }
    }

    /// The charger's record (batched with other handshakes' look-ups).
    pub async fn find(&self, charger_id: &str) -> Result<Option<ChargerRecord>, StoreError> {
        self.records
            .submit(charger_id.to_string())
            .await
            .unwrap_or_else(|| Err(StoreError::Unavailable("the charger reader stopped".into())))
    }

    /// The charger's open sessions (batched with other arriving chargers' look-ups).
    pub async fn open_sessions(&self, charger_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.open_sessions
            .submit(charger_id.to_string())
            .await
            .unwrap_or_else(|| Err(StoreError::Unavailable("the session reader stopped".into())))
    }
}

/// One result per id from one look-up of all of them; a failed look-up fails each id with
/// the same message.
fn spread<T, R>(
    ids: Vec<String>,
    found: Result<HashMap<String, T>, StoreError>,
    pick: impl Fn(&HashMap<String, T>, &str) -> Result<R, StoreError>,
) -> Vec<Result<R, StoreError>> {
    match found {
        Ok(map) => ids.iter().map(|id| pick(&map, id)).collect(),
        Err(e) => {
            let message = e.to_string();
            ids.iter()
                .map(|_| Err(StoreError::Unavailable(message.clone())))
                .collect()
        }
    }
}

async fn write_batch(
    pool: &PgPool,
    node: &str,
    source: &str,
    items: Vec<ChargerWrite>,
) -> Vec<WriteResult> {
    match apply(pool, node, source, &items).await {
        Ok(changed) => changed.into_iter().map(Ok).collect(),
        Err(e) if items.len() == 1 => vec![Err(e)],
        Err(e @ StoreError::Database(sqlx::Error::Database(_))) if !e.is_unreachable() => {
            // one item's row broke the batch: apply each alone so only it fails
            tracing::warn!(error = %e, items = items.len(), "charger write batch failed; retrying its items one by one");
            let mut results = Vec::with_capacity(items.len());
            for item in &items {
                results.push(
                    apply(pool, node, source, std::slice::from_ref(item))
                        .await
                        .map(|changed| changed.first().copied().unwrap_or(false)),
                );
            }
            results
        }
        Err(e) => {
            let message = e.to_string();
            tracing::error!(error = %message, items = items.len(), "charger write batch failed");
            items
                .iter()
                .map(|_| Err(StoreError::Unavailable(message.clone())))
                .collect()
        }
    }
}

/// Applies `items` in one transaction, segment by segment; returns each item's "changed".
async fn apply(
    pool: &PgPool,
    node: &str,
    source: &str,
    items: &[ChargerWrite],
) -> Result<Vec<bool>, StoreError> {
    let segments = segments(items);
    if segments.len() == 1 {
        if let Some(changed) = apply_alone(pool, source, items).await? {
            return Ok(changed);
        }
    }
    let mut changed = vec![false; items.len()];
    let mut events = Vec::new();
    let mut tx = pool.begin().await?;
    for segment in segments {
        apply_segment(&mut tx, node, items, &segment, &mut changed, &mut events).await?;
    }
    outbox::enqueue_many(&mut tx, events, source).await?;
    tx.commit().await?;
    Ok(changed)
}

/// The batches of one segment that are one statement without a transaction (no BEGIN and
/// COMMIT round trips): only StatusNotifications, or only presence touches. `None` for the
/// others, which `apply` writes in a transaction.
async fn apply_alone(
    pool: &PgPool,
    source: &str,
    items: &[ChargerWrite],
) -> Result<Option<Vec<bool>>, StoreError> {
    if items
        .iter()
        .all(|i| matches!(i, ChargerWrite::Touch { .. }))
    {
        let mut touched = chargers::Connections::default();
        for item in items {
            if let ChargerWrite::Touch {
                charger_id,
                connection_id,
                last_seen,
            } = item
            {
                touched.push(charger_id, *connection_id, *last_seen, "");
            }
        }
        chargers::touch_many(pool, &touched).await?;
        return Ok(Some(vec![true; items.len()]));
    }
    let mut reports = Vec::with_capacity(items.len());
    let mut events = Vec::with_capacity(items.len());
    for item in items {
        let ChargerWrite::Status { charger_id, report } = item else {
            return Ok(None);
        };
        reports.push((charger_id.as_str(), report));
        events.push(status_changed(charger_id, report));
    }
    // a segment names each charger once, so each (charger, connector) once
    let events = outbox::Columns::new(events, source)?;
    let changed = chargers::update_connector_statuses_alone(pool, &reports, &events).await?;
    Ok(Some(
        (0..items.len()).map(|i| changed.contains(&i)).collect(),
    ))
}

/// The event of a report that changed its connector's status, at the charger's time of it.
fn status_changed(charger_id: &str, report: &StatusReport) -> (Event, DateTime<Utc>) {
    (
        Event::ConnectorStatusChanged {
            charger_id: charger_id.to_string(),
            connector_id: report.connector_id,
            status: report.status.clone(),
        },
        report.reported_at.unwrap_or_else(Utc::now),
    )
}

/// Splits `items` (by index) into consecutive runs in which each charger appears once.
fn segments(items: &[ChargerWrite]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut current = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if !seen.insert(item.charger_id()) {
            out.push(std::mem::take(&mut current));
            seen.clear();
            seen.insert(item.charger_id());
        }
        current.push(i);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// One segment (each charger at most once): one statement per kind of write present. The
/// events it causes are appended to `events` in item order.
async fn apply_segment(
    tx: &mut Tx<'_>,
    node: &str,
    items: &[ChargerWrite],
    segment: &[usize],
    changed: &mut [bool],
    events: &mut Vec<(Event, DateTime<Utc>)>,
) -> Result<(), StoreError> {
    let mut connected = chargers::Connections::default();
    let mut disconnected = chargers::Connections::default();
    let mut touched = chargers::Connections::default();
    let mut boots = Vec::new();
    let mut statuses = Vec::new();
    for &i in segment {
        match &items[i] {
            ChargerWrite::Connected {
                charger_id,
                connection_id,
                protocol,
            } => connected.push(charger_id, *connection_id, Utc::now(), protocol),
            ChargerWrite::Disconnected {
                charger_id,
                connection_id,
                last_seen,
            } => disconnected.push(charger_id, *connection_id, *last_seen, ""),
            ChargerWrite::Touch {
                charger_id,
                connection_id,
                last_seen,
            } => touched.push(charger_id, *connection_id, *last_seen, ""),
            ChargerWrite::Boot { charger_id, info } => boots.push((charger_id.as_str(), info)),
            ChargerWrite::Status { charger_id, report } => {
                statuses.push((charger_id.as_str(), report))
            }
        }
    }
    if !connected.is_empty() {
        chargers::mark_connected_many(tx, node, &connected).await?;
    }
    let went_offline = if disconnected.is_empty() {
        HashSet::new()
    } else {
        chargers::mark_disconnected_many(tx, &disconnected).await?
    };
    if !touched.is_empty() {
        chargers::touch_many(&mut **tx, &touched).await?;
    }
    if !boots.is_empty() {
        chargers::record_boots(tx, &boots).await?;
    }
    let status_changes = if statuses.is_empty() {
        HashSet::new()
    } else {
        chargers::update_connector_statuses(tx, &statuses).await?
    };
    for &i in segment {
        match &items[i] {
            ChargerWrite::Connected {
                charger_id,
                protocol,
                ..
            } => {
                changed[i] = true;
                events.push((
                    Event::ChargerConnected {
                        charger_id: charger_id.clone(),
                        protocol: protocol.to_string(),
                        node_id: node.to_string(),
                    },
                    Utc::now(),
                ));
            }
            ChargerWrite::Disconnected { charger_id, .. } => {
                if went_offline.contains(charger_id.as_str()) {
                    changed[i] = true;
                    events.push((
                        Event::ChargerDisconnected {
                            charger_id: charger_id.clone(),
                            node_id: node.to_string(),
                        },
                        Utc::now(),
                    ));
                }
            }
            ChargerWrite::Touch { .. } | ChargerWrite::Boot { .. } => changed[i] = true,
            ChargerWrite::Status { charger_id, report } => {
                if status_changes.contains(&(charger_id.clone(), report.connector_id)) {
                    changed[i] = true;
                    events.push(status_changed(charger_id, report));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(id: &str) -> ChargerWrite {
        ChargerWrite::Touch {
            charger_id: id.to_string(),
            connection_id: Uuid::nil(),
            last_seen: Utc::now(),
        }
    }

    #[test]
    fn a_charger_appears_once_per_segment_and_order_is_kept() {
        let items = vec![touch("A"), touch("B"), touch("A"), touch("C"), touch("A")];
        assert_eq!(segments(&items), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(segments(&[]), Vec::<Vec<usize>>::new());
    }
}
