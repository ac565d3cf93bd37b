//! 2.0.1 meter values: the conversion of `MeterValueType` (numeric values, `unitOfMeasure` with
//! unit and power-of-ten multiplier) into the protocol-neutral samples of `ocpp::meter`, and the
//! MeterValues action, whose samples belong to the transaction running on the EVSE, if any.

use rust_ocpp::v2_0_1::datatypes::meter_value_type::MeterValueType;
use rust_ocpp::v2_0_1::messages::meter_values::{MeterValuesRequest, MeterValuesResponse};
use serde_json::Value;

use crate::ocpp::handler::{enum_name, CallContext, Handled};
use crate::ocpp::meter::{self, OutOfRange, RawSample, Sample};
use crate::ocpp::payload::decode_shape;
use crate::ocpp::CallFailure;
use crate::store::transaction_events;
use crate::store::transaction_writer::{MeterOwner, MeterWrite};

/// Normalised samples of 2.0.1 meter values; a value no meter can show refuses them all.
pub fn samples(values: &[MeterValueType]) -> Result<Vec<Sample>, OutOfRange> {
    meter::normalise_all(raw_samples(values))
}

/// Normalised samples, dropping (and logging) values no meter can show: for the event that
/// ends a transaction.
pub fn samples_lenient(values: &[MeterValueType]) -> Vec<Sample> {
    meter::normalise_lenient(raw_samples(values))
}

fn raw_samples(
    values: &[MeterValueType],
) -> impl Iterator<Item = (chrono::DateTime<chrono::Utc>, RawSample)> + '_ {
    values.iter().flat_map(|mv| {
        mv.sampled_value.iter().map(move |sv| {
            let unit = sv.unit_of_measure.as_ref();
            (
                mv.timestamp,
                RawSample {
                    value: sv.value.to_string(),
                    measurand: sv.measurand.as_ref().map(enum_name),
                    phase: sv.phase.as_ref().map(enum_name),
                    context: sv.context.as_ref().map(enum_name),
                    location: sv.location.as_ref().map(enum_name),
                    unit: unit.and_then(|u| u.unit.clone()),
                    multiplier: unit.and_then(|u| u.multiplier),
                },
            )
        })
    })
}

pub async fn meter_values(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: MeterValuesRequest = decode_shape("MeterValues", payload)?;
    let samples = samples(&req.meter_value)?;
    let running = transaction_events::running_on_evse(&ctx.app.db, &ctx.charger_id, req.evse_id)
        .await
        .map_err(CallFailure::internal)?;
    let owner = match running {
        Some(r) => MeterOwner::Known {
            transaction_pk: r.id,
            session_id: r.session_id,
        },
        None => MeterOwner::None,
    };
    let reading = meter::reading(&samples);
    // set-based in the next group commit; answered only once it committed
    let session = ctx
        .app
        .transactions
        .meter(MeterWrite {
            charger_id: ctx.charger_id.clone(),
            connector_id: req.evse_id,
            owner,
            samples,
            reading,
        })
        .await
        .map_err(CallFailure::internal)?;
    Ok(Handled::reply(&MeterValuesResponse {})?.with_session(session))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use serde_json::json;

    #[test]
    fn numbers_with_units_and_multipliers_become_base_units() {
        let values: Vec<MeterValueType> = serde_json::from_value(json!([{
            "timestamp": "2026-11-21T10:00:00Z",
            "sampledValue": [
                { "value": 12.5, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": { "unit": "kWh" } },
                { "value": 7.4, "measurand": "Power.Active.Import", "unitOfMeasure": { "unit": "W", "multiplier": 3 } },
                { "value": 230 , "measurand": "Voltage", "phase": "L1-N", "unitOfMeasure": { "unit": "V" } }
            ]
        }]))
        .unwrap_or_default();
        let samples = samples(&values).unwrap_or_default();
        assert_eq!(samples.len(), 3);
        let reading = meter::reading(&samples);
        assert_eq!(reading.energy_wh, Some(Decimal::from(12500)));
        assert_eq!(reading.power_w, Some(Decimal::from(7400)));
        assert_eq!(samples[2].phase.as_deref(), Some("L1-N"));
    }

    #[test]
    fn a_value_without_unit_is_an_energy_register_in_wh() {
        let values: Vec<MeterValueType> = serde_json::from_value(json!([{
            "timestamp": "2026-11-21T10:00:00Z",
            "sampledValue": [{ "value": 1500 }]
        }]))
        .unwrap_or_default();
        let reading = meter::reading(&samples(&values).unwrap_or_default());
        assert_eq!(reading.energy_wh, Some(Decimal::from(1500)));
    }
}
