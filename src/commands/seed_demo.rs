//! `chargegrid seed-demo`: loads the bundled real OCM POIs (302 stations in 8 countries) into the
//! mirror and Postgres, creates the default tariff if there is none, and the demo fleet
//! (`demo_fleet.rs`): demo chargers with a password, a demo operator and a demo driver whose
//! wallet is funded. Idempotent: a second run changes nothing.

use std::str::FromStr;

use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use super::sync_ocm::{connect, print_outcome};
use crate::configuration::Settings;
use crate::ocm::progress::Progress;
use crate::ocm::sync::{self, SyncOutcome, SyncSource};

/// Real OCM POIs in compact form (see `data/ocm/README.md` for sources and licence).
pub const DEMO_POIS: &str = include_str!("../../data/ocm/pois-real.compact.json");

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let deps = connect(settings).await?;
    let outcome = import_demo_pois(&deps).await?;
    print_outcome(&outcome);
    if matches!(outcome, SyncOutcome::Skipped) {
        anyhow::bail!("an OCM sync is running; run seed-demo again when it has finished");
    }
    match ensure_default_tariff(&deps.db).await? {
        true => println!(
            "created the default tariff (EUR 0.39/kWh, 0.05/min after 60 min, 0.50 per session)"
        ),
        false => println!("a default tariff exists already; left as it is"),
    }
    // the demo fleet has an ADMIN and chargers whose passwords are published in the README:
    // never outside development
    if !deps.settings.dev {
        println!(
            "demo chargers and accounts skipped: their passwords are public, so seed-demo creates them only with --dev"
        );
        return Ok(());
    }
    let core = crate::startup::connect_core(deps.settings.as_ref().clone()).await?;
    let fleet = super::demo_fleet::ensure(&core).await;
    core.amqp.close().await;
    super::demo_fleet::print(&fleet?);
    Ok(())
}

/// Imports the bundled POIs through the regular sync path (hashes, upserts, event).
pub async fn import_demo_pois(deps: &sync::SyncDeps) -> Result<SyncOutcome, sync::SyncError> {
    let source = SyncSource::Bundled {
        name: "pois-real.compact.json",
        data: DEMO_POIS,
    };
    sync::run_once(deps, source, &Progress::for_stderr()).await
}

/// Creates the default tariff unless one exists; true if it was created.
pub async fn ensure_default_tariff(db: &PgPool) -> anyhow::Result<bool> {
    let price = |s: &str| Decimal::from_str(s);
    let created = sqlx::query(
        "INSERT INTO tariffs (id, name, currency, price_per_kwh, price_per_minute, grace_minutes,
                              session_fee, is_default)
         VALUES ($1, 'Default', 'EUR', $2, $3, 60, $4, TRUE)
         ON CONFLICT (is_default) WHERE is_default DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(price("0.39")?)
    .bind(price("0.05")?)
    .bind(price("0.50")?)
    .execute(db)
    .await?;
    Ok(created.rows_affected() == 1)
}
