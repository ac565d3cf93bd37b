//! Read models for operators (the console and other staff clients): the fleet at a glance, and
//! lists across every user (sessions, invoices, wallets), a session's meter curve, a charger's
//! command history and the stations as map points. Reads only; nothing here changes state.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use super::invoices::{InvoiceRecord, COLUMNS as INVOICE_COLUMNS};
use super::sessions::{SessionRecord, COLUMNS as SESSION_COLUMNS};
use super::users::{UserRecord, USER_COLUMNS};
use super::StoreError;

/// The fleet right now. "Today" is the current UTC day.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OverviewRecord {
    pub chargers_online: i64,
    pub chargers_offline: i64,
    /// Chargers with at least one connector (or the charger itself, connector 0) FAULTED.
    pub chargers_faulted: i64,
    pub sessions_running: i64,
    /// Energy of the sessions started today (UTC), finished or not.
    pub energy_today_kwh: Decimal,
}

#[tracing::instrument(skip_all)]
pub async fn overview(pool: &PgPool) -> Result<OverviewRecord, StoreError> {
    Ok(sqlx::query_as::<_, OverviewRecord>(
        "SELECT
            (SELECT count(*) FROM chargers WHERE online) AS chargers_online,
            (SELECT count(*) FROM chargers WHERE NOT online) AS chargers_offline,
            (SELECT count(DISTINCT charger_id) FROM connector_status WHERE status = 'FAULTED')
                AS chargers_faulted,
            (SELECT count(*) FROM sessions WHERE status IN ('IN_PROGRESS', 'STOPPING'))
                AS sessions_running,
            (SELECT coalesce(sum(energy_kwh), 0) FROM sessions
              WHERE start_time >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
                AS energy_today_kwh",
    )
    .fetch_one(pool)
    .await?)
}

/// Every user's sessions, newest first, optionally of one status and one charger.
#[tracing::instrument(skip_all)]
pub async fn sessions(
    pool: &PgPool,
    status: Option<&str>,
    charger_id: Option<&str>,
    first: i64,
) -> Result<Vec<SessionRecord>, StoreError> {
    Ok(sqlx::query_as::<_, SessionRecord>(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions
          WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR charger_id = $2)
          ORDER BY created_at DESC LIMIT $3"
    ))
    .bind(status)
    .bind(charger_id)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// One point of a session's meter curve: the energy delivered since the session started and
/// the power, as the charger sampled them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MeterPoint {
    pub sampled_at: DateTime<Utc>,
    pub energy_kwh: Option<Decimal>,
    pub power_kw: Option<Decimal>,
}

/// A session's samples of the energy register and active power, oldest first (the last
/// `first` of them). Phase values are left out: the totals are what the curve shows.
#[tracing::instrument(skip_all)]
pub async fn meter_curve(
    pool: &PgPool,
    session_id: Uuid,
    first: i64,
) -> Result<Vec<MeterPoint>, StoreError> {
    Ok(sqlx::query_as::<_, MeterPoint>(
        "SELECT sampled_at, energy_kwh, power_kw FROM (
            SELECT m.sampled_at,
                   (max(m.value) FILTER (WHERE m.measurand = 'Energy.Active.Import.Register')
                      - coalesce(min(s.meter_start_wh), 0)) / 1000 AS energy_kwh,
                   max(m.value) FILTER (WHERE m.measurand = 'Power.Active.Import') / 1000
                      AS power_kw
              FROM meter_values m JOIN sessions s ON s.id = m.session_id
             WHERE m.session_id = $1 AND m.phase IS NULL
               AND m.measurand IN ('Energy.Active.Import.Register', 'Power.Active.Import')
             GROUP BY m.sampled_at
             ORDER BY m.sampled_at DESC LIMIT $2
         ) latest ORDER BY sampled_at",
    )
    .bind(session_id)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// Every user's invoices, newest first.
#[tracing::instrument(skip_all)]
pub async fn invoices(
    pool: &PgPool,
    status: Option<&str>,
    first: i64,
) -> Result<Vec<InvoiceRecord>, StoreError> {
    Ok(sqlx::query_as::<_, InvoiceRecord>(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE ($1::text IS NULL OR status = $1)
          ORDER BY created_at DESC LIMIT $2"
    ))
    .bind(status)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// Users (with their wallets), newest first, optionally of one role.
#[tracing::instrument(skip_all)]
pub async fn users(
    pool: &PgPool,
    role: Option<&str>,
    first: i64,
) -> Result<Vec<UserRecord>, StoreError> {
    Ok(sqlx::query_as::<_, UserRecord>(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE ($1::text IS NULL OR role = $1)
          ORDER BY created_at DESC LIMIT $2"
    ))
    .bind(role)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// An operator command from the audit log: who sent what to a charger and how it ended.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommandRecord {
    pub id: i64,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// The audit log's entries about one charger, newest first.
#[tracing::instrument(skip_all, fields(charger_id = %charger_id))]
pub async fn charger_commands(
    pool: &PgPool,
    charger_id: &str,
    first: i64,
) -> Result<Vec<CommandRecord>, StoreError> {
    Ok(sqlx::query_as::<_, CommandRecord>(
        "SELECT id, actor_id, action, details, created_at FROM audit_log
          WHERE target = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(charger_id)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// A station as a point on the map, with how many chargers it has and how many are online.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StationPoint {
    pub id: Uuid,
    pub name: String,
    pub town: Option<String>,
    pub country: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    pub chargers: i64,
    pub chargers_online: i64,
}

/// Live stations (and any station with a charger), those with chargers first.
#[tracing::instrument(skip_all)]
pub async fn station_points(pool: &PgPool, first: i64) -> Result<Vec<StationPoint>, StoreError> {
    Ok(sqlx::query_as::<_, StationPoint>(
        "SELECT s.id, s.name, s.town, s.country, s.latitude, s.longitude,
                count(c.id) AS chargers, count(c.id) FILTER (WHERE c.online) AS chargers_online
           FROM stations s LEFT JOIN chargers c ON c.station_id = s.id
          GROUP BY s.id
         HAVING s.is_live OR count(c.id) > 0
          ORDER BY count(c.id) DESC, s.name LIMIT $1",
    )
    .bind(first)
    .fetch_all(pool)
    .await?)
}
