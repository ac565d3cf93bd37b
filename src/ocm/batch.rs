//! Applying one page (or dump batch) of POIs to both stores. Each store is compared with the
//! POI's content hash and liveness on its own, so a store that missed a write (a crash between
//! the two, a wiped database) is repaired by the next sync while unchanged POIs are not
//! rewritten anywhere. Postgres is written first, in one transaction per batch.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_redis::redis;
use serde_json::Value;

use super::mirror::{HeldDoc, Mirror};
use super::poi::{self, Poi};
use super::reference::Reference;
use super::sync::{SyncDeps, SyncError};
use crate::store::ocm_sync_state::RunCounts;
use crate::store::stations::{self, HeldStation};

/// What one applied batch tells the caller about cursors.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchSummary {
    /// Highest OCM ID in the batch, valid POI or not.
    pub max_id: Option<i32>,
    /// Latest `DateLastStatusUpdate` in the batch, valid POI or not.
    pub max_modified: Option<DateTime<Utc>>,
}

/// Where a run spent its time (summed over batches), for logs and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct StageTimings {
    /// Validating, normalising and hashing POIs.
    pub parse: Duration,
    /// Reading what both stores hold for the batch.
    pub lookup: Duration,
    /// The Postgres transaction (stations, connections, retirements).
    pub postgres: Duration,
    /// The MongoDB upserts and retirements.
    pub mongo: Duration,
}

/// The state of one run: counts and the POIs seen so far (boundary POIs of `modifiedsince`
/// pages come back; they are processed, and counted, once).
pub struct Applier<'a> {
    deps: &'a SyncDeps,
    reference: &'static Reference,
    mirror: Mirror,
    seen: HashMap<i32, Option<DateTime<Utc>>>,
    pub counts: RunCounts,
    pub timings: StageTimings,
}

impl<'a> Applier<'a> {
    pub fn new(deps: &'a SyncDeps, reference: &'static Reference) -> Self {
        Self {
            deps,
            reference,
            mirror: Mirror::new(&deps.mongo),
            seen: HashMap::new(),
            counts: RunCounts::default(),
            timings: StageTimings::default(),
        }
    }

    /// Validates, de-duplicates and writes a batch. With `retire_range` (lo, hi] — an ID-ordered
    /// page of a full scan — held POIs in that range that OCM did not return are marked not
    /// live.
    #[tracing::instrument(skip_all, fields(received = values.len()))]
    pub async fn apply(
        &mut self,
        values: Vec<Value>,
        retire_range: Option<(i32, Option<i32>)>,
    ) -> Result<BatchSummary, SyncError> {
        let started = Instant::now();
        let mut summary = BatchSummary::default();
        let mut pois: HashMap<i32, Poi> = HashMap::new();
        let mut rejected: Vec<i32> = Vec::new();
        for value in values {
            let id = value.get("ID").and_then(Value::as_i64);
            let modified = value.get("DateLastStatusUpdate").and_then(poi::parse_time);
            summary.max_modified = summary.max_modified.max(modified);
            match poi::parse(value, self.reference) {
                Ok(poi) => {
                    summary.max_id = summary.max_id.max(Some(poi.ocm_id));
                    if self.first_or_newer(poi.ocm_id, poi.modified_at) {
                        pois.insert(poi.ocm_id, poi);
                    }
                }
                Err(rejection) => {
                    summary.max_id = summary.max_id.max(rejection.ocm_id);
                    tracing::warn!(ocm_id = id, reason = rejection.reason, "OCM POI rejected");
                    match rejection.ocm_id {
                        Some(id) if !self.first_or_newer(id, modified) => {}
                        Some(id) => {
                            self.counts.failed += 1;
                            rejected.push(id);
                        }
                        None => {
                            self.counts.processed += 1;
                            self.counts.failed += 1;
                        }
                    }
                }
            }
        }

        self.timings.parse += started.elapsed();
        let started = Instant::now();
        let mut lookup: Vec<i32> = pois.keys().chain(&rejected).copied().collect();
        lookup.sort_unstable();
        let held_docs = self.mirror.held(&lookup, retire_range).await?;
        let held_rows = stations::held(&self.deps.db, &lookup).await?;

        let mirror_stale: Vec<&Poi> = pois
            .values()
            .filter(|p| held_docs.get(&p.ocm_id) != Some(&as_held_doc(p)))
            .collect();
        let rows_stale: Vec<(&stations::OcmStation, &str)> = pois
            .values()
            .filter(|p| held_rows.get(&p.ocm_id) != Some(&as_held_row(p)))
            .map(|p| (&p.station, p.content_hash.as_str()))
            .collect();
        // rejected POIs are no longer trustworthy where they are; retired ones are gone
        let mut retire_docs: Vec<i32> = rejected
            .iter()
            .copied()
            .filter(|id| held_docs.get(id).is_some_and(|d| d.live))
            .collect();
        if retire_range.is_some() {
            retire_docs.extend(
                held_docs
                    .iter()
                    .filter(|(id, d)| d.live && !pois.contains_key(id) && !rejected.contains(id))
                    .map(|(id, _)| *id),
            );
        }

        let mut tx = self
            .deps
            .db
            .begin()
            .await
            .map_err(crate::store::StoreError::from)?;
        stations::upsert_ocm(&mut tx, &rows_stale).await?;
        let mut retired_rows = stations::mark_not_live(&mut tx, &rejected).await?;
        if let Some((lo, hi)) = retire_range {
            let present: Vec<i32> = pois.keys().chain(&rejected).copied().collect();
            retired_rows.extend(stations::retire_missing(&mut tx, lo, hi, &present).await?);
        }
        tx.commit().await.map_err(crate::store::StoreError::from)?;

        self.timings.postgres += started.elapsed();
        let started = Instant::now();
        self.mirror.write(&mirror_stale, &held_docs).await?;
        self.mirror.mark_not_live(&retire_docs).await?;
        self.timings.mongo += started.elapsed();

        let changed: HashSet<i32> = mirror_stale
            .iter()
            .map(|p| p.ocm_id)
            .chain(rows_stale.iter().map(|(s, _)| s.ocm_id))
            .chain(retired_rows.iter().copied())
            .chain(retire_docs.iter().copied())
            .collect();
        self.counts.updated += changed.len() as u64;
        if !rows_stale.is_empty() || !retired_rows.is_empty() {
            bump_cache_generation(self.deps).await;
        }
        Ok(summary)
    }

    /// Records `id` as seen; false when this copy is older than one already applied.
    fn first_or_newer(&mut self, id: i32, modified: Option<DateTime<Utc>>) -> bool {
        match self.seen.get(&id) {
            None => {
                self.seen.insert(id, modified);
                self.counts.processed += 1;
                true
            }
            Some(previous) if modified >= *previous => {
                self.seen.insert(id, modified);
                true
            }
            Some(_) => false,
        }
    }
}

fn as_held_doc(poi: &Poi) -> HeldDoc {
    HeldDoc {
        content_hash: Some(poi.content_hash.clone()),
        live: poi.station.is_live,
    }
}

fn as_held_row(poi: &Poi) -> HeldStation {
    HeldStation {
        content_hash: Some(poi.content_hash.clone()),
        is_live: poi.station.is_live,
    }
}

/// The Redis key whose value is part of every cached `station(id)` key; bumping it drops the
/// whole cache at once, without a race against readers filling it with old rows.
pub fn cache_generation_key(key_prefix: &str) -> String {
    format!("{key_prefix}:stations:cache-generation")
}

async fn bump_cache_generation(deps: &SyncDeps) {
    let key = cache_generation_key(&deps.settings.redis.key_prefix);
    let result: Result<i64, String> = async {
        let mut conn = deps.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("INCR")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(reason) = result {
        // the cached copies expire on their own within the cache TTL
        tracing::warn!(%reason, "could not invalidate the station cache");
    }
}
