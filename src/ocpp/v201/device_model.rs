//! NotifyReport: the station's device model (the answer to GetBaseReport / GetReport, sent in
//! parts) flattened into one row per component / variable / attribute and stored, so operators
//! can read what a station is configured with.

use rust_ocpp::v2_0_1::datatypes::report_data_type::ReportDataType;
use rust_ocpp::v2_0_1::enumerations::attribute_enum_type::AttributeEnumType;
use rust_ocpp::v2_0_1::messages::notify_report::{NotifyReportRequest, NotifyReportResponse};
use serde_json::Value;

use crate::ocpp::handler::{enum_name, CallContext, Handled};
use crate::ocpp::payload::{check, decode_shape};
use crate::ocpp::CallFailure;
use crate::store::device_model::{self, DeviceVariable};

/// One row per reported attribute; an attribute without a type is the `Actual` value.
pub fn variables(report: &[ReportDataType]) -> Vec<DeviceVariable> {
    report
        .iter()
        .flat_map(|data| {
            let characteristics = data.variable_characteristics.as_ref();
            data.variable_attribute
                .iter()
                .map(move |attribute| DeviceVariable {
                    component: data.component.name.clone(),
                    component_instance: data.component.instance.clone(),
                    evse_id: data.component.evse.as_ref().map(|e| e.id),
                    connector_id: data.component.evse.as_ref().and_then(|e| e.connector_id),
                    variable: data.variable.name.clone(),
                    variable_instance: data.variable.instance.clone(),
                    attribute_type: enum_name(
                        attribute
                            .kind
                            .as_ref()
                            .unwrap_or(&AttributeEnumType::Actual),
                    ),
                    value: attribute.value.clone(),
                    mutability: attribute.mutability.as_ref().map(enum_name),
                    data_type: characteristics.map(|c| enum_name(&c.data_type)),
                    unit: characteristics.and_then(|c| c.unit.clone()),
                })
        })
        .collect()
}

pub async fn notify_report(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: NotifyReportRequest = decode_shape("NotifyReport", payload)?;
    let report = req.report_data.unwrap_or_default();
    for data in &report {
        check("NotifyReport", &data.component)?;
        check("NotifyReport", &data.variable)?;
    }
    let rows = variables(&report);
    device_model::upsert(&ctx.app.db, &ctx.charger_id, req.generated_at, &rows)
        .await
        .map_err(CallFailure::internal)?;
    tracing::info!(
        charger_id = %ctx.charger_id,
        request_id = req.request_id,
        seq_no = req.seq_no,
        more = req.tbc.unwrap_or(false),
        variables = rows.len(),
        "device model report stored"
    );
    Handled::reply(&NotifyReportResponse {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_attribute_becomes_a_row() {
        let report: Vec<ReportDataType> = serde_json::from_value(json!([{
            "component": { "name": "EVSE", "evse": { "id": 1, "connectorId": 2 } },
            "variable": { "name": "Power" },
            "variableAttribute": [
                { "value": "22000", "mutability": "ReadOnly" },
                { "type": "MaxSet", "value": "11000", "mutability": "ReadWrite" }
            ],
            "variableCharacteristics": { "unit": "W", "dataType": "decimal", "supportsMonitoring": false }
        }]))
        .unwrap_or_default();
        let rows = variables(&report);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].attribute_type, "Actual");
        assert_eq!(rows[1].attribute_type, "MaxSet");
        assert_eq!(rows[1].evse_id, Some(1));
        assert_eq!(rows[1].connector_id, Some(2));
        assert_eq!(rows[0].data_type.as_deref(), Some("decimal"));
        assert_eq!(rows[0].unit.as_deref(), Some("W"));
        assert_eq!(rows[1].mutability.as_deref(), Some("ReadWrite"));
    }
}
