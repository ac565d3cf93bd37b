//! The station's side of smart charging (K): external limits set by an EMS or the grid operator
//! (NotifyChargingLimit, ClearedChargingLimit) are honoured by the site's allocation; the car's
//! needs (NotifyEVChargingNeeds: energy, departure, maximum current) raise or bound its share;
//! the station's profile reports (ReportChargingProfiles) and the car's own schedule
//! (NotifyEVChargingSchedule) are kept. Each is stored before it is answered.

use rust_ocpp::v2_0_1::messages as m;
use serde_json::{json, Value};

use super::reports::keep;
use crate::actors::messages::Reallocate;
use crate::ocpp::command::{ChargerCommand, LimitScope};
use crate::ocpp::handler::{CallContext, Effect, Handled};
use crate::ocpp::payload::decode_shape;
use crate::ocpp::CallFailure;
use crate::store::sites;

/// Volts a limit in watts is converted to ampere with when the station does not say more.
const NOMINAL_VOLTAGE: f64 = 230.0;
/// The schedule of a car nothing bounds, when the station's rated current is not known: the
/// most an AC connector carries per phase (IEC 62196 Type 2, 32 A).
const UNBOUNDED_AC_AMPS: f64 = 32.0;

/// The first period's limit of a schedule, in ampere per phase.
fn schedule_amps(schedule: &Value) -> Option<f64> {
    let period = schedule.get("chargingSchedulePeriod")?.get(0)?;
    let limit = period.get("limit")?.as_f64()?;
    let phases = period
        .get("numberPhases")
        .and_then(|p| p.as_f64())
        .unwrap_or(3.0)
        .max(1.0);
    match schedule.get("chargingRateUnit")?.as_str()? {
        "A" => Some(limit),
        _ => Some(limit / (NOMINAL_VOLTAGE * phases)),
    }
}

/// Keeps the report as sent, before anything else is done with it.
async fn store(ctx: &CallContext, action: &str, payload: &Value) -> Result<(), CallFailure> {
    crate::store::chargers::record_report_now(&ctx.app.db, &ctx.charger_id, action, payload)
        .await
        .map_err(CallFailure::internal)
}

fn reallocate(ctx: &CallContext) {
    if let Some(site_id) = ctx.app.site_directory.site_of(&ctx.charger_id) {
        ctx.app.site_supervisor.do_send(Reallocate {
            site_id,
            now: false,
        });
    }
}

/// K12: a limit from outside (EMS, DSO) is in force; the allocation honours the lowest one.
pub async fn notify_charging_limit(
    ctx: &CallContext,
    payload: Value,
) -> Result<Handled, CallFailure> {
    use m::notify_charging_limit as n;
    let _: n::NotifyChargingLimitRequest = decode_shape("NotifyChargingLimit", payload.clone())?;
    let source = payload["chargingLimit"]["chargingLimitSource"]
        .as_str()
        .unwrap_or("Other")
        .to_string();
    let amps = payload
        .get("chargingSchedule")
        .and_then(|s| s.as_array())
        .and_then(|schedules| schedules.iter().filter_map(schedule_amps).reduce(f64::min));
    store(ctx, "NotifyChargingLimit", &payload).await?;
    if let Some(amps) = amps {
        sites::set_external_limit(
            &ctx.app.db,
            &ctx.charger_id,
            Some(amps.max(0.0)),
            Some(&source),
        )
        .await
        .map_err(CallFailure::internal)?;
        reallocate(ctx);
    }
    tracing::info!(charger_id = %ctx.charger_id, source = %source, limit_amps = ?amps, "external charging limit");
    Handled::reply(&json!({}))
}

/// K13: the external limit is gone.
pub async fn cleared_charging_limit(
    ctx: &CallContext,
    payload: Value,
) -> Result<Handled, CallFailure> {
    use m::cleared_charging_limit as c;
    let _: c::ClearedChargingLimitRequest = decode_shape("ClearedChargingLimit", payload.clone())?;
    store(ctx, "ClearedChargingLimit", &payload).await?;
    sites::set_external_limit(&ctx.app.db, &ctx.charger_id, None, None)
        .await
        .map_err(CallFailure::internal)?;
    reallocate(ctx);
    Handled::reply(&json!({}))
}

/// K15/K16: the car's needs, stored for its session. On a load-managed charger they feed the
/// allocation and the session's profile is pushed again; elsewhere the session gets a TxProfile
/// at the lower of the car's maximum current and the session's own cap. Either way the answer
/// is Accepted (a schedule follows); Rejected when there is no session on that EVSE, its
/// transaction is not known yet, or nothing bounds a DC car.
pub async fn notify_ev_charging_needs(
    ctx: &CallContext,
    payload: Value,
) -> Result<Handled, CallFailure> {
    use m::notify_ev_charging_needs as n;
    let _: n::NotifyEVChargingNeedsRequest =
        decode_shape("NotifyEVChargingNeeds", payload.clone())?;
    store(ctx, "NotifyEVChargingNeeds", &payload).await?;
    let needs = &payload["chargingNeeds"];
    let evse_id = payload["evseId"].as_i64().unwrap_or(1) as i32;
    let departure = needs["departureTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let ac = &needs["acChargingParameters"];
    let dc = &needs["dcChargingParameters"];
    let energy_kwh = ac["energyAmount"]
        .as_f64()
        .or_else(|| dc["energyAmount"].as_f64())
        .map(|wh| wh / 1000.0)
        .filter(|kwh| *kwh > 0.0);
    let ev_max_amps = ac["evMaxCurrent"].as_f64().filter(|a| *a >= 0.0);
    let Some(open) = sites::open_transaction_on(&ctx.app.db, &ctx.charger_id, evse_id)
        .await
        .map_err(CallFailure::internal)?
    else {
        return Handled::reply(&json!({ "status": "Rejected" }));
    };
    sites::set_needs(
        &ctx.app.db,
        open.session_id,
        departure,
        energy_kwh,
        ev_max_amps,
        None,
        "EV",
    )
    .await
    .map_err(CallFailure::internal)?;
    if ctx.app.site_directory.site_of(&ctx.charger_id).is_some() {
        sites::invalidate_allocation(&ctx.app.db, open.session_id)
            .await
            .map_err(CallFailure::internal)?;
        reallocate(ctx);
        return Handled::reply(&json!({ "status": "Accepted" }));
    }
    let cap = open
        .max_power_kw
        .map(|kw| kw * 1000.0 / (NOMINAL_VOLTAGE * 3.0));
    // nothing bounds an AC car (no site, no cap, the car gave no maximum): its schedule is the
    // station's rated current, so the car still gets the profile it waits for (K15.FR.03); a
    // DC car is never given an AC current it did not ask for
    let ac_car = needs["requestedEnergyTransfer"]
        .as_str()
        .is_some_and(|mode| mode.starts_with("AC"));
    let amps = match (ev_max_amps, cap) {
        (Some(ev), Some(cap)) => Some(ev.min(cap)),
        (Some(one), None) | (None, Some(one)) => Some(one),
        (None, None) if ac_car => Some(open.rated_amps.unwrap_or(UNBOUNDED_AC_AMPS)),
        (None, None) => None,
    };
    match (amps, open.transaction_ref) {
        (Some(amps), Some(transaction_ref)) => Ok(Handled::reply(
            &json!({ "status": "Accepted" }),
        )?
        .with(Effect::Send {
            command: ChargerCommand::LimitCurrent {
                scope: LimitScope::Transaction,
                connector_id: evse_id,
                transaction_id: None,
                transaction_ref: Some(transaction_ref),
                amps,
                phases: 3,
            },
            what: "TxProfile for the EV's charging needs",
        })),
        _ => Handled::reply(&json!({ "status": "Rejected" })),
    }
}

/// K09/K10 answers, and the car's own schedule (K17): kept as sent.
pub async fn report_charging_profiles(
    ctx: &CallContext,
    payload: Value,
) -> Result<Handled, CallFailure> {
    use m::report_charging_profiles as r;
    keep::<r::ReportChargingProfilesRequest, r::ReportChargingProfilesResponse>(
        ctx,
        "ReportChargingProfiles",
        payload,
    )
    .await
}

/// K17: the schedule the car computed from the limits it got. Accepted when it stays within
/// the session's allocation (or, off a site, its cap); Rejected when it asks for more (TC_K_55).
pub async fn notify_ev_charging_schedule(
    ctx: &CallContext,
    payload: Value,
) -> Result<Handled, CallFailure> {
    use m::notify_ev_charging_schedule as n;
    let _: n::NotifyEVChargingScheduleRequest =
        decode_shape("NotifyEVChargingSchedule", payload.clone())?;
    store(ctx, "NotifyEVChargingSchedule", &payload).await?;
    let evse_id = payload["evseId"].as_i64().unwrap_or(1) as i32;
    let open = sites::open_transaction_on(&ctx.app.db, &ctx.charger_id, evse_id)
        .await
        .map_err(CallFailure::internal)?;
    let allowed = match &open {
        Some(open) => match open.allocated_amps {
            Some(amps) => Some(amps),
            None => open
                .max_power_kw
                .map(|kw| kw * 1000.0 / (NOMINAL_VOLTAGE * 3.0)),
        },
        None => None,
    };
    let asked = schedule_peak_amps(&payload["chargingSchedule"]);
    let within = match (allowed, asked) {
        (Some(allowed), Some(asked)) => asked <= allowed + 0.05,
        _ => true,
    };
    if !within {
        tracing::info!(charger_id = %ctx.charger_id, asked = ?asked, allowed = ?allowed, "EV charging schedule exceeds its limit");
    }
    Handled::reply(&json!({ "status": if within { "Accepted" } else { "Rejected" } }))
}

/// The highest limit of a schedule, in ampere per phase.
fn schedule_peak_amps(schedule: &Value) -> Option<f64> {
    let periods = schedule.get("chargingSchedulePeriod")?.as_array()?;
    let unit = schedule.get("chargingRateUnit")?.as_str()?;
    periods
        .iter()
        .filter_map(|period| {
            let limit = period.get("limit")?.as_f64()?;
            let phases = period
                .get("numberPhases")
                .and_then(|p| p.as_f64())
                .unwrap_or(3.0)
                .max(1.0);
            Some(if unit == "A" {
                limit
            } else {
                limit / (NOMINAL_VOLTAGE * phases)
            })
        })
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_in_watts_is_read_as_ampere_per_phase() {
        let amps = json!({ "chargingRateUnit": "A", "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 16.0 }] });
        assert_eq!(schedule_amps(&amps), Some(16.0));
        let watts = json!({ "chargingRateUnit": "W", "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 11040.0, "numberPhases": 3 }] });
        assert_eq!(schedule_amps(&watts), Some(16.0));
        let one_phase = json!({ "chargingRateUnit": "W", "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 2300.0, "numberPhases": 1 }] });
        assert_eq!(schedule_amps(&one_phase), Some(10.0));
        assert_eq!(schedule_amps(&json!({})), None);
    }

    #[test]
    fn a_schedule_peaks_at_its_highest_period() {
        let schedule = json!({ "chargingRateUnit": "A", "chargingSchedulePeriod": [
            { "startPeriod": 0, "limit": 10.0 }, { "startPeriod": 600, "limit": 16.0 }, { "startPeriod": 1200, "limit": 8.0 }
        ] });
        assert_eq!(schedule_peak_amps(&schedule), Some(16.0));
    }
}
