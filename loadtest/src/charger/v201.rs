//! OCPP 2.0.1, the charger side: BootNotification, StatusNotification per EVSE, the
//! TransactionEvent life cycle (Started, Updated with periodic meter values, Ended), and answers
//! to the CSMS's RequestStart/StopTransaction, Reset, Get/SetVariables, TriggerMessage and
//! Smart Charging calls. Requests are decoded with the `rust-ocpp` 2.0.1 types.

use chrono::Utc;
use rust_ocpp::v2_0_1::messages as m;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::protocol::{Answer, Followup, Protocol, StopReason, Trigger};
use super::state::{apply_profile, limit_watts, ChargerState, Status};
use super::Plan;

/// The 2.0.1 protocol.
pub struct V201;

/// Variables reported by GetVariables: (component, variable, default value, read-only).
const VARIABLES: &[(&str, &str, &str, bool)] = &[
    ("OCPPCommCtrlr", "HeartbeatInterval", "300", false),
    ("SampledDataCtrlr", "TxUpdatedInterval", "10", false),
    (
        "SampledDataCtrlr",
        "TxUpdatedMeasurands",
        "Energy.Active.Import.Register,Power.Active.Import",
        false,
    ),
    ("AuthCtrlr", "AuthorizeRemoteStart", "false", false),
    ("DeviceDataCtrlr", "ItemsPerMessage", "4", true),
    ("ChargingStation", "Model", "SIM-201", true),
];

fn decode<T: DeserializeOwned>(payload: &Value) -> Result<T, Answer> {
    serde_json::from_value(payload.clone()).map_err(|e| {
        let code = if e.to_string().contains("missing field") {
            "OccurrenceConstraintViolation"
        } else {
            "FormatViolation"
        };
        Answer::error(code, e.to_string())
    })
}

fn connector_status(status: Status) -> &'static str {
    match status {
        Status::Available => "Available",
        Status::Preparing | Status::Charging | Status::Finishing => "Occupied",
        Status::Unavailable => "Unavailable",
    }
}

fn sampled(energy_wh: f64, power_w: Option<f64>, context: &str) -> Value {
    let mut values = vec![json!({
        "value": (energy_wh * 10.0).round() / 10.0,
        "context": context,
        "measurand": "Energy.Active.Import.Register",
        "unitOfMeasure": { "unit": "Wh" }
    })];
    if let Some(power) = power_w {
        values.push(json!({
            "value": (power * 10.0).round() / 10.0,
            "context": context,
            "measurand": "Power.Active.Import",
            "unitOfMeasure": { "unit": "W" }
        }));
    }
    json!([{ "timestamp": Utc::now(), "sampledValue": values }])
}

fn variable_value(state: &ChargerState, component: &str, variable: &str, default: &str) -> String {
    match (component, variable) {
        ("OCPPCommCtrlr", "HeartbeatInterval") => state
            .config
            .heartbeat_secs
            .map_or(default.to_string(), |s| format!("{s:.0}")),
        ("SampledDataCtrlr", "TxUpdatedInterval") => format!("{:.0}", state.config.meter_secs),
        _ => state
            .config
            .other
            .iter()
            .find(|(k, _)| *k == format!("{component}.{variable}"))
            .map_or(default.to_string(), |(_, v)| v.clone()),
    }
}

fn set_variable(
    state: &mut ChargerState,
    component: &str,
    variable: &str,
    value: &str,
) -> &'static str {
    let Some((_, _, _, read_only)) = VARIABLES
        .iter()
        .find(|(c, v, _, _)| *c == component && *v == variable)
    else {
        return if VARIABLES.iter().any(|(c, _, _, _)| *c == component) {
            "UnknownVariable"
        } else {
            "UnknownComponent"
        };
    };
    if *read_only {
        return "Rejected";
    }
    match (variable, value.parse::<f64>()) {
        ("HeartbeatInterval", Ok(v)) if v >= 0.0 => state.config.heartbeat_secs = Some(v),
        ("TxUpdatedInterval", Ok(v)) if v > 0.0 => state.config.meter_secs = v,
        ("HeartbeatInterval" | "TxUpdatedInterval", _) => return "Rejected",
        _ => {
            let key = format!("{component}.{variable}");
            state.config.other.retain(|(k, _)| *k != key);
            state.config.other.push((key, value.to_string()));
        }
    }
    "Accepted"
}

fn evse_targets(state: &ChargerState, evse: Option<i64>) -> Option<Vec<usize>> {
    match evse {
        None | Some(0) => Some((1..=state.connectors.len()).collect()),
        Some(id) if id >= 1 && (id as usize) <= state.connectors.len() => Some(vec![id as usize]),
        Some(_) => None,
    }
}

impl V201 {
    fn dispatch(
        &self,
        state: &mut ChargerState,
        action: &str,
        payload: Value,
    ) -> Result<Answer, Answer> {
        Ok(match action {
            "RequestStartTransaction" => {
                let req: m::request_start_transaction::RequestStartTransactionRequest =
                    decode(&payload)?;
                let connector = match req.evse_id {
                    Some(id) => state
                        .connector(i64::from(id))
                        .filter(|c| c.is_free())
                        .map(|_| id as usize),
                    None => state.first_free(),
                };
                match connector {
                    Some(connector) => Answer::then(
                        json!({ "status": "Accepted" }),
                        vec![Followup::Start {
                            connector,
                            id_tag: req.id_token.id_token,
                            remote_start_id: Some(i64::from(req.remote_start_id)),
                        }],
                    ),
                    None => Answer::ok(json!({ "status": "Rejected" })),
                }
            }
            "RequestStopTransaction" => {
                let req: m::request_stop_transaction::RequestStopTransactionRequest =
                    decode(&payload)?;
                match state.find_tx(&req.transaction_id) {
                    Some(connector) => Answer::then(
                        json!({ "status": "Accepted" }),
                        vec![Followup::Stop {
                            connector,
                            reason: StopReason::Remote,
                        }],
                    ),
                    None => Answer::ok(json!({ "status": "Rejected" })),
                }
            }
            "Reset" => {
                let req: m::reset::ResetRequest = decode(&payload)?;
                if req.evse_id.is_some() {
                    return Ok(Answer::ok(json!({ "status": "Rejected" })));
                }
                let mut then: Vec<Followup> = (1..=state.connectors.len())
                    .filter(|c| state.connectors[c - 1].tx.is_some())
                    .map(|connector| Followup::Stop {
                        connector,
                        reason: StopReason::Reset,
                    })
                    .collect();
                then.push(Followup::Reboot);
                Answer::then(json!({ "status": "Accepted" }), then)
            }
            "GetVariables" => {
                let _: m::get_variables::GetVariablesRequest = decode(&payload)?;
                let results: Vec<Value> = payload["getVariableData"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|item| {
                        let component = item["component"]["name"].as_str().unwrap_or_default();
                        let variable = item["variable"]["name"].as_str().unwrap_or_default();
                        let known = VARIABLES
                            .iter()
                            .find(|(c, v, _, _)| *c == component && *v == variable);
                        let mut result =
                            json!({ "component": item["component"], "variable": item["variable"] });
                        match known {
                            Some((c, v, default, _)) => {
                                result["attributeStatus"] = json!("Accepted");
                                result["attributeValue"] =
                                    json!(variable_value(state, c, v, default));
                            }
                            None if VARIABLES.iter().any(|(c, _, _, _)| *c == component) => {
                                result["attributeStatus"] = json!("UnknownVariable")
                            }
                            None => result["attributeStatus"] = json!("UnknownComponent"),
                        }
                        result
                    })
                    .collect();
                Answer::ok(json!({ "getVariableResult": results }))
            }
            "SetVariables" => {
                let _: m::set_variables::SetVariablesRequest = decode(&payload)?;
                let results: Vec<Value> = payload["setVariableData"].as_array().into_iter().flatten().map(|item| {
                    let component = item["component"]["name"].as_str().unwrap_or_default();
                    let variable = item["variable"]["name"].as_str().unwrap_or_default();
                    let value = item["attributeValue"].as_str().unwrap_or_default();
                    let status = set_variable(state, component, variable, value);
                    json!({ "attributeStatus": status, "component": item["component"], "variable": item["variable"] })
                }).collect();
                Answer::ok(json!({ "setVariableResult": results }))
            }
            "TriggerMessage" => {
                let _: m::trigger_message::TriggerMessageRequest = decode(&payload)?;
                let evse = payload["evse"]["id"].as_i64();
                let Some(targets) = evse_targets(state, evse) else {
                    return Ok(Answer::ok(json!({ "status": "Rejected" })));
                };
                let one = (targets.len() == 1 && evse.is_some()).then(|| targets[0]);
                let trigger = match payload["requestedMessage"].as_str().unwrap_or_default() {
                    "BootNotification" => Trigger::Boot,
                    "Heartbeat" => Trigger::Heartbeat,
                    "StatusNotification" => Trigger::Status(one),
                    "MeterValues" | "TransactionEvent" => Trigger::Meter(one),
                    "FirmwareStatusNotification" => {
                        Trigger::Notification("FirmwareStatusNotification", "Idle")
                    }
                    "LogStatusNotification" => {
                        Trigger::Notification("LogStatusNotification", "Idle")
                    }
                    _ => return Ok(Answer::ok(json!({ "status": "NotImplemented" }))),
                };
                Answer::then(
                    json!({ "status": "Accepted" }),
                    vec![Followup::Trigger(trigger)],
                )
            }
            "UnlockConnector" => {
                let req: m::unlock_connector::UnlockConnectorRequest = decode(&payload)?;
                match state.connector(i64::from(req.evse_id)) {
                    Some(_) if req.connector_id != 1 => {
                        Answer::ok(json!({ "status": "UnknownConnector" }))
                    }
                    None => Answer::ok(json!({ "status": "UnknownConnector" })),
                    Some(c) if c.tx.is_some() => {
                        Answer::ok(json!({ "status": "OngoingAuthorizedTransaction" }))
                    }
                    Some(_) => Answer::ok(json!({ "status": "Unlocked" })),
                }
            }
            "ChangeAvailability" => {
                let _: m::change_availability::ChangeAvailabilityRequest = decode(&payload)?;
                let inoperative = payload["operationalStatus"] == "Inoperative";
                let Some(targets) = evse_targets(state, payload["evse"]["id"].as_i64()) else {
                    return Ok(Answer::ok(json!({ "status": "Rejected" })));
                };
                let mut scheduled = false;
                let mut then = Vec::new();
                for connector in targets {
                    let c = &mut state.connectors[connector - 1];
                    c.inoperative = inoperative;
                    if c.tx.is_some() {
                        scheduled = true;
                    } else {
                        c.status = if inoperative {
                            Status::Unavailable
                        } else {
                            Status::Available
                        };
                        then.push(Followup::Status(connector));
                    }
                }
                Answer::then(
                    json!({ "status": if scheduled { "Scheduled" } else { "Accepted" } }),
                    then,
                )
            }
            "ClearCache" => Answer::ok(json!({ "status": "Accepted" })),
            "DataTransfer" => {
                let _: m::datatransfer::DataTransferRequest = decode(&payload)?;
                Answer::ok(json!({ "status": "UnknownVendorId" }))
            }
            "SetChargingProfile" => {
                let _: m::set_charging_profile::SetChargingProfileRequest = decode(&payload)?;
                let profile = &payload["chargingProfile"];
                let schedule = &profile["chargingSchedule"][0];
                let period = &schedule["chargingSchedulePeriod"][0];
                let limit = limit_watts(
                    period["limit"].as_f64().unwrap_or(0.0),
                    schedule["chargingRateUnit"].as_str(),
                    period["numberPhases"].as_f64(),
                );
                let purpose = profile["chargingProfilePurpose"]
                    .as_str()
                    .unwrap_or("TxProfile");
                let evse = payload["evseId"].as_i64().unwrap_or(-1);
                let fits = purpose != "ChargingStationMaxProfile" || evse == 0;
                if !fits || !apply_profile(&mut state.connectors, evse, purpose, limit) {
                    return Ok(Answer::ok(json!({ "status": "Rejected" })));
                }
                Answer::ok(json!({ "status": "Accepted" }))
            }
            "ClearChargingProfile" => {
                let _: m::clear_charging_profile::ClearChargingProfileRequest = decode(&payload)?;
                let mut had = false;
                for c in &mut state.connectors {
                    had |= c.clear_profiles();
                }
                Answer::ok(json!({ "status": if had { "Accepted" } else { "Unknown" } }))
            }
            "GetCompositeSchedule" => {
                let req: m::get_composite_schedule::GetCompositeScheduleRequest = decode(&payload)?;
                let nominal = state.nominal_w;
                let Some(c) = state.connector(i64::from(req.evse_id)) else {
                    return Ok(Answer::ok(json!({ "status": "Rejected" })));
                };
                let watts = c.cap_w(nominal);
                let amps = payload["chargingRateUnit"] == "A";
                let limit = if amps { watts / (230.0 * 3.0) } else { watts };
                Answer::ok(json!({
                    "status": "Accepted",
                    "schedule": {
                        "evseId": req.evse_id,
                        "duration": req.duration,
                        "scheduleStart": Utc::now(),
                        "chargingRateUnit": if amps { "A" } else { "W" },
                        "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": (limit * 10.0).round() / 10.0 }]
                    }
                }))
            }
            "GetTransactionStatus" => {
                let req: m::get_transaction_status::GetTransactionStatusRequest = decode(&payload)?;
                match req.transaction_id {
                    Some(id) => Answer::ok(
                        json!({ "messagesInQueue": false, "ongoingIndicator": state.find_tx(&id).is_some() }),
                    ),
                    None => Answer::ok(json!({ "messagesInQueue": false })),
                }
            }
            other => Answer::error(
                "NotImplemented",
                format!("{other} is not supported by this simulator"),
            ),
        })
    }
}

impl Protocol for V201 {
    fn boot(&self, plan: &Plan) -> Value {
        json!({
            "reason": "PowerUp",
            "chargingStation": {
                "model": "SIM-201",
                "vendorName": "ChargegridSim",
                "serialNumber": plan.id,
                "firmwareVersion": env!("CARGO_PKG_VERSION"),
            }
        })
    }

    fn boot_result(&self, payload: &Value) -> (bool, Option<f64>) {
        (
            payload["status"] == "Accepted",
            payload["interval"].as_f64(),
        )
    }

    fn status(&self, connector: usize, status: Status) -> (&'static str, Value) {
        (
            "StatusNotification",
            json!({ "timestamp": Utc::now(), "connectorStatus": connector_status(status), "evseId": connector, "connectorId": 1 }),
        )
    }

    fn start(&self, state: &mut ChargerState, connector: usize) -> (&'static str, Value) {
        let c = &mut state.connectors[connector - 1];
        let energy = c.energy_wh;
        let Some(tx) = c.tx.as_mut() else {
            return ("TransactionEvent", Value::Null);
        };
        let seq_no = tx.seq_no;
        tx.seq_no += 1;
        let mut info = json!({ "transactionId": tx.id.clone().unwrap_or_default(), "chargingState": "Charging" });
        if let Some(id) = tx.remote_start_id {
            info["remoteStartId"] = json!(id);
        }
        (
            "TransactionEvent",
            json!({
                "eventType": "Started",
                "timestamp": Utc::now(),
                "triggerReason": if tx.remote { "RemoteStart" } else { "Authorized" },
                "seqNo": seq_no,
                "transactionInfo": info,
                "idToken": { "idToken": tx.id_tag, "type": if tx.remote { "Central" } else { "ISO14443" } },
                "evse": { "id": connector, "connectorId": 1 },
                "meterValue": sampled(energy, None, "Transaction.Begin"),
            }),
        )
    }

    fn start_result(&self, payload: &Value) -> Result<Option<String>, String> {
        match payload["idTokenInfo"]["status"].as_str() {
            None | Some("Accepted") => Ok(None),
            Some(other) => Err(other.to_string()),
        }
    }

    fn meter(&self, state: &mut ChargerState, connector: usize) -> (&'static str, Value) {
        let nominal = state.nominal_w;
        let c = &mut state.connectors[connector - 1];
        let (energy, power) = (c.energy_wh, c.power_w(nominal));
        let Some(tx) = c.tx.as_mut() else {
            return (
                "MeterValues",
                json!({ "evseId": connector, "meterValue": sampled(energy, Some(power), "Sample.Periodic") }),
            );
        };
        let seq_no = tx.seq_no;
        tx.seq_no += 1;
        (
            "TransactionEvent",
            json!({
                "eventType": "Updated",
                "timestamp": Utc::now(),
                "triggerReason": "MeterValuePeriodic",
                "seqNo": seq_no,
                "transactionInfo": { "transactionId": tx.id.clone().unwrap_or_default(), "chargingState": "Charging" },
                "meterValue": sampled(energy, Some(power), "Sample.Periodic"),
            }),
        )
    }

    fn stop(
        &self,
        state: &mut ChargerState,
        connector: usize,
        reason: StopReason,
    ) -> (&'static str, Value) {
        let c = &mut state.connectors[connector - 1];
        let energy = c.energy_wh;
        let Some(tx) = c.tx.as_mut() else {
            return ("TransactionEvent", Value::Null);
        };
        let seq_no = tx.seq_no;
        tx.seq_no += 1;
        let (trigger, stopped) = match reason {
            StopReason::Local => ("StopAuthorized", "Local"),
            StopReason::Remote => ("RemoteStop", "Remote"),
            StopReason::DeAuthorized => ("Deauthorized", "DeAuthorized"),
            StopReason::Reset => ("ResetCommand", "ImmediateReset"),
            StopReason::Unlock => ("UnlockCommand", "Other"),
        };
        (
            "TransactionEvent",
            json!({
                "eventType": "Ended",
                "timestamp": Utc::now(),
                "triggerReason": trigger,
                "seqNo": seq_no,
                "transactionInfo": { "transactionId": tx.id.clone().unwrap_or_default(), "chargingState": "EVConnected", "stoppedReason": stopped },
                "idToken": { "idToken": tx.id_tag, "type": if tx.remote { "Central" } else { "ISO14443" } },
                "meterValue": sampled(energy, None, "Transaction.End"),
            }),
        )
    }

    fn handle_call(&self, state: &mut ChargerState, action: &str, payload: Value) -> Answer {
        self.dispatch(state, action, payload)
            .unwrap_or_else(|refusal| refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charger::state::Transaction;
    use crate::scenario::Scenario;

    /// (action, request, does the answer parse as the action's response type)
    type Case = (&'static str, Value, fn(&Value) -> bool);

    fn parses<T: DeserializeOwned>(value: &Value) -> bool {
        serde_json::from_value::<T>(value.clone()).is_ok()
    }

    fn charging_state() -> ChargerState {
        let mut s = ChargerState::new(2, 22_000.0, 10.0, 5_000.0);
        s.connectors[0].tx = Some(Transaction {
            id: Some("tx-1".into()),
            id_tag: "TAG".into(),
            remote: true,
            remote_start_id: Some(7),
            meter_start_wh: 5_000.0,
            started: tokio::time::Instant::now(),
            stop_at: None,
            meter_due: tokio::time::Instant::now(),
            stopping: false,
            seq_no: 0,
            refused: false,
        });
        s
    }

    #[test]
    fn the_transaction_life_cycle_is_valid_2_0_1_with_increasing_seq_no() {
        let plan = Plan::for_charger(&Scenario::default(), 0);
        assert!(parses::<m::boot_notification::BootNotificationRequest>(
            &V201.boot(&plan)
        ));
        assert!(parses::<m::status_notification::StatusNotificationRequest>(
            &V201.status(2, Status::Charging).1
        ));
        let mut s = charging_state();
        let (_, started) = V201.start(&mut s, 1);
        let (_, updated) = V201.meter(&mut s, 1);
        let (_, ended) = V201.stop(&mut s, 1, StopReason::Remote);
        for event in [&started, &updated, &ended] {
            assert!(
                parses::<m::transaction_event::TransactionEventRequest>(event),
                "{event}"
            );
        }
        assert_eq!(
            (
                started["seqNo"].as_i64(),
                updated["seqNo"].as_i64(),
                ended["seqNo"].as_i64()
            ),
            (Some(0), Some(1), Some(2))
        );
        assert_eq!(started["transactionInfo"]["remoteStartId"], 7);
        assert_eq!(ended["transactionInfo"]["stoppedReason"], "Remote");
        let (action, idle) = V201.meter(&mut s, 2);
        assert_eq!(action, "MeterValues");
        assert!(
            parses::<m::meter_values::MeterValuesRequest>(&idle),
            "{idle}"
        );
    }

    #[test]
    fn request_start_and_stop_follow_the_connector_state() {
        let mut s = charging_state();
        let busy = V201.handle_call(&mut s, "RequestStartTransaction", json!({ "evseId": 1, "remoteStartId": 3, "idToken": { "idToken": "A", "type": "Central" } }));
        assert_eq!(busy.reply, Ok(json!({ "status": "Rejected" })));
        let free = V201.handle_call(
            &mut s,
            "RequestStartTransaction",
            json!({ "remoteStartId": 3, "idToken": { "idToken": "A", "type": "Central" } }),
        );
        assert!(parses::<
            m::request_start_transaction::RequestStartTransactionResponse,
        >(free.reply.as_ref().unwrap_or(&Value::Null)));
        assert_eq!(
            free.then,
            vec![Followup::Start {
                connector: 2,
                id_tag: "A".into(),
                remote_start_id: Some(3)
            }]
        );
        let stop = V201.handle_call(
            &mut s,
            "RequestStopTransaction",
            json!({ "transactionId": "tx-1" }),
        );
        assert_eq!(
            stop.then,
            vec![Followup::Stop {
                connector: 1,
                reason: StopReason::Remote
            }]
        );
    }

    #[test]
    fn every_answer_is_a_valid_2_0_1_response() {
        let mut s = charging_state();
        let cases: Vec<Case> = vec![
            ("Reset", json!({ "type": "Immediate" }), |v| {
                parses::<m::reset::ResetResponse>(v)
            }),
            (
                "GetVariables",
                json!({ "getVariableData": [{ "component": { "name": "OCPPCommCtrlr" }, "variable": { "name": "HeartbeatInterval" } }, { "component": { "name": "Nope" }, "variable": { "name": "X" } }] }),
                |v| parses::<m::get_variables::GetVariablesResponse>(v),
            ),
            (
                "SetVariables",
                json!({ "setVariableData": [{ "attributeValue": "60", "component": { "name": "OCPPCommCtrlr" }, "variable": { "name": "HeartbeatInterval" } }] }),
                |v| parses::<m::set_variables::SetVariablesResponse>(v),
            ),
            (
                "TriggerMessage",
                json!({ "requestedMessage": "StatusNotification", "evse": { "id": 1 } }),
                |v| parses::<m::trigger_message::TriggerMessageResponse>(v),
            ),
            (
                "UnlockConnector",
                json!({ "evseId": 2, "connectorId": 1 }),
                |v| parses::<m::unlock_connector::UnlockConnectorResponse>(v),
            ),
            (
                "ChangeAvailability",
                json!({ "operationalStatus": "Inoperative" }),
                |v| parses::<m::change_availability::ChangeAvailabilityResponse>(v),
            ),
            ("ClearCache", json!({}), |v| {
                parses::<m::clear_cache::ClearCacheResponse>(v)
            }),
            ("DataTransfer", json!({ "vendorId": "x" }), |v| {
                parses::<m::datatransfer::DataTransferResponse>(v)
            }),
            (
                "SetChargingProfile",
                json!({ "evseId": 1, "chargingProfile": { "id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute", "chargingSchedule": [{ "id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 7000.0 }] }] } }),
                |v| parses::<m::set_charging_profile::SetChargingProfileResponse>(v),
            ),
            (
                "GetCompositeSchedule",
                json!({ "duration": 600, "evseId": 1 }),
                |v| parses::<m::get_composite_schedule::GetCompositeScheduleResponse>(v),
            ),
            ("ClearChargingProfile", json!({}), |v| {
                parses::<m::clear_charging_profile::ClearChargingProfileResponse>(v)
            }),
            (
                "GetTransactionStatus",
                json!({ "transactionId": "tx-1" }),
                |v| parses::<m::get_transaction_status::GetTransactionStatusResponse>(v),
            ),
        ];
        for (action, payload, valid) in cases {
            let answer = V201.handle_call(&mut s, action, payload);
            match &answer.reply {
                Ok(reply) => assert!(valid(reply), "{action}: {reply}"),
                Err(e) => panic!("{action} refused: {e:?}"),
            }
        }
        assert_eq!(s.config.heartbeat_secs, Some(60.0));
        assert_eq!(s.connectors[0].limit_w, None, "the profile was cleared");
    }

    #[test]
    fn malformed_and_unknown_requests_get_2_0_1_error_codes() {
        let mut s = charging_state();
        let answer = V201.handle_call(
            &mut s,
            "RequestStopTransaction",
            json!({ "transactionId": 5 }),
        );
        assert!(matches!(answer.reply, Err(("FormatViolation", _))));
        let answer = V201.handle_call(&mut s, "Teleport", json!({}));
        assert!(matches!(answer.reply, Err(("NotImplemented", _))));
    }
}
