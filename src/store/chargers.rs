//! Chargers: registration, handshake look-ups, presence, boot data and connector status.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{StoreError, Tx};
use crate::events::{outbox, Event};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChargerRecord {
    pub id: String,
    pub station_id: Option<Uuid>,
    pub password_hash: Option<String>,
    pub protocol: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub firmware_version: Option<String>,
    pub online: bool,
    pub node_id: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub last_boot_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, station_id, password_hash, protocol, vendor, model, serial_number, \
                       firmware_version, online, node_id, last_seen, last_boot_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectorRecord {
    pub connector_id: i32,
    pub status: String,
    pub error_code: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[tracing::instrument(skip_all, fields(charger_id = %id))]
pub async fn find(pool: &PgPool, id: &str) -> Result<Option<ChargerRecord>, StoreError> {
    Ok(
        sqlx::query_as::<_, ChargerRecord>(&format!(
            "SELECT {COLUMNS} FROM chargers WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?,
    )
}

/// Registers a charger, or updates its station and password when it exists.
#[tracing::instrument(skip_all, fields(charger_id = %id))]
pub async fn register(
    pool: &PgPool,
    id: &str,
    station_id: Uuid,
    password_hash: Option<&str>,
) -> Result<ChargerRecord, StoreError> {
    sqlx::query_as::<_, ChargerRecord>(&format!(
        "INSERT INTO chargers (id, station_id, password_hash) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET station_id = EXCLUDED.station_id, \
             password_hash = EXCLUDED.password_hash, auto_provisioned = FALSE, updated_at = now() \
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(station_id)
    .bind(password_hash)
    .fetch_one(pool)
    .await
    .map_err(|e| {
        if let sqlx::Error::Database(db) = &e {
            if db.is_foreign_key_violation() {
                return StoreError::NotFound;
            }
        }
        StoreError::Database(e)
    })
}

/// Creates an unknown charger on first contact (auto-provisioning, development and load tests).
#[tracing::instrument(skip_all, fields(charger_id = %id))]
pub async fn auto_provision(pool: &PgPool, id: &str) -> Result<ChargerRecord, StoreError> {
    sqlx::query(
        "INSERT INTO chargers (id, auto_provisioned) VALUES ($1, TRUE) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .execute(pool)
    .await?;
    find(pool, id).await?.ok_or(StoreError::NotFound)
}

/// Records that this node now holds the charger's socket, and emits CHARGER_CONNECTED.
#[tracing::instrument(skip_all, fields(charger_id = %id))]
pub async fn mark_connected(
    pool: &PgPool,
    id: &str,
    node_id: &str,
    connection_id: Uuid,
    protocol: &str,
    source: &str,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE chargers SET online = TRUE, node_id = $2, connection_id = $3, protocol = $4, \
             last_seen = now(), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(node_id)
    .bind(connection_id)
    .bind(protocol)
    .execute(&mut *tx)
    .await?;
    outbox::enqueue(
        &mut tx,
        Event::ChargerConnected {
            charger_id: id.to_string(),
            protocol: protocol.to_string(),
            node_id: node_id.to_string(),
        },
        Utc::now(),
        source,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Marks the charger offline if `connection_id` is still its current connection (a replaced
/// connection closing late must not take a newer one offline). Emits CHARGER_DISCONNECTED.
#[tracing::instrument(skip_all, fields(charger_id = %id))]
pub async fn mark_disconnected(
    pool: &PgPool,
    id: &str,
    node_id: &str,
    connection_id: Uuid,
    last_seen: DateTime<Utc>,
    source: &str,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE chargers SET online = FALSE, last_seen = GREATEST(last_seen, $3), updated_at = now() \
         WHERE id = $1 AND connection_id = $2 AND online",
    )
    .bind(id)
    .bind(connection_id)
    .bind(last_seen)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if changed {
        outbox::enqueue(
            &mut tx,
            Event::ChargerDisconnected {
                charger_id: id.to_string(),
                node_id: node_id.to_string(),
            },
            Utc::now(),
            source,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// Persists `last_seen` (the actor keeps it in memory and writes it now and then).
pub async fn touch(
    pool: &PgPool,
    id: &str,
    connection_id: Uuid,
    last_seen: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE chargers SET last_seen = $3 WHERE id = $1 AND connection_id = $2")
        .bind(id)
        .bind(connection_id)
        .bind(last_seen)
        .execute(pool)
        .await?;
    Ok(())
}

/// What a BootNotification says about the charger.
#[derive(Debug, Clone, Default)]
pub struct BootInfo {
    pub vendor: String,
    pub model: String,
    pub serial_number: Option<String>,
    pub firmware_version: Option<String>,
    pub iccid: Option<String>,
    pub imsi: Option<String>,
    pub meter_type: Option<String>,
    pub meter_serial: Option<String>,
    /// 2.0.1 `reason` (PowerUp, RemoteReset, Watchdog, ...); 1.6 has none.
    pub reason: Option<String>,
}

#[tracing::instrument(skip_all, fields(charger_id = %id))]
pub async fn record_boot(pool: &PgPool, id: &str, boot: &BootInfo) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE chargers SET vendor = $2, model = $3, serial_number = $4, firmware_version = $5, \
             iccid = $6, imsi = $7, meter_type = $8, meter_serial = $9, last_boot_reason = $10, \
             last_boot_at = now(), last_seen = now(), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(&boot.vendor)
    .bind(&boot.model)
    .bind(&boot.serial_number)
    .bind(&boot.firmware_version)
    .bind(&boot.iccid)
    .bind(&boot.imsi)
    .bind(&boot.meter_type)
    .bind(&boot.meter_serial)
    .bind(&boot.reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// A connector status report, `status` already in the API's enum spelling.
#[derive(Debug, Clone)]
pub struct StatusReport {
    pub connector_id: i32,
    pub status: String,
    pub error_code: Option<String>,
    pub info: Option<String>,
    pub vendor_error_code: Option<String>,
    pub reported_at: Option<DateTime<Utc>>,
}

/// Stores the report unless a newer one is already stored (offline-queued reports arrive late).
/// Returns whether the status changed; a change emits CONNECTOR_STATUS_CHANGED.
#[tracing::instrument(skip_all, fields(charger_id = %charger_id))]
pub async fn update_connector_status(
    pool: &PgPool,
    charger_id: &str,
    report: &StatusReport,
    source: &str,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let previous: Option<String> = sqlx::query_scalar(
        "SELECT status FROM connector_status WHERE charger_id = $1 AND connector_id = $2 FOR UPDATE",
    )
    .bind(charger_id)
    .bind(report.connector_id)
    .fetch_optional(&mut *tx)
    .await?;
    let stored = sqlx::query(
        "INSERT INTO connector_status (charger_id, connector_id, status, error_code, info, vendor_error_code, reported_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (charger_id, connector_id) DO UPDATE SET status = EXCLUDED.status, \
             error_code = EXCLUDED.error_code, info = EXCLUDED.info, \
             vendor_error_code = EXCLUDED.vendor_error_code, reported_at = EXCLUDED.reported_at, updated_at = now() \
         WHERE connector_status.reported_at IS NULL OR EXCLUDED.reported_at IS NULL \
             OR EXCLUDED.reported_at >= connector_status.reported_at",
    )
    .bind(charger_id)
    .bind(report.connector_id)
    .bind(&report.status)
    .bind(&report.error_code)
    .bind(&report.info)
    .bind(&report.vendor_error_code)
    .bind(report.reported_at)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let changed = stored && previous.as_deref() != Some(report.status.as_str());
    if changed {
        outbox::enqueue(
            &mut tx,
            Event::ConnectorStatusChanged {
                charger_id: charger_id.to_string(),
                connector_id: report.connector_id,
                status: report.status.clone(),
            },
            report.reported_at.unwrap_or_else(Utc::now),
            source,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(changed)
}

#[tracing::instrument(skip_all, fields(charger_id = %charger_id))]
pub async fn connectors(
    pool: &PgPool,
    charger_id: &str,
) -> Result<Vec<ConnectorRecord>, StoreError> {
    Ok(sqlx::query_as::<_, ConnectorRecord>(
        "SELECT connector_id, status, error_code, updated_at FROM connector_status \
         WHERE charger_id = $1 ORDER BY connector_id",
    )
    .bind(charger_id)
    .fetch_all(pool)
    .await?)
}

pub async fn list(
    pool: &PgPool,
    online: Option<bool>,
    first: i64,
) -> Result<Vec<ChargerRecord>, StoreError> {
    Ok(sqlx::query_as::<_, ChargerRecord>(&format!(
        "SELECT {COLUMNS} FROM chargers WHERE ($1::boolean IS NULL OR online = $1) ORDER BY id LIMIT $2"
    ))
    .bind(online)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

pub async fn by_station(pool: &PgPool, station_id: Uuid) -> Result<Vec<ChargerRecord>, StoreError> {
    Ok(sqlx::query_as::<_, ChargerRecord>(&format!(
        "SELECT {COLUMNS} FROM chargers WHERE station_id = $1 ORDER BY id"
    ))
    .bind(station_id)
    .fetch_all(pool)
    .await?)
}

/// The charger `charger_id` when it belongs to the station; without an id, at most two of
/// the station's chargers (enough to tell "exactly one" from "several" without reading a
/// station with thousands of chargers).
pub async fn at_station(
    pool: &PgPool,
    station_id: Uuid,
    charger_id: Option<&str>,
) -> Result<Vec<ChargerRecord>, StoreError> {
    // two statements, so each keeps its own plan (primary key / station index)
    let sql = match charger_id {
        Some(_) => format!("SELECT {COLUMNS} FROM chargers WHERE id = $2 AND station_id = $1"),
        None => format!("SELECT {COLUMNS} FROM chargers WHERE station_id = $1 ORDER BY id LIMIT 2"),
    };
    let mut query = sqlx::query_as::<_, ChargerRecord>(&sql).bind(station_id);
    if let Some(id) = charger_id {
        query = query.bind(id);
    }
    Ok(query.fetch_all(pool).await?)
}

/// How many chargers belong to the station.
pub async fn count_at_station(pool: &PgPool, station_id: Uuid) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM chargers WHERE station_id = $1")
            .bind(station_id)
            .fetch_one(pool)
            .await?,
    )
}

/// Keeps a charger report that has no table of its own (DataTransfer, firmware and diagnostics
/// status, unknown StopTransactions).
pub async fn record_report(
    tx: &mut Tx<'_>,
    charger_id: &str,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO charger_reports (charger_id, kind, payload) VALUES ($1, $2, $3)")
        .bind(charger_id)
        .bind(kind)
        .bind(payload)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
