//! Load management's tables: sites, their circuits, the chargers attached to them, each
//! session's allocation and charging needs, and the last load snapshot of each site.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SiteRecord {
    pub id: Uuid,
    pub name: String,
    pub grid_limit_amps: f64,
    pub phases: i16,
    pub voltage: f64,
    pub margin_amps: f64,
    pub other_load_amps: f64,
    pub reported_load_amps: Option<Vec<f64>>,
    pub reported_load_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const SITE_COLUMNS: &str =
    "id, name, grid_limit_amps, phases, voltage, margin_amps, other_load_amps, \
     reported_load_amps, reported_load_at, created_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CircuitRecord {
    pub id: Uuid,
    pub site_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub limit_amps: f64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SiteChargerRecord {
    pub charger_id: String,
    pub site_id: Uuid,
    pub circuit_id: Option<Uuid>,
    pub phases: i16,
    pub phase_rotation: String,
    pub min_amps: f64,
    pub max_amps: f64,
    pub external_limit_amps: Option<f64>,
    pub external_limit_source: Option<String>,
    pub fallback_installed_at: Option<DateTime<Utc>>,
    /// From `chargers`: whether its socket is open now, and which version it speaks.
    pub online: bool,
    pub protocol: Option<String>,
    pub last_boot_at: Option<DateTime<Utc>>,
    /// Connectors (EVSEs) it reported a status for; at least 1.
    pub connectors: i64,
}

/// A new site's settings (validated by the API).
#[derive(Debug, Clone)]
pub struct NewSite {
    pub name: String,
    pub grid_limit_amps: f64,
    pub phases: i16,
    pub voltage: f64,
    pub margin_amps: f64,
    pub other_load_amps: f64,
}

/// A charger's attachment (validated by the API).
#[derive(Debug, Clone)]
pub struct Attachment {
    pub site_id: Uuid,
    pub charger_id: String,
    pub circuit_id: Option<Uuid>,
    pub phases: i16,
    pub phase_rotation: String,
    pub min_amps: f64,
    pub max_amps: f64,
}

#[tracing::instrument(skip_all)]
pub async fn create(pool: &PgPool, site: &NewSite) -> Result<SiteRecord, StoreError> {
    Ok(sqlx::query_as::<_, SiteRecord>(&format!(
        "INSERT INTO sites (id, name, grid_limit_amps, phases, voltage, margin_amps, other_load_amps) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {SITE_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&site.name)
    .bind(site.grid_limit_amps)
    .bind(site.phases)
    .bind(site.voltage)
    .bind(site.margin_amps)
    .bind(site.other_load_amps)
    .fetch_one(pool)
    .await?)
}

/// Changes a site's limits; `None` keeps a value.
#[tracing::instrument(skip_all, fields(site_id = %id))]
pub async fn update(
    pool: &PgPool,
    id: Uuid,
    grid_limit_amps: Option<f64>,
    margin_amps: Option<f64>,
    other_load_amps: Option<f64>,
) -> Result<SiteRecord, StoreError> {
    sqlx::query_as::<_, SiteRecord>(&format!(
        "UPDATE sites SET grid_limit_amps = COALESCE($2, grid_limit_amps), \
         margin_amps = COALESCE($3, margin_amps), other_load_amps = COALESCE($4, other_load_amps), \
         updated_at = now() WHERE id = $1 RETURNING {SITE_COLUMNS}"
    ))
    .bind(id)
    .bind(grid_limit_amps)
    .bind(margin_amps)
    .bind(other_load_amps)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Records the live non-charger load of a site, per phase.
#[tracing::instrument(skip_all, fields(site_id = %id))]
pub async fn report_load(
    pool: &PgPool,
    id: Uuid,
    amps: [f64; 3],
) -> Result<SiteRecord, StoreError> {
    sqlx::query_as::<_, SiteRecord>(&format!(
        "UPDATE sites SET reported_load_amps = $2, reported_load_at = now(), updated_at = now() \
         WHERE id = $1 RETURNING {SITE_COLUMNS}"
    ))
    .bind(id)
    .bind(amps.to_vec())
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn list(pool: &PgPool) -> Result<Vec<SiteRecord>, StoreError> {
    Ok(sqlx::query_as::<_, SiteRecord>(&format!(
        "SELECT {SITE_COLUMNS} FROM sites ORDER BY name, id"
    ))
    .fetch_all(pool)
    .await?)
}

pub async fn ids(pool: &PgPool) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar("SELECT id FROM sites ORDER BY id")
        .fetch_all(pool)
        .await?)
}

pub async fn find<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<SiteRecord>, StoreError> {
    Ok(
        sqlx::query_as::<_, SiteRecord>(&format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = $1"))
            .bind(id)
            .fetch_optional(executor)
            .await?,
    )
}

#[tracing::instrument(skip_all, fields(site_id = %site_id))]
pub async fn create_circuit(
    pool: &PgPool,
    site_id: Uuid,
    parent_id: Option<Uuid>,
    name: &str,
    limit_amps: f64,
) -> Result<CircuitRecord, StoreError> {
    // the parent must be a circuit of the same site
    sqlx::query_as::<_, CircuitRecord>(
        "INSERT INTO site_circuits (id, site_id, parent_id, name, limit_amps) \
         SELECT $1, $2, $3, $4, $5 FROM sites WHERE id = $2 \
           AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM site_circuits WHERE id = $3 AND site_id = $2)) \
         RETURNING id, site_id, parent_id, name, limit_amps",
    )
    .bind(Uuid::now_v7())
    .bind(site_id)
    .bind(parent_id)
    .bind(name)
    .bind(limit_amps)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn circuits<'e>(
    executor: impl PgExecutor<'e>,
    site_id: Uuid,
) -> Result<Vec<CircuitRecord>, StoreError> {
    Ok(sqlx::query_as::<_, CircuitRecord>(
        "SELECT id, site_id, parent_id, name, limit_amps FROM site_circuits WHERE site_id = $1 \
         ORDER BY created_at, id",
    )
    .bind(site_id)
    .fetch_all(executor)
    .await?)
}

/// Attaches a charger to a site (or moves it, or changes its limits). `NotFound` when the site,
/// the charger or the circuit (on that site) does not exist.
#[tracing::instrument(skip_all, fields(site_id = %a.site_id, charger_id = %a.charger_id))]
pub async fn attach(pool: &PgPool, a: &Attachment) -> Result<(), StoreError> {
    let attached = sqlx::query(
        "INSERT INTO site_chargers (charger_id, site_id, circuit_id, phases, phase_rotation, min_amps, max_amps) \
         SELECT c.id, s.id, $3, $4, $5, $6, $7 FROM chargers c, sites s \
         WHERE c.id = $2 AND s.id = $1 \
           AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM site_circuits WHERE id = $3 AND site_id = $1)) \
         ON CONFLICT (charger_id) DO UPDATE SET site_id = EXCLUDED.site_id, circuit_id = EXCLUDED.circuit_id, \
           phases = EXCLUDED.phases, phase_rotation = EXCLUDED.phase_rotation, \
           min_amps = EXCLUDED.min_amps, max_amps = EXCLUDED.max_amps, \
           fallback_installed_at = NULL, attached_at = now()",
    )
    .bind(a.site_id)
    .bind(&a.charger_id)
    .bind(a.circuit_id)
    .bind(a.phases)
    .bind(&a.phase_rotation)
    .bind(a.min_amps)
    .bind(a.max_amps)
    .execute(pool)
    .await?
    .rows_affected();
    if attached == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

/// Detaches a charger; returns the site it was on.
#[tracing::instrument(skip_all, fields(charger_id = %charger_id))]
pub async fn detach(pool: &PgPool, charger_id: &str) -> Result<Option<Uuid>, StoreError> {
    Ok(
        sqlx::query_scalar("DELETE FROM site_chargers WHERE charger_id = $1 RETURNING site_id")
            .bind(charger_id)
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn chargers<'e>(
    executor: impl PgExecutor<'e>,
    site_id: Uuid,
) -> Result<Vec<SiteChargerRecord>, StoreError> {
    Ok(sqlx::query_as::<_, SiteChargerRecord>(
        "SELECT sc.charger_id, sc.site_id, sc.circuit_id, sc.phases, sc.phase_rotation, sc.min_amps, \
                sc.max_amps, sc.external_limit_amps, sc.external_limit_source, sc.fallback_installed_at, \
                c.online, c.protocol, c.last_boot_at, \
                GREATEST((SELECT count(*) FROM connector_status cs WHERE cs.charger_id = sc.charger_id AND cs.connector_id > 0), 1) AS connectors \
         FROM site_chargers sc JOIN chargers c ON c.id = sc.charger_id \
         WHERE sc.site_id = $1 ORDER BY sc.charger_id",
    )
    .bind(site_id)
    .fetch_all(executor)
    .await?)
}

/// Every attached charger and its site (each replica keeps this map to know which chargers
/// load management governs).
pub async fn charger_sites(
    pool: &PgPool,
) -> Result<Vec<(String, crate::smart::directory::Seat)>, StoreError> {
    let rows: Vec<(String, Uuid, f64, i16)> =
        sqlx::query_as("SELECT charger_id, site_id, min_amps, phases FROM site_chargers")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(charger_id, site_id, min_amps, phases)| {
            let seat = crate::smart::directory::Seat {
                site_id,
                min_amps,
                phases: if phases == 1 { 1 } else { 3 },
            };
            (charger_id, seat)
        })
        .collect())
}

/// An external limit (2.0.1 NotifyChargingLimit); `None` clears it. `false` when the charger is
/// on no site.
#[tracing::instrument(skip_all, fields(charger_id = %charger_id))]
pub async fn set_external_limit(
    pool: &PgPool,
    charger_id: &str,
    amps: Option<f64>,
    source: Option<&str>,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "UPDATE site_chargers SET external_limit_amps = $2, external_limit_source = $3 WHERE charger_id = $1",
    )
    .bind(charger_id)
    .bind(amps)
    .bind(source)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// The charger accepted its fallback profiles (`true`), or may have lost them (`false`).
pub async fn set_fallback_installed(
    pool: &PgPool,
    charger_id: &str,
    installed: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE site_chargers SET fallback_installed_at = CASE WHEN $2 THEN now() END WHERE charger_id = $1",
    )
    .bind(charger_id)
    .bind(installed)
    .execute(pool)
    .await?;
    Ok(())
}

/// An open session on a site's charger, with what the allocator needs to know about it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActiveSession {
    pub id: Uuid,
    pub charger_id: String,
    pub connector_id: Option<i32>,
    pub status: String,
    pub power_kw: Option<f64>,
    pub max_power_kw: Option<f64>,
    pub energy_kwh: f64,
    pub start_time: Option<DateTime<Utc>>,
    pub plan: String,
    pub departure_time: Option<DateTime<Utc>>,
    pub need_kwh: Option<f64>,
    pub ev_max_amps: Option<f64>,
    pub ev_phases: Option<i16>,
    /// The allocation in force (last pushed) and whether the charger accepted it.
    pub allocated_amps: Option<f64>,
    pub applied: Option<bool>,
    pub transaction_id: Option<i32>,
    pub transaction_ref: Option<String>,
}

/// The charging sessions (IN_PROGRESS or STOPPING) on the chargers of `site_id`.
pub async fn active_sessions<'e>(
    executor: impl PgExecutor<'e>,
    site_id: Uuid,
) -> Result<Vec<ActiveSession>, StoreError> {
    Ok(sqlx::query_as::<_, ActiveSession>(
        "SELECT s.id, s.charger_id, s.connector_id, s.status, s.power_kw, s.max_power_kw, \
                s.energy_kwh::float8 AS energy_kwh, s.start_time, u.plan, \
                n.departure_time, n.energy_kwh AS need_kwh, n.ev_max_amps, n.ev_phases, \
                a.amps AS allocated_amps, a.applied, t.transaction_id, t.transaction_ref \
         FROM site_chargers sc \
         JOIN sessions s ON s.charger_id = sc.charger_id AND s.status IN ('IN_PROGRESS', 'STOPPING') \
         JOIN users u ON u.id = s.user_id \
         LEFT JOIN session_charging_needs n ON n.session_id = s.id \
         LEFT JOIN session_allocations a ON a.session_id = s.id \
         LEFT JOIN LATERAL (SELECT transaction_id, transaction_ref FROM charger_transactions \
                            WHERE session_id = s.id ORDER BY id DESC LIMIT 1) t ON TRUE \
         WHERE sc.site_id = $1 ORDER BY s.id",
    )
    .bind(site_id)
    .fetch_all(executor)
    .await?)
}

/// Records allocations as decided (`applied` false until the charger accepts).
pub async fn record_allocations(
    pool: &PgPool,
    site_id: Uuid,
    rows: &[(Uuid, String, f64, i16)],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let chargers: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    let amps: Vec<f64> = rows.iter().map(|r| r.2).collect();
    let phases: Vec<i16> = rows.iter().map(|r| r.3).collect();
    sqlx::query(
        "INSERT INTO session_allocations (session_id, site_id, charger_id, amps, phases, applied, updated_at) \
         SELECT u.id, $1, u.charger_id, u.amps, u.phases, FALSE, now() \
         FROM UNNEST($2::uuid[], $3::text[], $4::float8[], $5::int2[]) AS u(id, charger_id, amps, phases) \
         ON CONFLICT (session_id) DO UPDATE SET site_id = EXCLUDED.site_id, amps = EXCLUDED.amps, \
           phases = EXCLUDED.phases, applied = FALSE, updated_at = now()",
    )
    .bind(site_id)
    .bind(&ids)
    .bind(&chargers)
    .bind(&amps)
    .bind(&phases)
    .execute(pool)
    .await?;
    Ok(())
}

/// The charger accepted (or refused) the allocation of `session_id` at `amps`; a newer
/// allocation recorded meanwhile is left alone.
pub async fn mark_applied(
    pool: &PgPool,
    session_id: Uuid,
    amps: f64,
    applied: bool,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE session_allocations SET applied = $3 WHERE session_id = $1 AND amps = $2")
        .bind(session_id)
        .bind(amps)
        .bind(applied)
        .execute(pool)
        .await?;
    Ok(())
}

/// The allocations of `session_ids` that have one (for `Session.allocatedAmps`).
pub async fn allocations_of(
    pool: &PgPool,
    session_ids: &[Uuid],
) -> Result<Vec<(Uuid, f64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT session_id, amps FROM session_allocations WHERE session_id = ANY($1)",
    )
    .bind(session_ids)
    .fetch_all(pool)
    .await?)
}

/// Charging needs from the app or the car; `None` keeps a value.
#[allow(clippy::too_many_arguments)]
pub async fn set_needs(
    pool: &PgPool,
    session_id: Uuid,
    departure_time: Option<DateTime<Utc>>,
    energy_kwh: Option<f64>,
    ev_max_amps: Option<f64>,
    ev_phases: Option<i16>,
    source: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO session_charging_needs (session_id, departure_time, energy_kwh, ev_max_amps, ev_phases, source) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (session_id) DO UPDATE SET \
           departure_time = COALESCE(EXCLUDED.departure_time, session_charging_needs.departure_time), \
           energy_kwh = COALESCE(EXCLUDED.energy_kwh, session_charging_needs.energy_kwh), \
           ev_max_amps = COALESCE(EXCLUDED.ev_max_amps, session_charging_needs.ev_max_amps), \
           ev_phases = COALESCE(EXCLUDED.ev_phases, session_charging_needs.ev_phases), \
           source = EXCLUDED.source, updated_at = now()",
    )
    .bind(session_id)
    .bind(departure_time)
    .bind(energy_kwh)
    .bind(ev_max_amps)
    .bind(ev_phases)
    .bind(source)
    .execute(pool)
    .await?;
    Ok(())
}

/// Stores the site's load snapshot after an allocation.
pub async fn save_load(
    pool: &PgPool,
    site_id: Uuid,
    load: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sites SET load = $2, load_at = now() WHERE id = $1")
        .bind(site_id)
        .bind(load)
        .execute(pool)
        .await?;
    Ok(())
}

/// The site's last load snapshot and when it was taken.
pub async fn load_of<'e>(
    executor: impl PgExecutor<'e>,
    site_id: Uuid,
) -> Result<Option<(serde_json::Value, DateTime<Utc>)>, StoreError> {
    Ok(
        sqlx::query_as::<_, (Option<serde_json::Value>, Option<DateTime<Utc>>)>(
            "SELECT load, load_at FROM sites WHERE id = $1",
        )
        .bind(site_id)
        .fetch_optional(executor)
        .await?
        .and_then(|(load, at)| Some((load?, at?))),
    )
}

/// The session's profile is pushed again at the next allocation (the car's needs changed).
pub async fn invalidate_allocation(pool: &PgPool, session_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("UPDATE session_allocations SET applied = FALSE WHERE session_id = $1")
        .bind(session_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// The open session on a charger's EVSE with its transaction and limits (for the car's reports).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OpenTransaction {
    pub session_id: Uuid,
    pub transaction_ref: Option<String>,
    pub max_power_kw: Option<f64>,
    pub allocated_amps: Option<f64>,
    /// The highest rated AC current of the charger's station's connections (OCM data), if any.
    pub rated_amps: Option<f64>,
}

pub async fn open_transaction_on(
    pool: &PgPool,
    charger_id: &str,
    connector_id: i32,
) -> Result<Option<OpenTransaction>, StoreError> {
    Ok(sqlx::query_as::<_, OpenTransaction>(
        "SELECT s.id AS session_id, t.transaction_ref, s.max_power_kw, a.amps AS allocated_amps, \
                (SELECT max(c.amps)::float8 FROM chargers ch JOIN connections c ON c.station_id = ch.station_id \
                 WHERE ch.id = s.charger_id AND c.amps > 0 AND COALESCE(c.current_type, '') NOT LIKE 'DC%') AS rated_amps \
         FROM sessions s \
         LEFT JOIN session_allocations a ON a.session_id = s.id \
         LEFT JOIN LATERAL (SELECT transaction_ref FROM charger_transactions \
                            WHERE session_id = s.id ORDER BY id DESC LIMIT 1) t ON TRUE \
         WHERE s.charger_id = $1 AND s.connector_id = $2 \
           AND s.status IN ('PENDING', 'IN_PROGRESS', 'STOPPING') \
         ORDER BY s.created_at DESC LIMIT 1",
    )
    .bind(charger_id)
    .bind(connector_id)
    .fetch_optional(pool)
    .await?)
}
