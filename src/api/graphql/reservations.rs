//! Reservations for drivers: hold a connector (or any connector of a charger) for a while,
//! cancel it, list them (docs/reservations.md). The charger is asked with ReserveNow; what it
//! answers becomes the reservation's status. Expiry is the server's (`workers::reservations`),
//! whether or not the charger is online.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::auth::{require_staff, require_user};
use super::error::{ApiError, ApiResult};
use crate::actors::registry;
use crate::context::AppContext;
use crate::domain::reservation::{ChargerState, NoConnector};
use crate::ocpp::command::{ChargerCommand, CommandError};
use crate::store::reservations::{self, status, NewReservation, ReservationRecord, ReserveRefusal};
use crate::store::sessions as session_store;

/// Ended reservations `myReservations` shows besides the live ones.
const RECENT: i64 = 20;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ReservationStatus {
    Pending,
    Accepted,
    Rejected,
    Occupied,
    Faulted,
    Unavailable,
    Used,
    Expired,
    Cancelled,
}

impl ReservationStatus {
    fn from_db(value: &str) -> Self {
        match value {
            "PENDING" => Self::Pending,
            "ACCEPTED" => Self::Accepted,
            "OCCUPIED" => Self::Occupied,
            "FAULTED" => Self::Faulted,
            "UNAVAILABLE" => Self::Unavailable,
            "USED" => Self::Used,
            "EXPIRED" => Self::Expired,
            "CANCELLED" => Self::Cancelled,
            _ => Self::Rejected,
        }
    }
}

#[derive(SimpleObject)]
pub struct Reservation {
    pub id: ID,
    pub user_id: ID,
    pub station_id: ID,
    pub charger_id: ID,
    /// null: any connector/EVSE of the charger
    pub connector_id: Option<i32>,
    /// 2.0.1: any EVSE with a connector of this type (extension)
    pub connector_type: Option<String>,
    pub status: ReservationStatus,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// why it ended: the charger's refusal, a cancellation, expiry, the session that used it
    /// (extension)
    pub reason: Option<String>,
    /// the session that used it (extension)
    pub session_id: Option<ID>,
}

impl From<ReservationRecord> for Reservation {
    fn from(r: ReservationRecord) -> Self {
        Self {
            id: ID(r.id.to_string()),
            user_id: ID(r.user_id.to_string()),
            station_id: ID(r.station_id.to_string()),
            charger_id: ID(r.charger_id),
            connector_id: r.connector_id,
            connector_type: r.connector_type,
            status: ReservationStatus::from_db(&r.status),
            expires_at: r.expires_at,
            created_at: r.created_at,
            reason: r.reason,
            session_id: r.session_id.map(|id| ID(id.to_string())),
        }
    }
}

#[derive(InputObject)]
pub struct ReserveConnectorInput {
    pub station_id: ID,
    pub charger_id: Option<ID>,
    pub connector_id: Option<i32>,
    /// default and maximum are server settings
    pub minutes: Option<i32>,
    /// 2.0.1 chargers: any EVSE with a connector of this OCPP type, e.g. cType2, cCCS2
    /// (extension; not with connectorId)
    pub connector_type: Option<String>,
}

fn parse_id(value: &ID, what: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(value.as_str())
        .map_err(|_| ApiError::BadUserInput(format!("{what} is not a valid id")))
}

/// The status a ReserveNow answer gives the reservation.
fn answered_status(reply: &serde_json::Value) -> &'static str {
    match reply.get("status").and_then(|s| s.as_str()) {
        Some("Accepted") => status::ACCEPTED,
        Some("Faulted") => "FAULTED",
        Some("Occupied") => "OCCUPIED",
        Some("Unavailable") => "UNAVAILABLE",
        _ => "REJECTED",
    }
}

#[derive(Default)]
pub struct ReservationQuery;

#[Object]
impl ReservationQuery {
    /// The caller's live reservations and their most recent ended ones, newest first.
    async fn my_reservations(&self, ctx: &Context<'_>) -> ApiResult<Vec<Reservation>> {
        let (user_id, _) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(reservations::of_user(&app.db, user_id, RECENT)
            .await?
            .into_iter()
            .map(Reservation::from)
            .collect())
    }

    /// OPERATOR or ADMIN: the live reservations of a charger (extension).
    async fn charger_reservations(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
    ) -> ApiResult<Vec<Reservation>> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(
            reservations::live_on_chargers(&app.db, &[charger_id.to_string()])
                .await?
                .into_iter()
                .map(Reservation::from)
                .collect(),
        )
    }
}

#[derive(Default)]
pub struct ReservationMutation;

#[Object]
impl ReservationMutation {
    /// sends ReserveNow; returns the reservation (ACCEPTED, or the charger's refusal as its status)
    async fn reserve_connector(
        &self,
        ctx: &Context<'_>,
        input: ReserveConnectorInput,
    ) -> ApiResult<Reservation> {
        let (user_id, _) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let settings = &app.settings.reservations;
        let minutes = input
            .minutes
            .unwrap_or(i32::try_from(settings.default_minutes).unwrap_or(i32::MAX));
        let max = i32::try_from(settings.max_minutes).unwrap_or(i32::MAX);
        if !(1..=max).contains(&minutes) {
            return Err(ApiError::BadUserInput(format!(
                "minutes must be between 1 and {max}"
            )));
        }
        if input.connector_id.is_some_and(|c| c < 1) {
            return Err(ApiError::BadUserInput(
                "connectorId must be 1 or more".into(),
            ));
        }
        if let Some(kind) = &input.connector_type {
            let known = serde_json::from_value::<
                rust_ocpp::v2_0_1::enumerations::connector_enum_type::ConnectorEnumType,
            >(serde_json::Value::String(kind.clone()))
            .is_ok();
            if !known || input.connector_id.is_some() {
                return Err(ApiError::BadUserInput(
                    "connectorType must be an OCPP 2.0.1 connector type (e.g. cType2, cCCS2) and comes without connectorId".into(),
                ));
            }
        }
        let station_id = parse_id(&input.station_id, "stationId")?;
        // the same reads as a start: who may charge, which chargers, their connectors
        let context = session_store::start_context(
            &app.db,
            station_id,
            input.charger_id.as_ref().map(|id| id.as_str()),
            user_id,
        )
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
        super::sessions::may_charge(&context, &app.settings.billing)?;
        let id_tag = context
            .id_tag
            .clone()
            .ok_or(crate::store::StoreError::NotFound)?;
        let candidates: Vec<String> = match (&input.charger_id, context.chargers.as_slice()) {
            (Some(_), []) => {
                return Err(ApiError::NotFound("no such charger at this station".into()))
            }
            (_, [(id, online)]) => {
                if !online {
                    return Err(ApiError::ChargerOffline);
                }
                let state = ChargerState {
                    connectors: &context.connectors,
                    reservations: &context.reservations,
                };
                state
                    .check_reservable(input.connector_id)
                    .map_err(|e| match e {
                        NoConnector::Unknown(c) => {
                            ApiError::BadUserInput(format!("this charger has no connector {c}"))
                        }
                        NoConnector::Busy(reason) => ApiError::ConnectorBusy(reason.into()),
                    })?;
                vec![id.clone()]
            }
            // any charger of the station: the online ones, each until one holds a connector
            (_, _) if input.connector_id.is_some() => {
                return Err(ApiError::BadUserInput(
                    "a connectorId needs its chargerId".into(),
                ))
            }
            (_, _) => {
                let online = reservations::online_chargers_of_station(&app.db, station_id).await?;
                if online.is_empty() {
                    return Err(
                        if session_store::station_exists(&app.db, station_id).await? {
                            ApiError::ChargerOffline
                        } else {
                            ApiError::NotFound("station not found".into())
                        },
                    );
                }
                online
            }
        };
        // the driver's group: every card of theirs may use it (1.6 parentIdTag, 2.0.1 groupIdToken)
        let group_id_tag = crate::store::id_tokens::group_of_user(&app.db, user_id).await?;
        let expires_at = Utc::now() + Duration::minutes(i64::from(minutes));
        let mut refusal = None;
        let several = candidates.len() > 1;
        let mut answered_refusal = None;
        for charger_id in candidates {
            let new = NewReservation {
                user_id,
                station_id,
                charger_id,
                connector_id: input.connector_id,
                connector_type: input.connector_type.clone(),
                id_tag: id_tag.clone(),
                group_id_tag: group_id_tag.clone(),
                expires_at,
                max_per_user: i64::from(settings.max_per_user),
            };
            match reservations::reserve(&app.db, &new).await? {
                Ok(record) => match ask_charger(app, record).await {
                    // with several chargers, one that refuses (or went offline) passes the
                    // turn to the next
                    Ok(r) if several && r.status != status::ACCEPTED => answered_refusal = Some(r),
                    Err(ApiError::ChargerOffline) if several => {}
                    result => return result.map(Reservation::from),
                },
                Err(ReserveRefusal::TooMany(n)) => {
                    return Err(ApiError::Conflict(ReserveRefusal::TooMany(n).to_string()))
                }
                Err(other) => refusal = Some(other),
            }
        }
        if let Some(refused) = answered_refusal {
            return Ok(refused.into());
        }
        Err(ApiError::ConnectorBusy(
            refusal
                .map(|r| r.to_string())
                .unwrap_or_else(|| "no connector of this station is available".into()),
        ))
    }

    /// Ends a live reservation (the charger is told with CancelReservation); the driver's own,
    /// or any for OPERATOR/ADMIN. One that has already ended is returned as it is.
    async fn cancel_reservation(
        &self,
        ctx: &Context<'_>,
        reservation_id: ID,
    ) -> ApiResult<Reservation> {
        let (user_id, role) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_id(&reservation_id, "reservationId")?;
        let record = reservations::find(&app.db, id)
            .await?
            .filter(|r| r.user_id == user_id || role.is_staff())
            .ok_or_else(|| ApiError::NotFound("reservation not found".into()))?;
        let who = if record.user_id == user_id {
            "cancelled by the driver"
        } else {
            "cancelled by an operator"
        };
        let Some(cancelled) =
            reservations::transition(&app.db, id, &status::LIVE, status::CANCELLED, Some(who))
                .await?
        else {
            // it ended meanwhile (used, expired, refused): as it is now
            return reservations::find(&app.db, id)
                .await?
                .map(Reservation::from)
                .ok_or_else(|| ApiError::NotFound("reservation not found".into()));
        };
        release_on_charger(app, &cancelled).await;
        tracing::info!(reservation_id = %id, charger_id = %cancelled.charger_id, "reservation cancelled");
        Ok(cancelled.into())
    }
}

/// Sends ReserveNow for a PENDING reservation and records the answer.
async fn ask_charger(app: &AppContext, record: ReservationRecord) -> ApiResult<ReservationRecord> {
    let command = ChargerCommand::Reserve {
        reservation_id: record.ocpp_id,
        connector_id: record.connector_id,
        connector_type: record.connector_type.clone(),
        id_tag: record.id_tag.clone(),
        group_id_tag: record.group_id_tag.clone(),
        expires_at: record.expires_at,
    };
    let (to, reason, error) = match registry::execute(app, &record.charger_id, command).await {
        Ok(reply) => {
            let to = answered_status(&reply);
            (
                to,
                (to != status::ACCEPTED).then(|| format!("the charger answered {reply}")),
                None,
            )
        }
        // it may have taken it: the reservation stays PENDING and holds the connector until
        // it expires or the driver cancels it
        Err(CommandError::Timeout) => return Err(ApiError::ChargerTimeout),
        Err(CommandError::Offline) => (
            "UNAVAILABLE",
            Some("the charger is offline".to_string()),
            Some(ApiError::ChargerOffline),
        ),
        // not something this charger can do (a 1.6 charger and a connector type)
        Err(CommandError::Invalid(reason)) => (
            "REJECTED",
            Some(reason.clone()),
            Some(ApiError::BadUserInput(reason)),
        ),
        Err(e) => ("REJECTED", Some(e.to_string()), None),
    };
    let moved = reservations::transition(
        &app.db,
        record.id,
        &[status::PENDING],
        to,
        reason.as_deref(),
    )
    .await?;
    if let Some(error) = error {
        return Err(error);
    }
    match moved {
        Some(record) => {
            tracing::info!(reservation_id = %record.id, charger_id = %record.charger_id, status = %record.status, "reservation answered");
            Ok(record)
        }
        None => {
            // cancelled or expired while the charger was being asked: the charger lets go too
            let now = reservations::find(&app.db, record.id)
                .await?
                .ok_or_else(|| ApiError::NotFound("reservation not found".into()))?;
            if to == status::ACCEPTED {
                release_on_charger(app, &now).await;
            }
            Ok(now)
        }
    }
}

/// Tells the charger to let go of a reservation that ended on the server. A charger that is
/// offline or does not know it anymore is no failure: its own expiry ends it.
pub async fn release_on_charger(app: &AppContext, record: &ReservationRecord) {
    let command = ChargerCommand::CancelReservation {
        reservation_id: record.ocpp_id,
    };
    match registry::execute(app, &record.charger_id, command).await {
        Ok(reply) => {
            tracing::info!(reservation_id = %record.id, charger_id = %record.charger_id, %reply, "CancelReservation answered")
        }
        Err(e) => {
            tracing::info!(reservation_id = %record.id, charger_id = %record.charger_id, error = %e, "CancelReservation not delivered")
        }
    }
}
