//! CSMS-initiated calls to 2.0.1 stations: turning commands into actions and payloads, and
//! checking both our payloads and the stations' answers against the `rust-ocpp` types.

use rust_ocpp::v2_0_1::messages as m;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::ocpp::command::{
    current_period, profile_ids, ChargerCommand, CommandError, LimitScope, StartLimit,
};

/// The id of the TxProfile this server installs to cap a session's power; re-sending replaces it.
const TX_PROFILE_ID: i32 = profile_ids::TX;

/// The TxProfile a remotely started transaction begins under (RequestStartTransaction's
/// chargingProfile: no transactionId yet, K05.FR.03), with the id of the session's TxProfile so
/// that the site's first allocation replaces it.
fn start_profile(limit: &StartLimit) -> Value {
    let period = current_period(limit.amps, limit.phases);
    json!({
        "id": TX_PROFILE_ID,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [
            { "id": TX_PROFILE_ID, "chargingRateUnit": "A", "chargingSchedulePeriod": [period] }
        ],
    })
}

/// SetChargingProfile for a load-management current limit.
fn current_limit(
    scope: LimitScope,
    evse_id: i32,
    transaction_ref: Option<&str>,
    amps: f64,
    phases: u8,
) -> Result<Value, CommandError> {
    let period = current_period(amps, phases);
    let (id, purpose, stack_level, evse) = match scope {
        LimitScope::Transaction => (TX_PROFILE_ID, "TxProfile", 1, evse_id),
        LimitScope::NewTransactions => (profile_ids::TX_DEFAULT, "TxDefaultProfile", 0, 0),
        LimitScope::Charger => (profile_ids::CHARGER_MAX, "ChargingStationMaxProfile", 0, 0),
    };
    let mut profile = json!({
        "id": id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
    });
    let mut schedule =
        json!({ "id": id, "chargingRateUnit": "A", "chargingSchedulePeriod": [period] });
    if scope != LimitScope::Transaction {
        // not relative to a transaction (K01.FR.38; OCTT TC_K_70 asks the same of the
        // default): they hold from now on
        profile["chargingProfileKind"] = json!("Absolute");
        schedule["startSchedule"] = json!(chrono::Utc::now());
    }
    if scope == LimitScope::Transaction {
        // 2.0.1 only accepts a TxProfile for a named, running transaction (K01.FR.03)
        let Some(transaction_ref) = transaction_ref else {
            return Err(CommandError::Invalid(
                "a 2.0.1 transaction limit needs the station's transactionId".into(),
            ));
        };
        profile["transactionId"] = json!(transaction_ref);
    }
    profile["chargingSchedule"] = json!([schedule]);
    Ok(json!({ "evseId": evse, "chargingProfile": profile }))
}

fn check<T: DeserializeOwned>(what: &str, payload: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(payload.clone())
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

/// Checks `payload` as the request (`reply == false`) or answer (`reply == true`) of `action`.
fn check_action(action: &str, payload: &Value, reply: bool) -> Result<(), String> {
    macro_rules! by_action {
        ($($name:literal => $module:ident :: $req:ident, $resp:ident;)*) => {
            match action {
                $($name => if reply {
                    check::<m::$module::$resp>($name, payload)
                } else {
                    check::<m::$module::$req>($name, payload)
                },)*
                other => Err(format!("{other:?} is not a CSMS-initiated OCPP 2.0.1 action")),
            }
        };
    }
    by_action! {
        "CancelReservation" => cancel_reservation::CancelReservationRequest, CancelReservationResponse;
        "CertificateSigned" => certificate_signed::CertificateSignedRequest, CertificateSignedResponse;
        "ChangeAvailability" => change_availability::ChangeAvailabilityRequest, ChangeAvailabilityResponse;
        "ClearCache" => clear_cache::ClearCacheRequest, ClearCacheResponse;
        "ClearChargingProfile" => clear_charging_profile::ClearChargingProfileRequest, ClearChargingProfileResponse;
        "ClearDisplayMessage" => clear_display_message::ClearDisplayMessageRequest, ClearDisplayMessageResponse;
        "ClearVariableMonitoring" => clear_variable_monitoring::ClearVariableMonitoringRequest, ClearVariableMonitoringResponse;
        "CostUpdated" => cost_updated::CostUpdatedRequest, CostUpdatedResponse;
        "CustomerInformation" => customer_information::CustomerInformationRequest, CustomerInformationResponse;
        "DataTransfer" => datatransfer::DataTransferRequest, DataTransferResponse;
        "DeleteCertificate" => delete_certificate::DeleteCertificateRequest, DeleteCertificateResponse;
        "GetBaseReport" => get_base_report::GetBaseReportRequest, GetBaseReportResponse;
        "GetChargingProfiles" => get_charging_profiles::GetChargingProfilesRequest, GetChargingProfilesResponse;
        "GetCompositeSchedule" => get_composite_schedule::GetCompositeScheduleRequest, GetCompositeScheduleResponse;
        "GetDisplayMessages" => get_display_message::GetDisplayMessagesRequest, GetDisplayMessagesResponse;
        "GetInstalledCertificateIds" => get_installed_certificate_ids::GetInstalledCertificateIdsRequest, GetInstalledCertificateIdsResponse;
        "GetLocalListVersion" => get_local_list_version::GetLocalListVersionRequest, GetLocalListVersionResponse;
        "GetLog" => get_log::GetLogRequest, GetLogResponse;
        "GetMonitoringReport" => get_monitoring_report::GetMonitoringReportRequest, GetMonitoringReportResponse;
        "GetReport" => get_report::GetReportRequest, GetReportResponse;
        "GetTransactionStatus" => get_transaction_status::GetTransactionStatusRequest, GetTransactionStatusResponse;
        "GetVariables" => get_variables::GetVariablesRequest, GetVariablesResponse;
        "InstallCertificate" => install_certificate::InstallCertificateRequest, InstallCertificateResponse;
        "PublishFirmware" => publish_firmware::PublishFirmwareRequest, PublishFirmwareResponse;
        "RequestStartTransaction" => request_start_transaction::RequestStartTransactionRequest, RequestStartTransactionResponse;
        "RequestStopTransaction" => request_stop_transaction::RequestStopTransactionRequest, RequestStopTransactionResponse;
        "ReserveNow" => reserve_now::ReserveNowRequest, ReserveNowResponse;
        "Reset" => reset::ResetRequest, ResetResponse;
        "SendLocalList" => send_local_list::SendLocalListRequest, SendLocalListResponse;
        "SetChargingProfile" => set_charging_profile::SetChargingProfileRequest, SetChargingProfileResponse;
        "SetDisplayMessage" => set_display_message::SetDisplayMessageRequest, SetDisplayMessageResponse;
        "SetMonitoringBase" => set_monitoring_base::SetMonitoringBaseRequest, SetMonitoringBaseResponse;
        "SetMonitoringLevel" => set_monitoring_level::SetMonitoringLevelRequest, SetMonitoringLevelResponse;
        "SetNetworkProfile" => set_network_profile::SetNetworkProfileRequest, SetNetworkProfileResponse;
        "SetVariableMonitoring" => set_variable_monitoring::SetVariableMonitoringRequest, SetVariableMonitoringResponse;
        "SetVariables" => set_variables::SetVariablesRequest, SetVariablesResponse;
        "TriggerMessage" => trigger_message::TriggerMessageRequest, TriggerMessageResponse;
        "UnlockConnector" => unlock_connector::UnlockConnectorRequest, UnlockConnectorResponse;
        "UnpublishFirmware" => unpublish_firmware::UnpublishFirmwareRequest, UnpublishFirmwareResponse;
        "UpdateFirmware" => update_firmware::UpdateFirmwareRequest, UpdateFirmwareResponse;
    }
}

/// A TxProfile capping the transaction `transaction_ref` at `max_power_w` from now on.
fn tx_profile(evse_id: i32, transaction_ref: &str, max_power_w: f64) -> Value {
    json!({
        "evseId": evse_id,
        "chargingProfile": {
            "id": TX_PROFILE_ID,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "transactionId": transaction_ref,
            "chargingSchedule": [{
                "id": 1,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": (max_power_w * 10.0).round() / 10.0 }]
            }]
        }
    })
}

/// A token type as 2.0.1 names it.
fn token_type(ours: &str) -> &'static str {
    match ours {
        "ISO14443" => "ISO14443",
        "ISO15693" => "ISO15693",
        "EMAID" => "eMAID",
        "KEY_CODE" => "KeyCode",
        "LOCAL" => "Local",
        "MAC_ADDRESS" => "MacAddress",
        _ => "Central",
    }
}

/// The action and payload of `command` for a 2.0.1 station.
pub fn to_call(command: &ChargerCommand) -> Result<(String, Value), CommandError> {
    let (action, payload) = match command {
        // a hard reset reboots now; a soft one waits until no transaction is running
        ChargerCommand::Reset { hard } => (
            "Reset".to_string(),
            json!({ "type": if *hard { "Immediate" } else { "OnIdle" } }),
        ),
        ChargerCommand::RemoteStart {
            connector_id,
            id_tag,
            remote_start_id,
            start_limit,
        } => {
            let mut payload = json!({
                "idToken": { "idToken": id_tag, "type": "Central" },
                "remoteStartId": remote_start_id,
            });
            if let Some(evse_id) = connector_id {
                payload["evseId"] = json!(evse_id);
            }
            if let Some(limit) = start_limit {
                payload["chargingProfile"] = start_profile(limit);
            }
            ("RequestStartTransaction".to_string(), payload)
        }
        ChargerCommand::RemoteStop {
            transaction_ref, ..
        } => {
            let Some(transaction_ref) = transaction_ref else {
                return Err(CommandError::Invalid(
                    "a 2.0.1 stop needs the station's transactionId".into(),
                ));
            };
            (
                "RequestStopTransaction".to_string(),
                json!({ "transactionId": transaction_ref }),
            )
        }
        ChargerCommand::LimitPower {
            connector_id,
            transaction_ref,
            max_power_w,
            ..
        } => {
            // 2.0.1 only accepts a TxProfile for a named, running transaction (K01.FR.03)
            let Some(transaction_ref) = transaction_ref else {
                return Err(CommandError::Invalid(
                    "a 2.0.1 power limit needs the station's transactionId".into(),
                ));
            };
            (
                "SetChargingProfile".to_string(),
                tx_profile(*connector_id, transaction_ref, *max_power_w),
            )
        }
        ChargerCommand::LimitCurrent {
            scope,
            connector_id,
            transaction_ref,
            amps,
            phases,
            ..
        } => (
            "SetChargingProfile".to_string(),
            current_limit(
                *scope,
                *connector_id,
                transaction_ref.as_deref(),
                *amps,
                *phases,
            )?,
        ),
        ChargerCommand::Reserve {
            reservation_id,
            connector_id,
            connector_type,
            id_tag,
            group_id_tag,
            expires_at,
        } => {
            let mut payload = json!({
                "id": reservation_id,
                "expiryDateTime": crate::ocpp::command::timestamp(expires_at),
                "idToken": { "idToken": id_tag, "type": "Central" },
            });
            // without an EVSE the station holds any of its EVSEs
            if let Some(evse_id) = connector_id {
                payload["evseId"] = json!(evse_id);
            }
            if let Some(group) = group_id_tag {
                payload["groupIdToken"] = json!({ "idToken": group, "type": "Central" });
            }
            if let Some(kind) = connector_type {
                payload["connectorType"] = json!(kind);
            }
            ("ReserveNow".to_string(), payload)
        }
        ChargerCommand::SendLocalList {
            version,
            full,
            entries,
        } => {
            let list: Vec<Value> = entries
                .iter()
                .map(|change| {
                    let kind = token_type(&change.token_type);
                    let mut item = json!({ "idToken": { "idToken": change.id_tag, "type": kind } });
                    if let Some(entry) = &change.entry {
                        let mut info = json!({ "status": entry.status });
                        if let Some(at) = entry.expires_at {
                            info["cacheExpiryDateTime"] =
                                json!(crate::ocpp::command::timestamp(&at));
                        }
                        if let Some(group) = &entry.group {
                            info["groupIdToken"] = json!({ "idToken": group, "type": "Central" });
                        }
                        item["idTokenInfo"] = info;
                    }
                    item
                })
                .collect();
            let mut payload = json!({
                "versionNumber": version,
                "updateType": if *full { "Full" } else { "Differential" },
            });
            // an empty list is sent without the field (the schema wants at least one item)
            if !list.is_empty() {
                payload["localAuthorizationList"] = json!(list);
            }
            ("SendLocalList".to_string(), payload)
        }
        ChargerCommand::GetLocalListVersion => ("GetLocalListVersion".to_string(), json!({})),
        ChargerCommand::GetLog {
            request_id,
            security,
            location,
            from,
            to,
        } => {
            let log = crate::ocpp::command::log_parameters(location, from.as_ref(), to.as_ref());
            (
                "GetLog".to_string(),
                json!({
                    "logType": if *security { "SecurityLog" } else { "DiagnosticsLog" },
                    "requestId": request_id,
                    "log": log,
                }),
            )
        }
        ChargerCommand::UpdateFirmware {
            request_id,
            location,
            retrieve_at,
            signature,
            signing_certificate,
        } => {
            let mut firmware = json!({
                "location": location,
                "retrieveDateTime": crate::ocpp::command::timestamp(retrieve_at),
            });
            if let Some(signature) = signature {
                firmware["signature"] = json!(signature);
            }
            if let Some(certificate) = signing_certificate {
                firmware["signingCertificate"] = json!(certificate);
            }
            (
                "UpdateFirmware".to_string(),
                json!({ "requestId": request_id, "firmware": firmware }),
            )
        }
        ChargerCommand::CancelReservation { reservation_id } => (
            "CancelReservation".to_string(),
            json!({ "reservationId": reservation_id }),
        ),
        ChargerCommand::Raw { action, payload } => (action.clone(), payload.clone()),
        ChargerCommand::SetBasicPassword { password } => (
            "SetVariables".to_string(),
            json!({ "setVariableData": [{
                "attributeValue": password,
                "component": { "name": "SecurityCtrlr" },
                "variable": { "name": "BasicAuthPassword" }
            }]}),
        ),
        ChargerCommand::Disconnect { .. } => {
            return Err(CommandError::Invalid(
                "closing the connection is not an OCPP call".into(),
            ))
        }
    };
    check_action(&action, &payload, false).map_err(CommandError::Invalid)?;
    Ok((action, payload))
}

/// Checks the station's CALLRESULT payload for `action`.
pub fn check_reply(action: &str, payload: &Value) -> Result<(), CommandError> {
    check_action(action, payload, true).map_err(CommandError::BadReply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_maps_hard_to_immediate_and_soft_to_on_idle() {
        let (action, payload) = to_call(&ChargerCommand::Reset { hard: true }).unwrap_or_default();
        assert_eq!(action, "Reset");
        assert_eq!(payload, json!({ "type": "Immediate" }));
        let (_, payload) = to_call(&ChargerCommand::Reset { hard: false }).unwrap_or_default();
        assert_eq!(payload, json!({ "type": "OnIdle" }));
    }

    #[test]
    fn remote_start_carries_the_remote_start_id_and_a_central_token() {
        let (action, payload) = to_call(&ChargerCommand::RemoteStart {
            connector_id: Some(2),
            id_tag: "CG0011223344556677".into(),
            remote_start_id: 42,
            start_limit: None,
        })
        .unwrap_or_default();
        assert_eq!(action, "RequestStartTransaction");
        assert_eq!(
            payload,
            json!({ "idToken": { "idToken": "CG0011223344556677", "type": "Central" }, "remoteStartId": 42, "evseId": 2 })
        );
    }

    #[test]
    fn a_load_managed_remote_start_carries_a_tx_profile_without_a_transaction() {
        let (_, payload) = to_call(&ChargerCommand::RemoteStart {
            connector_id: Some(1),
            id_tag: "CG0011223344556677".into(),
            remote_start_id: 7,
            start_limit: Some(StartLimit {
                amps: 6.0,
                phases: 3,
            }),
        })
        .unwrap_or_default();
        let profile = &payload["chargingProfile"];
        assert_eq!(profile["chargingProfilePurpose"], "TxProfile");
        assert_eq!(profile["id"], profile_ids::TX);
        assert!(profile.get("transactionId").is_none());
        assert_eq!(
            profile["chargingSchedule"][0]["chargingSchedulePeriod"],
            json!([{ "startPeriod": 0, "limit": 6.0, "numberPhases": 3 }])
        );
    }

    #[test]
    fn stop_and_limit_need_the_stations_transaction_id() {
        let stop = ChargerCommand::RemoteStop {
            transaction_id: Some(7),
            transaction_ref: None,
        };
        assert!(matches!(to_call(&stop), Err(CommandError::Invalid(_))));
        let (_, payload) = to_call(&ChargerCommand::LimitPower {
            connector_id: 1,
            transaction_id: None,
            transaction_ref: Some("tx-1".into()),
            max_power_w: 7400.0,
        })
        .unwrap_or_default();
        assert_eq!(payload["chargingProfile"]["transactionId"], "tx-1");
        assert_eq!(
            payload["chargingProfile"]["chargingProfilePurpose"],
            "TxProfile"
        );
    }

    #[test]
    fn raw_commands_and_answers_are_validated() {
        let bad = to_call(&ChargerCommand::Raw {
            action: "UnlockConnector".into(),
            payload: json!({ "evseId": 1 }),
        });
        assert!(matches!(bad, Err(CommandError::Invalid(_))));
        let one_six = to_call(&ChargerCommand::Raw {
            action: "RemoteStartTransaction".into(),
            payload: json!({ "idTag": "X" }),
        });
        assert!(matches!(one_six, Err(CommandError::Invalid(_))));
        assert!(check_reply("ClearCache", &json!({ "status": "Accepted" })).is_ok());
        assert!(check_reply("Reset", &json!({ "status": "Maybe" })).is_err());
    }
}
