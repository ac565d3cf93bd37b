//! Vehicles a user drives.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreError;
use crate::domain::VehicleSpec;

/// Upper bound of vehicles per account.
pub const MAX_VEHICLES_PER_USER: i64 = 20;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VehicleRecord {
    pub brand: String,
    pub model: String,
    pub battery_capacity_kwh: Option<f64>,
}

/// Adds a vehicle; more than `MAX_VEHICLES_PER_USER` is a `Conflict`.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    user_id: Uuid,
    spec: &VehicleSpec,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO vehicles (id, user_id, brand, model, battery_capacity_kwh) \
         SELECT $1, $2, $3, $4, $5 \
         WHERE (SELECT count(*) FROM vehicles WHERE user_id = $2) < $6",
    )
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(&spec.brand)
    .bind(&spec.model)
    .bind(spec.battery_capacity_kwh)
    .bind(MAX_VEHICLES_PER_USER)
    .execute(executor)
    .await?
    .rows_affected();
    if inserted == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "an account can hold at most {MAX_VEHICLES_PER_USER} vehicles"
        )))
    }
}

#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn list<'e>(
    executor: impl PgExecutor<'e>,
    user_id: Uuid,
) -> Result<Vec<VehicleRecord>, StoreError> {
    Ok(sqlx::query_as::<_, VehicleRecord>(
        "SELECT brand, model, battery_capacity_kwh FROM vehicles WHERE user_id = $1 ORDER BY created_at, id",
    )
    .bind(user_id)
    .fetch_all(executor)
    .await?)
}
