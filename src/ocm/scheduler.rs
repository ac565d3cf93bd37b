//! The OCM sync schedule: one API sync every `sync_interval`, counted from the end of the last
//! successful one whichever replica ran it (the state row is shared, the Redis lock keeps runs
//! apart), with a growing pause after failures. In a serving process the station index is
//! reloaded after each completed run.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;

use super::progress::Progress;
use super::search::StationIndexHandle;
use super::sync::{self, SyncDeps, SyncOutcome, SyncSource};
use crate::store::ocm_sync_state;

/// First pause after a failed run; doubled per further failure, capped at the interval.
const FAILURE_PAUSE: Duration = Duration::from_secs(60);

/// Shortest pause between two checks (a replica waking just before another finishes).
const MIN_PAUSE: Duration = Duration::from_secs(5);

/// Runs syncs on schedule until `shutdown` completes; a run in progress is abandoned then (its
/// transaction rolls back, the lock expires, and the next run resumes from the cursors).
pub async fn run(
    deps: SyncDeps,
    index: Option<StationIndexHandle>,
    shutdown: impl Future<Output = ()>,
) {
    let interval = Duration::from_secs(deps.settings.ocm.sync_interval_secs);
    let mut failures: u32 = 0;
    tokio::pin!(shutdown);
    loop {
        let pause = match next_due(&deps, interval).await {
            Ok(pause) if pause.is_zero() => {
                let progress = Progress::log();
                let run = sync::run_once(&deps, SyncSource::Api, &progress);
                let outcome = tokio::select! {
                    outcome = run => outcome,
                    _ = &mut shutdown => {
                        tracing::info!("stopping the OCM sync; the next run resumes from its cursors");
                        return;
                    }
                };
                match outcome {
                    Ok(SyncOutcome::Completed(_)) => {
                        failures = 0;
                        if let Some(index) = &index {
                            if let Err(e) = index.reload(&deps.db).await {
                                tracing::warn!(error = %e, "station index reload after sync failed");
                            }
                        }
                        MIN_PAUSE
                    }
                    Ok(SyncOutcome::Skipped) => MIN_PAUSE.max(interval / 100),
                    Err(_) => {
                        // the run logged its error
                        failures = failures.saturating_add(1);
                        FAILURE_PAUSE
                            .saturating_mul(2u32.saturating_pow(failures - 1))
                            .min(interval)
                    }
                }
            }
            Ok(pause) => pause,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the OCM sync state");
                FAILURE_PAUSE
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut shutdown => return,
        }
    }
}

/// How long until the next sync is due (zero: now).
async fn next_due(
    deps: &SyncDeps,
    interval: Duration,
) -> Result<Duration, crate::store::StoreError> {
    let state = ocm_sync_state::load(&deps.db).await?;
    let Some(last) = state.last_success_at else {
        return Ok(Duration::ZERO);
    };
    let since = (Utc::now() - last).to_std().unwrap_or(Duration::ZERO);
    Ok(interval.saturating_sub(since))
}
