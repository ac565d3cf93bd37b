//! One sync run, under the Redis lock: from the OCM API, a dump file or the bundled demo POIs.
//!
//! An API run has two phases, both resumable from cursors committed after every page:
//! 1. an ID scan, `sortby=id_asc&greaterthanid=<cursor>`: from ID 0 on the first run and once
//!    per `full_rescan_interval` (such a full scan also retires POIs OCM stopped returning),
//!    else from the highest ID held (new POIs only);
//! 2. an incremental pass, `sortby=modified_asc&modifiedsince=<cursor>`. `modifiedsince` is
//!    inclusive and minute-precise, so the POIs at the cursor come back on the next page (they
//!    are de-duplicated by ID), and a full page sharing one timestamp cannot move the cursor:
//!    the page is then asked again with twice the size until it reaches past that minute.
//!
//! Every completed run writes OCM_SYNC_COMPLETED to the outbox with its final state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::store::redis::Pool as RedisPool;
use chrono::{DateTime, Utc};
use mongodb::Database;
use sqlx::PgPool;

use super::batch::{Applier, StageTimings};
use super::client::{OcmClient, OcmError, PageQuery};
use super::dump::{DumpBatches, DumpError};
use super::lock::{LockError, SyncLock};
use super::mirror;
use super::progress::Progress;
use super::reference::{Reference, ReferenceError};
use crate::configuration::Settings;
use crate::context::AppContext;
use crate::events::{outbox, Event};
use crate::store::ocm_sync_state::{self as state, RunCounts};
use crate::store::StoreError;

/// The largest page asked for while reaching past a timestamp shared by a whole page.
const MAX_TIE_PAGE: u32 = 1_000_000;

/// What a sync needs (a subset of [`AppContext`], so `sync-ocm` needs no JWT key or AMQP).
#[derive(Clone)]
pub struct SyncDeps {
    pub settings: Arc<Settings>,
    pub db: PgPool,
    pub mongo: Database,
    pub redis: RedisPool,
}

impl From<&AppContext> for SyncDeps {
    fn from(ctx: &AppContext) -> Self {
        Self {
            settings: ctx.settings.clone(),
            db: ctx.db.clone(),
            mongo: ctx.mongo.clone(),
            redis: ctx.redis.clone(),
        }
    }
}

/// Where POIs come from.
#[derive(Debug, Clone)]
pub enum SyncSource {
    /// The OCM API at `settings.ocm.base_url`.
    Api,
    /// A dump file: a JSON array (compact or verbose) or NDJSON.
    File(PathBuf),
    /// A dump compiled into the binary (the demo POIs of `seed-demo`).
    Bundled {
        name: &'static str,
        data: &'static str,
    },
}

impl SyncSource {
    /// How the source is named in the state row and in OCM_SYNC_COMPLETED.
    pub fn describe(&self, settings: &Settings) -> String {
        match self {
            SyncSource::Api => settings.ocm.base_url.clone(),
            SyncSource::File(path) => format!(
                "file:{}",
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.display().to_string())
            ),
            SyncSource::Bundled { name, .. } => format!("bundled:{name}"),
        }
    }
}

/// The result of a completed run.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub source: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub counts: RunCounts,
    pub timings: StageTimings,
}

/// What happened when a run was asked for.
#[derive(Debug, Clone)]
pub enum SyncOutcome {
    Completed(SyncReport),
    /// Another replica holds the sync lock.
    Skipped,
}

/// Why a run failed. The cursors stay at the last committed page.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(#[from] OcmError),
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error("OCM mirror: MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("PostgreSQL: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("the sync lock was lost (Redis unreachable or the TTL too short); stopped")]
    LockLost,
    #[error("OpenChargeMap returned IDs not above greaterthanid={0}; stopped to avoid a loop")]
    NotAdvancing(i32),
    #[error("more than {0} POIs share one DateLastStatusUpdate; stopped")]
    TieTooLarge(u32),
}

/// The Redis key of the sync lock.
pub fn lock_key(settings: &Settings) -> String {
    format!("{}:ocm:sync-lock", settings.redis.key_prefix)
}

/// Runs one sync from `source` unless another replica is syncing.
pub async fn run_once(
    deps: &SyncDeps,
    source: SyncSource,
    progress: &Progress,
) -> Result<SyncOutcome, SyncError> {
    let settings = &deps.settings;
    let ttl = Duration::from_secs(settings.ocm.lock_ttl_secs);
    let Some(lock) = SyncLock::acquire(&deps.redis, &lock_key(settings), ttl).await? else {
        tracing::info!("another replica is syncing OpenChargeMap; skipped");
        return Ok(SyncOutcome::Skipped);
    };
    let name = source.describe(settings);
    let started_at = Utc::now();
    tracing::info!(source = %name, "OCM sync started");
    let result = run_locked(deps, &source, &name, started_at, &lock, progress).await;
    progress.finish();
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the OCM sync lock; it expires by itself");
    }
    match &result {
        Ok(report) => tracing::info!(
            source = %report.source,
            processed = report.counts.processed,
            updated = report.counts.updated,
            failed = report.counts.failed,
            seconds = (report.finished_at - report.started_at).num_milliseconds() as f64 / 1000.0,
            postgres_seconds = report.timings.postgres.as_secs_f64(),
            mongo_seconds = report.timings.mongo.as_secs_f64(),
            "OCM sync completed"
        ),
        Err(e) => tracing::error!(source = %name, error = %e, "OCM sync failed"),
    }
    result.map(SyncOutcome::Completed)
}

async fn run_locked(
    deps: &SyncDeps,
    source: &SyncSource,
    name: &str,
    started_at: DateTime<Utc>,
    lock: &SyncLock,
    progress: &Progress,
) -> Result<SyncReport, SyncError> {
    // checked before anything is recorded: a missing key is a configuration error, not a run
    let client = match source {
        SyncSource::Api => Some(OcmClient::new(&deps.settings.ocm)?),
        _ => None,
    };
    mirror::ensure_indexes(&deps.mongo).await?;
    state::run_started(&deps.db, name, &deps.settings.node_id, started_at).await?;
    let mut applier = Applier::new(deps, Reference::embedded()?);
    let result = match (source, &client) {
        (SyncSource::Api, Some(client)) => {
            api(deps, client, &mut applier, lock, progress, started_at).await
        }
        (SyncSource::File(path), _) => {
            let batches = DumpBatches::open(path, batch_size(deps))?;
            dump(deps, batches, &mut applier, lock, progress).await
        }
        (SyncSource::Bundled { name, data }, _) => {
            let batches = DumpBatches::from_static(data, name, batch_size(deps));
            dump(deps, batches, &mut applier, lock, progress).await
        }
        (SyncSource::Api, None) => Err(SyncError::Api(OcmError::MissingKey)),
    };
    let finished_at = Utc::now();
    let counts = applier.counts;
    if let Err(e) = result {
        if let Err(store) = state::run_failed(&deps.db, counts, finished_at, &e.to_string()).await {
            tracing::warn!(error = %store, "could not record the failed OCM sync");
        }
        return Err(e);
    }
    let mut tx = deps.db.begin().await.map_err(StoreError::from)?;
    state::run_succeeded(
        &mut tx,
        counts,
        finished_at,
        matches!(source, SyncSource::Api),
    )
    .await?;
    outbox::enqueue(
        &mut tx,
        Event::OcmSyncCompleted {
            ocm_source: name.to_string(),
            started_at,
            finished_at,
            processed: counts.processed,
            updated: counts.updated,
            failed: counts.failed,
        },
        finished_at,
        &format!("chargegrid-sync-ocm/{}", deps.settings.node_id),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(SyncReport {
        source: name.to_string(),
        started_at,
        finished_at,
        counts,
        timings: applier.timings,
    })
}

fn batch_size(deps: &SyncDeps) -> usize {
    deps.settings.ocm.batch_size as usize
}

fn ensure_held(lock: &SyncLock) -> Result<(), SyncError> {
    if lock.is_lost() {
        Err(SyncError::LockLost)
    } else {
        Ok(())
    }
}

async fn dump(
    deps: &SyncDeps,
    mut batches: DumpBatches,
    applier: &mut Applier<'_>,
    lock: &SyncLock,
    progress: &Progress,
) -> Result<(), SyncError> {
    progress.phase("import");
    while let Some(batch) = batches.next().await {
        ensure_held(lock)?;
        let batch = batch?;
        let received = batch.len();
        let summary = applier.apply(batch, None).await?;
        state::raise_held(&deps.db, summary.max_id, summary.max_modified).await?;
        let c = applier.counts;
        progress.page(received, c.processed, c.updated, c.failed);
    }
    Ok(())
}

async fn api(
    deps: &SyncDeps,
    client: &OcmClient,
    applier: &mut Applier<'_>,
    lock: &SyncLock,
    progress: &Progress,
    now: DateTime<Utc>,
) -> Result<(), SyncError> {
    let ocm = &deps.settings.ocm;
    let batch = ocm.batch_size;
    let held = state::load(&deps.db).await?;

    // phase 1: the ID scan
    let rescan_due = held.last_full_scan_at.is_none_or(|at| {
        (now - at).num_seconds() >= i64::try_from(ocm.full_rescan_interval_secs).unwrap_or(i64::MAX)
    });
    let (mut cursor, full, scan_started_at) = match (held.scan_cursor, held.scan_started_at) {
        (Some(cursor), Some(started)) => (cursor, held.scan_is_full, started),
        _ if rescan_due => {
            state::scan_started(&deps.db, 0, true, now).await?;
            (0, true, now)
        }
        _ => {
            let from = held.max_id_held.unwrap_or(0);
            state::scan_started(&deps.db, from, false, now).await?;
            (from, false, now)
        }
    };
    progress.phase(if full { "full ID scan" } else { "new IDs" });
    tracing::info!(greaterthanid = cursor, full, "OCM ID scan");
    loop {
        ensure_held(lock)?;
        let page = client.page(PageQuery::AfterId(cursor), batch).await?;
        let received = page.len();
        if page.is_empty() {
            if full {
                // nothing above the cursor: every held POI above it is gone from OCM
                applier.apply(page, Some((cursor, None))).await?;
            }
            break;
        }
        let page_max = page
            .iter()
            .filter_map(|p| p.get("ID").and_then(serde_json::Value::as_i64))
            .max()
            .and_then(|id| i32::try_from(id).ok())
            .filter(|id| *id > cursor)
            .ok_or(SyncError::NotAdvancing(cursor))?;
        let retire = full.then_some((cursor, Some(page_max)));
        let summary = applier.apply(page, retire).await?;
        state::raise_held(&deps.db, summary.max_id, summary.max_modified).await?;
        cursor = page_max;
        state::scan_advanced(&deps.db, cursor).await?;
        let c = applier.counts;
        progress.page(received, c.processed, c.updated, c.failed);
    }
    // the first incremental pass starts no later than the scan did (minus a margin), so POIs
    // modified while the scan ran are not missed
    let held = state::load(&deps.db).await?;
    let overlap = chrono::Duration::seconds(i64::try_from(ocm.modified_overlap_secs).unwrap_or(0));
    let initial = held
        .max_modified_held
        .map(|m| m.min(scan_started_at - overlap));
    state::scan_finished(&deps.db, full.then_some(scan_started_at), initial).await?;

    // phase 2: the incremental pass
    let Some(mut since) = state::load(&deps.db).await?.modified_cursor else {
        return Ok(());
    };
    progress.phase("modified POIs");
    tracing::info!(modifiedsince = %since, "OCM incremental pass");
    let mut limit = batch;
    loop {
        ensure_held(lock)?;
        let page = client.page(PageQuery::ModifiedSince(since), limit).await?;
        let received = page.len();
        if page.is_empty() {
            break;
        }
        let summary = applier.apply(page, None).await?;
        state::raise_held(&deps.db, summary.max_id, summary.max_modified).await?;
        let c = applier.counts;
        progress.page(received, c.processed, c.updated, c.failed);
        match summary.max_modified {
            Some(newest) if newest > since => {
                since = newest;
                state::modified_advanced(&deps.db, since).await?;
                limit = batch;
            }
            // nothing newer than the cursor, and OCM had no more to give: done
            _ if (received as u64) < u64::from(limit) => break,
            // a whole page shares the cursor's timestamp: ask for a bigger page
            _ => {
                if limit >= MAX_TIE_PAGE {
                    return Err(SyncError::TieTooLarge(limit));
                }
                limit = limit.saturating_mul(2).min(MAX_TIE_PAGE);
                tracing::info!(
                    modifiedsince = %since,
                    maxresults = limit,
                    "a full page shares one DateLastStatusUpdate; asking for a bigger page"
                );
            }
        }
    }
    Ok(())
}
