//! Station search: an in-memory R-tree of every live station, loaded from Postgres.
//!
//! Points are indexed as 3D unit vectors (see [`super::geo`]), so distance order is great-circle
//! order everywhere, the antimeridian and the poles included. A query walks the tree nearest
//! first and stops at `first` matches or at the radius (converted to a chord length), then
//! reports the exact haversine distance. Besides the tree of all stations there is one tree
//! per connection type holding the type's best power at each station, so a connector filter
//! walks only stations that have the connector, and a power filter is checked without leaving
//! the tree entry. No query touches Postgres, Redis or MongoDB.
//!
//! MongoDB's `$geoNear` could answer the same question from the mirror, but it is not a hot
//! path option (about 0.5 s per 20,000 documents on the development server, SecantusDB); the
//! mirror stays the source of truth for raw POIs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rstar::primitives::GeomWithData;
use rstar::RTree;
use sqlx::PgPool;
use uuid::Uuid;

use super::connectors;
use super::geo::{chord_squared_for_km, haversine_km, GeoPoint};
use super::reference::Reference;
use crate::configuration::OcmSettings;
use crate::domain::ValidationError;
use crate::store::stations::{self, ConnectorDetails, StationDetails};
use crate::store::StoreError;

/// A tree entry: the station's unit vector, its slot, and the best power that qualifies it.
type Entry = GeomWithData<[f64; 3], (u32, f64)>;

/// A search, validated at the API boundary.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub near: GeoPoint,
    pub radius_km: f64,
    pub connector_type: Option<String>,
    pub min_power_kw: Option<f64>,
    pub first: usize,
}

impl SearchQuery {
    /// Checks the arguments of `stations(...)` against the configured limits.
    pub fn parse(
        (latitude, longitude): (f64, f64),
        radius_km: f64,
        connector_type: Option<String>,
        min_power_kw: Option<f64>,
        first: i32,
        limits: &OcmSettings,
    ) -> Result<Self, ValidationError> {
        let (max_radius_km, max_results) = (limits.search_max_radius_km, limits.search_max_results);
        let near = GeoPoint::new(latitude, longitude).ok_or_else(|| {
            ValidationError::new(
                "near must have a latitude within [-90, 90] and a longitude within [-180, 180]",
            )
        })?;
        if !(radius_km.is_finite() && radius_km > 0.0 && radius_km <= max_radius_km) {
            return Err(ValidationError::new(format!(
                "radiusKm must be above 0 and at most {max_radius_km}"
            )));
        }
        if min_power_kw.is_some_and(|p| !p.is_finite() || p < 0.0) {
            return Err(ValidationError::new("minPowerKw must be a number >= 0"));
        }
        let first = usize::try_from(first)
            .ok()
            .filter(|f| (1..=max_results as usize).contains(f))
            .ok_or_else(|| {
                ValidationError::new(format!("first must be between 1 and {max_results}"))
            })?;
        Ok(Self {
            near,
            radius_km,
            connector_type,
            min_power_kw,
            first,
        })
    }
}

/// One search hit.
#[derive(Debug, Clone)]
pub struct Hit {
    pub station: StationDetails,
    pub distance_km: f64,
}

/// A station as held in the index: strings shared where they repeat.
struct Indexed {
    id: Uuid,
    ocm_id: Option<i32>,
    name: Box<str>,
    address: Option<Box<str>>,
    town: Option<Box<str>>,
    country: Option<Arc<str>>,
    latitude: f64,
    longitude: f64,
    operator: Option<Arc<str>>,
    status: Option<Arc<str>>,
    usage_type: Option<Arc<str>>,
    usage_cost: Option<Box<str>>,
    connectors: Box<[IndexedConnector]>,
}

/// (type slot, power kW, quantity).
type IndexedConnector = (u16, Option<f64>, Option<i32>);

/// An immutable snapshot of the live stations; replaced whole on reload.
pub struct StationIndex {
    generation: i64,
    stations: Vec<Indexed>,
    all: RTree<Entry>,
    by_type: Vec<RTree<Entry>>,
    /// Connection type titles by type slot.
    types: Vec<Arc<str>>,
    /// Normalised title -> type slot.
    type_slots: HashMap<String, u16>,
    /// Normalised titles a filter may name: those in the data and in the reference data.
    known_titles: HashSet<String>,
}

impl StationIndex {
    /// An index without stations.
    pub fn empty() -> Self {
        Builder::default().build(-1)
    }

    /// Builds an index from stations (live ones only are kept).
    pub fn from_stations(
        stations: impl IntoIterator<Item = StationDetails>,
        generation: i64,
    ) -> Self {
        let mut builder = Builder::default();
        for station in stations {
            builder.add(station);
        }
        builder.build(generation)
    }

    /// The `station_generation` value this snapshot was loaded at.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.stations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stations.is_empty()
    }

    /// Stations within the radius that pass the filters, nearest first.
    pub fn search(&self, query: &SearchQuery) -> Result<Vec<Hit>, ValidationError> {
        let trees: Vec<&RTree<Entry>> = match &query.connector_type {
            None => vec![&self.all],
            Some(name) => self
                .resolve_connector(name)?
                .into_iter()
                .filter_map(|slot| self.by_type.get(usize::from(slot)))
                .collect(),
        };
        let center = query.near.to_unit_vector();
        // a hair of slack: float rounding must not drop a station on the radius
        let max_d2 = chord_squared_for_km(query.radius_km) * (1.0 + 1e-12) + 1e-15;
        let min_power = query.min_power_kw;
        let mut walks: Vec<_> = trees
            .iter()
            .map(|t| t.nearest_neighbor_iter_with_distance_2(center).peekable())
            .collect();
        let mut taken = HashSet::new();
        let mut hits: Vec<(u32, f64)> = Vec::with_capacity(query.first);
        while hits.len() < query.first {
            // the walk whose next entry is nearest (a k-way merge over the connector trees)
            let Some(next) = walks
                .iter_mut()
                .enumerate()
                .filter_map(|(i, w)| w.peek().map(|(_, d2)| (i, *d2)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
            else {
                break;
            };
            let Some((entry, d2)) = walks[next].next() else {
                break;
            };
            if d2 > max_d2 {
                break;
            }
            let (slot, best_power) = entry.data;
            if min_power.is_some_and(|min| best_power < min) || taken.contains(&slot) {
                continue;
            }
            let Some(station) = self.stations.get(slot as usize) else {
                continue;
            };
            let distance = haversine_km(
                query.near.latitude(),
                query.near.longitude(),
                station.latitude,
                station.longitude,
            );
            if distance > query.radius_km {
                continue;
            }
            taken.insert(slot);
            hits.push((slot, distance));
        }
        hits.sort_by(|a, b| a.1.total_cmp(&b.1));
        Ok(hits
            .into_iter()
            .filter_map(|(slot, distance_km)| {
                self.stations.get(slot as usize).map(|s| Hit {
                    station: self.details(s),
                    distance_km,
                })
            })
            .collect())
    }

    /// The type slots a connector filter stands for; a known name no station has gives none.
    fn resolve_connector(&self, name: &str) -> Result<Vec<u16>, ValidationError> {
        let titles =
            connectors::resolve(name, |key| self.known_titles.contains(key)).ok_or_else(|| {
                ValidationError::new(format!(
                "unknown connectorType {name:?}: use an OpenChargeMap connection type title such \
                 as \"CCS (Type 2)\" or one of {}",
                connectors::alias_names()
            ))
            })?;
        Ok(titles
            .iter()
            .filter_map(|t| self.type_slots.get(t).copied())
            .collect())
    }

    fn details(&self, s: &Indexed) -> StationDetails {
        let text = |v: &Option<Box<str>>| v.as_deref().map(String::from);
        let shared = |v: &Option<Arc<str>>| v.as_deref().map(String::from);
        StationDetails {
            id: s.id,
            ocm_id: s.ocm_id,
            name: s.name.to_string(),
            address: text(&s.address),
            town: text(&s.town),
            country: shared(&s.country),
            latitude: s.latitude,
            longitude: s.longitude,
            operator: shared(&s.operator),
            status: shared(&s.status),
            usage_type: shared(&s.usage_type),
            usage_cost: text(&s.usage_cost),
            is_live: true,
            connectors: s
                .connectors
                .iter()
                .map(|(slot, power_kw, quantity)| ConnectorDetails {
                    connector_type: self
                        .types
                        .get(usize::from(*slot))
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    power_kw: *power_kw,
                    quantity: *quantity,
                })
                .collect(),
        }
    }
}

#[derive(Default)]
struct Builder {
    stations: Vec<Indexed>,
    all: Vec<Entry>,
    by_type: Vec<Vec<Entry>>,
    types: Vec<Arc<str>>,
    type_slots: HashMap<String, u16>,
    interned: HashMap<String, Arc<str>>,
}

impl Builder {
    fn intern(&mut self, value: Option<String>) -> Option<Arc<str>> {
        let value = value?;
        if let Some(shared) = self.interned.get(&value) {
            return Some(shared.clone());
        }
        let shared: Arc<str> = Arc::from(value.as_str());
        self.interned.insert(value, shared.clone());
        Some(shared)
    }

    fn type_slot(&mut self, title: &str) -> Option<u16> {
        let key = connectors::normalise(title);
        if let Some(slot) = self.type_slots.get(&key) {
            return Some(*slot);
        }
        let slot = u16::try_from(self.types.len()).ok()?;
        self.types.push(Arc::from(title));
        self.type_slots.insert(key, slot);
        self.by_type.push(Vec::new());
        Some(slot)
    }

    fn add(&mut self, station: StationDetails) {
        let Some(point) = GeoPoint::new(station.latitude, station.longitude) else {
            return;
        };
        let Ok(slot) = u32::try_from(self.stations.len()) else {
            return;
        };
        if !station.is_live {
            return;
        }
        let position = point.to_unit_vector();
        let mut best_by_type: HashMap<u16, f64> = HashMap::new();
        let mut connectors = Vec::with_capacity(station.connectors.len());
        for c in station.connectors {
            let Some(type_slot) = self.type_slot(&c.connector_type) else {
                continue;
            };
            // an unknown power never satisfies a power filter
            let power = c.power_kw.unwrap_or(f64::NEG_INFINITY);
            let best = best_by_type.entry(type_slot).or_insert(f64::NEG_INFINITY);
            *best = best.max(power);
            connectors.push((type_slot, c.power_kw, c.quantity));
        }
        let best_overall = best_by_type
            .values()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        self.all.push(Entry::new(position, (slot, best_overall)));
        for (type_slot, best) in best_by_type {
            if let Some(entries) = self.by_type.get_mut(usize::from(type_slot)) {
                entries.push(Entry::new(position, (slot, best)));
            }
        }
        let country = self.intern(station.country);
        let operator = self.intern(station.operator);
        let status = self.intern(station.status);
        let usage_type = self.intern(station.usage_type);
        self.stations.push(Indexed {
            id: station.id,
            ocm_id: station.ocm_id,
            name: station.name.into_boxed_str(),
            address: station.address.map(String::into_boxed_str),
            town: station.town.map(String::into_boxed_str),
            country,
            latitude: station.latitude,
            longitude: station.longitude,
            operator,
            status,
            usage_type,
            usage_cost: station.usage_cost.map(String::into_boxed_str),
            connectors: connectors.into_boxed_slice(),
        });
    }

    fn build(self, generation: i64) -> StationIndex {
        let mut known_titles: HashSet<String> = Reference::embedded()
            .map(|r| {
                r.connection_types
                    .values()
                    .map(|t| connectors::normalise(t))
                    .collect()
            })
            .unwrap_or_default();
        known_titles.extend(self.type_slots.keys().cloned());
        StationIndex {
            known_titles,
            generation,
            stations: self.stations,
            all: RTree::bulk_load(self.all),
            by_type: self.by_type.into_iter().map(RTree::bulk_load).collect(),
            types: self.types,
            type_slots: self.type_slots,
        }
    }
}

/// The shared, swappable index of a serving process.
#[derive(Clone)]
pub struct StationIndexHandle {
    current: Arc<ArcSwap<StationIndex>>,
    /// One reload at a time.
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl Default for StationIndexHandle {
    fn default() -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(StationIndex::empty())),
            reloading: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

impl StationIndexHandle {
    /// The snapshot searches run against.
    pub fn current(&self) -> Arc<StationIndex> {
        self.current.load_full()
    }

    /// Loads every live station from Postgres and swaps the new index in.
    #[tracing::instrument(skip_all)]
    pub async fn reload(&self, db: &PgPool) -> Result<(), StoreError> {
        let _one = self.reloading.lock().await;
        self.reload_locked(db).await
    }

    /// Reloads when stations changed since the current snapshot; true if it did.
    pub async fn reload_if_changed(&self, db: &PgPool) -> Result<bool, StoreError> {
        let _one = self.reloading.lock().await;
        if stations::generation(db).await? == self.current().generation() {
            return Ok(false);
        }
        self.reload_locked(db).await?;
        Ok(true)
    }

    async fn reload_locked(&self, db: &PgPool) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        // read before the rows: a write during the load leaves a newer generation behind,
        // which triggers the next reload
        let generation = stations::generation(db).await?;
        let mut builder = Builder::default();
        stations::for_each_live(db, |station| builder.add(station)).await?;
        let index = tokio::task::spawn_blocking(move || builder.build(generation))
            .await
            .map_err(|e| StoreError::Conflict(format!("index build failed: {e}")))?;
        tracing::info!(
            stations = index.len(),
            generation,
            millis = started.elapsed().as_millis() as u64,
            "station search index loaded"
        );
        self.current.store(Arc::new(index));
        Ok(())
    }

    /// Checks every `every` whether stations changed and reloads; runs until aborted.
    pub fn spawn_refresher(&self, db: PgPool, every: Duration) -> tokio::task::JoinHandle<()> {
        let handle = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = handle.reload_if_changed(&db).await {
                    tracing::warn!(error = %e, "station index refresh failed; keeping the old one");
                }
            }
        })
    }
}
