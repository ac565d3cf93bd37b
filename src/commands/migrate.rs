//! `chargegrid migrate`: the SQL migrations, then the Mongo indexes of the OCM mirror.

use crate::configuration::Settings;
use crate::ocm;
use crate::store;

pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let pool = store::postgres::migrate(&settings.database).await?;
    let applied = store::postgres::MIGRATOR.iter().count();
    pool.close().await;
    tracing::info!(migrations = applied, "PostgreSQL schema is up to date");
    let mongo = store::mongo::database(settings).await?;
    ocm::mirror::ensure_indexes(&mongo).await?;
    tracing::info!("MongoDB indexes are in place");
    Ok(())
}
