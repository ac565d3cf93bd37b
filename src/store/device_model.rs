//! The OCPP 2.0.1 device model of each charger: the variables it reports through NotifyReport,
//! one row per component / variable / attribute type, readable by operators.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::StoreError;

/// Rows per INSERT statement (13 parameters each stays far below Postgres' 65535).
const ROWS_PER_STATEMENT: usize = 1000;

/// One reported attribute of a variable of a component.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceVariable {
    pub component: String,
    pub component_instance: Option<String>,
    pub evse_id: Option<i32>,
    pub connector_id: Option<i32>,
    pub variable: String,
    pub variable_instance: Option<String>,
    /// `Actual`, `Target`, `MinSet` or `MaxSet`.
    pub attribute_type: String,
    pub value: Option<String>,
    pub mutability: Option<String>,
    pub data_type: Option<String>,
    pub unit: Option<String>,
}

impl DeviceVariable {
    /// The identity of the row (the table's unique key without the charger).
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        &str,
        Option<&str>,
        Option<i32>,
        Option<i32>,
        &str,
        Option<&str>,
        &str,
    ) {
        (
            &self.component,
            self.component_instance.as_deref(),
            self.evse_id,
            self.connector_id,
            &self.variable,
            self.variable_instance.as_deref(),
            &self.attribute_type,
        )
    }
}

/// A stored variable with the time it was last reported.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceVariableRecord {
    #[sqlx(flatten)]
    pub variable: DeviceVariable,
    pub reported_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Stores a report's variables. Rows from an older report (by `reported_at`, the charger's
/// generatedAt) never overwrite newer ones; within one report the last entry for a key wins.
#[tracing::instrument(skip_all, fields(charger_id = %charger_id, rows = variables.len()))]
pub async fn upsert(
    pool: &PgPool,
    charger_id: &str,
    reported_at: DateTime<Utc>,
    variables: &[DeviceVariable],
) -> Result<(), StoreError> {
    // one statement must not touch a row twice
    let mut unique: HashMap<_, &DeviceVariable> = HashMap::with_capacity(variables.len());
    for variable in variables {
        unique.insert(variable.key(), variable);
    }
    let rows: Vec<&DeviceVariable> = unique.into_values().collect();
    let mut tx = pool.begin().await?;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO device_model_variables (charger_id, component, component_instance, evse_id, \
             connector_id, variable, variable_instance, attribute_type, value, mutability, data_type, unit, reported_at) ",
        );
        builder.push_values(chunk, |mut row, v| {
            row.push_bind(charger_id)
                .push_bind(&v.component)
                .push_bind(&v.component_instance)
                .push_bind(v.evse_id)
                .push_bind(v.connector_id)
                .push_bind(&v.variable)
                .push_bind(&v.variable_instance)
                .push_bind(&v.attribute_type)
                .push_bind(&v.value)
                .push_bind(&v.mutability)
                .push_bind(&v.data_type)
                .push_bind(&v.unit)
                .push_bind(reported_at);
        });
        builder.push(
            " ON CONFLICT ON CONSTRAINT device_model_variables_key DO UPDATE SET value = EXCLUDED.value, \
             mutability = EXCLUDED.mutability, data_type = EXCLUDED.data_type, unit = EXCLUDED.unit, \
             reported_at = EXCLUDED.reported_at, updated_at = now() \
             WHERE device_model_variables.reported_at <= EXCLUDED.reported_at",
        );
        builder.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The charger's variables, optionally of one component, in a stable order.
#[tracing::instrument(skip_all, fields(charger_id = %charger_id))]
pub async fn list(
    pool: &PgPool,
    charger_id: &str,
    component: Option<&str>,
) -> Result<Vec<DeviceVariableRecord>, StoreError> {
    Ok(sqlx::query_as::<_, DeviceVariableRecord>(
        "SELECT component, component_instance, evse_id, connector_id, variable, variable_instance, \
             attribute_type, value, mutability, data_type, unit, reported_at, updated_at \
         FROM device_model_variables WHERE charger_id = $1 AND ($2::text IS NULL OR component = $2) \
         ORDER BY component, component_instance NULLS FIRST, evse_id NULLS FIRST, connector_id NULLS FIRST, \
             variable, variable_instance NULLS FIRST, attribute_type",
    )
    .bind(charger_id)
    .bind(component)
    .fetch_all(pool)
    .await?)
}

/// What the charger takes in one `action` message (DeviceDataCtrlr.ItemsPerMessage and
/// BytesPerMessage with the action as the variable's instance), as it reported them.
pub async fn message_limits(
    pool: &PgPool,
    charger_id: &str,
    action: &str,
) -> Result<(Option<usize>, Option<usize>), StoreError> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT variable, value FROM device_model_variables \
         WHERE charger_id = $1 AND component = 'DeviceDataCtrlr' AND attribute_type = 'Actual' \
           AND variable IN ('ItemsPerMessage', 'BytesPerMessage') AND variable_instance = $2",
    )
    .bind(charger_id)
    .bind(action)
    .fetch_all(pool)
    .await?;
    let value = |name: &str| {
        rows.iter()
            .find(|(variable, _)| variable == name)
            .and_then(|(_, value)| value.as_deref()?.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
    };
    Ok((value("ItemsPerMessage"), value("BytesPerMessage")))
}
