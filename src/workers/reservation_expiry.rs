//! Ends reservations whose time is up, every `reservations.sweep_secs`, on every replica that
//! serves chargers. Each expiry is one guarded statement (`FOR UPDATE SKIP LOCKED`), so however
//! many replicas sweep, each reservation expires once. It runs whether or not the charger is
//! online: an offline charger's connector is free for others as soon as the time is up, and a
//! charger that is online lets go at the same moment by the expiry it was given.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::context::AppContext;
use crate::store::reservations;

/// Reservations ended per statement; a longer backlog is worked through at once, batch by batch.
const BATCH: i64 = 500;

pub async fn run(ctx: AppContext, shutdown: CancellationToken) {
    let period = Duration::from_secs(ctx.settings.reservations.sweep_secs.max(1));
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        loop {
            match reservations::expire_due(&ctx.db, BATCH).await {
                Ok(expired) => {
                    for r in &expired {
                        tracing::info!(reservation_id = %r.id, charger_id = %r.charger_id, "reservation expired unused");
                    }
                    if i64::try_from(expired.len()).unwrap_or(BATCH) < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reservation expiry failed; retried at the next sweep");
                    break;
                }
            }
        }
    }
}
