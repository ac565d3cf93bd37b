//! Load management for operators: sites with their grid connection, circuits and chargers, the
//! live load, and the charging needs a driver gives for a session (docs/smart-charging.md).

use async_graphql::{ComplexObject, Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::auth::{require_staff, require_user};
use super::error::{ApiError, ApiResult};
use crate::actors::messages::{Reallocate, SitesChanged};
use crate::context::AppContext;
use crate::store::sites::{self, Attachment, NewSite, SiteRecord};
use crate::store::{sessions, StoreError};

/// Sites a deployment may have (the list is unpaged).
const MAX_SITES: usize = 1000;

fn parse_id(value: &ID, what: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(value.as_str())
        .map_err(|_| ApiError::BadUserInput(format!("{what} is not a valid id")))
}

fn amps(value: f64, what: &str, max: f64) -> ApiResult<f64> {
    if value.is_finite() && value >= 0.0 && value <= max {
        Ok(value)
    } else {
        Err(ApiError::BadUserInput(format!(
            "{what} must be between 0 and {max} A"
        )))
    }
}

/// A place with one grid connection whose capacity the chargers attached to it share.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Site {
    pub id: ID,
    pub name: String,
    /// limit per phase of the grid connection, in ampere
    pub grid_limit_amps: f64,
    pub phases: i32,
    pub voltage: f64,
    pub margin_amps: f64,
    /// load on the connection that is not a charger, per phase, when nothing fresher was
    /// reported (extension)
    pub other_load_amps: f64,
    #[graphql(skip)]
    pub site_id: Uuid,
}

impl From<SiteRecord> for Site {
    fn from(r: SiteRecord) -> Self {
        Self {
            id: ID(r.id.to_string()),
            name: r.name,
            grid_limit_amps: r.grid_limit_amps,
            phases: i32::from(r.phases),
            voltage: r.voltage,
            margin_amps: r.margin_amps,
            other_load_amps: r.other_load_amps,
            site_id: r.id,
        }
    }
}

#[derive(SimpleObject)]
pub struct SiteCharger {
    pub charger_id: ID,
    pub max_amps: Option<f64>,
    pub min_amps: Option<f64>,
    /// the circuit it hangs from; null: the grid connection (extension)
    pub circuit_id: Option<ID>,
    /// 1 or 3 (extension)
    pub phases: i32,
    /// the grid phases its L1, L2, L3 are wired to, as R/S/T, e.g. "RST" or "STR" (extension)
    pub phase_rotation: String,
    /// a limit set outside this server (2.0.1 NotifyChargingLimit), honoured (extension)
    pub external_limit_amps: Option<f64>,
    pub online: bool,
    /// whether it holds its fallback profiles (maximum, default at the minimum) (extension)
    pub fallback_installed: bool,
}

/// A circuit or panel below the grid connection (extension).
#[derive(SimpleObject)]
pub struct Circuit {
    pub id: ID,
    pub name: String,
    /// null: directly below the grid connection
    pub parent_id: Option<ID>,
    pub limit_amps: f64,
}

#[derive(SimpleObject)]
pub struct SiteLoad {
    pub allocated_amps: Vec<f64>,
    pub measured_amps: Vec<f64>,
    /// per active session: its allocation in ampere (0 = paused)
    pub sessions: Vec<SessionAllocation>,
    pub updated_at: DateTime<Utc>,
    /// offline chargers counted at their maximum exceed a limit on their own (extension)
    pub overcommitted: bool,
    /// chargers that did not take their last limit and count as offline until they do
    /// (extension)
    pub unreachable_chargers: Vec<ID>,
}

#[derive(SimpleObject)]
pub struct SessionAllocation {
    pub session_id: ID,
    pub charger_id: ID,
    pub amps: f64,
}

fn load_view(value: &serde_json::Value, at: DateTime<Utc>) -> SiteLoad {
    let numbers = |key: &str| -> Vec<f64> {
        value
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|n| n.as_f64()).collect())
            .unwrap_or_else(|| vec![0.0; 3])
    };
    let sessions = value
        .get("sessions")
        .and_then(|v| v.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|s| {
                    Some(SessionAllocation {
                        session_id: ID(s.get("sessionId")?.as_str()?.to_string()),
                        charger_id: ID(s.get("chargerId")?.as_str()?.to_string()),
                        amps: s.get("amps")?.as_f64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    SiteLoad {
        allocated_amps: numbers("allocatedAmps"),
        measured_amps: numbers("measuredAmps"),
        sessions,
        updated_at: at,
        overcommitted: value
            .get("overcommitted")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        unreachable_chargers: value
            .get("unreachableChargers")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str())
                    .map(|c| ID(c.to_string()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[ComplexObject]
impl Site {
    async fn chargers(&self, ctx: &Context<'_>) -> ApiResult<Vec<SiteCharger>> {
        let app = ctx.data_unchecked::<AppContext>();
        Ok(sites::chargers(&app.db, self.site_id)
            .await?
            .into_iter()
            .map(|c| SiteCharger {
                charger_id: ID(c.charger_id),
                max_amps: Some(c.max_amps),
                min_amps: Some(c.min_amps),
                circuit_id: c.circuit_id.map(|id| ID(id.to_string())),
                phases: i32::from(c.phases),
                phase_rotation: c.phase_rotation,
                external_limit_amps: c.external_limit_amps,
                online: c.online,
                fallback_installed: c.fallback_installed_at.is_some(),
            })
            .collect())
    }

    /// circuits and panels below the grid connection (extension)
    async fn circuits(&self, ctx: &Context<'_>) -> ApiResult<Vec<Circuit>> {
        let app = ctx.data_unchecked::<AppContext>();
        Ok(sites::circuits(&app.db, self.site_id)
            .await?
            .into_iter()
            .map(|c| Circuit {
                id: ID(c.id.to_string()),
                name: c.name,
                parent_id: c.parent_id.map(|p| ID(p.to_string())),
                limit_amps: c.limit_amps,
            })
            .collect())
    }

    /// current load: allocated and measured, in ampere per phase
    async fn load(&self, ctx: &Context<'_>) -> ApiResult<SiteLoad> {
        let app = ctx.data_unchecked::<AppContext>();
        Ok(match sites::load_of(&app.db, self.site_id).await? {
            Some((value, at)) => load_view(&value, at),
            // not allocated yet (no replica has run it)
            None => load_view(&serde_json::Value::Null, Utc::now()),
        })
    }
}

#[derive(InputObject)]
pub struct CreateSiteInput {
    pub name: String,
    pub grid_limit_amps: f64,
    #[graphql(default = 3)]
    pub phases: i32,
    #[graphql(default = 230.0)]
    pub voltage: f64,
    #[graphql(default = 0.0)]
    pub margin_amps: f64,
    /// load on the connection that is not a charger, per phase (extension)
    #[graphql(default = 0.0)]
    pub other_load_amps: f64,
}

#[derive(InputObject)]
pub struct AttachChargerInput {
    pub site_id: ID,
    pub charger_id: ID,
    pub max_amps: Option<f64>,
    pub min_amps: Option<f64>,
    /// a circuit of the site; null: the grid connection (extension)
    pub circuit_id: Option<ID>,
    /// 1 or 3; default 3 (extension)
    pub phases: Option<i32>,
    /// e.g. "RST" (default) or "STR": the grid phases its L1, L2, L3 are wired to (extension)
    pub phase_rotation: Option<String>,
}

/// (extension)
#[derive(InputObject)]
pub struct CreateCircuitInput {
    pub site_id: ID,
    pub name: String,
    pub limit_amps: f64,
    /// the circuit it hangs from; null: the grid connection
    pub parent_id: Option<ID>,
}

/// (extension) null keeps a value
#[derive(InputObject)]
pub struct UpdateSiteInput {
    pub site_id: ID,
    pub grid_limit_amps: Option<f64>,
    pub margin_amps: Option<f64>,
    pub other_load_amps: Option<f64>,
}

#[derive(Default)]
pub struct SiteQuery;

#[Object]
impl SiteQuery {
    /// OPERATOR or ADMIN
    async fn sites(&self, ctx: &Context<'_>) -> ApiResult<Vec<Site>> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(sites::list(&app.db)
            .await?
            .into_iter()
            .take(MAX_SITES)
            .map(Site::from)
            .collect())
    }

    /// OPERATOR or ADMIN
    async fn site(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Site>> {
        require_staff(ctx)?;
        let id = parse_id(&id, "id")?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(sites::find(&app.db, id).await?.map(Site::from))
    }
}

#[derive(Default)]
pub struct SiteMutation;

fn notify(app: &AppContext, site_id: Uuid) {
    app.site_supervisor.do_send(SitesChanged);
    app.site_supervisor
        .do_send(Reallocate { site_id, now: true });
}

#[Object]
impl SiteMutation {
    /// OPERATOR or ADMIN
    async fn create_site(&self, ctx: &Context<'_>, input: CreateSiteInput) -> ApiResult<Site> {
        require_staff(ctx)?;
        let name = input.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 120 {
            return Err(ApiError::BadUserInput(
                "name must be 1 to 120 characters".into(),
            ));
        }
        if !(input.grid_limit_amps.is_finite()
            && input.grid_limit_amps > 0.0
            && input.grid_limit_amps <= 100_000.0)
        {
            return Err(ApiError::BadUserInput(
                "gridLimitAmps must be above 0 and at most 100000".into(),
            ));
        }
        if input.phases != 1 && input.phases != 3 {
            return Err(ApiError::BadUserInput("phases must be 1 or 3".into()));
        }
        if !(100.0..=1000.0).contains(&input.voltage) {
            return Err(ApiError::BadUserInput(
                "voltage must be between 100 and 1000".into(),
            ));
        }
        let margin = amps(input.margin_amps, "marginAmps", input.grid_limit_amps)?;
        let other = amps(
            input.other_load_amps,
            "otherLoadAmps",
            input.grid_limit_amps,
        )?;
        let app = ctx.data_unchecked::<AppContext>();
        let site = sites::create(
            &app.db,
            &NewSite {
                name,
                grid_limit_amps: input.grid_limit_amps,
                phases: input.phases as i16,
                voltage: input.voltage,
                margin_amps: margin,
                other_load_amps: other,
            },
        )
        .await?;
        app.site_supervisor.do_send(SitesChanged);
        tracing::info!(site_id = %site.id, "site created");
        Ok(site.into())
    }

    /// OPERATOR or ADMIN: attaches a charger (or changes its attachment); its profiles are
    /// installed and the site re-allocated at once
    async fn attach_charger(
        &self,
        ctx: &Context<'_>,
        input: AttachChargerInput,
    ) -> ApiResult<Site> {
        require_staff(ctx)?;
        let site_id = parse_id(&input.site_id, "siteId")?;
        let circuit_id = input
            .circuit_id
            .as_ref()
            .map(|c| parse_id(c, "circuitId"))
            .transpose()?;
        let max_amps = amps(input.max_amps.unwrap_or(32.0), "maxAmps", 1000.0)?;
        let min_amps = amps(input.min_amps.unwrap_or(6.0), "minAmps", 1000.0)?;
        if max_amps <= 0.0 || min_amps > max_amps {
            return Err(ApiError::BadUserInput(
                "maxAmps must be above 0 and at least minAmps".into(),
            ));
        }
        let phases = input.phases.unwrap_or(3);
        if phases != 1 && phases != 3 {
            return Err(ApiError::BadUserInput("phases must be 1 or 3".into()));
        }
        let rotation = input
            .phase_rotation
            .unwrap_or_else(|| "RST".into())
            .to_uppercase();
        if crate::smart::input::rotation(&rotation).is_none() {
            return Err(ApiError::BadUserInput(
                "phaseRotation must be R, S and T in some order, e.g. RST or STR".into(),
            ));
        }
        let app = ctx.data_unchecked::<AppContext>();
        let charger_id = input.charger_id.to_string();
        sites::attach(
            &app.db,
            &Attachment {
                site_id,
                charger_id: charger_id.clone(),
                circuit_id,
                phases: phases as i16,
                phase_rotation: rotation,
                min_amps,
                max_amps,
            },
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound => {
                ApiError::NotFound("no such site, charger or circuit of the site".into())
            }
            other => other.into(),
        })?;
        app.site_directory.insert(
            &charger_id,
            crate::smart::directory::Seat {
                site_id,
                min_amps,
                phases: if phases == 1 { 1 } else { 3 },
            },
        );
        notify(app, site_id);
        tracing::info!(site_id = %site_id, charger_id = %charger_id, "charger attached to site");
        sites::find(&app.db, site_id)
            .await?
            .map(Site::from)
            .ok_or_else(|| ApiError::NotFound("site not found".into()))
    }

    /// OPERATOR or ADMIN: the charger leaves load management; its profiles stay until the
    /// charger's sessions end (extension)
    async fn detach_charger(&self, ctx: &Context<'_>, charger_id: ID) -> ApiResult<bool> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let site = sites::detach(&app.db, charger_id.as_str()).await?;
        app.site_directory.remove(charger_id.as_str());
        if let Some(site_id) = site {
            notify(app, site_id);
        }
        Ok(site.is_some())
    }

    /// OPERATOR or ADMIN: a circuit or panel with its own limit (extension)
    async fn create_circuit(
        &self,
        ctx: &Context<'_>,
        input: CreateCircuitInput,
    ) -> ApiResult<Circuit> {
        require_staff(ctx)?;
        let site_id = parse_id(&input.site_id, "siteId")?;
        let parent = input
            .parent_id
            .as_ref()
            .map(|p| parse_id(p, "parentId"))
            .transpose()?;
        let name = input.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 120 {
            return Err(ApiError::BadUserInput(
                "name must be 1 to 120 characters".into(),
            ));
        }
        if !(input.limit_amps.is_finite()
            && input.limit_amps > 0.0
            && input.limit_amps <= 100_000.0)
        {
            return Err(ApiError::BadUserInput(
                "limitAmps must be above 0 and at most 100000".into(),
            ));
        }
        let app = ctx.data_unchecked::<AppContext>();
        let circuit = sites::create_circuit(&app.db, site_id, parent, &name, input.limit_amps)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => {
                    ApiError::NotFound("no such site, or the parent is not a circuit of it".into())
                }
                other => other.into(),
            })?;
        notify(app, site_id);
        Ok(Circuit {
            id: ID(circuit.id.to_string()),
            name: circuit.name,
            parent_id: circuit.parent_id.map(|p| ID(p.to_string())),
            limit_amps: circuit.limit_amps,
        })
    }

    /// OPERATOR or ADMIN: new limits for a site, applied at once (extension)
    async fn update_site(&self, ctx: &Context<'_>, input: UpdateSiteInput) -> ApiResult<Site> {
        require_staff(ctx)?;
        let site_id = parse_id(&input.site_id, "siteId")?;
        if let Some(limit) = input.grid_limit_amps {
            if !(limit.is_finite() && limit > 0.0 && limit <= 100_000.0) {
                return Err(ApiError::BadUserInput(
                    "gridLimitAmps must be above 0 and at most 100000".into(),
                ));
            }
        }
        let margin = input
            .margin_amps
            .map(|m| amps(m, "marginAmps", 100_000.0))
            .transpose()?;
        let other = input
            .other_load_amps
            .map(|m| amps(m, "otherLoadAmps", 100_000.0))
            .transpose()?;
        let app = ctx.data_unchecked::<AppContext>();
        let site = sites::update(&app.db, site_id, input.grid_limit_amps, margin, other).await?;
        notify(app, site_id);
        Ok(site.into())
    }

    /// OPERATOR or ADMIN: the live load on the connection that is not a charger (a building's
    /// meter), per phase; counts until a fresher report or `reported_load_ttl_secs` (extension)
    async fn report_site_load(
        &self,
        ctx: &Context<'_>,
        site_id: ID,
        amps_per_phase: Vec<f64>,
    ) -> ApiResult<Site> {
        require_staff(ctx)?;
        let site_id = parse_id(&site_id, "siteId")?;
        if amps_per_phase.len() != 3 {
            return Err(ApiError::BadUserInput(
                "ampsPerPhase must have 3 values (L1, L2, L3)".into(),
            ));
        }
        let mut values = [0.0; 3];
        for (i, v) in amps_per_phase.iter().enumerate() {
            values[i] = amps(*v, "ampsPerPhase", 100_000.0)?;
        }
        let app = ctx.data_unchecked::<AppContext>();
        let site = sites::report_load(&app.db, site_id, values).await?;
        notify(app, site_id);
        Ok(site.into())
    }

    /// The driver of a session (or staff): when the car must leave and how much energy it
    /// needs by then; a near departure raises the session's share on a load-managed site
    /// (extension)
    async fn set_charging_needs(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        departure_time: Option<DateTime<Utc>>,
        energy_kwh: Option<f64>,
    ) -> ApiResult<bool> {
        let (user_id, role) = require_user(ctx)?;
        let id = parse_id(&session_id, "sessionId")?;
        if let Some(kwh) = energy_kwh {
            if !(kwh.is_finite() && kwh > 0.0 && kwh <= 1000.0) {
                return Err(ApiError::BadUserInput(
                    "energyKwh must be above 0 and at most 1000".into(),
                ));
            }
        }
        if departure_time.is_some_and(|t| t < Utc::now()) {
            return Err(ApiError::BadUserInput(
                "departureTime is in the past".into(),
            ));
        }
        let app = ctx.data_unchecked::<AppContext>();
        let record = sessions::find(&app.db, id)
            .await?
            .filter(|s| s.user_id == user_id || role.is_staff())
            .ok_or_else(|| ApiError::NotFound("session not found".into()))?;
        if !record.is_open() {
            return Err(ApiError::Conflict("the session has ended".into()));
        }
        sites::set_needs(&app.db, id, departure_time, energy_kwh, None, None, "APP").await?;
        if let Some(site_id) = app.site_directory.site_of(&record.charger_id) {
            app.site_supervisor.do_send(Reallocate {
                site_id,
                now: false,
            });
        }
        Ok(true)
    }
}
