//! The one `ocm_sync_state` row: where the mirror stands in the OCM data set (cursors advanced
//! after every committed page, so a failed sync resumes from there) and how the last run went.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

use super::{StoreError, Tx};

/// Key of the single row.
const ROW: &str = "openchargemap";

/// The mirror's position and the last run.
#[derive(Debug, Clone, FromRow)]
pub struct SyncState {
    pub max_id_held: Option<i32>,
    pub max_modified_held: Option<DateTime<Utc>>,
    /// `greaterthanid` of the ID scan in progress; `None` when none is.
    pub scan_cursor: Option<i32>,
    /// The scan in progress started at ID 0 (it also retires POIs OCM stopped returning).
    pub scan_is_full: bool,
    pub scan_started_at: Option<DateTime<Utc>>,
    pub last_full_scan_at: Option<DateTime<Utc>>,
    /// `modifiedsince` of the next incremental pass.
    pub modified_cursor: Option<DateTime<Utc>>,
    /// NEVER, RUNNING, SUCCEEDED or FAILED.
    pub run_status: String,
    pub run_source: Option<String>,
    pub run_started_at: Option<DateTime<Utc>>,
    pub run_finished_at: Option<DateTime<Utc>>,
    pub run_error: Option<String>,
    pub run_processed: i64,
    pub run_updated: i64,
    pub run_failed: i64,
    pub last_success_at: Option<DateTime<Utc>>,
}

pub async fn load(pool: &PgPool) -> Result<SyncState, StoreError> {
    Ok(sqlx::query_as::<_, SyncState>(
        "SELECT max_id_held, max_modified_held, scan_cursor, scan_is_full, scan_started_at,
                last_full_scan_at, modified_cursor, run_status, run_source, run_started_at,
                run_finished_at, run_error, run_processed, run_updated, run_failed, last_success_at
         FROM ocm_sync_state WHERE id = $1",
    )
    .bind(ROW)
    .fetch_one(pool)
    .await?)
}

/// Records that a run started.
pub async fn run_started(
    pool: &PgPool,
    source: &str,
    node: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE ocm_sync_state SET run_status = 'RUNNING', run_source = $2, run_node = $3,
                run_started_at = $4, run_finished_at = NULL, run_error = NULL,
                run_processed = 0, run_updated = 0, run_failed = 0, updated_at = now()
         WHERE id = $1",
    )
    .bind(ROW)
    .bind(source)
    .bind(node)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Raises the high-water marks of what the mirror holds (never lowers them).
pub async fn raise_held(
    pool: &PgPool,
    max_id: Option<i32>,
    max_modified: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE ocm_sync_state SET
            max_id_held = GREATEST(max_id_held, $2),
            max_modified_held = GREATEST(max_modified_held, $3), updated_at = now()
         WHERE id = $1",
    )
    .bind(ROW)
    .bind(max_id)
    .bind(max_modified)
    .execute(pool)
    .await?;
    Ok(())
}

/// Starts (or restarts) an ID scan after `cursor`.
pub async fn scan_started(
    pool: &PgPool,
    cursor: i32,
    full: bool,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE ocm_sync_state SET scan_cursor = $2, scan_is_full = $3, scan_started_at = $4,
                updated_at = now()
         WHERE id = $1",
    )
    .bind(ROW)
    .bind(cursor)
    .bind(full)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Moves the ID scan's cursor past a committed page.
pub async fn scan_advanced(pool: &PgPool, cursor: i32) -> Result<(), StoreError> {
    sqlx::query("UPDATE ocm_sync_state SET scan_cursor = $2, updated_at = now() WHERE id = $1")
        .bind(ROW)
        .bind(cursor)
        .execute(pool)
        .await?;
    Ok(())
}

/// Ends the ID scan. A full scan records its start as the last full scan; the first
/// incremental cursor is set if there is none yet.
pub async fn scan_finished(
    pool: &PgPool,
    full_scan_started: Option<DateTime<Utc>>,
    initial_modified_cursor: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE ocm_sync_state SET scan_cursor = NULL, scan_is_full = FALSE,
                scan_started_at = NULL,
                last_full_scan_at = COALESCE($2, last_full_scan_at),
                modified_cursor = COALESCE(modified_cursor, $3), updated_at = now()
         WHERE id = $1",
    )
    .bind(ROW)
    .bind(full_scan_started)
    .bind(initial_modified_cursor)
    .execute(pool)
    .await?;
    Ok(())
}

/// Moves the incremental cursor past a committed page.
pub async fn modified_advanced(pool: &PgPool, cursor: DateTime<Utc>) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE ocm_sync_state SET modified_cursor = GREATEST(modified_cursor, $2),
                updated_at = now()
         WHERE id = $1",
    )
    .bind(ROW)
    .bind(cursor)
    .execute(pool)
    .await?;
    Ok(())
}

/// The counts of a finished run, as stored and as published in OCM_SYNC_COMPLETED.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub processed: u64,
    pub updated: u64,
    pub failed: u64,
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Records a successful run within `tx` (which also carries its outbox event).
pub async fn run_succeeded(
    tx: &mut Tx<'_>,
    counts: RunCounts,
    finished: DateTime<Utc>,
    from_api: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE ocm_sync_state SET run_status = 'SUCCEEDED', run_finished_at = $2,
                run_processed = $3, run_updated = $4, run_failed = $5, run_error = NULL,
                last_success_at = CASE WHEN $6 THEN $2 ELSE last_success_at END,
                updated_at = now()
         WHERE id = $1",
    )
    .bind(ROW)
    .bind(finished)
    .bind(as_i64(counts.processed))
    .bind(as_i64(counts.updated))
    .bind(as_i64(counts.failed))
    .bind(from_api)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records a failed run; the cursors stay where the last committed page left them.
pub async fn run_failed(
    pool: &PgPool,
    counts: RunCounts,
    finished: DateTime<Utc>,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE ocm_sync_state SET run_status = 'FAILED', run_finished_at = $2,
                run_processed = $3, run_updated = $4, run_failed = $5, run_error = $6,
                updated_at = now()
         WHERE id = $1",
    )
    .bind(ROW)
    .bind(finished)
    .bind(as_i64(counts.processed))
    .bind(as_i64(counts.updated))
    .bind(as_i64(counts.failed))
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}
