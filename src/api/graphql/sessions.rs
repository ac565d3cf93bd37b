//! Charging sessions from the app: start, update, end, read, and the types they return.
//! Commands reach the charger through the registry; the session actor keeps the live state.

use async_graphql::{Context, Enum, InputObject, Object, ID};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::auth::require_user;
use super::chargers::command_error;
use super::error::{ApiError, ApiResult};
use super::invoices::InvoiceView;
use super::loaders::{ApiLoader, SessionAllocationOf, SessionInvoice};
use crate::actors::messages::{SessionCommand, SessionCommandError, StartSession};
use crate::actors::session;
use crate::actors::session_commands;
use crate::context::AppContext;
use crate::domain::reservation::{ChargerState, NoConnector};
use crate::domain::Role;
use crate::store::chargers;
use crate::store::sessions::{self as store, status, SessionRecord};
use async_graphql::dataloader::DataLoader;

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// requested by the app, waiting for the charger to start
    Pending,
    /// energy is (or may be) flowing
    InProgress,
    /// stop requested, waiting for the charger to report the final meter value
    Stopping,
    Completed,
    /// the charger refused to start
    Rejected,
    /// the charger did not answer, went away, or reported an error
    Failed,
}

impl SessionStatus {
    pub fn as_db(&self) -> &'static str {
        match self {
            SessionStatus::Pending => status::PENDING,
            SessionStatus::InProgress => status::IN_PROGRESS,
            SessionStatus::Stopping => status::STOPPING,
            SessionStatus::Completed => status::COMPLETED,
            SessionStatus::Rejected => status::REJECTED,
            SessionStatus::Failed => status::FAILED,
        }
    }

    fn from_db(value: &str) -> Self {
        match value {
            status::IN_PROGRESS => SessionStatus::InProgress,
            status::STOPPING => SessionStatus::Stopping,
            status::COMPLETED => SessionStatus::Completed,
            status::REJECTED => SessionStatus::Rejected,
            status::FAILED => SessionStatus::Failed,
            _ => SessionStatus::Pending,
        }
    }
}

/// A session as the API shows it.
pub struct SessionView(pub SessionRecord);

#[Object(name = "Session")]
impl SessionView {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn user_id(&self) -> ID {
        ID(self.0.user_id.to_string())
    }
    async fn station_id(&self) -> ID {
        ID(self.0.station_id.to_string())
    }
    async fn charger_id(&self) -> ID {
        ID(self.0.charger_id.clone())
    }
    async fn connector_id(&self) -> Option<i32> {
        self.0.connector_id
    }
    async fn start_time(&self) -> Option<DateTime<Utc>> {
        self.0.start_time
    }
    async fn end_time(&self) -> Option<DateTime<Utc>> {
        self.0.end_time
    }
    #[graphql(name = "energyKWh")]
    async fn energy_kwh(&self) -> f64 {
        session::energy_kwh(&self.0)
    }
    /// latest power reported by the charger
    #[graphql(name = "powerKW")]
    async fn power_kw(&self) -> Option<f64> {
        session::power_kw(&self.0)
    }
    async fn cost(&self) -> Option<Decimal> {
        self.0.cost.map(|mut c| {
            c.rescale(2);
            c
        })
    }
    async fn currency(&self) -> Option<&str> {
        self.0.currency.as_deref()
    }
    async fn status(&self) -> SessionStatus {
        SessionStatus::from_db(&self.0.status)
    }
    /// Charging limits in force (extension).
    async fn max_power_kw(&self) -> Option<f64> {
        self.0.max_power_kw
    }
    async fn max_energy_kwh(&self) -> Option<f64> {
        self.0
            .max_energy_kwh
            .and_then(|d| rust_decimal::prelude::ToPrimitive::to_f64(&d))
    }
    /// Why the session ended or failed (extension).
    async fn stop_reason(&self) -> Option<&str> {
        self.0
            .stop_reason
            .as_deref()
            .or(self.0.failure_reason.as_deref())
    }
    /// The meter curve: the last `last` samples of energy and power, oldest first (extension).
    #[graphql(complexity = "super::list_complexity(last, child_complexity)")]
    async fn meter_values(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 500)] last: i32,
    ) -> ApiResult<Vec<super::operations::MeterPoint>> {
        super::operations::meter_curve(ctx, self, last).await
    }

    /// On a load-managed site: the current the site's allocation gives the session, in ampere
    /// per phase (0 = paused); null elsewhere (extension). Batched like `invoice`.
    async fn allocated_amps(&self, ctx: &Context<'_>) -> ApiResult<Option<f64>> {
        let loader = ctx.data_unchecked::<DataLoader<ApiLoader>>();
        Ok(loader.load_one(SessionAllocationOf(self.0.id)).await?)
    }

    /// Batched across every session of the request (one statement).
    async fn invoice(&self, ctx: &Context<'_>) -> ApiResult<Option<InvoiceView>> {
        let loader = ctx.data_unchecked::<DataLoader<ApiLoader>>();
        Ok(loader
            .load_one(SessionInvoice(self.0.id))
            .await?
            .map(InvoiceView))
    }
}

#[derive(InputObject)]
pub struct StartSessionInput {
    pub station_id: ID,
    /// which charger of the station; optional when the station has exactly one
    pub charger_id: Option<ID>,
    /// OCPP connector (1.6) or EVSE (2.0.1) id; optional: the first available one is used
    pub connector_id: Option<i32>,
}

#[derive(InputObject)]
pub struct UpdateSessionInput {
    pub session_id: ID,
    /// cap the charging power (sent to the charger as a charging profile)
    pub max_power_kw: Option<f64>,
    /// stop automatically once this much energy has been delivered
    pub max_energy_kwh: Option<f64>,
}

fn parse_id(id: &ID, what: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| ApiError::BadUserInput(format!("{what} is not a valid id")))
}

/// The session, if the caller may see it (its owner, an operator or an admin).
pub async fn load_visible(
    app: &AppContext,
    id: Uuid,
    user_id: Uuid,
    role: Role,
) -> ApiResult<SessionRecord> {
    let record = store::find(&app.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("session not found".into()))?;
    if record.user_id != user_id && !role.is_staff() {
        return Err(ApiError::Forbidden(
            "this session belongs to someone else".into(),
        ));
    }
    Ok(record)
}

/// Runs an Update or End where the session's charger is. A session whose actor runs on this
/// replica, with its charger still here, goes straight to it: one read of the session (the
/// actor's, which checks the caller again), not two. Any other is read first, to find its
/// charger and to refuse another driver's before anything is sent.
async fn route_to_session(
    app: &AppContext,
    id: Uuid,
    user_id: Uuid,
    role: Role,
    command: SessionCommand,
) -> ApiResult<SessionRecord> {
    let local = app
        .local_sessions
        .get(id)
        .filter(|s| app.local_chargers.contains(&s.charger_id));
    let charger_id = match local {
        Some(session) if session.user_id != user_id && !role.is_staff() => {
            return Err(api_error(SessionCommandError::Forbidden))
        }
        Some(session) => session.charger_id,
        None => load_visible(app, id, user_id, role).await?.charger_id,
    };
    session_commands::route(app, &charger_id, command)
        .await
        .map_err(api_error)
}

/// Whether the driver may start charging (or reserve): no unpaid invoices above what is
/// allowed, and a wallet with the minimum unless on a flat rate.
pub(super) fn may_charge(
    context: &store::StartContext,
    billing: &crate::configuration::BillingSettings,
) -> ApiResult<()> {
    if context.unpaid > billing.max_unpaid {
        return Err(ApiError::UnpaidInvoices {
            unpaid: context.unpaid,
            allowed: billing.max_unpaid,
        });
    }
    if context.plan != "FLAT_RATE" && context.wallet_balance < billing.min_wallet_balance {
        return Err(ApiError::InsufficientFunds);
    }
    Ok(())
}

/// The API error of a failed session command.
fn api_error(e: SessionCommandError) -> ApiError {
    match e {
        SessionCommandError::ConnectorBusy(m) => ApiError::ConnectorBusy(m),
        SessionCommandError::Charger(e) => command_error(e),
        SessionCommandError::Refused(m) => ApiError::ChargerRejected(m),
        SessionCommandError::Conflict(m) => ApiError::Conflict(m),
        SessionCommandError::NotFound => ApiError::NotFound("session not found".into()),
        SessionCommandError::Forbidden => {
            ApiError::Forbidden("this session belongs to someone else".into())
        }
        SessionCommandError::Unavailable(m) => ApiError::internal(m),
    }
}

#[derive(Default)]
pub struct SessionQuery;

#[Object]
impl SessionQuery {
    async fn session(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<SessionView>> {
        let (user_id, role) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_id(&id, "id")?;
        match load_visible(app, id, user_id, role).await {
            Ok(record) => Ok(Some(SessionView(record))),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn my_sessions(
        &self,
        ctx: &Context<'_>,
        status: Option<SessionStatus>,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<SessionView>> {
        let (user_id, _) = require_user(ctx)?;
        if !(1..=100).contains(&first) {
            return Err(ApiError::BadUserInput(
                "first must be between 1 and 100".into(),
            ));
        }
        let app = ctx.data_unchecked::<AppContext>();
        Ok(store::list_for_user(
            &app.db,
            user_id,
            status.map(|s| s.as_db()),
            i64::from(first),
        )
        .await?
        .into_iter()
        .map(SessionView)
        .collect())
    }
}

#[derive(Default)]
pub struct SessionMutation;

#[Object]
impl SessionMutation {
    /// asks the charger to start (RemoteStartTransaction / RequestStartTransaction); returns the PENDING session
    async fn start_session(
        &self,
        ctx: &Context<'_>,
        input: StartSessionInput,
    ) -> ApiResult<SessionView> {
        let (user_id, _) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let station_id = parse_id(&input.station_id, "stationId")?;
        // each start asks a charger to do something: a driver gets a few per minute. The
        // count (Redis) and every read of the hot path (one round trip to Postgres) run side by
        // side; the station itself is only looked at to explain a miss
        let rate_key = app.redis_key(&format!("rl:start:user:{user_id}"));
        let limit = async {
            match crate::auth::rate_limit::hit(
                &app.redis,
                &rate_key,
                app.settings.sessions.max_starts_per_minute,
                60,
            )
            .await
            {
                // a limited start ends here, and its read is dropped
                crate::auth::rate_limit::Verdict::Limited { retry_after_secs } => {
                    Err(ApiError::RateLimited { retry_after_secs })
                }
                crate::auth::rate_limit::Verdict::Allowed => Ok(()),
            }
        };
        let read = async {
            store::start_context(
                &app.db,
                station_id,
                input.charger_id.as_ref().map(|id| id.as_str()),
                user_id,
            )
            .await
            .map_err(ApiError::from)
        };
        let ((), context) = tokio::try_join!(limit, read)?;
        let context = context.ok_or_else(ApiError::unauthenticated)?;
        if context.chargers.is_empty() && !store::station_exists(&app.db, station_id).await? {
            return Err(ApiError::NotFound("station not found".into()));
        }
        let (charger_id, online) = match (&input.charger_id, context.chargers.as_slice()) {
            (Some(_), []) => {
                return Err(ApiError::NotFound("no such charger at this station".into()))
            }
            (None, []) => {
                return Err(ApiError::NotFound(
                    "this station has no OCPP charger".into(),
                ))
            }
            (_, [only]) => only.clone(),
            (_, _) => {
                let n = chargers::count_at_station(&app.db, station_id).await?;
                return Err(ApiError::BadUserInput(format!(
                    "this station has {n} chargers: say which one (chargerId)"
                )));
            }
        };
        if !online {
            return Err(ApiError::ChargerOffline);
        }
        may_charge(&context, &app.settings.billing)?;
        if input.connector_id.is_some_and(|c| c < 1) {
            return Err(ApiError::BadUserInput(
                "connectorId must be 1 or more".into(),
            ));
        }
        let state = ChargerState {
            connectors: &context.connectors,
            reservations: &context.reservations,
        };
        let connector_id = state
            .connector_for_start(user_id, input.connector_id)
            .map_err(|e| match e {
                NoConnector::Unknown(c) => {
                    ApiError::BadUserInput(format!("this charger has no connector {c}"))
                }
                NoConnector::Busy(reason) => ApiError::ConnectorBusy(reason.into()),
            })?;
        let id_tag = context
            .id_tag
            .clone()
            .ok_or(crate::store::StoreError::NotFound)?;
        // the session's actor, on the replica holding the charger, creates it and asks the
        // charger; the answer comes once the charger answered RemoteStart
        let start = StartSession {
            user_id,
            station_id,
            charger_id: charger_id.clone(),
            connector_id,
            id_tag,
            pending_secs: i64::try_from(app.settings.sessions.pending_timeout_secs)
                .unwrap_or(i64::MAX),
        };
        let record = session_commands::route(app, &charger_id, SessionCommand::Start(start))
            .await
            .map_err(api_error)?;
        Ok(SessionView(record))
    }

    async fn update_session(
        &self,
        ctx: &Context<'_>,
        input: UpdateSessionInput,
    ) -> ApiResult<SessionView> {
        let (user_id, role) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_id(&input.session_id, "sessionId")?;
        if input.max_power_kw.is_none() && input.max_energy_kwh.is_none() {
            return Err(ApiError::BadUserInput(
                "give maxPowerKw, maxEnergyKwh or both".into(),
            ));
        }
        if let Some(kw) = input.max_power_kw {
            if !kw.is_finite() || kw <= 0.0 || kw > 1000.0 {
                return Err(ApiError::BadUserInput(
                    "maxPowerKw must be between 0 and 1000".into(),
                ));
            }
        }
        let max_energy = match input.max_energy_kwh {
            Some(kwh) if !kwh.is_finite() || kwh <= 0.0 || kwh > 10_000.0 => {
                return Err(ApiError::BadUserInput(
                    "maxEnergyKwh must be between 0 and 10000".into(),
                ))
            }
            Some(kwh) => Some(
                Decimal::from_f64(kwh)
                    .ok_or_else(|| ApiError::BadUserInput("maxEnergyKwh".into()))?
                    .round_dp(3),
            ),
            None => None,
        };
        let command = SessionCommand::Update {
            session_id: id,
            max_power_kw: input.max_power_kw,
            max_energy_kwh: max_energy,
            caller: (!role.is_staff()).then_some(user_id),
        };
        let updated = route_to_session(app, id, user_id, role, command).await?;
        Ok(SessionView(updated))
    }

    /// asks the charger to stop; returns the session (STOPPING, or COMPLETED if already finished)
    async fn end_session(&self, ctx: &Context<'_>, session_id: ID) -> ApiResult<SessionView> {
        let (user_id, role) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_id(&session_id, "sessionId")?;
        let command = SessionCommand::End {
            session_id: id,
            caller: (!role.is_staff()).then_some(user_id),
        };
        let result = route_to_session(app, id, user_id, role, command).await?;
        Ok(SessionView(result))
    }
}
