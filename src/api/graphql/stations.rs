//! Stations: `stations(near, radiusKm, connectorType, minPowerKw, first)` answered from the
//! in-memory search index, and `station(id)` from Redis or Postgres. Both are public: the map
//! of charging stations is shown before sign-in.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use uuid::Uuid;

use super::chargers::ChargerView;
use super::error::{ApiError, ApiResult};
use super::loaders::{ApiLoader, StationChargers};
use crate::context::AppContext;
use crate::ocm::search::SearchQuery;
use crate::store::station_cache::StationCache;
use crate::store::stations::StationDetails;
use async_graphql::dataloader::DataLoader;

/// What a station's charger list counts for in a query's complexity (a typical site; the list
/// is loaded in one batch whatever its size).
pub const CHARGERS_PER_STATION: usize = 5;

/// A WGS84 position.
#[derive(InputObject)]
pub struct GeoPointInput {
    pub latitude: f64,
    pub longitude: f64,
}

/// A charging location (from OpenChargeMap).
pub struct StationView {
    pub details: StationDetails,
    /// Set when the station came from a geo search.
    pub distance_km: Option<f64>,
}

#[Object(name = "Station")]
impl StationView {
    async fn id(&self) -> ID {
        ID(self.details.id.to_string())
    }

    /// The OpenChargeMap POI ID, for stations mirrored from OCM.
    async fn ocm_id(&self) -> Option<i32> {
        self.details.ocm_id
    }

    async fn name(&self) -> &str {
        &self.details.name
    }

    async fn address(&self) -> Option<&str> {
        self.details.address.as_deref()
    }

    async fn town(&self) -> Option<&str> {
        self.details.town.as_deref()
    }

    /// ISO 3166-1 alpha-2 country code.
    async fn country(&self) -> Option<&str> {
        self.details.country.as_deref()
    }

    async fn latitude(&self) -> f64 {
        self.details.latitude
    }

    async fn longitude(&self) -> f64 {
        self.details.longitude
    }

    async fn connectors(&self) -> Vec<Connector> {
        self.details
            .connectors
            .iter()
            .map(|c| Connector {
                connector_type: c.connector_type.clone(),
                power_kw: c.power_kw,
                quantity: c.quantity,
            })
            .collect()
    }

    /// OpenChargeMap status title, e.g. "Operational".
    async fn status(&self) -> Option<&str> {
        self.details.status.as_deref()
    }

    /// The operator's free-text tariff, as OpenChargeMap has it.
    async fn usage_cost(&self) -> Option<&str> {
        self.details.usage_cost.as_deref()
    }

    /// Set when the station came from a geo search: great-circle distance from the search point.
    async fn distance_km(&self) -> Option<f64> {
        self.distance_km
    }

    /// The network operator (extension of the contract).
    async fn operator(&self) -> Option<&str> {
        self.details.operator.as_deref()
    }

    /// Access conditions, e.g. "Public - Membership Required" (extension of the contract).
    async fn usage_type(&self) -> Option<&str> {
        self.details.usage_type.as_deref()
    }

    /// False once OpenChargeMap no longer lists the station as operational (extension of the
    /// contract); such stations never appear in searches.
    async fn is_live(&self) -> bool {
        self.details.is_live
    }

    /// OCPP chargers installed at this station (with their live connector statuses, so the app
    /// can offer a free connector). Drivers and anonymous callers see id, online and
    /// connectors; the rest is null for them. Batched across every station of the request.
    #[graphql(complexity = "CHARGERS_PER_STATION * child_complexity")]
    async fn chargers(&self, ctx: &Context<'_>) -> ApiResult<Vec<ChargerView>> {
        let loader = ctx.data_unchecked::<DataLoader<ApiLoader>>();
        Ok(loader
            .load_one(StationChargers(self.details.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(ChargerView)
            .collect())
    }
}

/// A connector type at a station.
#[derive(SimpleObject)]
pub struct Connector {
    /// OpenChargeMap connection type title, e.g. "CCS (Type 2)".
    #[graphql(name = "type")]
    pub connector_type: String,
    #[graphql(name = "powerKW")]
    pub power_kw: Option<f64>,
    pub quantity: Option<i32>,
}

#[derive(Default)]
pub struct StationQuery;

#[Object]
impl StationQuery {
    /// Stations within radiusKm of a point, nearest first. `connectorType` matches OpenChargeMap
    /// connection type titles ignoring case and punctuation ("CCS (Type 2)", "CHAdeMO") or an
    /// alias (CCS, CCS1, CCS2, TYPE1, TYPE2, CHADEMO, TESLA, NACS, SCHUKO, GBT); with
    /// `minPowerKw`, one connector must match both.
    #[graphql(complexity = "super::list_complexity(first.unwrap_or(20), child_complexity)")]
    async fn stations(
        &self,
        ctx: &Context<'_>,
        near: GeoPointInput,
        #[graphql(default = 10.0)] radius_km: Option<f64>,
        connector_type: Option<String>,
        min_power_kw: Option<f64>,
        #[graphql(default = 20)] first: Option<i32>,
    ) -> ApiResult<Vec<StationView>> {
        let app = ctx.data_unchecked::<AppContext>();
        let query = SearchQuery::parse(
            (near.latitude, near.longitude),
            radius_km.unwrap_or(10.0),
            connector_type,
            min_power_kw,
            first.unwrap_or(20),
            &app.settings.ocm,
        )?;
        let hits = app.stations.current().search(&query)?;
        Ok(hits
            .into_iter()
            .map(|hit| StationView {
                details: hit.station,
                distance_km: Some(hit.distance_km),
            })
            .collect())
    }

    /// One station by id, live or not.
    async fn station(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<StationView>> {
        let app = ctx.data_unchecked::<AppContext>();
        let Ok(id) = Uuid::parse_str(&id) else {
            return Err(ApiError::BadUserInput(
                "id is not a station id (a UUID)".into(),
            ));
        };
        let cache = StationCache {
            redis: &app.redis,
            key_prefix: &app.settings.redis.key_prefix,
            ttl_secs: app.settings.ocm.station_cache_ttl_secs,
        };
        Ok(cache
            .get_or_load(&app.db, id)
            .await?
            .map(|details| StationView {
                details,
                distance_km: None,
            }))
    }
}
