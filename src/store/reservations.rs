//! Reservations: the one module that writes them. Every change is a guarded transition (an
//! `UPDATE ... WHERE status IN (...)`), so the API, the charger's messages and the expiry sweep
//! can race on one reservation and exactly one of them wins; the final states (USED, EXPIRED,
//! CANCELLED and the charger's refusals) never change again.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::StoreError;

pub mod status {
    pub const PENDING: &str = "PENDING";
    pub const ACCEPTED: &str = "ACCEPTED";
    pub const USED: &str = "USED";
    pub const EXPIRED: &str = "EXPIRED";
    pub const CANCELLED: &str = "CANCELLED";
    /// States in which a reservation holds its connector.
    pub const LIVE: [&str; 2] = [PENDING, ACCEPTED];
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReservationRecord {
    pub id: Uuid,
    pub ocpp_id: i32,
    pub user_id: Uuid,
    pub station_id: Uuid,
    pub charger_id: String,
    pub connector_id: Option<i32>,
    /// 2.0.1: any EVSE with a connector of this type (ConnectorEnumType).
    pub connector_type: Option<String>,
    pub id_tag: String,
    pub group_id_tag: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub session_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ReservationRecord {
    pub fn is_live(&self) -> bool {
        status::LIVE.contains(&self.status.as_str())
    }
}

const COLUMNS: &str =
    "id, ocpp_id, user_id, station_id, charger_id, connector_id, connector_type, \
     id_tag, group_id_tag, status, reason, session_id, expires_at, created_at, updated_at";

/// A reservation to hold, as the API validated it.
#[derive(Debug, Clone)]
pub struct NewReservation {
    pub user_id: Uuid,
    pub station_id: Uuid,
    pub charger_id: String,
    pub connector_id: Option<i32>,
    pub connector_type: Option<String>,
    pub id_tag: String,
    pub group_id_tag: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// How many live reservations one driver may hold at once.
    pub max_per_user: i64,
}

/// Why a reservation could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReserveRefusal {
    #[error("the connector is already reserved")]
    ConnectorReserved,
    #[error("every connector of this charger is reserved")]
    ChargerFull,
    #[error("you already hold {0} reservation(s), the most one driver may hold at once")]
    TooMany(i64),
}

/// Takes a PENDING reservation, unless it collides with a live one: the same connector, a
/// charger whose every connector is held, or the driver's own limit. The charger's row is
/// locked for the check, so two drivers racing for one connector cannot both win.
pub async fn reserve(
    pool: &PgPool,
    new: &NewReservation,
) -> Result<Result<ReservationRecord, ReserveRefusal>, StoreError> {
    let mut tx = pool.begin().await?;
    let connectors: Option<i64> = sqlx::query_scalar(
        "SELECT GREATEST(1, (SELECT count(*) FROM connector_status k \
             WHERE k.charger_id = c.id AND k.connector_id > 0)) \
         FROM chargers c WHERE c.id = $1 FOR UPDATE",
    )
    .bind(&new.charger_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(connectors) = connectors else {
        return Err(StoreError::NotFound);
    };
    let (mine, same_connector, on_charger, any_on_charger): (i64, bool, i64, bool) =
        sqlx::query_as(
            "SELECT \
             (SELECT count(*) FROM reservations WHERE user_id = $1 AND status IN ('PENDING', 'ACCEPTED') \
                 AND expires_at > now()), \
             EXISTS (SELECT 1 FROM reservations WHERE charger_id = $2 AND connector_id = $3 \
                 AND status IN ('PENDING', 'ACCEPTED') AND expires_at > now()), \
             (SELECT count(*) FROM reservations WHERE charger_id = $2 \
                 AND status IN ('PENDING', 'ACCEPTED') AND expires_at > now()), \
             EXISTS (SELECT 1 FROM reservations WHERE charger_id = $2 AND connector_id IS NULL \
                 AND status IN ('PENDING', 'ACCEPTED') AND expires_at > now())",
        )
        .bind(new.user_id)
        .bind(&new.charger_id)
        .bind(new.connector_id)
        .fetch_one(&mut *tx)
        .await?;
    if mine >= new.max_per_user {
        return Ok(Err(ReserveRefusal::TooMany(mine)));
    }
    if same_connector || (new.connector_id.is_none() && any_on_charger) {
        return Ok(Err(ReserveRefusal::ConnectorReserved));
    }
    if on_charger >= connectors {
        return Ok(Err(ReserveRefusal::ChargerFull));
    }
    let record = sqlx::query_as::<_, ReservationRecord>(&format!(
        "INSERT INTO reservations (id, user_id, station_id, charger_id, connector_id, id_tag, \
             group_id_tag, expires_at, connector_type) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(new.user_id)
    .bind(new.station_id)
    .bind(&new.charger_id)
    .bind(new.connector_id)
    .bind(&new.id_tag)
    .bind(&new.group_id_tag)
    .bind(new.expires_at)
    .bind(&new.connector_type)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(record))
}

pub async fn find(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<ReservationRecord>, StoreError> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM reservations WHERE id = $1"))
            .bind(id)
            .fetch_optional(executor)
            .await?,
    )
}

/// A driver's reservations, newest first: the live ones and the last `recent` ended ones.
pub async fn of_user(
    pool: &PgPool,
    user_id: Uuid,
    recent: i64,
) -> Result<Vec<ReservationRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "(SELECT {COLUMNS} FROM reservations WHERE user_id = $1 AND status IN ('PENDING', 'ACCEPTED')) \
         UNION ALL \
         (SELECT {COLUMNS} FROM reservations WHERE user_id = $1 AND status NOT IN ('PENDING', 'ACCEPTED') \
             ORDER BY created_at DESC LIMIT $2) \
         ORDER BY created_at DESC"
    ))
    .bind(user_id)
    .bind(recent)
    .fetch_all(pool)
    .await?)
}

/// Moves a reservation from one of `from` to `to`; None when it was no longer in `from`
/// (another transition won).
pub async fn transition(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    from: &[&str],
    to: &str,
    reason: Option<&str>,
) -> Result<Option<ReservationRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE reservations SET status = $3, reason = COALESCE($4, reason), updated_at = now() \
         WHERE id = $1 AND status = ANY($2) RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(reason)
    .fetch_optional(executor)
    .await?)
}

/// The charger's own word on a reservation it holds (2.0.1 ReservationStatusUpdate):
/// `Expired` or `Removed`.
pub async fn charger_ended(
    pool: &PgPool,
    charger_id: &str,
    ocpp_id: i32,
    to: &str,
    reason: &str,
) -> Result<Option<ReservationRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE reservations SET status = $3, reason = $4, updated_at = now() \
         WHERE charger_id = $1 AND ocpp_id = $2 AND status IN ('PENDING', 'ACCEPTED') \
         RETURNING {COLUMNS}"
    ))
    .bind(charger_id)
    .bind(ocpp_id)
    .bind(to)
    .bind(reason)
    .fetch_optional(pool)
    .await?)
}

/// Ends every live reservation whose time is up; returns them (each is returned by exactly
/// one caller, however many replicas sweep).
pub async fn expire_due(pool: &PgPool, limit: i64) -> Result<Vec<ReservationRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE reservations SET status = 'EXPIRED', reason = 'not used before it expired', \
             updated_at = now() \
         WHERE id IN (SELECT id FROM reservations WHERE status IN ('PENDING', 'ACCEPTED') \
             AND expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
         RETURNING {COLUMNS}"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Who holds a connector that a transaction is starting on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Nobody: start as usual.
    Free,
    /// This driver's own reservation: the start uses it.
    Mine(Uuid),
    /// Another driver's reservation.
    Theirs,
}

/// The live, accepted reservations that may hold `connector_id` of `charger_id`: read beside
/// the start's token check, decided with `Holds::for_user` once the token's driver is known.
/// A reservation of "any connector" holds one connector of a charger: others may start there
/// while another connector stays free for it.
pub async fn holds_at(
    executor: impl PgExecutor<'_>,
    charger_id: &str,
    connector_id: i32,
    id_tag: Option<&str>,
) -> Result<Holds, StoreError> {
    static STATEMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let group = "(SELECT COALESCE(t.group_id_tag, (SELECT COALESCE(a.group_id_tag, a.id_tag) \
             FROM id_tags a WHERE a.user_id = t.user_id AND a.kind = 'APP' \
             ORDER BY a.created_at LIMIT 1)) FROM id_tags t WHERE t.id_tag = $3)";
        format!("SELECT {}", holds_json("$1::text", "$2::int", group))
    });
    let rows: sqlx::types::Json<Vec<HoldRow>> = sqlx::query_scalar(&STATEMENT)
        .bind(charger_id)
        .bind(connector_id)
        .bind(id_tag)
        .fetch_one(executor)
        .await?;
    Ok(Holds(rows.0))
}

/// What `holds_at` read: (reservation, driver, connector, connectors free besides this one,
/// the presented token is of the reservation's group).
#[derive(Debug, Clone, Default)]
pub struct Holds(Vec<HoldRow>);

/// One reservation `Holds` weighs: (reservation, driver, connector, connectors free besides
/// this one, the presented token is of the reservation's group).
pub(crate) type HoldRow = (Uuid, Uuid, Option<i32>, i64, bool);

/// Who may hold a connector, as a JSON array of `[reservation, driver, connector, free others,
/// of the token's group]` arrays: `holds_at` reads it alone, `users::resolve_at` beside the
/// token. `charger`, `connector` and `group` are the statement's expressions for the charger,
/// the connector and the presented token's group (NULL when it has none).
pub(crate) fn holds_json(charger: &str, connector: &str, group: &str) -> String {
    format!(
        "(SELECT COALESCE(json_agg(json_build_array(r.id, r.user_id, r.connector_id, \
             (SELECT count(*) FROM connector_status k WHERE k.charger_id = r.charger_id \
                 AND k.connector_id > 0 AND k.connector_id <> {connector} AND k.status = 'AVAILABLE'), \
             COALESCE(r.group_id_tag = {group}, FALSE)) ORDER BY r.connector_id NULLS LAST), '[]'::json) \
         FROM reservations r WHERE {charger} IS NOT NULL AND r.charger_id = {charger} \
             AND r.status = 'ACCEPTED' AND r.expires_at > now() \
             AND (r.connector_id IS NULL OR r.connector_id = {connector}))"
    )
}

impl From<Vec<HoldRow>> for Holds {
    fn from(rows: Vec<HoldRow>) -> Self {
        Self(rows)
    }
}

impl Holds {
    pub fn for_user(&self, user: Option<Uuid>) -> Hold {
        decide_hold(&self.0, user)
    }
}

/// The rule of `Holds::for_user` over its rows: a reservation of this very connector decides
/// alone (its driver's, or their group's, or nobody else's); then the driver's own reservation
/// of any connector; then another's reservation of any connector holds it while it is the last
/// free one.
fn decide_hold(rows: &[(Uuid, Uuid, Option<i32>, i64, bool)], user: Option<Uuid>) -> Hold {
    let ours = |owner: &Uuid, group: bool| group || Some(*owner) == user;
    if let Some((id, owner, _, _, group)) = rows.iter().find(|(_, _, c, _, _)| c.is_some()) {
        return if ours(owner, *group) {
            Hold::Mine(*id)
        } else {
            Hold::Theirs
        };
    }
    if let Some((id, ..)) = rows
        .iter()
        .find(|(_, owner, _, _, group)| ours(owner, *group))
    {
        return Hold::Mine(*id);
    }
    if rows
        .iter()
        .any(|(_, _, _, free_others, _)| *free_others == 0)
    {
        Hold::Theirs
    } else {
        Hold::Free
    }
}

/// Marks a reservation USED by the start of `session_id` (if the start opened one).
pub async fn use_for(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    session_id: Option<Uuid>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE reservations SET status = 'USED', session_id = $2, reason = 'a session started on it', \
             updated_at = now() WHERE id = $1 AND status IN ('PENDING', 'ACCEPTED')",
    )
    .bind(id)
    .bind(session_id)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The online chargers of a station, by id (a reservation of "any charger" tries each).
pub async fn online_chargers_of_station(
    pool: &PgPool,
    station_id: Uuid,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM chargers WHERE station_id = $1 AND online ORDER BY id LIMIT 50",
    )
    .bind(station_id)
    .fetch_all(pool)
    .await?)
}

/// The live reservations of chargers (operators' view).
pub async fn live_on_chargers(
    pool: &PgPool,
    charger_ids: &[String],
) -> Result<Vec<ReservationRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reservations WHERE charger_id = ANY($1) \
             AND status = 'ACCEPTED' AND expires_at > now()"
    ))
    .bind(charger_ids)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_connector_lets_only_its_driver_start() {
        let (me, other, r) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let rows = [(r, me, Some(1), 1, false)];
        assert_eq!(decide_hold(&rows, Some(me)), Hold::Mine(r));
        assert_eq!(decide_hold(&rows, Some(other)), Hold::Theirs);
        assert_eq!(decide_hold(&rows, None), Hold::Theirs);
        assert_eq!(decide_hold(&[], Some(other)), Hold::Free);
        // another driver of the reservation's group (a fleet card)
        let grouped = [(r, me, Some(1), 1, true)];
        assert_eq!(decide_hold(&grouped, Some(other)), Hold::Mine(r));
        // a reservation of any connector gives no right to one another driver reserved
        let (any, theirs) = (Uuid::new_v4(), Uuid::new_v4());
        let rows = [
            (theirs, other, Some(1), 1, false),
            (any, me, None, 1, false),
        ];
        assert_eq!(decide_hold(&rows, Some(me)), Hold::Theirs);
        assert_eq!(decide_hold(&rows, Some(other)), Hold::Mine(theirs));
    }

    #[test]
    fn a_reservation_of_any_connector_keeps_one_free() {
        let (me, other, r) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        // another connector is free: the other driver may take this one
        assert_eq!(
            decide_hold(&[(r, me, None, 1, false)], Some(other)),
            Hold::Free
        );
        // this is the last free one: it is held
        assert_eq!(
            decide_hold(&[(r, me, None, 0, false)], Some(other)),
            Hold::Theirs
        );
        assert_eq!(
            decide_hold(&[(r, me, None, 0, false)], Some(me)),
            Hold::Mine(r)
        );
    }
}
