//! OCPP 1.6 StartTransaction and StopTransaction set-based, for the transaction writer's
//! batches (ADR 015): every start of a batch is stored with one statement (its transaction row
//! inserted already linked to its session), and every stop with one, however many the batch
//! holds; their samples and events join the batch's last statement (`transactions::Tail`). The
//! session statements (`start_sessions_many`, `completing` and `closed`) serve the 2.0.1
//! Started and Ended events of `store::transaction_events` too. A start or stop is the
//! lifecycle of a session; run one by one, each cost five round trips inside its batch's
//! transaction, and a batch's round trips run one after another, so the chargers of a shard
//! waited for each other's round trips rather than for the database's work.
//!
//! These statements take the common case only and report, per item, when they could not settle
//! it; the writer then runs that item's general job (the one-by-one path with every rule) in the
//! same transaction:
//! - a start whose PENDING app session (`startSession`) expired or failed between the
//!   statement's look and its update (its session is then linked one by one);
//! - a stop for an unknown or already stopped transaction.
//!
//! A start whose transaction row a concurrent writer (another replica) inserted first fails its
//! statement with a unique violation, and with it the batch, whose items then run one by one.
//!
//! Each batch given here holds at most one item per charger (the writer guarantees it), so a
//! charger's id names its item in the statements.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Row;
use uuid::Uuid;

use super::sessions::{self, SessionRecord, COLUMNS, S_COLUMNS};
use super::transactions::{self, SampleOwner, Started};
use super::{StoreError, Tx};
use crate::events::outbox;
use crate::ocpp::meter::Sample;

/// A 1.6 StartTransaction as the batch stores it.
#[derive(Debug, Clone)]
pub struct StartV16 {
    pub charger_id: String,
    pub connector_id: i32,
    pub id_tag: String,
    pub started_at: DateTime<Utc>,
    pub meter_start_wh: Decimal,
    /// The idTag's status as answered (stored with the transaction).
    pub id_tag_status: String,
    /// The driver whose session the transaction starts: set only for an accepted idTag of a
    /// user.
    pub user_id: Option<Uuid>,
}

/// A 1.6 StopTransaction as the batch stores it.
#[derive(Debug, Clone)]
pub struct StopV16 {
    pub charger_id: String,
    pub transaction_id: i32,
    pub stopped_at: DateTime<Utc>,
    pub meter_stop_wh: Decimal,
    pub reason: String,
    /// Its `transactionData`, normalised.
    pub samples: Vec<Sample>,
}

/// What a stored start answers: the transaction, and the session it started.
pub type StartOutcome = (Started, Option<SessionRecord>);

/// Stores `starts` (at most one per charger) in one statement: the transaction rows (a
/// repeated start finds its first row), each new one inserted already linked to its session:
/// for an accepted user's idTag, the PENDING app session (the oldest for the charger, idTag and
/// connector, as `sessions::start_from_transaction` looks) becomes IN_PROGRESS, else a
/// charger-started session is inserted (not for a charger without a station, nor on a
/// connector with another open session). Their SESSION_STARTED events are added to `events`
/// (the caller writes them before it commits). Per item: `None` when the general path must
/// settle it. A start whose transaction row another writer inserted meanwhile fails the
/// statement (a unique violation), and with it the batch, whose items then run one by one.
pub async fn start_v16_many(
    tx: &mut Tx<'static>,
    starts: &[&StartV16],
    source: &str,
    events: &mut outbox::Queued,
) -> Result<Vec<Option<StartOutcome>>, StoreError> {
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    let chargers: Vec<&str> = starts.iter().map(|s| s.charger_id.as_str()).collect();
    let connectors: Vec<i32> = starts.iter().map(|s| s.connector_id).collect();
    let tags: Vec<&str> = starts.iter().map(|s| s.id_tag.as_str()).collect();
    let at: Vec<DateTime<Utc>> = starts.iter().map(|s| s.started_at).collect();
    let registers: Vec<Decimal> = starts.iter().map(|s| s.meter_start_wh).collect();
    let statuses: Vec<&str> = starts.iter().map(|s| s.id_tag_status.as_str()).collect();
    let users: Vec<Option<Uuid>> = starts.iter().map(|s| s.user_id).collect();
    let ids: Vec<Uuid> = starts.iter().map(|_| Uuid::now_v7()).collect();
    let linking = LINKING_SESSIONS.as_str();
    // `dup`: an identical earlier start (its first answer is given again, nothing linked);
    // `n`: the new starts; then their sessions (`LINKING_SESSIONS`); `ins`: the transaction
    // rows, with their sessions.
    let rows = sqlx::query(&format!(
        "WITH k AS ( \
             SELECT *, NULL::int4 AS remote_start_id FROM unnest($1::text[], $2::int4[], $3::text[], $4::timestamptz[], $5::numeric[], $6::text[], $7::uuid[], $8::uuid[]) \
                 AS k(charger_id, connector_id, id_tag, started_at, meter_start_wh, id_tag_status, user_id, session_id)), \
         dup AS ( \
             SELECT k.charger_id, t.id, t.transaction_id, t.id_tag_status FROM k JOIN charger_transactions t \
                 ON t.charger_id = k.charger_id AND t.connector_id = k.connector_id AND t.id_tag = k.id_tag \
                 AND t.started_at = k.started_at AND t.meter_start_wh = k.meter_start_wh AND t.transaction_id IS NOT NULL), \
         n AS (SELECT k.* FROM k WHERE NOT EXISTS (SELECT 1 FROM dup WHERE dup.charger_id = k.charger_id)), \
         {linking}, \
         ins AS ( \
             INSERT INTO charger_transactions (charger_id, connector_id, transaction_id, id_tag, id_tag_status, started_at, meter_start_wh, session_id) \
             SELECT n.charger_id, n.connector_id, nextval('ocpp16_transaction_id_seq')::integer, n.id_tag, n.id_tag_status, \
                 n.started_at, n.meter_start_wh, x.id \
             FROM n LEFT JOIN x ON x.charger_id = n.charger_id \
             RETURNING charger_id, id, transaction_id, id_tag_status) \
         SELECT k.charger_id AS item, COALESCE(dup.id, ins.id) AS t_pk, \
             COALESCE(dup.transaction_id, ins.transaction_id) AS t_id, \
             COALESCE(dup.id_tag_status, ins.id_tag_status) AS t_status, dup.id IS NOT NULL AS t_duplicate, \
             p.charger_id IS NOT NULL AS t_pending, x.* \
         FROM k LEFT JOIN dup ON dup.charger_id = k.charger_id LEFT JOIN ins ON ins.charger_id = k.charger_id \
             LEFT JOIN p ON p.charger_id = k.charger_id LEFT JOIN x ON x.charger_id = k.charger_id"
    ))
    .bind(&chargers)
    .bind(&connectors)
    .bind(&tags)
    .bind(&at)
    .bind(&registers)
    .bind(&statuses)
    .bind(&users)
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut stored: HashMap<String, (Started, Option<SessionRecord>, bool)> =
        HashMap::with_capacity(rows.len());
    for row in rows {
        let (Some(pk), Some(transaction_id)) = (
            row.try_get::<Option<i64>, _>("t_pk")?,
            row.try_get::<Option<i32>, _>("t_id")?,
        ) else {
            continue;
        };
        let session = sessions::joined(&row)?;
        let status: Option<String> = row.try_get("t_status")?;
        stored.insert(
            row.try_get("item")?,
            (
                Started {
                    pk,
                    transaction_id,
                    id_tag_status: status.unwrap_or_else(|| "Accepted".into()),
                    duplicate: row.try_get("t_duplicate")?,
                },
                session,
                row.try_get("t_pending")?,
            ),
        );
    }
    let mut outcomes = Vec::with_capacity(starts.len());
    for s in starts {
        let Some((started, linked, pending)) = stored.remove(&s.charger_id) else {
            outcomes.push(None);
            continue;
        };
        let session = match s.user_id.filter(|_| !started.duplicate) {
            Some(user_id) => {
                let start = sessions::TransactionStart {
                    charger_id: &s.charger_id,
                    connector_id: s.connector_id,
                    id_tag: &s.id_tag,
                    user_id,
                    started_at: s.started_at,
                    meter_start_wh: Some(s.meter_start_wh),
                    transaction_pk: started.pk,
                    remote_start_id: None,
                    source,
                };
                settle_link(tx, &start, linked, pending, events).await?
            }
            None => None,
        };
        outcomes.push(Some((started, session)));
    }
    Ok(outcomes)
}

/// The CTEs that find or create the session of each new transaction start in a CTE `n`
/// (columns `charger_id, connector_id, id_tag, started_at, meter_start_wh, user_id, session_id,
/// remote_start_id`; at most one row per charger), as `sessions::start_from_transaction` does
/// one: for a start with a `user_id`, the PENDING app session (the one its `remoteStartId`
/// names, else the oldest for the charger, idTag and connector) becomes IN_PROGRESS, else a
/// charger-started session `session_id` is inserted (not for a charger without a station, nor
/// on a connector with another open session). `p` holds the PENDING sessions found, `x` the
/// sessions started, by charger. The UPDATE finds its session by key (see `store::sessions`)
/// and re-checks PENDING once it holds the row: a session that expired or failed meanwhile is
/// left (its charger is in `p` but not in `x`; `link_raced` settles it). The statement that
/// uses them inserts the transaction rows after them, with `x.id`: the foreign key is checked
/// at the end of the statement, when the sessions exist.
///
/// The station of each charger is read by key in a `LATERAL ... LIMIT 1` the planner cannot
/// flatten into a join: as a join, the generic plan made while the fleet was small (a few
/// hundred chargers in the statistics) was a merge join that walked `chargers_pkey` from its
/// first entry to the starting charger's, every batch, a read that grows with the fleet
/// (ADR 024, third amendment).
pub(crate) static LINKING_SESSIONS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let session_columns = S_COLUMNS.as_str();
    format!(
        "p AS ( \
             SELECT DISTINCT ON (n.charger_id) n.charger_id, s.id AS session_id FROM n JOIN sessions s \
                 ON s.charger_id = n.charger_id AND s.status = 'PENDING' AND n.user_id IS NOT NULL \
                 AND ((s.remote_start_id = n.remote_start_id AND s.user_id = n.user_id) \
                     OR (s.id_tag = n.id_tag AND (s.connector_id = n.connector_id OR s.connector_id IS NULL))) \
             ORDER BY n.charger_id, (s.remote_start_id = n.remote_start_id AND s.user_id = n.user_id) IS TRUE DESC, s.created_at), \
         u AS ( \
             UPDATE sessions s SET status = 'IN_PROGRESS', connector_id = COALESCE(NULLIF(n.connector_id, 0), s.connector_id), \
                 start_time = n.started_at, meter_start_wh = n.meter_start_wh, meter_last_wh = n.meter_start_wh, \
                 pending_expires_at = NULL, updated_at = clock_timestamp() \
             FROM p JOIN n ON n.charger_id = p.charger_id WHERE s.id = p.session_id AND (s.status = 'PENDING') IS TRUE \
             RETURNING {session_columns}), \
         i AS ( \
             INSERT INTO sessions (id, user_id, station_id, charger_id, connector_id, id_tag, status, origin, start_time, meter_start_wh, meter_last_wh) \
             SELECT n.session_id, n.user_id, c.station_id, n.charger_id, n.connector_id, n.id_tag, 'IN_PROGRESS', 'CHARGER', n.started_at, \
                 n.meter_start_wh, n.meter_start_wh \
             FROM n CROSS JOIN LATERAL (SELECT ch.station_id FROM chargers ch \
                 WHERE ch.id = n.charger_id AND ch.station_id IS NOT NULL LIMIT 1) c \
             WHERE n.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM p WHERE p.charger_id = n.charger_id) \
             ON CONFLICT DO NOTHING RETURNING {COLUMNS}), \
         x AS (SELECT * FROM u UNION ALL SELECT * FROM i)"
    )
});

/// Settles the session of a start whose transaction row a `LINKING_SESSIONS` statement stored:
/// `linked` is the session it started; `pending` says whether it found a PENDING session, which
/// then changed under it (expired or failed meanwhile) when nothing was linked: the one-by-one
/// path looks again, and otherwise creates a session. A started session's SESSION_STARTED event
/// is added to `events` (the one-by-one path writes its own).
pub(crate) async fn settle_link(
    tx: &mut Tx<'static>,
    start: &sessions::TransactionStart<'_>,
    linked: Option<SessionRecord>,
    pending: bool,
    events: &mut outbox::Queued,
) -> Result<Option<SessionRecord>, StoreError> {
    match linked {
        Some(session) => {
            events.push((
                sessions::started_event(&session, start.started_at),
                start.started_at,
            ));
            Ok(Some(session))
        }
        None if pending => sessions::start_from_transaction(tx, start).await,
        None => {
            tracing::warn!(charger_id = %start.charger_id, connector_id = start.connector_id, "connector already has an open session, or the charger no station; transaction not linked");
            Ok(None)
        }
    }
}

/// Stores `stops` (at most one per charger) of running transactions: each transaction closed,
/// its open session completed with the rules of `sessions::stop_v16`, its samples and its
/// SESSION_ENDED event added to `tail` (written by the caller before it commits). Per item: the session it completed (`Some(None)` when the
/// transaction had no open session), or `None` when the general path must settle it (unknown or
/// already stopped transaction).
pub async fn stop_v16_many(
    tx: &mut Tx<'static>,
    stops: &[&StopV16],
    tail: &mut transactions::Tail,
) -> Result<Vec<Option<Option<SessionRecord>>>, StoreError> {
    if stops.is_empty() {
        return Ok(Vec::new());
    }
    let chargers: Vec<&str> = stops.iter().map(|s| s.charger_id.as_str()).collect();
    let transaction_ids: Vec<i32> = stops.iter().map(|s| s.transaction_id).collect();
    let at: Vec<DateTime<Utc>> = stops.iter().map(|s| s.stopped_at).collect();
    let registers: Vec<Decimal> = stops.iter().map(|s| s.meter_stop_wh).collect();
    let reasons: Vec<&str> = stops.iter().map(|s| s.reason.as_str()).collect();
    let rows = sqlx::query(&completing(
        "WITH k AS ( \
             SELECT * FROM unnest($1::text[], $2::int4[], $3::timestamptz[], $4::numeric[], $5::text[]) \
                 AS k(charger_id, transaction_id, stopped_at, meter_stop_wh, reason)), \
         t AS ( \
             UPDATE charger_transactions ct SET stopped_at = k.stopped_at, meter_stop_wh = k.meter_stop_wh, \
                 stop_reason = k.reason, updated_at = now() \
             FROM k WHERE ct.charger_id = k.charger_id AND ct.transaction_id = k.transaction_id AND ct.stopped_at IS NULL \
             RETURNING ct.id, ct.charger_id, ct.connector_id, ct.session_id, k.stopped_at, k.meter_stop_wh, k.reason)",
    ))
    .bind(&chargers)
    .bind(&transaction_ids)
    .bind(&at)
    .bind(&registers)
    .bind(&reasons)
    .fetch_all(&mut **tx)
    .await?;
    let closes: Vec<Close<'_>> = stops
        .iter()
        .map(|s| Close {
            charger_id: &s.charger_id,
            stopped_at: s.stopped_at,
            reason: &s.reason,
            samples: &s.samples,
        })
        .collect();
    closed(rows, &closes, tail)
}

/// The statement that completes the open sessions of the transactions a `t` CTE closed (its
/// rows: `id, charger_id, connector_id, session_id, stopped_at, meter_stop_wh, reason`), with
/// the rules of `sessions::complete`: the final register, else the session's last reading,
/// else its start; energy never negative. The sessions are found by key (see `store::sessions`).
/// `closing` holds the `WITH ... t AS (...)` part.
pub(crate) fn completing(closing: &str) -> String {
    let stop = "COALESCE(t.meter_stop_wh, s.meter_last_wh, s.meter_start_wh, 0)";
    let session_columns = S_COLUMNS.as_str();
    format!(
        "{closing}, \
         done AS ( \
             UPDATE sessions s SET status = 'COMPLETED', end_time = t.stopped_at, meter_last_wh = {stop}, \
                 energy_kwh = GREATEST(0, round(({stop} - COALESCE(s.meter_start_wh, {stop})) / 1000, 3)), \
                 power_kw = 0, stop_reason = t.reason, updated_at = clock_timestamp() \
             FROM t WHERE s.id = t.session_id AND (s.status IN ('PENDING', 'IN_PROGRESS', 'STOPPING')) IS TRUE \
             RETURNING {session_columns}) \
         SELECT t.charger_id AS item, t.id AS transaction_pk, t.connector_id AS transaction_connector, \
             t.session_id AS transaction_session, done.* \
         FROM t LEFT JOIN done ON done.id = t.session_id"
    )
}

/// One transaction end of a batch, as `closed` finishes it.
pub(crate) struct Close<'a> {
    pub charger_id: &'a str,
    pub stopped_at: DateTime<Utc>,
    pub reason: &'a str,
    pub samples: &'a [Sample],
}

/// Finishes the ends a `completing` statement closed (its `rows`, at most one per charger):
/// their samples and a SESSION_ENDED event for each completed session added to `tail` (the
/// caller writes it before it commits). Per item of `closes`: the session it completed
/// (`Some(None)` when the transaction had no open session), or `None` when the statement closed
/// no transaction for it.
pub(crate) fn closed(
    rows: Vec<sqlx::postgres::PgRow>,
    closes: &[Close<'_>],
    tail: &mut transactions::Tail,
) -> Result<Vec<Option<Option<SessionRecord>>>, StoreError> {
    struct Stopped {
        transaction_pk: i64,
        connector_id: i32,
        session_id: Option<Uuid>,
        session: Option<SessionRecord>,
    }
    let mut stopped: HashMap<String, Stopped> = HashMap::with_capacity(rows.len());
    for row in rows {
        let session = sessions::joined(&row)?;
        stopped.insert(
            row.try_get("item")?,
            Stopped {
                transaction_pk: row.try_get("transaction_pk")?,
                connector_id: row.try_get("transaction_connector")?,
                session_id: row.try_get("transaction_session")?,
                session,
            },
        );
    }
    for c in closes {
        let Some(done) = stopped.get(c.charger_id) else {
            continue;
        };
        let owner = SampleOwner {
            charger_id: c.charger_id,
            connector_id: done.connector_id,
            transaction_pk: Some(done.transaction_pk),
            session_id: done.session_id,
        };
        for sample in c.samples {
            tail.samples.push(owner, sample);
        }
        if let Some(session) = &done.session {
            tail.events.push((
                sessions::ended_event(session, c.stopped_at, c.reason),
                c.stopped_at,
            ));
        }
    }
    Ok(closes
        .iter()
        .map(|c| stopped.remove(c.charger_id).map(|done| done.session))
        .collect())
}
