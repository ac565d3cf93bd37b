//! Charging sessions: the domain view of charging. Every state change writes its event
//! (SESSION_STARTED / SESSION_UPDATED / SESSION_ENDED) to the outbox in the same transaction.
//!
//! Sessions found by key in a join: statements that update the sessions of a batch
//! (`WHERE s.id = t.session_id`) write their status test as `(s.status IN (...)) IS TRUE`. The
//! plain test implies the predicate of the partial index `sessions_open_idx`, and with
//! statistics taken while few sessions were open (any ANALYZE between rushes) the planner took
//! that index for nearly empty: it scanned every open session once per row of the batch in a
//! nested loop instead of looking each one up by its key. In the transaction benchmark the stop
//! statement filtered 3,442 rows on average and took 4.2 ms per batch that way. Wrapped in
//! `IS TRUE` the test means the same (a NULL status passes neither form) but no longer matches
//! the index's predicate, so the primary key is the only way in.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use super::{StoreError, Tx};
use crate::events::{outbox, Event};

/// Session statuses as stored (and shown by the API).
pub mod status {
    pub const PENDING: &str = "PENDING";
    pub const IN_PROGRESS: &str = "IN_PROGRESS";
    pub const STOPPING: &str = "STOPPING";
    pub const COMPLETED: &str = "COMPLETED";
    pub const REJECTED: &str = "REJECTED";
    pub const FAILED: &str = "FAILED";

    /// A session in one of these states has a charger transaction to come or running.
    pub fn is_open(status: &str) -> bool {
        matches!(status, PENDING | IN_PROGRESS | STOPPING)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub station_id: Uuid,
    pub charger_id: String,
    pub connector_id: Option<i32>,
    pub id_tag: String,
    pub status: String,
    pub origin: String,
    pub remote_start_id: Option<i32>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub meter_start_wh: Option<Decimal>,
    pub meter_last_wh: Option<Decimal>,
    pub energy_kwh: Decimal,
    pub power_kw: Option<f64>,
    pub max_power_kw: Option<f64>,
    pub max_energy_kwh: Option<Decimal>,
    pub stop_reason: Option<String>,
    pub failure_reason: Option<String>,
    pub cost: Option<Decimal>,
    pub currency: Option<String>,
    pub pending_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const COLUMNS: &str = "id, user_id, station_id, charger_id, connector_id, id_tag, status, origin, remote_start_id, \
    start_time, end_time, meter_start_wh, meter_last_wh, energy_kwh, power_kw, max_power_kw, max_energy_kwh, \
    stop_reason, failure_reason, cost, currency::text AS currency, pending_expires_at, created_at, updated_at";

/// `COLUMNS` of a `sessions` aliased `s` (for statements that join it), built once.
pub(crate) static S_COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    COLUMNS
        .split(", ")
        .map(|c| format!("s.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
});

/// The session of a row that LEFT JOINed one (its `COLUMNS`): `None` when its `id` is NULL.
pub(crate) fn joined(row: &sqlx::postgres::PgRow) -> Result<Option<SessionRecord>, StoreError> {
    match sqlx::Row::try_get::<Option<Uuid>, _>(row, "id")? {
        Some(_) => Ok(Some(<SessionRecord as sqlx::FromRow<_>>::from_row(row)?)),
        None => Ok(None),
    }
}

impl SessionRecord {
    pub fn energy_kwh_f64(&self) -> f64 {
        self.energy_kwh.to_f64().unwrap_or_default()
    }

    pub fn is_open(&self) -> bool {
        status::is_open(&self.status)
    }
}

pub struct NewSession<'a> {
    pub user_id: Uuid,
    pub station_id: Uuid,
    pub charger_id: &'a str,
    pub connector_id: i32,
    pub id_tag: &'a str,
    pub remote_start_id: i32,
    pub pending_for: Duration,
}

/// Creates a PENDING app session. A connector with an open session is a `Conflict` (the unique
/// index decides between concurrent requests: exactly one wins).
#[tracing::instrument(skip_all, fields(charger_id = %new.charger_id))]
pub async fn create_pending(
    pool: &PgPool,
    new: &NewSession<'_>,
) -> Result<SessionRecord, StoreError> {
    sqlx::query_as::<_, SessionRecord>(&format!(
        "INSERT INTO sessions (id, user_id, station_id, charger_id, connector_id, id_tag, status, origin, remote_start_id, pending_expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', 'APP', $7, $8) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(new.user_id)
    .bind(new.station_id)
    .bind(new.charger_id)
    .bind(new.connector_id)
    .bind(new.id_tag)
    .bind(new.remote_start_id)
    .bind(Utc::now() + new.pending_for)
    .fetch_one(pool)
    .await
    .map_err(|e| StoreError::from_unique(e, "sessions_one_open_per_connector", "the connector already has an active session"))
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
    Ok(
        sqlx::query_as::<_, SessionRecord>(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?,
    )
}

async fn lock(tx: &mut Tx<'_>, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
    // row locks on the durable path are NO KEY UPDATE, so that foreign-key checks of inserts
    // referencing the row do not wait (ADR 012)
    Ok(sqlx::query_as::<_, SessionRecord>(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE id = $1 FOR NO KEY UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?)
}

pub async fn list_for_user(
    pool: &PgPool,
    user_id: Uuid,
    status: Option<&str>,
    first: i64,
) -> Result<Vec<SessionRecord>, StoreError> {
    Ok(sqlx::query_as::<_, SessionRecord>(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) \
         ORDER BY created_at DESC LIMIT $3"
    ))
    .bind(user_id)
    .bind(status)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// Unfinished sessions of these chargers, by charger (their actors follow each charger to
/// this replica).
pub async fn open_sessions_for_chargers(
    pool: &PgPool,
    charger_ids: &[String],
) -> Result<std::collections::HashMap<String, Vec<SessionRecord>>, StoreError> {
    let rows = sqlx::query_as::<_, SessionRecord>(&format!(
        "SELECT {COLUMNS} FROM sessions \
         WHERE charger_id = ANY($1) AND status IN ('PENDING', 'IN_PROGRESS', 'STOPPING')"
    ))
    .bind(charger_ids)
    .fetch_all(pool)
    .await?;
    let mut by_charger: std::collections::HashMap<String, Vec<SessionRecord>> = Default::default();
    for row in rows {
        by_charger
            .entry(row.charger_id.clone())
            .or_default()
            .push(row);
    }
    Ok(by_charger)
}

/// Ends a session that never started (REJECTED or FAILED) if it is still PENDING.
pub async fn fail_pending(
    pool: &PgPool,
    id: Uuid,
    new_status: &str,
    reason: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    Ok(sqlx::query_as::<_, SessionRecord>(&format!(
        "UPDATE sessions SET status = $2, failure_reason = $3, end_time = now(), updated_at = clock_timestamp() \
         WHERE id = $1 AND status = 'PENDING' RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(new_status)
    .bind(reason)
    .fetch_optional(pool)
    .await?)
}

/// PENDING sessions whose charger never started them, now FAILED.
pub async fn expire_pending(pool: &PgPool) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE sessions SET status = 'FAILED', failure_reason = 'the charger did not start the session in time', \
             end_time = now(), updated_at = clock_timestamp() \
         WHERE status = 'PENDING' AND pending_expires_at < now() RETURNING id",
    )
    .fetch_all(pool)
    .await?)
}

/// IN_PROGRESS -> STOPPING after the charger accepted a remote stop.
pub async fn mark_stopping(pool: &PgPool, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
    Ok(sqlx::query_as::<_, SessionRecord>(&format!(
        "UPDATE sessions SET status = 'STOPPING', updated_at = clock_timestamp() WHERE id = $1 AND status = 'IN_PROGRESS' RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

pub async fn set_limits(
    pool: &PgPool,
    id: Uuid,
    max_power_kw: Option<f64>,
    max_energy_kwh: Option<Decimal>,
) -> Result<Option<SessionRecord>, StoreError> {
    Ok(sqlx::query_as::<_, SessionRecord>(&format!(
        "UPDATE sessions SET max_power_kw = COALESCE($2, max_power_kw), max_energy_kwh = COALESCE($3, max_energy_kwh), \
             updated_at = clock_timestamp() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(max_power_kw)
    .bind(max_energy_kwh)
    .fetch_optional(pool)
    .await?)
}

/// What the charger's start tells the session layer.
pub struct TransactionStart<'a> {
    pub charger_id: &'a str,
    pub connector_id: i32,
    pub id_tag: &'a str,
    pub user_id: Uuid,
    pub started_at: DateTime<Utc>,
    /// The energy register at the start; 2.0.1 chargers may not report one (the first reading
    /// then becomes the baseline).
    pub meter_start_wh: Option<Decimal>,
    pub transaction_pk: i64,
    /// 2.0.1 `remoteStartId` echoed by the charger: names the PENDING session exactly.
    pub remote_start_id: Option<i32>,
    pub source: &'a str,
}

/// The PENDING app session a starting transaction belongs to: the one whose `remoteStartId` the
/// charger echoed (2.0.1), else the oldest for this connector and idTag.
async fn pending_for(
    tx: &mut Tx<'_>,
    start: &TransactionStart<'_>,
) -> Result<Option<Uuid>, StoreError> {
    if let Some(remote_start_id) = start.remote_start_id {
        let by_remote_start: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE charger_id = $1 AND remote_start_id = $2 AND user_id = $3 \
             AND status = 'PENDING' LIMIT 1 FOR NO KEY UPDATE",
        )
        .bind(start.charger_id)
        .bind(remote_start_id)
        .bind(start.user_id)
        .fetch_optional(&mut **tx)
        .await?;
        if by_remote_start.is_some() {
            return Ok(by_remote_start);
        }
    }
    Ok(sqlx::query_scalar(
        "SELECT id FROM sessions WHERE charger_id = $1 AND id_tag = $2 AND status = 'PENDING' \
         AND (connector_id = $3 OR connector_id IS NULL) ORDER BY created_at LIMIT 1 FOR NO KEY UPDATE",
    )
    .bind(start.charger_id)
    .bind(start.id_tag)
    .bind(start.connector_id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Links a charger transaction to its session: the PENDING app session (see `pending_for`)
/// becomes IN_PROGRESS, or (RFID / plug-and-charge) a new charger-started session is created.
/// Emits SESSION_STARTED. `None` when the charger has no station or the connector already has
/// another open session.
pub async fn start_from_transaction(
    tx: &mut Tx<'_>,
    start: &TransactionStart<'_>,
) -> Result<Option<SessionRecord>, StoreError> {
    let pending = pending_for(tx, start).await?;
    let session = match pending {
        // connector 0: a 2.0.1 transaction that named no EVSE keeps the session's connector
        Some(id) => sqlx::query_as::<_, SessionRecord>(&format!(
            "UPDATE sessions SET status = 'IN_PROGRESS', connector_id = COALESCE(NULLIF($2, 0), connector_id), \
                 start_time = $3, meter_start_wh = $4, meter_last_wh = $4, pending_expires_at = NULL, \
                 updated_at = clock_timestamp() WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(start.connector_id)
        .bind(start.started_at)
        .bind(start.meter_start_wh)
        .fetch_one(&mut **tx)
        .await?,
        None => {
            // the charger's station in the same statement (a charger without one gets no session)
            let inserted = sqlx::query_as::<_, SessionRecord>(&format!(
                "INSERT INTO sessions (id, user_id, station_id, charger_id, connector_id, id_tag, status, origin, start_time, meter_start_wh, meter_last_wh) \
                 SELECT $1, $2, c.station_id, $3, $4, $5, 'IN_PROGRESS', 'CHARGER', $6, $7, $7 \
                 FROM chargers c WHERE c.id = $3 AND c.station_id IS NOT NULL \
                 ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
            ))
            .bind(Uuid::now_v7())
            .bind(start.user_id)
            .bind(start.charger_id)
            .bind(start.connector_id)
            .bind(start.id_tag)
            .bind(start.started_at)
            .bind(start.meter_start_wh)
            .fetch_optional(&mut **tx)
            .await?;
            match inserted {
                Some(session) => session,
                None => {
                    tracing::warn!(charger_id = %start.charger_id, connector_id = start.connector_id, "connector already has an open session, or the charger no station; transaction not linked");
                    return Ok(None);
                }
            }
        }
    };
    sqlx::query("UPDATE charger_transactions SET session_id = $2 WHERE id = $1")
        .bind(start.transaction_pk)
        .bind(session.id)
        .execute(&mut **tx)
        .await?;
    outbox::enqueue(
        tx,
        started_event(&session, start.started_at),
        start.started_at,
        start.source,
    )
    .await?;
    Ok(Some(session))
}

/// SESSION_STARTED of `session`, whose transaction started at `started_at`.
pub(crate) fn started_event(session: &SessionRecord, started_at: DateTime<Utc>) -> Event {
    Event::SessionStarted {
        session_id: session.id,
        user_id: session.user_id,
        station_id: session.station_id,
        charger_id: session.charger_id.clone(),
        connector_id: session.connector_id,
        started_at,
    }
}

/// Energy between two register readings in kWh, never negative. The registers come from a
/// charger: arithmetic is checked, and a difference `Decimal` cannot hold counts as nothing.
fn energy_kwh(meter_start_wh: Option<Decimal>, meter_wh: Decimal) -> Decimal {
    meter_wh
        .checked_sub(meter_start_wh.unwrap_or(meter_wh))
        .and_then(|delta| delta.checked_div(Decimal::ONE_THOUSAND))
        .unwrap_or_default()
        .max(Decimal::ZERO)
        // as PostgreSQL's round() in the set-based statements: half away from zero
        .round_dp_with_strategy(3, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
}

/// One meter reading of a session, for `record_readings`.
#[derive(Debug, Clone)]
pub struct Reading {
    pub session_id: Uuid,
    pub meter_wh: Option<Decimal>,
    pub power_w: Option<Decimal>,
}

/// Records readings of open sessions (each session at most once) in one statement, with the
/// rules of `record_reading`: the register only moves forward, a transaction without a start
/// register takes its first reading as the start, energy is never negative. Returns the rows
/// that changed; no events (the caller decides which changes get one).
pub async fn record_readings(
    tx: &mut Tx<'_>,
    readings: &[Reading],
) -> Result<Vec<SessionRecord>, StoreError> {
    if readings.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = readings.iter().map(|r| r.session_id).collect();
    let meters: Vec<Option<Decimal>> = readings.iter().map(|r| r.meter_wh).collect();
    let powers: Vec<Option<Decimal>> = readings.iter().map(|r| r.power_w).collect();
    // the status test is written `(...) IS TRUE` so that the sessions are found by key (see the
    // module's notes); every value is computed from `s`, the row being updated: under READ COMMITTED a
    // concurrent completion makes PostgreSQL re-check the WHERE and re-evaluate these on the
    // row as committed, so a reading can never write over a session that just completed
    let last = "CASE WHEN r.meter_wh IS NULL OR r.meter_wh < s.meter_last_wh THEN s.meter_last_wh ELSE r.meter_wh END";
    let start = "COALESCE(s.meter_start_wh, r.meter_wh)";
    let power = "COALESCE((r.power_w / 1000)::float8, s.power_kw)";
    // a session created by this very transaction (a 2.0.1 Started with its reading) keeps its
    // creation stamp: its committed snapshot is then recognisably the one of the commit that
    // created it, which the session supervisor trusts without a read back (`created_at` is the
    // creating transaction's now(); every later transaction's clock_timestamp() is later)
    // (only while the row still has it: a stamp never moves back)
    let stamp = "CASE WHEN s.created_at = now() AND s.updated_at = s.created_at THEN s.created_at \
                 ELSE clock_timestamp() END";
    Ok(sqlx::query_as::<_, SessionRecord>(&format!(
        "UPDATE sessions s SET meter_start_wh = {start}, meter_last_wh = {last}, \
             energy_kwh = GREATEST(0, round((COALESCE({last}, 0) - COALESCE({start}, {last}, 0)) / 1000, 3)), \
             power_kw = {power}, updated_at = {stamp} \
         FROM unnest($1::uuid[], $2::numeric[], $3::numeric[]) AS r(id, meter_wh, power_w) \
         WHERE s.id = r.id AND (s.status IN ('IN_PROGRESS', 'STOPPING')) IS TRUE \
             AND ({start}, {last}, {power}) IS DISTINCT FROM (s.meter_start_wh, s.meter_last_wh, s.power_kw) \
         RETURNING {}",
        S_COLUMNS.as_str()
    ))
    .bind(&ids)
    .bind(&meters)
    .bind(&powers)
    .fetch_all(&mut **tx)
    .await?)
}

/// Records a meter reading of an open session. Emits SESSION_UPDATED when something changed.
pub async fn record_reading(
    tx: &mut Tx<'_>,
    session_id: Uuid,
    meter_wh: Option<Decimal>,
    power_w: Option<Decimal>,
    sampled_at: DateTime<Utc>,
    source: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let Some(current) = lock(tx, session_id).await? else {
        return Ok(None);
    };
    if !matches!(
        current.status.as_str(),
        status::IN_PROGRESS | status::STOPPING
    ) {
        return Ok(None);
    }
    // meter readings only move forward; an older offline-queued reading does not undo a newer one
    let meter = match (meter_wh, current.meter_last_wh) {
        (Some(new), Some(last)) if new < last => last,
        (Some(new), _) => new,
        (None, last) => last.unwrap_or_default(),
    };
    // a transaction that started without an energy register takes its first reading as the start
    let meter_start = current.meter_start_wh.or(meter_wh);
    let energy = energy_kwh(meter_start, meter);
    let power_kw = power_w
        .and_then(|w| w.checked_div(Decimal::ONE_THOUSAND))
        .and_then(|kw| kw.to_f64())
        .or(current.power_kw);
    if energy == current.energy_kwh
        && power_kw == current.power_kw
        && meter_start == current.meter_start_wh
    {
        return Ok(Some(current));
    }
    let updated = sqlx::query_as::<_, SessionRecord>(&format!(
        "UPDATE sessions SET meter_start_wh = $5, meter_last_wh = $2, energy_kwh = $3, power_kw = $4, \
             updated_at = clock_timestamp() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(session_id)
    .bind(meter)
    .bind(energy)
    .bind(power_kw)
    .bind(meter_start)
    .fetch_one(&mut **tx)
    .await?;
    outbox::enqueue(
        tx,
        Event::SessionUpdated {
            session_id,
            user_id: updated.user_id,
            energy_kwh: updated.energy_kwh_f64(),
            power_kw: updated.power_kw,
            status: updated.status.clone(),
        },
        sampled_at,
        source,
    )
    .await?;
    Ok(Some(updated))
}

/// Completes a session with the charger's final meter value and time. Emits SESSION_ENDED.
/// Without a final meter value (a 2.0.1 Ended event may carry none) the last reading counts.
pub async fn complete(
    tx: &mut Tx<'_>,
    session_id: Uuid,
    ended_at: DateTime<Utc>,
    meter_stop_wh: Option<Decimal>,
    stop_reason: &str,
    source: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let Some(current) = lock(tx, session_id).await? else {
        return Ok(None);
    };
    if !current.is_open() {
        return Ok(None);
    }
    let meter_stop_wh = meter_stop_wh
        .or(current.meter_last_wh)
        .or(current.meter_start_wh)
        .unwrap_or_default();
    let energy = energy_kwh(current.meter_start_wh, meter_stop_wh);
    let done = sqlx::query_as::<_, SessionRecord>(&format!(
        "UPDATE sessions SET status = 'COMPLETED', end_time = $2, meter_last_wh = $3, energy_kwh = $4, \
             power_kw = 0, stop_reason = $5, updated_at = clock_timestamp() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(session_id)
    .bind(ended_at)
    .bind(meter_stop_wh)
    .bind(energy)
    .bind(stop_reason)
    .fetch_one(&mut **tx)
    .await?;
    outbox::enqueue(
        tx,
        ended_event(&done, ended_at, stop_reason),
        ended_at,
        source,
    )
    .await?;
    Ok(Some(done))
}

/// SESSION_ENDED of a session that `done` completed at `ended_at`.
pub(crate) fn ended_event(
    done: &SessionRecord,
    ended_at: DateTime<Utc>,
    stop_reason: &str,
) -> Event {
    let started = done.start_time.unwrap_or(ended_at);
    let duration_minutes = ((ended_at - started).num_seconds().max(0) + 59) / 60;
    Event::SessionEnded {
        session_id: done.id,
        user_id: done.user_id,
        station_id: done.station_id,
        charger_id: done.charger_id.clone(),
        energy_kwh: done.energy_kwh_f64(),
        duration_minutes,
        ended_at,
        stop_reason: stop_reason.to_string(),
    }
}

/// What `stop_v16` stopped: the transaction, and its session when that was open.
#[derive(Debug, Clone)]
pub struct StoppedV16 {
    pub transaction_pk: i64,
    pub connector_id: i32,
    pub session_id: Option<Uuid>,
    pub session: Option<SessionRecord>,
}

/// A 1.6 StopTransaction of a running transaction in one statement: the transaction is closed
/// and its open session completed with the same rules as `complete` (the final register, else
/// the last reading; energy never negative), then SESSION_ENDED is queued. `None` when the
/// charger has no running transaction with that id (unknown, or stopped already): the caller
/// tells those apart on the general path.
pub async fn stop_v16(
    tx: &mut Tx<'_>,
    charger_id: &str,
    transaction_id: i32,
    stopped_at: DateTime<Utc>,
    meter_stop_wh: Decimal,
    stop_reason: &str,
    source: &str,
) -> Result<Option<StoppedV16>, StoreError> {
    use sqlx::Row;
    let stop = "COALESCE($4::numeric, s.meter_last_wh, s.meter_start_wh, 0)";
    let row = sqlx::query(&format!(
        "WITH t AS ( \
             UPDATE charger_transactions SET stopped_at = $3, meter_stop_wh = $4, stop_reason = $5, updated_at = now() \
             WHERE charger_id = $1 AND transaction_id = $2 AND stopped_at IS NULL \
             RETURNING id, connector_id, session_id), \
         done AS ( \
             UPDATE sessions s SET status = 'COMPLETED', end_time = $3, meter_last_wh = {stop}, \
                 energy_kwh = GREATEST(0, round(({stop} - COALESCE(s.meter_start_wh, {stop})) / 1000, 3)), \
                 power_kw = 0, stop_reason = $5, updated_at = clock_timestamp() \
             FROM t WHERE s.id = t.session_id AND (s.status IN ('PENDING', 'IN_PROGRESS', 'STOPPING')) IS TRUE \
             RETURNING {}) \
         SELECT t.id AS transaction_pk, t.connector_id AS transaction_connector, t.session_id AS transaction_session, done.* \
         FROM t LEFT JOIN done ON true",
        S_COLUMNS.as_str()
    ))
    .bind(charger_id)
    .bind(transaction_id)
    .bind(stopped_at)
    .bind(meter_stop_wh)
    .bind(stop_reason)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let session = joined(&row)?;
    if let Some(done) = &session {
        outbox::enqueue(
            tx,
            ended_event(done, stopped_at, stop_reason),
            stopped_at,
            source,
        )
        .await?;
    }
    Ok(Some(StoppedV16 {
        transaction_pk: row.try_get("transaction_pk")?,
        connector_id: row.try_get("transaction_connector")?,
        session_id: row.try_get("transaction_session")?,
        session,
    }))
}

/// Whether a station exists (and is still listed by OCM).
pub async fn station_exists(pool: &PgPool, station_id: Uuid) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM stations WHERE id = $1)")
            .bind(station_id)
            .fetch_one(pool)
            .await?,
    )
}

/// A session with the keys of its latest charger transaction (see `transaction_keys`).
pub struct WithTransaction {
    pub record: SessionRecord,
    pub keys: TransactionKeys,
}

/// How each protocol names a session's charger transaction: 1.6 by our integer id, 2.0.1 by the
/// station's string.
pub type TransactionKeys = (Option<i32>, Option<String>);

/// The session and its transaction's keys in one round trip: what a command to its actor
/// decides on (an end asks the charger to stop that transaction).
pub async fn find_with_transaction(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<WithTransaction>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {}, t.transaction_id AS t_transaction_id, t.transaction_ref AS t_transaction_ref \
         FROM sessions s LEFT JOIN LATERAL (SELECT transaction_id, transaction_ref \
         FROM charger_transactions WHERE session_id = s.id ORDER BY id DESC LIMIT 1) t ON true \
         WHERE s.id = $1",
        *S_COLUMNS
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let record = <SessionRecord as sqlx::FromRow<_>>::from_row(&row)?;
    let keys = (
        sqlx::Row::try_get(&row, "t_transaction_id")?,
        sqlx::Row::try_get(&row, "t_transaction_ref")?,
    );
    Ok(Some(WithTransaction { record, keys }))
}

/// The charger's keys of a session's (latest) charger transaction: the 1.6 transactionId and
/// the 2.0.1 transactionId string, whichever its protocol has.
pub async fn transaction_keys(
    pool: &PgPool,
    session_id: Uuid,
) -> Result<TransactionKeys, StoreError> {
    Ok(sqlx::query_as::<_, TransactionKeys>(
        "SELECT transaction_id, transaction_ref FROM charger_transactions \
         WHERE session_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(session_id)
    .fetch_optional(pool)
    .await?
    .unwrap_or((None, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_the_register_delta_in_kwh() {
        assert_eq!(
            energy_kwh(Some(Decimal::from(1000)), Decimal::from(13500)),
            Decimal::new(12500, 3)
        );
        assert_eq!(
            energy_kwh(Some(Decimal::from(5000)), Decimal::from(4000)),
            Decimal::ZERO
        );
    }

    #[test]
    fn a_half_watt_hour_rounds_away_from_zero_as_postgresql_rounds() {
        // 2.5 Wh and 3.5 Wh: PostgreSQL's round(numeric) (the set-based stop) gives 0.003 and
        // 0.004; banker's rounding would give 0.002 for the first
        assert_eq!(
            energy_kwh(Some(Decimal::ZERO), Decimal::new(25, 1)),
            Decimal::new(3, 3)
        );
        assert_eq!(
            energy_kwh(Some(Decimal::ZERO), Decimal::new(35, 1)),
            Decimal::new(4, 3)
        );
    }
}

/// What `startSession` reads, in one round trip: up to two chargers of the station (or the
/// one named), the user's plan, balance and app idTag, and the connectors of the charger when
/// exactly one matched.
#[derive(Debug, Clone)]
pub struct StartContext {
    /// (charger id, online), at most two, by id.
    pub chargers: Vec<(String, bool)>,
    pub plan: String,
    pub wallet_balance: Decimal,
    /// What the user owes: PENDING and OVERDUE invoices.
    pub unpaid: Decimal,
    pub id_tag: Option<String>,
    /// (connector id, status) of the one matching charger; empty when none or several matched.
    pub connectors: Vec<(i32, String)>,
    /// (driver, connector or None for any) of the one matching charger's live, accepted
    /// reservations.
    pub reservations: Vec<(Uuid, Option<i32>)>,
}

type StartRow = (
    String,
    Decimal,
    Decimal,
    Option<String>,
    Vec<String>,
    Vec<bool>,
    Vec<i32>,
    Vec<String>,
    Vec<Uuid>,
    Vec<Option<i32>>,
);

/// `None` when the user does not exist.
pub async fn start_context(
    pool: &PgPool,
    station_id: Uuid,
    charger_id: Option<&str>,
    user_id: Uuid,
) -> Result<Option<StartContext>, StoreError> {
    // two statements rather than `$2 IS NULL OR id = $2`: with that, one cached plan serves
    // both and reads every charger of the station (16 ms per call at 10,000 chargers) instead
    // of one primary-key look-up, or the first two of the (station_id, id) index
    let chargers = match charger_id {
        Some(_) => "SELECT id, online FROM chargers WHERE id = $2 AND station_id = $1",
        None => "SELECT id, online FROM chargers WHERE station_id = $1 AND $2::text IS NULL ORDER BY id LIMIT 2",
    };
    let row: Option<StartRow> = sqlx::query_as(&format!(
        "WITH c AS ({chargers}), one AS (SELECT id FROM c WHERE (SELECT count(*) FROM c) = 1) \
         SELECT u.plan::text, u.wallet_balance, \
             (SELECT COALESCE(sum(i.amount), 0) FROM invoices i \
                 WHERE i.user_id = u.id AND i.status IN ('PENDING', 'OVERDUE')), \
             (SELECT t.id_tag FROM id_tags t WHERE t.user_id = u.id AND t.kind = 'APP' ORDER BY t.created_at LIMIT 1), \
             COALESCE((SELECT array_agg(c.id ORDER BY c.id) FROM c), '{{}}'), \
             COALESCE((SELECT array_agg(c.online ORDER BY c.id) FROM c), '{{}}'), \
             COALESCE((SELECT array_agg(k.connector_id ORDER BY k.connector_id) FROM connector_status k \
                 WHERE k.charger_id IN (SELECT id FROM one)), '{{}}'), \
             COALESCE((SELECT array_agg(k.status ORDER BY k.connector_id) FROM connector_status k \
                 WHERE k.charger_id IN (SELECT id FROM one)), '{{}}'), \
             COALESCE((SELECT array_agg(r.user_id ORDER BY r.id) FROM reservations r \
                 WHERE r.charger_id IN (SELECT id FROM one) AND r.status = 'ACCEPTED' \
                 AND r.expires_at > now()), '{{}}'), \
             COALESCE((SELECT array_agg(r.connector_id ORDER BY r.id) FROM reservations r \
                 WHERE r.charger_id IN (SELECT id FROM one) AND r.status = 'ACCEPTED' \
                 AND r.expires_at > now()), '{{}}') \
         FROM users u WHERE u.id = $3"
    ))
    .bind(station_id)
    .bind(charger_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(
            plan,
            wallet_balance,
            unpaid,
            id_tag,
            ids,
            online,
            connector_ids,
            statuses,
            holders,
            held,
        )| {
            StartContext {
                chargers: ids.into_iter().zip(online).collect(),
                plan,
                wallet_balance,
                unpaid,
                id_tag,
                connectors: connector_ids.into_iter().zip(statuses).collect(),
                reservations: holders.into_iter().zip(held).collect(),
            }
        },
    ))
}
