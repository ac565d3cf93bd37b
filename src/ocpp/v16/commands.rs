//! CSMS-initiated calls to 1.6 chargers: turning commands into actions and payloads, and
//! checking both our payloads and the chargers' answers against the `rust-ocpp` types.

use rust_ocpp::v1_6::messages as m;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::security as sec;
use crate::ocpp::command::{
    current_period, profile_ids, ChargerCommand, CommandError, LimitScope, StartLimit,
};

/// The id of the TxProfile this server installs to cap a session's power; re-sending replaces it.
const TX_PROFILE_ID: i32 = profile_ids::TX;

/// The TxProfile a remotely started transaction begins under (RemoteStartTransaction's
/// chargingProfile, without a transactionId), with the id of the session's TxProfile so that
/// the site's first allocation replaces it.
fn start_profile(limit: &StartLimit) -> Value {
    let period = current_period(limit.amps, limit.phases);
    json!({
        "chargingProfileId": TX_PROFILE_ID,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": { "chargingRateUnit": "A", "chargingSchedulePeriod": [period] },
    })
}

/// SetChargingProfile for a load-management current limit.
fn current_limit(
    scope: LimitScope,
    connector_id: i32,
    transaction_id: Option<i32>,
    amps: f64,
    phases: u8,
) -> Result<Value, CommandError> {
    let period = current_period(amps, phases);
    let (id, purpose, stack_level, connector) = match scope {
        LimitScope::Transaction => (TX_PROFILE_ID, "TxProfile", 1, connector_id),
        LimitScope::NewTransactions => (profile_ids::TX_DEFAULT, "TxDefaultProfile", 0, 0),
        LimitScope::Charger => (profile_ids::CHARGER_MAX, "ChargePointMaxProfile", 0, 0),
    };
    let mut profile = json!({
        "chargingProfileId": id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
        "chargingSchedule": { "chargingRateUnit": "A", "chargingSchedulePeriod": [period] }
    });
    if scope != LimitScope::Transaction {
        // the charger's maximum and the default are not relative to a transaction: they hold
        // from now on (OCTT TC_K_70 asks for Absolute with a startSchedule)
        profile["chargingProfileKind"] = json!("Absolute");
        profile["chargingSchedule"]["startSchedule"] = json!(chrono::Utc::now());
    }
    if scope == LimitScope::Transaction {
        let Some(transaction_id) = transaction_id else {
            return Err(CommandError::Invalid(
                "a 1.6 transaction limit needs the transactionId".into(),
            ));
        };
        profile["transactionId"] = json!(transaction_id);
    }
    Ok(json!({ "connectorId": connector, "csChargingProfiles": profile }))
}

fn check<T: DeserializeOwned>(what: &str, payload: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(payload.clone())
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

/// Checks `payload` as the request (`reply == false`) or answer (`reply == true`) of `action`.
fn check_action(action: &str, payload: &Value, reply: bool) -> Result<(), String> {
    macro_rules! by_action {
        ($($name:literal => $req:ty, $resp:ty;)*) => {
            match action {
                $($name => if reply { check::<$resp>($name, payload) } else { check::<$req>($name, payload) },)*
                other => Err(format!("{other:?} is not a CSMS-initiated OCPP 1.6 action")),
            }
        };
    }
    by_action! {
        "CancelReservation" => m::cancel_reservation::CancelReservationRequest, m::cancel_reservation::CancelReservationResponse;
        "ChangeAvailability" => m::change_availability::ChangeAvailabilityRequest, m::change_availability::ChangeAvailabilityResponse;
        "ChangeConfiguration" => m::change_configuration::ChangeConfigurationRequest, m::change_configuration::ChangeConfigurationResponse;
        "ClearCache" => m::clear_cache::ClearCacheRequest, m::clear_cache::ClearCacheResponse;
        "ClearChargingProfile" => m::clear_charging_profile::ClearChargingProfileRequest, m::clear_charging_profile::ClearChargingProfileResponse;
        "DataTransfer" => m::data_transfer::DataTransferRequest, m::data_transfer::DataTransferResponse;
        "GetCompositeSchedule" => m::get_composite_schedule::GetCompositeScheduleRequest, m::get_composite_schedule::GetCompositeScheduleResponse;
        "GetConfiguration" => m::get_configuration::GetConfigurationRequest, m::get_configuration::GetConfigurationResponse;
        "GetDiagnostics" => m::get_diagnostics::GetDiagnosticsRequest, m::get_diagnostics::GetDiagnosticsResponse;
        "GetLocalListVersion" => m::get_local_list_version::GetLocalListVersionRequest, m::get_local_list_version::GetLocalListVersionResponse;
        "RemoteStartTransaction" => m::remote_start_transaction::RemoteStartTransactionRequest, m::remote_start_transaction::RemoteStartTransactionResponse;
        "RemoteStopTransaction" => m::remote_stop_transaction::RemoteStopTransactionRequest, m::remote_stop_transaction::RemoteStopTransactionResponse;
        "ReserveNow" => m::reserve_now::ReserveNowRequest, m::reserve_now::ReserveNowResponse;
        "Reset" => m::reset::ResetRequest, m::reset::ResetResponse;
        "SendLocalList" => m::send_local_list::SendLocalListRequest, m::send_local_list::SendLocalListResponse;
        "SetChargingProfile" => m::set_charging_profile::SetChargingProfileRequest, m::set_charging_profile::SetChargingProfileResponse;
        "TriggerMessage" => m::trigger_message::TriggerMessageRequest, m::trigger_message::TriggerMessageResponse;
        "UnlockConnector" => m::unlock_connector::UnlockConnectorRequest, m::unlock_connector::UnlockConnectorResponse;
        "UpdateFirmware" => m::update_firmware::UpdateFirmwareRequest, m::update_firmware::UpdateFirmwareResponse;
        // the security extension
        "CertificateSigned" => sec::CertificateSignedRequest, sec::CertificateSignedResponse;
        "DeleteCertificate" => sec::DeleteCertificateRequest, sec::DeleteCertificateResponse;
        "ExtendedTriggerMessage" => sec::ExtendedTriggerMessageRequest, sec::ExtendedTriggerMessageResponse;
        "GetInstalledCertificateIds" => sec::GetInstalledCertificateIdsRequest, sec::GetInstalledCertificateIdsResponse;
        "GetLog" => sec::GetLogRequest, sec::GetLogResponse;
        "InstallCertificate" => sec::InstallCertificateRequest, sec::InstallCertificateResponse;
        "SignedUpdateFirmware" => sec::SignedUpdateFirmwareRequest, sec::SignedUpdateFirmwareResponse;
    }
}

/// The action and payload of `command` for a 1.6 charger.
pub fn to_call(command: &ChargerCommand) -> Result<(String, Value), CommandError> {
    let (action, payload) = match command {
        ChargerCommand::Reset { hard } => (
            "Reset".to_string(),
            json!({ "type": if *hard { "Hard" } else { "Soft" } }),
        ),
        ChargerCommand::RemoteStart {
            connector_id,
            id_tag,
            start_limit,
            ..
        } => {
            let mut payload = json!({ "idTag": id_tag });
            if let Some(connector_id) = connector_id {
                payload["connectorId"] = json!(connector_id);
            }
            if let Some(limit) = start_limit {
                payload["chargingProfile"] = start_profile(limit);
            }
            ("RemoteStartTransaction".to_string(), payload)
        }
        ChargerCommand::RemoteStop { transaction_id, .. } => {
            let Some(transaction_id) = transaction_id else {
                return Err(CommandError::Invalid(
                    "a 1.6 remote stop needs the transactionId".into(),
                ));
            };
            (
                "RemoteStopTransaction".to_string(),
                json!({ "transactionId": transaction_id }),
            )
        }
        ChargerCommand::LimitPower {
            connector_id,
            transaction_id,
            max_power_w,
            ..
        } => {
            let mut profile = json!({
                "chargingProfileId": TX_PROFILE_ID,
                "stackLevel": 1,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": (max_power_w * 10.0).round() / 10.0 }]
                }
            });
            if let Some(transaction_id) = transaction_id {
                profile["transactionId"] = json!(transaction_id);
            }
            (
                "SetChargingProfile".to_string(),
                json!({ "connectorId": connector_id, "csChargingProfiles": profile }),
            )
        }
        ChargerCommand::LimitCurrent {
            scope,
            connector_id,
            transaction_id,
            amps,
            phases,
            ..
        } => (
            "SetChargingProfile".to_string(),
            current_limit(*scope, *connector_id, *transaction_id, *amps, *phases)?,
        ),
        ChargerCommand::Reserve {
            reservation_id,
            connector_id,
            connector_type,
            id_tag,
            group_id_tag,
            expires_at,
        } => {
            if connector_type.is_some() {
                return Err(CommandError::Invalid(
                    "a 1.6 charger cannot reserve by connector type; give a connectorId".into(),
                ));
            }
            let mut payload = json!({
                // connector 0: any connector of the charger
                "connectorId": connector_id.unwrap_or(0),
                "expiryDate": crate::ocpp::command::timestamp(expires_at),
                "idTag": id_tag,
                "reservationId": reservation_id,
            });
            // a 1.6 idTag has at most 20 characters: a longer group cannot be named
            if let Some(group) = group_id_tag.as_ref().filter(|g| g.len() <= 20) {
                payload["parentIdTag"] = json!(group);
            }
            ("ReserveNow".to_string(), payload)
        }
        ChargerCommand::SendLocalList {
            version,
            full,
            entries,
        } => {
            // a 1.6 idTag has at most 20 characters: longer tokens cannot be on a 1.6 list
            let list: Vec<Value> = entries
                .iter()
                .filter(|change| change.id_tag.len() <= 20)
                .map(|change| (&change.id_tag, &change.entry))
                .map(|(tag, entry)| match entry {
                    None => json!({ "idTag": tag }),
                    Some(entry) => {
                        let mut info = json!({ "status": entry.status });
                        if let Some(at) = entry.expires_at {
                            info["expiryDate"] = json!(crate::ocpp::command::timestamp(&at));
                        }
                        if let Some(group) = entry.group.as_ref().filter(|g| g.len() <= 20) {
                            info["parentIdTag"] = json!(group);
                        }
                        json!({ "idTag": tag, "idTagInfo": info })
                    }
                })
                .collect();
            (
                "SendLocalList".to_string(),
                json!({
                    "listVersion": version,
                    "updateType": if *full { "Full" } else { "Differential" },
                    "localAuthorizationList": list,
                }),
            )
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
            if *security {
                // the security extension's GetLog
                (
                    "GetLog".to_string(),
                    json!({ "logType": "SecurityLog", "requestId": request_id, "log": log }),
                )
            } else {
                let mut payload = json!({ "location": location });
                if let Some(from) = from {
                    payload["startTime"] = json!(crate::ocpp::command::timestamp(from));
                }
                if let Some(to) = to {
                    payload["stopTime"] = json!(crate::ocpp::command::timestamp(to));
                }
                ("GetDiagnostics".to_string(), payload)
            }
        }
        ChargerCommand::UpdateFirmware {
            request_id,
            location,
            retrieve_at,
            signature,
            signing_certificate,
        } => {
            let at = crate::ocpp::command::timestamp(retrieve_at);
            match (signature, signing_certificate) {
                // signed firmware: the security whitepaper's SignedUpdateFirmware
                (Some(signature), Some(certificate)) => (
                    "SignedUpdateFirmware".to_string(),
                    json!({ "requestId": request_id, "firmware": {
                        "location": location, "retrieveDateTime": at,
                        "signingCertificate": certificate, "signature": signature } }),
                ),
                _ => (
                    "UpdateFirmware".to_string(),
                    json!({ "location": location, "retrieveDate": at }),
                ),
            }
        }
        ChargerCommand::CancelReservation { reservation_id } => (
            "CancelReservation".to_string(),
            json!({ "reservationId": reservation_id }),
        ),
        ChargerCommand::Raw { action, payload } => (action.clone(), payload.clone()),
        ChargerCommand::SetBasicPassword { password } => (
            "ChangeConfiguration".to_string(),
            json!({ "key": "AuthorizationKey", "value": hex::encode(password) }),
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

/// Checks the charger's CALLRESULT payload for `action`.
pub fn check_reply(action: &str, payload: &Value) -> Result<(), CommandError> {
    check_action(action, payload, true).map_err(CommandError::BadReply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_maps_to_the_1_6_payload() {
        let (action, payload) = to_call(&ChargerCommand::Reset { hard: true }).unwrap_or_default();
        assert_eq!(action, "Reset");
        assert_eq!(payload, json!({ "type": "Hard" }));
    }

    #[test]
    fn a_load_managed_remote_start_carries_a_tx_profile_without_a_transaction() {
        let (action, payload) = to_call(&ChargerCommand::RemoteStart {
            connector_id: Some(2),
            id_tag: "TAG-1".into(),
            remote_start_id: 0,
            start_limit: Some(StartLimit {
                amps: 10.05,
                phases: 1,
            }),
        })
        .unwrap_or_default();
        assert_eq!(action, "RemoteStartTransaction");
        let profile = &payload["chargingProfile"];
        assert_eq!(profile["chargingProfilePurpose"], "TxProfile");
        assert_eq!(profile["chargingProfileId"], profile_ids::TX);
        assert!(profile.get("transactionId").is_none());
        assert_eq!(
            profile["chargingSchedule"]["chargingSchedulePeriod"],
            json!([{ "startPeriod": 0, "limit": 10.0, "numberPhases": 1 }])
        );
    }

    #[test]
    fn raw_commands_are_validated() {
        let bad = to_call(&ChargerCommand::Raw {
            action: "UnlockConnector".into(),
            payload: json!({ "connectorId": "one" }),
        });
        assert!(matches!(bad, Err(CommandError::Invalid(_))));
        let unknown = to_call(&ChargerCommand::Raw {
            action: "Heartbeat".into(),
            payload: json!({}),
        });
        assert!(matches!(unknown, Err(CommandError::Invalid(_))));
        assert!(check_reply("ClearCache", &json!({ "status": "Accepted" })).is_ok());
        assert!(check_reply("ClearCache", &json!({ "status": "Maybe" })).is_err());
    }
}
