//! What operators see across the whole fleet (OPERATOR or ADMIN, extensions of the contract):
//! the overview, every user's sessions and invoices, wallets, and stations as map points. The
//! operator console is built on these, as any other staff client can be.

use async_graphql::{Context, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::auth::require_staff;
use super::chargers::ChargerView;
use super::error::{ApiError, ApiResult};
use super::invoices::{InvoiceStatus, InvoiceView};
use super::sessions::{SessionStatus, SessionView};
use super::types::UserView;
use crate::context::AppContext;
use crate::domain::{ChargePointId, Role};
use crate::store::operations;

/// The fleet right now (OPERATOR or ADMIN).
#[derive(SimpleObject)]
pub struct Overview {
    pub chargers_online: i32,
    pub chargers_offline: i32,
    /// chargers with a connector (or the charger itself) reporting Faulted
    pub chargers_faulted: i32,
    /// sessions IN_PROGRESS or STOPPING
    pub sessions_running: i32,
    /// energy of the sessions started today (UTC day), finished or not
    #[graphql(name = "energyTodayKWh")]
    pub energy_today_kwh: f64,
}

/// A station as a point on the map.
#[derive(SimpleObject)]
pub struct StationPoint {
    pub id: ID,
    pub name: String,
    pub town: Option<String>,
    pub country: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    pub chargers: i32,
    pub chargers_online: i32,
}

/// An operator command sent to a charger, from the audit log (OPERATOR or ADMIN).
#[derive(SimpleObject)]
pub struct ChargerCommandRecord {
    pub id: ID,
    /// e.g. resetCharger, sendChargerCommand, registerCharger
    pub action: String,
    /// the OCPP action of a sendChargerCommand
    pub ocpp_action: Option<String>,
    /// ok, or the error code the command ended with (CHARGER_REJECTED, CHARGER_TIMEOUT, ...)
    pub outcome: Option<String>,
    pub actor_id: Option<ID>,
    pub at: DateTime<Utc>,
}

impl From<operations::CommandRecord> for ChargerCommandRecord {
    fn from(record: operations::CommandRecord) -> Self {
        let text = |key: &str| {
            record
                .details
                .get(key)
                .and_then(|v| v.as_str())
                .map(String::from)
        };
        Self {
            id: ID(record.id.to_string()),
            ocpp_action: text("action"),
            outcome: text("outcome"),
            action: record.action,
            actor_id: record.actor_id.map(|id| ID(id.to_string())),
            at: record.created_at,
        }
    }
}

/// One point of a session's meter curve.
#[derive(SimpleObject)]
pub struct MeterPoint {
    pub sampled_at: DateTime<Utc>,
    /// energy delivered since the session started
    #[graphql(name = "energyKWh")]
    pub energy_kwh: Option<f64>,
    #[graphql(name = "powerKW")]
    pub power_kw: Option<f64>,
}

impl From<operations::MeterPoint> for MeterPoint {
    fn from(point: operations::MeterPoint) -> Self {
        let float = |d: Option<Decimal>| d.and_then(|d| d.to_f64());
        Self {
            sampled_at: point.sampled_at,
            energy_kwh: float(point.energy_kwh),
            power_kw: float(point.power_kw),
        }
    }
}

/// A page size in `1..=max`, or BAD_USER_INPUT naming the bound.
pub fn page(first: i32, max: i32) -> ApiResult<i64> {
    if (1..=max).contains(&first) {
        Ok(i64::from(first))
    } else {
        Err(ApiError::BadUserInput(format!(
            "first must be between 1 and {max}"
        )))
    }
}

fn count(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[derive(Default)]
pub struct OperationsQuery;

#[Object]
impl OperationsQuery {
    /// OPERATOR or ADMIN: chargers online, offline and faulted, sessions running, and the
    /// energy delivered today (extension).
    async fn overview(&self, ctx: &Context<'_>) -> ApiResult<Overview> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let o = operations::overview(&app.db).await?;
        Ok(Overview {
            chargers_online: count(o.chargers_online),
            chargers_offline: count(o.chargers_offline),
            chargers_faulted: count(o.chargers_faulted),
            sessions_running: count(o.sessions_running),
            energy_today_kwh: o.energy_today_kwh.to_f64().unwrap_or_default(),
        })
    }

    /// OPERATOR or ADMIN: every user's sessions, newest first, optionally of one status and
    /// one charger (extension).
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn sessions(
        &self,
        ctx: &Context<'_>,
        status: Option<SessionStatus>,
        charger_id: Option<ID>,
        #[graphql(default = 50)] first: i32,
    ) -> ApiResult<Vec<SessionView>> {
        require_staff(ctx)?;
        let first = page(first, 500)?;
        let charger = charger_id
            .map(|id| ChargePointId::parse(id.as_str()))
            .transpose()?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(operations::sessions(
            &app.db,
            status.map(|s| s.as_db()),
            charger.as_ref().map(|c| c.as_str()),
            first,
        )
        .await?
        .into_iter()
        .map(SessionView)
        .collect())
    }

    /// OPERATOR or ADMIN: every user's invoices, newest first (extension).
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn invoices(
        &self,
        ctx: &Context<'_>,
        status: Option<InvoiceStatus>,
        #[graphql(default = 50)] first: i32,
    ) -> ApiResult<Vec<InvoiceView>> {
        require_staff(ctx)?;
        let first = page(first, 500)?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(
            operations::invoices(&app.db, status.map(|s| s.as_db()), first)
                .await?
                .into_iter()
                .map(InvoiceView)
                .collect(),
        )
    }

    /// OPERATOR or ADMIN: users and their wallets, newest first, optionally of one role
    /// (extension).
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        role: Option<Role>,
        #[graphql(default = 50)] first: i32,
    ) -> ApiResult<Vec<UserView>> {
        require_staff(ctx)?;
        let first = page(first, 500)?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(operations::users(&app.db, role.map(|r| r.as_str()), first)
            .await?
            .into_iter()
            .map(UserView)
            .collect())
    }

    /// OPERATOR or ADMIN: live stations and every station with a charger, as points for a map,
    /// those with chargers first (extension). Points are flat rows of one statement, with no
    /// field that loads more: a hundred count as one item in a query's complexity.
    #[graphql(complexity = "super::list_complexity((first.max(1) + 99) / 100, child_complexity)")]
    async fn station_points(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 1000)] first: i32,
    ) -> ApiResult<Vec<StationPoint>> {
        require_staff(ctx)?;
        let first = page(first, 5000)?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(operations::station_points(&app.db, first)
            .await?
            .into_iter()
            .map(|p| StationPoint {
                id: ID(p.id.to_string()),
                name: p.name,
                town: p.town,
                country: p.country,
                latitude: p.latitude,
                longitude: p.longitude,
                chargers: count(p.chargers),
                chargers_online: count(p.chargers_online),
            })
            .collect())
    }
}

/// `Charger.commands`: the operator commands sent to this charger (OPERATOR or ADMIN).
pub async fn charger_commands(
    ctx: &Context<'_>,
    charger: &ChargerView,
    first: i32,
) -> ApiResult<Vec<ChargerCommandRecord>> {
    require_staff(ctx)?;
    let first = page(first, 200)?;
    let app = ctx.data_unchecked::<AppContext>();
    Ok(operations::charger_commands(&app.db, &charger.0.id, first)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// `Session.meterValues`: the session's meter curve, for whoever may see the session.
pub async fn meter_curve(
    ctx: &Context<'_>,
    session: &SessionView,
    last: i32,
) -> ApiResult<Vec<MeterPoint>> {
    let last = page(last, 2000)?;
    let app = ctx.data_unchecked::<AppContext>();
    Ok(operations::meter_curve(&app.db, session.0.id, last)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}
