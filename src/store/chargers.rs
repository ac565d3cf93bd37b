//! Chargers: registration, handshake look-ups, presence, boot data and connector status.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{StoreError, Tx};

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
    /// Answered Pending at boot until an operator adopts it.
    pub quarantined: bool,
    /// The lowest OCPP security profile the charger may connect with (1 to 3).
    pub security_profile: i16,
    /// An upgrade the operator asked for, in force once the charger first connects with it.
    pub pending_security_profile: Option<i16>,
    /// A password the server set on the charger, accepted until the charger first uses it.
    pub pending_password_hash: Option<String>,
}

const COLUMNS: &str = "id, station_id, password_hash, protocol, vendor, model, serial_number, \
                       firmware_version, online, node_id, last_seen, last_boot_at, quarantined, \
                       security_profile, pending_security_profile, pending_password_hash";

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

/// The records of `ids` that exist, by id (one statement for a batch of handshakes).
pub async fn find_many(
    pool: &PgPool,
    ids: &[String],
) -> Result<HashMap<String, ChargerRecord>, StoreError> {
    let rows = sqlx::query_as::<_, ChargerRecord>(&format!(
        "SELECT {COLUMNS} FROM chargers WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// Registers a charger, or updates (and adopts) it when it exists: a new password replaces the
/// stored one, none keeps it (re-registering never clears a credential).
#[tracing::instrument(skip_all, fields(charger_id = %id))]
pub async fn register(
    pool: &PgPool,
    id: &str,
    station_id: Uuid,
    password_hash: Option<&str>,
    security_profile: i16,
) -> Result<ChargerRecord, StoreError> {
    sqlx::query_as::<_, ChargerRecord>(&format!(
        "INSERT INTO chargers (id, station_id, password_hash, security_profile) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET station_id = EXCLUDED.station_id, \
             password_hash = COALESCE(EXCLUDED.password_hash, chargers.password_hash), \
             pending_password_hash = CASE WHEN EXCLUDED.password_hash IS NULL \
                 THEN chargers.pending_password_hash END, \
             security_profile = EXCLUDED.security_profile, pending_security_profile = NULL, \
             auto_provisioned = FALSE, quarantined = FALSE, updated_at = now() \
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(station_id)
    .bind(password_hash)
    .bind(security_profile)
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

/// Creates an unknown charger on first contact, quarantined unless `accept` (auto-provisioning;
/// accepting at once is for development and load tests).
#[tracing::instrument(skip_all, fields(charger_id = %id))]
pub async fn auto_provision(
    pool: &PgPool,
    id: &str,
    accept: bool,
) -> Result<ChargerRecord, StoreError> {
    sqlx::query(
        "INSERT INTO chargers (id, auto_provisioned, quarantined) VALUES ($1, TRUE, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(!accept)
    .execute(pool)
    .await?;
    find(pool, id).await?.ok_or(StoreError::NotFound)
}

/// Puts a charger in quarantine (Pending at its next boot) or takes it out; `None` when there is
/// no such charger.
pub async fn set_quarantined(
    pool: &PgPool,
    id: &str,
    quarantined: bool,
) -> Result<Option<ChargerRecord>, StoreError> {
    Ok(sqlx::query_as::<_, ChargerRecord>(&format!(
        "UPDATE chargers SET quarantined = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(quarantined)
    .fetch_optional(pool)
    .await?)
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

/// The chargers of each of `stations`, in id order (one statement for a whole GraphQL page).
pub async fn by_stations(
    pool: &PgPool,
    stations: &[Uuid],
) -> Result<HashMap<Uuid, Vec<ChargerRecord>>, StoreError> {
    let rows = sqlx::query_as::<_, ChargerRecord>(&format!(
        "SELECT {COLUMNS} FROM chargers WHERE station_id = ANY($1) ORDER BY id"
    ))
    .bind(stations)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<Uuid, Vec<ChargerRecord>> = HashMap::new();
    for row in rows {
        if let Some(station) = row.station_id {
            out.entry(station).or_default().push(row);
        }
    }
    Ok(out)
}

/// The connectors of each of `chargers`, in connector order (one statement); one held by a
/// live reservation is RESERVED.
pub async fn connectors_of(
    pool: &PgPool,
    chargers: &[String],
) -> Result<HashMap<String, Vec<ConnectorRecord>>, StoreError> {
    let rows = sqlx::query_as::<_, (String, i32, String, Option<String>, DateTime<Utc>)>(
        // a connector a driver holds shows RESERVED to everyone, also before (or without) the
        // charger's own StatusNotification saying so
        "SELECT k.charger_id, k.connector_id, \
             CASE WHEN k.status = 'AVAILABLE' AND EXISTS (SELECT 1 FROM reservations r \
                 WHERE r.charger_id = k.charger_id AND r.connector_id = k.connector_id \
                 AND r.status = 'ACCEPTED' AND r.expires_at > now()) \
             THEN 'RESERVED' ELSE k.status END, k.error_code, k.updated_at \
         FROM connector_status k WHERE k.charger_id = ANY($1) ORDER BY k.charger_id, k.connector_id",
    )
    .bind(chargers)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<String, Vec<ConnectorRecord>> = HashMap::new();
    for (charger_id, connector_id, status, error_code, updated_at) in rows {
        out.entry(charger_id).or_default().push(ConnectorRecord {
            connector_id,
            status,
            error_code,
            updated_at,
        });
    }
    Ok(out)
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

/// Deletes charger reports older than `max_age`, and beyond the newest `keep_per_charger` of
/// each charger (a charger cannot fill the table); returns how many went.
pub async fn prune_reports(
    pool: &PgPool,
    max_age: std::time::Duration,
    keep_per_charger: i64,
) -> Result<u64, StoreError> {
    let old = sqlx::query(
        "DELETE FROM charger_reports WHERE received_at < now() - make_interval(secs => $1)",
    )
    .bind(max_age.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected();
    let beyond = sqlx::query(
        "DELETE FROM charger_reports WHERE id IN ( \
             SELECT id FROM ( \
                 SELECT id, row_number() OVER (PARTITION BY charger_id ORDER BY received_at DESC, id DESC) AS n \
                 FROM charger_reports) ranked \
             WHERE n > $1)",
    )
    .bind(keep_per_charger)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(old + beyond)
}

/// Keeps a charger report that has no table of its own (DataTransfer, firmware and diagnostics
/// status, unknown StopTransactions).
pub async fn record_report(
    tx: &mut Tx<'_>,
    charger_id: &str,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<(), StoreError> {
    record_report_now(&mut **tx, charger_id, kind, payload).await
}

/// A report a charger sent (NotifyEvent, NotifyMonitoringReport, ...), as operators read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportRecord {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    pub received_at: DateTime<Utc>,
}

/// A charger's reports, newest first, of one kind or of every kind but `hidden`.
pub async fn reports(
    pool: &PgPool,
    charger_id: &str,
    kind: Option<&str>,
    hidden: &[&str],
    first: i64,
) -> Result<Vec<ReportRecord>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, kind, payload, received_at FROM charger_reports \
         WHERE charger_id = $1 AND ($2::text IS NULL OR kind = $2) AND NOT (kind = ANY($3)) \
         ORDER BY received_at DESC, id DESC LIMIT $4",
    )
    .bind(charger_id)
    .bind(kind)
    .bind(hidden)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// `record_report` on any executor (a pool: a statement of its own).
pub async fn record_report_now<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    charger_id: &str,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO charger_reports (charger_id, kind, payload) VALUES ($1, $2, $3)")
        .bind(charger_id)
        .bind(kind)
        .bind(payload)
        .execute(executor)
        .await?;
    Ok(())
}

// ---- set-based writes of connected chargers (see `charger_writer`): each statement takes a
// batch in which every charger appears at most once.

/// Columns of a batch of connection writes (presence, `last_seen`).
#[derive(Debug, Default)]
pub struct Connections {
    ids: Vec<String>,
    connection_ids: Vec<Uuid>,
    at: Vec<DateTime<Utc>>,
    protocols: Vec<String>,
}

impl Connections {
    pub fn push(&mut self, id: &str, connection_id: Uuid, at: DateTime<Utc>, protocol: &str) {
        self.ids.push(id.to_string());
        self.connection_ids.push(connection_id);
        self.at.push(at);
        self.protocols.push(protocol.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Records that this node now holds these chargers' sockets.
pub async fn mark_connected_many(
    tx: &mut Tx<'_>,
    node_id: &str,
    batch: &Connections,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE chargers AS c SET online = TRUE, node_id = $1, connection_id = u.connection_id, \
             protocol = u.protocol, last_seen = u.at, updated_at = now() \
         FROM unnest($2::text[], $3::uuid[], $4::timestamptz[], $5::text[]) \
             AS u(id, connection_id, at, protocol) \
         WHERE c.id = u.id",
    )
    .bind(node_id)
    .bind(&batch.ids)
    .bind(&batch.connection_ids)
    .bind(&batch.at)
    .bind(&batch.protocols)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks each charger offline if the given connection is still its current one (a replaced
/// connection closing late must not take a newer one offline); returns those that went
/// offline.
pub async fn mark_disconnected_many(
    tx: &mut Tx<'_>,
    batch: &Connections,
) -> Result<HashSet<String>, StoreError> {
    let rows: Vec<String> = sqlx::query_scalar(
        "UPDATE chargers AS c SET online = FALSE, last_seen = GREATEST(c.last_seen, u.at), \
             updated_at = now() \
         FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS u(id, connection_id, at) \
         WHERE c.id = u.id AND c.connection_id = u.connection_id AND c.online \
         RETURNING c.id",
    )
    .bind(&batch.ids)
    .bind(&batch.connection_ids)
    .bind(&batch.at)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Persists `last_seen` of chargers still on the given connections.
pub async fn touch_many(
    executor: impl sqlx::PgExecutor<'_>,
    batch: &Connections,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE chargers AS c SET last_seen = GREATEST(c.last_seen, u.at) \
         FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS u(id, connection_id, at) \
         WHERE c.id = u.id AND c.connection_id = u.connection_id",
    )
    .bind(&batch.ids)
    .bind(&batch.connection_ids)
    .bind(&batch.at)
    .execute(executor)
    .await?;
    Ok(())
}

/// Stores what BootNotifications said.
pub async fn record_boots(tx: &mut Tx<'_>, boots: &[(&str, &BootInfo)]) -> Result<(), StoreError> {
    let column = |f: fn(&BootInfo) -> Option<String>| -> Vec<Option<String>> {
        boots.iter().map(|(_, b)| f(b)).collect()
    };
    let ids: Vec<&str> = boots.iter().map(|(id, _)| *id).collect();
    sqlx::query(
        "UPDATE chargers AS c SET vendor = u.vendor, model = u.model, \
             serial_number = u.serial_number, firmware_version = u.firmware_version, \
             iccid = u.iccid, imsi = u.imsi, meter_type = u.meter_type, \
             meter_serial = u.meter_serial, last_boot_reason = u.reason, \
             last_boot_at = now(), last_seen = now(), updated_at = now() \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::text[], $9::text[], $10::text[]) \
             AS u(id, vendor, model, serial_number, firmware_version, iccid, imsi, meter_type, \
                  meter_serial, reason) \
         WHERE c.id = u.id",
    )
    .bind(&ids)
    .bind(column(|b| Some(b.vendor.clone())))
    .bind(column(|b| Some(b.model.clone())))
    .bind(column(|b| b.serial_number.clone()))
    .bind(column(|b| b.firmware_version.clone()))
    .bind(column(|b| b.iccid.clone()))
    .bind(column(|b| b.imsi.clone()))
    .bind(column(|b| b.meter_type.clone()))
    .bind(column(|b| b.meter_serial.clone()))
    .bind(column(|b| b.reason.clone()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What an upsert of status reports changes on a conflict: a report replaces the stored one
/// unless that one is newer (offline-queued reports arrive late).
const STATUS_UPSERT: &str =
    "ON CONFLICT (charger_id, connector_id) DO UPDATE SET status = EXCLUDED.status, \
         error_code = EXCLUDED.error_code, info = EXCLUDED.info, \
         vendor_error_code = EXCLUDED.vendor_error_code, reported_at = EXCLUDED.reported_at, \
         updated_at = now() \
     WHERE connector_status.reported_at IS NULL OR EXCLUDED.reported_at IS NULL \
         OR EXCLUDED.reported_at >= connector_status.reported_at \
     RETURNING charger_id, connector_id, status";

/// Status reports as the arrays `$first..$first+6` of an unnest (charger, connector, status,
/// error code, info, vendor error code, reported at), in the reports' order.
struct StatusColumns<'a> {
    ids: Vec<&'a str>,
    connectors: Vec<i32>,
    statuses: Vec<&'a str>,
    error_codes: Vec<Option<&'a str>>,
    infos: Vec<Option<&'a str>>,
    vendor_error_codes: Vec<Option<&'a str>>,
    reported_at: Vec<Option<DateTime<Utc>>>,
}

impl<'a> StatusColumns<'a> {
    fn new(reports: &[(&'a str, &'a StatusReport)]) -> Self {
        Self {
            ids: reports.iter().map(|(id, _)| *id).collect(),
            connectors: reports.iter().map(|(_, r)| r.connector_id).collect(),
            statuses: reports.iter().map(|(_, r)| r.status.as_str()).collect(),
            error_codes: reports
                .iter()
                .map(|(_, r)| r.error_code.as_deref())
                .collect(),
            infos: reports.iter().map(|(_, r)| r.info.as_deref()).collect(),
            vendor_error_codes: reports
                .iter()
                .map(|(_, r)| r.vendor_error_code.as_deref())
                .collect(),
            reported_at: reports.iter().map(|(_, r)| r.reported_at).collect(),
        }
    }

    fn bind<'q, O>(
        &'q self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.connectors)
            .bind(&self.statuses)
            .bind(&self.error_codes)
            .bind(&self.infos)
            .bind(&self.vendor_error_codes)
            .bind(&self.reported_at)
    }
}

/// `update_connector_statuses` and the outbox rows of the changes in one statement, outside any
/// transaction (one round trip instead of five): `reports` name each (charger, connector) at
/// most once and `events` holds one event per report, in the same order; the events of the
/// reports that changed a status are written, in that order. Returns the indexes (into
/// `reports`) of those reports. Rows are locked in byte order of their keys (`COLLATE "C"`), the
/// order `update_connector_statuses` sorts them in, so the two never lock in opposite orders.
pub async fn update_connector_statuses_alone(
    pool: &PgPool,
    reports: &[(&str, &StatusReport)],
    events: &crate::events::outbox::Columns,
) -> Result<HashSet<usize>, StoreError> {
    static STATEMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let events = crate::store::array_params(8, &["uuid", "text", "text", "text", "text"]);
        format!(
            "WITH input AS ( \
                 SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::timestamptz[]) WITH ORDINALITY \
                     AS u(charger_id, connector_id, status, error_code, info, vendor_error_code, \
                         reported_at, n)), \
             prev AS ( \
                 SELECT c.charger_id, c.connector_id, c.status FROM input i \
                 JOIN connector_status c ON c.charger_id = i.charger_id AND c.connector_id = i.connector_id \
                 ORDER BY c.charger_id COLLATE \"C\", c.connector_id FOR NO KEY UPDATE OF c), \
             stored AS ( \
                 INSERT INTO connector_status (charger_id, connector_id, status, error_code, info, \
                     vendor_error_code, reported_at) \
                 SELECT i.charger_id, i.connector_id, i.status, i.error_code, i.info, \
                     i.vendor_error_code, i.reported_at \
                 FROM input i LEFT JOIN prev p \
                     ON p.charger_id = i.charger_id AND p.connector_id = i.connector_id \
                 ORDER BY i.charger_id COLLATE \"C\", i.connector_id \
                 {STATUS_UPSERT}), \
             changed AS ( \
                 SELECT i.n FROM stored s \
                 JOIN input i ON i.charger_id = s.charger_id AND i.connector_id = s.connector_id \
                 LEFT JOIN prev p ON p.charger_id = s.charger_id AND p.connector_id = s.connector_id \
                 WHERE p.status IS DISTINCT FROM s.status), \
             events AS ( \
                 INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body) \
                 SELECT e.event_id, e.event_type, e.aggregate_id, e.routing_key, e.body \
                 FROM unnest({events}) \
                     WITH ORDINALITY AS e(event_id, event_type, aggregate_id, routing_key, body, n) \
                 WHERE e.n IN (SELECT n FROM changed) \
                 ORDER BY e.n) \
             SELECT n FROM changed"
        )
    });
    let columns = StatusColumns::new(reports);
    let query = columns
        .bind(sqlx::query_as::<_, (i64,)>(&STATEMENT))
        .bind(&events.ids)
        .bind(&events.types)
        .bind(&events.aggregates)
        .bind(&events.keys)
        .bind(&events.bodies);
    let changed = query.fetch_all(pool).await?;
    Ok(changed
        .into_iter()
        .filter_map(|(n,)| usize::try_from(n).ok()?.checked_sub(1))
        .collect())
}

/// The upsert of `update_connector_statuses`.
static UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO connector_status (charger_id, connector_id, status, error_code, info, \
             vendor_error_code, reported_at) \
         SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::timestamptz[]) \
         {STATUS_UPSERT}"
    )
});

/// Stores each report unless a newer one is already stored (offline-queued reports arrive
/// late); returns the (charger, connector) pairs whose status changed.
pub async fn update_connector_statuses(
    tx: &mut Tx<'_>,
    reports: &[(&str, &StatusReport)],
) -> Result<HashSet<(String, i32)>, StoreError> {
    let columns = StatusColumns::new(reports);
    // lock the stored rows first, one primary-key look-up each, in key order (no deadlock
    // with another replica's batch), and remember what they said
    let mut keys: Vec<(&str, i32)> = columns
        .ids
        .iter()
        .copied()
        .zip(columns.connectors.iter().copied())
        .collect();
    keys.sort_unstable();
    let (lock_ids, lock_connectors): (Vec<&str>, Vec<i32>) = keys.into_iter().unzip();
    let previous: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT s.charger_id, s.connector_id, s.status \
         FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS u(charger_id, connector_id, n) \
         CROSS JOIN LATERAL ( \
             SELECT charger_id, connector_id, status FROM connector_status \
             WHERE charger_id = u.charger_id AND connector_id = u.connector_id FOR NO KEY UPDATE) AS s \
         ORDER BY u.n",
    )
    .bind(&lock_ids)
    .bind(&lock_connectors)
    // Chargers report their connectors first while `connector_status` is empty, and a plan
    // cached then kept a sequential scan per reported connector as the table grew (63 million
    // rows read in 30 s in the invoice benchmark, 8 ms per batch, where the primary key answers
    // each in microseconds). The charger writer's pool, which runs it, plans no sequential
    // scans (ADR 024, second amendment), so the statement is prepared once like the rest.
    .fetch_all(&mut **tx)
    .await?;
    let previous: HashMap<(String, i32), String> = previous
        .into_iter()
        .map(|(id, connector, status)| ((id, connector), status))
        .collect();
    let stored: Vec<(String, i32, String)> = columns
        .bind(sqlx::query_as(&UPSERT))
        .fetch_all(&mut **tx)
        .await?;
    Ok(stored
        .into_iter()
        .filter(|(id, connector, status)| previous.get(&(id.clone(), *connector)) != Some(status))
        .map(|(id, connector, _)| (id, connector))
        .collect())
}
