//! OCPP 1.6J, the charger side: payloads of the charger's calls, and answers to every
//! CSMS-initiated call of the Core, Remote Trigger, Smart Charging, Reservation and Local Auth
//! List profiles. Requests are decoded with the `rust-ocpp` 1.6 types, so a CSMS sending a
//! malformed command gets the CALLERROR a real charger would send.

use chrono::Utc;
use rust_ocpp::v1_6::messages as m;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::protocol::{Answer, Followup, Protocol, StopReason, Trigger};
use super::state::{apply_profile, limit_watts, ChargerState, Status};
use super::Plan;

/// The 1.6 protocol.
pub struct V16;

/// Configuration keys reported by GetConfiguration: (key, value, read-only).
const KEYS: &[(&str, &str, bool)] = &[
    ("AuthorizeRemoteTxRequests", "false", false),
    ("ClockAlignedDataInterval", "0", false),
    ("ConnectionTimeOut", "60", false),
    ("HeartbeatInterval", "300", false),
    ("LocalAuthorizeOffline", "true", false),
    ("MeterValueSampleInterval", "10", false),
    (
        "MeterValuesSampledData",
        "Energy.Active.Import.Register,Power.Active.Import",
        false,
    ),
    ("NumberOfConnectors", "1", true),
    (
        "SupportedFeatureProfiles",
        "Core,RemoteTrigger,SmartCharging,Reservation,LocalAuthListManagement",
        true,
    ),
    ("ChargeProfileMaxStackLevel", "8", true),
];

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Available => "Available",
        Status::Preparing => "Preparing",
        Status::Charging => "Charging",
        Status::Finishing => "Finishing",
        Status::Unavailable => "Unavailable",
    }
}

fn decode<T: DeserializeOwned>(payload: Value) -> Result<T, Answer> {
    serde_json::from_value(payload).map_err(|e| {
        let code = if e.to_string().contains("missing field") {
            "ProtocolError"
        } else {
            "TypeConstraintViolation"
        };
        Answer::error(code, e.to_string())
    })
}

fn reading(energy_wh: f64, power_w: f64) -> Value {
    json!([{
        "timestamp": Utc::now(),
        "sampledValue": [
            { "value": format!("{:.0}", energy_wh), "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register", "unit": "Wh" },
            { "value": format!("{:.0}", power_w), "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unit": "W" }
        ]
    }])
}

fn config_value(state: &ChargerState, key: &str, default: &str) -> String {
    match key {
        "HeartbeatInterval" => state
            .config
            .heartbeat_secs
            .map_or(default.to_string(), |s| format!("{s:.0}")),
        "MeterValueSampleInterval" => format!("{:.0}", state.config.meter_secs),
        "NumberOfConnectors" => state.connectors.len().to_string(),
        _ => state
            .config
            .other
            .iter()
            .find(|(k, _)| k == key)
            .map_or(default.to_string(), |(_, v)| v.clone()),
    }
}

impl V16 {
    fn dispatch(
        &self,
        state: &mut ChargerState,
        action: &str,
        payload: Value,
    ) -> Result<Answer, Answer> {
        Ok(match action {
            "RemoteStartTransaction" => {
                let req: m::remote_start_transaction::RemoteStartTransactionRequest =
                    decode(payload)?;
                let connector = match req.connector_id {
                    Some(id) => state
                        .connector(i64::from(id))
                        .filter(|c| c.is_free())
                        .map(|_| id as usize),
                    None => state.first_free(),
                };
                match connector {
                    Some(connector) => {
                        if let Some(limit) = req
                            .charging_profile
                            .as_ref()
                            .and_then(|p| p.charging_schedule.charging_schedule_period.first())
                        {
                            if let Some(c) = state.connector(connector as i64) {
                                c.limit_w = Some(watts(
                                    limit.limit.to_string().parse().unwrap_or(0.0),
                                    &req.charging_profile.as_ref().map(|p| {
                                        serde_json::to_value(
                                            &p.charging_schedule.charging_rate_unit,
                                        )
                                        .unwrap_or_default()
                                    }),
                                ));
                            }
                        }
                        Answer::then(
                            json!({ "status": "Accepted" }),
                            vec![Followup::Start {
                                connector,
                                id_tag: req.id_tag,
                                remote_start_id: None,
                            }],
                        )
                    }
                    None => Answer::ok(json!({ "status": "Rejected" })),
                }
            }
            "RemoteStopTransaction" => {
                let req: m::remote_stop_transaction::RemoteStopTransactionRequest =
                    decode(payload)?;
                match state.find_tx(&req.transaction_id.to_string()) {
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
                let _: m::reset::ResetRequest = decode(payload)?;
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
            "ChangeConfiguration" => {
                let req: m::change_configuration::ChangeConfigurationRequest = decode(payload)?;
                let status = match KEYS.iter().find(|(k, _, _)| *k == req.key) {
                    None => "NotSupported",
                    Some((_, _, true)) => "Rejected",
                    Some((key, _, false)) => match (*key, req.value.parse::<f64>()) {
                        ("HeartbeatInterval", Ok(v)) if v >= 0.0 => {
                            state.config.heartbeat_secs = Some(v);
                            "Accepted"
                        }
                        ("MeterValueSampleInterval", Ok(v)) if v > 0.0 => {
                            state.config.meter_secs = v;
                            "Accepted"
                        }
                        ("HeartbeatInterval" | "MeterValueSampleInterval", _) => "Rejected",
                        (key, _) => {
                            state.config.other.retain(|(k, _)| k != key);
                            state.config.other.push((key.to_string(), req.value));
                            "Accepted"
                        }
                    },
                };
                Answer::ok(json!({ "status": status }))
            }
            "GetConfiguration" => {
                let req: m::get_configuration::GetConfigurationRequest = decode(payload)?;
                let wanted = req.key.unwrap_or_default();
                let known: Vec<Value> = KEYS
                    .iter()
                    .filter(|(k, _, _)| wanted.is_empty() || wanted.iter().any(|w| w == k))
                    .map(|(k, v, ro)| json!({ "key": k, "readonly": ro, "value": config_value(state, k, v) }))
                    .collect();
                let unknown: Vec<&String> = wanted
                    .iter()
                    .filter(|w| !KEYS.iter().any(|(k, _, _)| k == w))
                    .collect();
                if unknown.is_empty() {
                    Answer::ok(json!({ "configurationKey": known }))
                } else {
                    Answer::ok(json!({ "configurationKey": known, "unknownKey": unknown }))
                }
            }
            "TriggerMessage" => {
                let req: m::trigger_message::TriggerMessageRequest = decode(payload)?;
                let connector = req.connector_id.map(|c| c as usize);
                if connector.is_some_and(|c| c == 0 || c > state.connectors.len()) {
                    return Ok(Answer::ok(json!({ "status": "Rejected" })));
                }
                let trigger = match serde_json::to_value(&req.requested_message)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or_default()
                {
                    "BootNotification" => Trigger::Boot,
                    "Heartbeat" => Trigger::Heartbeat,
                    "StatusNotification" => Trigger::Status(connector),
                    "MeterValues" => Trigger::Meter(connector),
                    "DiagnosticsStatusNotification" => {
                        Trigger::Notification("DiagnosticsStatusNotification", "Idle")
                    }
                    "FirmwareStatusNotification" => {
                        Trigger::Notification("FirmwareStatusNotification", "Idle")
                    }
                    _ => return Ok(Answer::ok(json!({ "status": "NotImplemented" }))),
                };
                Answer::then(
                    json!({ "status": "Accepted" }),
                    vec![Followup::Trigger(trigger)],
                )
            }
            "UnlockConnector" => {
                let req: m::unlock_connector::UnlockConnectorRequest = decode(payload)?;
                let connector = req.connector_id as usize;
                match state.connector(i64::from(req.connector_id)) {
                    None => Answer::ok(json!({ "status": "NotSupported" })),
                    Some(c) if c.tx.is_some() => Answer::then(
                        json!({ "status": "Unlocked" }),
                        vec![Followup::Stop {
                            connector,
                            reason: StopReason::Unlock,
                        }],
                    ),
                    Some(_) => Answer::ok(json!({ "status": "Unlocked" })),
                }
            }
            "ChangeAvailability" => {
                let req: m::change_availability::ChangeAvailabilityRequest = decode(payload)?;
                let inoperative =
                    serde_json::to_value(&req.kind).unwrap_or_default() == "Inoperative";
                let targets: Vec<usize> = if req.connector_id == 0 {
                    (1..=state.connectors.len()).collect()
                } else if (req.connector_id as usize) <= state.connectors.len() {
                    vec![req.connector_id as usize]
                } else {
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
            "ClearCache" => {
                let _: m::clear_cache::ClearCacheRequest = decode(payload)?;
                Answer::ok(json!({ "status": "Accepted" }))
            }
            "DataTransfer" => {
                let _: m::data_transfer::DataTransferRequest = decode(payload)?;
                Answer::ok(json!({ "status": "UnknownVendorId" }))
            }
            "SetChargingProfile" => {
                let _: m::set_charging_profile::SetChargingProfileRequest =
                    decode(payload.clone())?;
                let profile = &payload["csChargingProfiles"];
                let schedule = &profile["chargingSchedule"];
                let period = &schedule["chargingSchedulePeriod"][0];
                let limit = limit_watts(
                    period["limit"].as_f64().unwrap_or(0.0),
                    schedule["chargingRateUnit"].as_str(),
                    period["numberPhases"].as_f64(),
                );
                let purpose = profile["chargingProfilePurpose"]
                    .as_str()
                    .unwrap_or("TxProfile");
                let connector = payload["connectorId"].as_i64().unwrap_or(-1);
                // a ChargePointMaxProfile is for the whole charge point only
                let fits = purpose != "ChargePointMaxProfile" || connector == 0;
                if !fits || !apply_profile(&mut state.connectors, connector, purpose, limit) {
                    return Ok(Answer::ok(json!({ "status": "Rejected" })));
                }
                Answer::ok(json!({ "status": "Accepted" }))
            }
            "ClearChargingProfile" => {
                let _: m::clear_charging_profile::ClearChargingProfileRequest = decode(payload)?;
                let mut had = false;
                for c in &mut state.connectors {
                    had |= c.clear_profiles();
                }
                Answer::ok(json!({ "status": if had { "Accepted" } else { "Unknown" } }))
            }
            "GetCompositeSchedule" => {
                let req: m::get_composite_schedule::GetCompositeScheduleRequest =
                    decode(payload.clone())?;
                let nominal = state.nominal_w;
                let Some(c) = state.connector(i64::from(req.connector_id)) else {
                    return Ok(Answer::ok(json!({ "status": "Rejected" })));
                };
                let watts = c.cap_w(nominal);
                let amps = payload["chargingRateUnit"] == "A";
                let limit = if amps { watts / (230.0 * 3.0) } else { watts };
                Answer::ok(json!({
                    "status": "Accepted",
                    "connectorId": req.connector_id,
                    "scheduleStart": Utc::now(),
                    "chargingSchedule": {
                        "duration": req.duration,
                        "chargingRateUnit": if amps { "A" } else { "W" },
                        "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": (limit * 10.0).round() / 10.0 }]
                    }
                }))
            }
            "GetLocalListVersion" => Answer::ok(json!({ "listVersion": 0 })),
            "SendLocalList" => {
                let _: m::send_local_list::SendLocalListRequest = decode(payload)?;
                Answer::ok(json!({ "status": "Accepted" }))
            }
            "ReserveNow" => {
                let _: m::reserve_now::ReserveNowRequest = decode(payload)?;
                Answer::ok(json!({ "status": "Rejected" }))
            }
            "CancelReservation" => {
                let _: m::cancel_reservation::CancelReservationRequest = decode(payload)?;
                Answer::ok(json!({ "status": "Rejected" }))
            }
            "GetDiagnostics" | "UpdateFirmware" => Answer::ok(json!({})),
            other => Answer::error(
                "NotImplemented",
                format!("{other} is not supported by this simulator"),
            ),
        })
    }
}

/// A charging-profile limit in W: amperes are turned into watts on three 230 V phases.
fn watts(limit: f64, unit: &Option<Value>) -> f64 {
    if unit.as_ref().and_then(Value::as_str) == Some("A") {
        limit * 230.0 * 3.0
    } else {
        limit
    }
}

impl Protocol for V16 {
    fn boot(&self, plan: &Plan) -> Value {
        json!({
            "chargePointVendor": "ChargegridSim",
            "chargePointModel": "SIM-16",
            "chargePointSerialNumber": plan.id,
            "firmwareVersion": env!("CARGO_PKG_VERSION"),
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
            json!({ "connectorId": connector, "errorCode": "NoError", "status": status_name(status), "timestamp": Utc::now() }),
        )
    }

    fn start(&self, state: &mut ChargerState, connector: usize) -> (&'static str, Value) {
        let c = &state.connectors[connector - 1];
        let id_tag = c.tx.as_ref().map(|t| t.id_tag.clone()).unwrap_or_default();
        (
            "StartTransaction",
            json!({ "connectorId": connector, "idTag": id_tag, "meterStart": c.energy_wh.round() as i64, "timestamp": Utc::now() }),
        )
    }

    fn start_result(&self, payload: &Value) -> Result<Option<String>, String> {
        let status = payload["idTagInfo"]["status"].as_str().unwrap_or("missing");
        match (status, payload["transactionId"].as_i64()) {
            ("Accepted", Some(id)) => Ok(Some(id.to_string())),
            ("Accepted", None) => Err("no transactionId".into()),
            (other, _) => Err(other.to_string()),
        }
    }

    fn meter(&self, state: &mut ChargerState, connector: usize) -> (&'static str, Value) {
        let nominal = state.nominal_w;
        let c = &state.connectors[connector - 1];
        let mut payload = json!({ "connectorId": connector, "meterValue": reading(c.energy_wh, c.power_w(nominal)) });
        if let Some(id) =
            c.tx.as_ref()
                .and_then(|t| t.id.as_ref())
                .and_then(|id| id.parse::<i64>().ok())
        {
            payload["transactionId"] = json!(id);
        }
        ("MeterValues", payload)
    }

    fn stop(
        &self,
        state: &mut ChargerState,
        connector: usize,
        reason: StopReason,
    ) -> (&'static str, Value) {
        let c = &state.connectors[connector - 1];
        let tx = c.tx.as_ref();
        let reason = match reason {
            StopReason::Local => "Local",
            StopReason::Remote => "Remote",
            StopReason::DeAuthorized => "DeAuthorized",
            StopReason::Reset => "SoftReset",
            StopReason::Unlock => "UnlockCommand",
        };
        (
            "StopTransaction",
            json!({
                "transactionId": tx.and_then(|t| t.id.as_ref()).and_then(|id| id.parse::<i64>().ok()).unwrap_or_default(),
                "idTag": tx.map(|t| t.id_tag.clone()).unwrap_or_default(),
                "meterStop": c.energy_wh.round() as i64,
                "timestamp": Utc::now(),
                "reason": reason,
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
    use crate::charger::Plan;
    use crate::scenario::Scenario;

    /// (action, request, does the answer parse as the action's response type)
    type Case = (&'static str, Value, fn(&Value) -> bool);

    fn parses<T: DeserializeOwned>(value: &Value) -> bool {
        serde_json::from_value::<T>(value.clone()).is_ok()
    }

    fn state() -> ChargerState {
        ChargerState::new(2, 11_000.0, 10.0, 0.0)
    }

    #[test]
    fn outgoing_payloads_are_valid_1_6_requests() {
        let plan = Plan::for_charger(&Scenario::default(), 0);
        assert!(parses::<m::boot_notification::BootNotificationRequest>(
            &V16.boot(&plan)
        ));
        assert!(parses::<m::status_notification::StatusNotificationRequest>(
            &V16.status(1, Status::Charging).1
        ));
        let mut s = state();
        s.connectors[0].tx = Some(crate::charger::state::Transaction {
            id: Some("42".into()),
            id_tag: "TAG".into(),
            remote: false,
            remote_start_id: None,
            meter_start_wh: 0.0,
            started: tokio::time::Instant::now(),
            stop_at: None,
            meter_due: tokio::time::Instant::now(),
            stopping: false,
            seq_no: 0,
            refused: false,
        });
        assert!(parses::<m::start_transaction::StartTransactionRequest>(
            &V16.start(&mut s, 1).1
        ));
        let (_, meter) = V16.meter(&mut s, 1);
        assert!(parses::<m::meter_values::MeterValuesRequest>(&meter));
        assert_eq!(meter["transactionId"], 42);
        let (_, stop) = V16.stop(&mut s, 1, StopReason::Remote);
        assert!(parses::<m::stop_transaction::StopTransactionRequest>(&stop));
        assert_eq!(stop["reason"], "Remote");
    }

    #[test]
    fn remote_start_is_accepted_on_a_free_connector_and_rejected_when_busy() {
        let mut s = state();
        let answer = V16.handle_call(
            &mut s,
            "RemoteStartTransaction",
            json!({ "connectorId": 2, "idTag": "ABC" }),
        );
        assert!(parses::<
            m::remote_start_transaction::RemoteStartTransactionResponse,
        >(answer.reply.as_ref().unwrap_or(&Value::Null)));
        assert_eq!(answer.reply, Ok(json!({ "status": "Accepted" })));
        assert_eq!(
            answer.then,
            vec![Followup::Start {
                connector: 2,
                id_tag: "ABC".into(),
                remote_start_id: None
            }]
        );
        let answer = V16.handle_call(
            &mut s,
            "RemoteStopTransaction",
            json!({ "transactionId": 99 }),
        );
        assert_eq!(answer.reply, Ok(json!({ "status": "Rejected" })));
        let answer = V16.handle_call(
            &mut s,
            "RemoteStartTransaction",
            json!({ "connectorId": 7, "idTag": "ABC" }),
        );
        assert_eq!(answer.reply, Ok(json!({ "status": "Rejected" })));
    }

    #[test]
    fn every_answer_is_a_valid_1_6_response() {
        let mut s = state();
        let cases: Vec<Case> = vec![
            ("Reset", json!({ "type": "Soft" }), |v| {
                parses::<m::reset::ResetResponse>(v)
            }),
            (
                "ChangeConfiguration",
                json!({ "key": "HeartbeatInterval", "value": "30" }),
                |v| parses::<m::change_configuration::ChangeConfigurationResponse>(v),
            ),
            (
                "GetConfiguration",
                json!({ "key": ["HeartbeatInterval", "Nope"] }),
                |v| parses::<m::get_configuration::GetConfigurationResponse>(v),
            ),
            (
                "TriggerMessage",
                json!({ "requestedMessage": "StatusNotification", "connectorId": 1 }),
                |v| parses::<m::trigger_message::TriggerMessageResponse>(v),
            ),
            ("UnlockConnector", json!({ "connectorId": 1 }), |v| {
                parses::<m::unlock_connector::UnlockConnectorResponse>(v)
            }),
            (
                "ChangeAvailability",
                json!({ "connectorId": 0, "type": "Inoperative" }),
                |v| parses::<m::change_availability::ChangeAvailabilityResponse>(v),
            ),
            ("ClearCache", json!({}), |v| {
                parses::<m::clear_cache::ClearCacheResponse>(v)
            }),
            ("DataTransfer", json!({ "vendorId": "x" }), |v| {
                parses::<m::data_transfer::DataTransferResponse>(v)
            }),
            (
                "SetChargingProfile",
                json!({ "connectorId": 1, "csChargingProfiles": { "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute", "chargingSchedule": { "chargingRateUnit": "W", "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 7000.0 }] } } }),
                |v| parses::<m::set_charging_profile::SetChargingProfileResponse>(v),
            ),
            (
                "GetCompositeSchedule",
                json!({ "connectorId": 1, "duration": 3600 }),
                |v| parses::<m::get_composite_schedule::GetCompositeScheduleResponse>(v),
            ),
            ("ClearChargingProfile", json!({}), |v| {
                parses::<m::clear_charging_profile::ClearChargingProfileResponse>(v)
            }),
        ];
        for (action, payload, valid) in cases {
            let answer = V16.handle_call(&mut s, action, payload);
            match &answer.reply {
                Ok(reply) => assert!(valid(reply), "{action}: {reply}"),
                Err(e) => panic!("{action} refused: {e:?}"),
            }
        }
        assert_eq!(s.config.heartbeat_secs, Some(30.0));
        assert!(s.connectors.iter().all(|c| c.inoperative));
    }

    #[test]
    fn malformed_and_unknown_commands_get_call_errors() {
        let mut s = state();
        let answer = V16.handle_call(
            &mut s,
            "RemoteStartTransaction",
            json!({ "connectorId": "x", "idTag": "A" }),
        );
        assert!(matches!(answer.reply, Err(("TypeConstraintViolation", _))));
        let answer = V16.handle_call(&mut s, "Reset", json!({}));
        assert!(matches!(answer.reply, Err(("ProtocolError", _))));
        let answer = V16.handle_call(&mut s, "Teleport", json!({}));
        assert!(matches!(answer.reply, Err(("NotImplemented", _))));
    }
}
