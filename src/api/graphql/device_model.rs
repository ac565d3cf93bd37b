//! `Charger.deviceModel`: the OCPP 2.0.1 device model a station reported through NotifyReport
//! (extension of the contract; OPERATOR or ADMIN). Empty for 1.6 chargers, which have none.

use async_graphql::{Context, SimpleObject};
use chrono::{DateTime, Utc};

use super::auth::require_staff;
use super::error::ApiResult;
use crate::context::AppContext;
use crate::store::device_model::{self, DeviceVariableRecord};

/// One reported attribute of a variable of a station component.
#[derive(SimpleObject)]
pub struct DeviceVariable {
    /// Component name, e.g. `EVSE`, `OCPPCommCtrlr`, `SecurityCtrlr`.
    pub component: String,
    pub component_instance: Option<String>,
    /// Set when the component belongs to an EVSE (and connector).
    pub evse_id: Option<i32>,
    pub connector_id: Option<i32>,
    /// Variable name, e.g. `HeartbeatInterval`, `Power`, `Available`.
    pub variable: String,
    pub variable_instance: Option<String>,
    /// `Actual`, `Target`, `MinSet` or `MaxSet`.
    pub attribute_type: String,
    pub value: Option<String>,
    /// `ReadOnly`, `WriteOnly` or `ReadWrite`.
    pub mutability: Option<String>,
    pub data_type: Option<String>,
    pub unit: Option<String>,
    /// When the station generated the report this value came from (station time).
    pub reported_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DeviceVariableRecord> for DeviceVariable {
    fn from(record: DeviceVariableRecord) -> Self {
        let v = record.variable;
        Self {
            component: v.component,
            component_instance: v.component_instance,
            evse_id: v.evse_id,
            connector_id: v.connector_id,
            variable: v.variable,
            variable_instance: v.variable_instance,
            attribute_type: v.attribute_type,
            value: v.value,
            mutability: v.mutability,
            data_type: v.data_type,
            unit: v.unit,
            reported_at: record.reported_at,
            updated_at: record.updated_at,
        }
    }
}

/// The charger's device model, optionally of one component, for staff only.
pub async fn device_model(
    ctx: &Context<'_>,
    charger_id: &str,
    component: Option<&str>,
) -> ApiResult<Vec<DeviceVariable>> {
    require_staff(ctx)?;
    let app = ctx.data_unchecked::<AppContext>();
    Ok(device_model::list(&app.db, charger_id, component)
        .await?
        .into_iter()
        .map(DeviceVariable::from)
        .collect())
}
