//! `chargegrid sync-ocm [--once] [--from-file PATH]`: the OpenChargeMap mirror sync. Without
//! flags it syncs on schedule until SIGTERM; `--once` runs one API pass; `--from-file` imports a
//! dump (JSON array, compact or verbose, or NDJSON) instead of calling the API, then exits.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::configuration::{mask_url, Settings};
use crate::ocm::client::OcmClient;
use crate::ocm::progress::Progress;
use crate::ocm::sync::{self, SyncDeps, SyncOutcome, SyncSource};
use crate::ocm::{mirror, scheduler};
use crate::store;

pub async fn run(settings: Settings, once: bool, from_file: Option<PathBuf>) -> anyhow::Result<()> {
    let source = match from_file {
        Some(path) => SyncSource::File(path),
        None => {
            // a missing key is a configuration error: say so before connecting anywhere
            OcmClient::new(&settings.ocm)?;
            SyncSource::Api
        }
    };
    let deps = connect(settings).await?;
    if once || matches!(source, SyncSource::File(_)) {
        let outcome = sync::run_once(&deps, source, &Progress::for_stderr()).await?;
        print_outcome(&outcome);
        return Ok(());
    }
    tracing::info!(
        every_secs = deps.settings.ocm.sync_interval_secs,
        "OCM sync scheduler started"
    );
    scheduler::run(deps, None, shutdown_signal()).await;
    Ok(())
}

/// One line for the operator who ran the command.
pub fn print_outcome(outcome: &SyncOutcome) {
    match outcome {
        SyncOutcome::Completed(report) => println!(
            "synced {}: {} POIs processed, {} updated, {} failed in {:.1} s",
            report.source,
            report.counts.processed,
            report.counts.updated,
            report.counts.failed,
            (report.finished_at - report.started_at).num_milliseconds() as f64 / 1000.0
        ),
        SyncOutcome::Skipped => println!("another replica is syncing OpenChargeMap; nothing done"),
    }
}

/// Connects to what a sync writes to (Postgres, migrated; MongoDB; Redis) and checks each is
/// reachable, so an unreachable service is one clear line rather than a failure mid-run.
pub async fn connect(settings: Settings) -> anyhow::Result<SyncDeps> {
    let db = store::postgres::connect(&settings.database).await?;
    store::postgres::ensure_migrated(&db, &settings.database).await?;
    let redis = store::redis::pool(&settings.redis)?;
    store::redis::ping(&redis).await.map_err(|reason| {
        use secrecy::ExposeSecret;
        anyhow::anyhow!(
            "Redis at {} is unreachable: {reason}",
            mask_url(settings.redis.url.expose_secret())
        )
    })?;
    let mongo = store::mongo::database(&settings).await?;
    store::mongo::ping(&mongo).await.map_err(|reason| {
        use secrecy::ExposeSecret;
        anyhow::anyhow!(
            "MongoDB at {} is unreachable: {reason}",
            mask_url(settings.mongodb.url.expose_secret())
        )
    })?;
    mirror::ensure_indexes(&mongo)
        .await
        .context("creating the OCM mirror indexes")?;
    Ok(SyncDeps {
        settings: Arc::new(settings),
        db,
        mongo,
        redis,
    })
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
