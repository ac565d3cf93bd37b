//! The OCTT core cases (docs/conformance.md) that no other module runs: each test plays the
//! tool's part of one or a few cases against the real server and checks what the tool checks,
//! plus what the server kept of it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::charger_client::{connect, connect16, connect201, handshake_status, TestCharger};
use crate::helpers::{spawn_app_with, TestApp, CHARGER_PASSWORD};
use crate::ocpp201::{app_with_station, booted, driver, event, with_meter, with_token};

const COMMAND: &str = "mutation($c: ID!, $a: String!, $p: JSON!) { sendChargerCommand(chargerId: $c, action: $a, payload: $p) }";
const CONNECTORS: &str =
    "query($id: ID!) { charger(id: $id) { connectors { connectorId status } } }";

/// The operator's manual action: sends `action` to the charger, which must receive exactly
/// `payload` and answers `answer`; returns what the operator is shown.
async fn ask(
    app: &TestApp,
    token: &str,
    cs: &mut TestCharger,
    id: &str,
    (action, payload, answer): (&str, Value, Value),
) -> Value {
    let request = app.graphql(
        COMMAND,
        json!({ "c": id, "a": action, "p": payload }),
        Some(token),
    );
    let station = async {
        let (call_id, got_action, got_payload) = cs.next_server_call().await;
        assert_eq!((got_action.as_str(), &got_payload), (action, &payload));
        cs.reply(&call_id, answer).await;
    };
    let (response, ()) = tokio::join!(request, station);
    response["data"]["sendChargerCommand"].clone()
}

async fn connectors(app: &TestApp, token: &str, id: &str) -> Value {
    app.graphql(CONNECTORS, json!({ "id": id }), Some(token))
        .await["data"]["charger"]["connectors"]
        .clone()
}

/// (stop reason, stopped) of a transaction by the station's id.
async fn stopped(app: &TestApp, transaction_ref: &str) -> (Option<String>, bool) {
    sqlx::query_as(
        "SELECT stop_reason, stopped_at IS NOT NULL FROM charger_transactions WHERE transaction_ref = $1",
    )
    .bind(transaction_ref)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// Two registered 2.0.1 stations boot together under an admission limit of one boot a second:
/// one is Accepted, the other told Pending. Sent side by side, both boots fall in one window
/// however slow the machine is (one after the other, a window could turn over between them).
/// Returns the Pending one's id, socket and answer, and the other's socket (kept open).
async fn one_of_two_told_pending(
    app: &TestApp,
    a: &'static str,
    b: &'static str,
) -> (&'static str, TestCharger, Value, TestCharger) {
    let mut first = connect201(app.port, a, Some((a, crate::ocpp201::PASSWORD))).await;
    let mut second = connect201(app.port, b, Some((b, crate::ocpp201::PASSWORD))).await;
    let (one, two) = tokio::join!(first.boot201(), second.boot201());
    let statuses = (one["status"].as_str(), two["status"].as_str());
    match statuses {
        (Some("Accepted"), Some("Pending")) => (b, second, two, first),
        (Some("Pending"), Some("Accepted")) => (a, first, one, second),
        _ => panic!("one boot accepted and one pending expected: {one} {two}"),
    }
}

// ---- OCPP 2.0.1 block B ----

#[actix_web::test]
async fn a_2_0_1_station_told_pending_is_accepted_when_it_boots_again() {
    // admission control answers Pending beyond one boot a second
    let app = spawn_app_with(|s| s.cluster.max_boots_per_sec = 1).await;
    let token = app.staff_token("ADMIN").await;
    let site = app.create_station("Pending station").await;
    for id in ["CS-FIRST", "CS-PEND"] {
        app.register_charger(&token, id, site, Some(crate::ocpp201::PASSWORD))
            .await;
    }
    let (pending_id, mut cs, pending, _first) =
        one_of_two_told_pending(&app, "CS-FIRST", "CS-PEND").await;
    assert!(pending["interval"].as_u64().unwrap() > 0);
    // it boots again until a later admission window takes it
    let mut again = Value::Null;
    for _ in 0..40 {
        again = cs
            .call(
                "BootNotification",
                json!({ "reason": "PowerUp", "chargingStation": { "vendorName": "TestVendor", "model": "TS-201" } }),
            )
            .await
            .unwrap();
        if again["status"] == "Accepted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(again["status"], "Accepted", "{again}");
    cs.call("StatusNotification", json!({ "timestamp": "2026-11-21T09:59:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1 }))
        .await
        .unwrap();
    assert_eq!(
        connectors(&app, &token, pending_id).await,
        json!([{ "connectorId": 1, "status": "AVAILABLE" }])
    );
}

#[actix_web::test]
async fn a_pending_2_0_1_station_gets_security_error_for_anything_but_boot_and_heartbeat() {
    let app = spawn_app_with(|s| s.ocpp.auto_provision = true).await;
    let mut cs = connect201(app.port, "CS-STRAY", None).await;
    assert_eq!(cs.boot201().await["status"], "Pending");
    cs.call("Heartbeat", json!({})).await.unwrap();
    let refused = cs
        .call("StatusNotification", json!({ "timestamp": "2026-11-21T09:59:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1 }))
        .await
        .unwrap_err();
    assert_eq!(refused.0, "SecurityError");
}

#[actix_web::test]
async fn unsupported_subprotocols_are_refused_and_a_supported_one_is_chosen_from_a_list() {
    let app = spawn_app_with(|_| {}).await;
    let token = app.staff_token("ADMIN").await;
    let site = app.create_station("Subprotocols").await;
    app.register_charger(&token, "CP-PROTO", site, Some(CHARGER_PASSWORD))
        .await;
    let auth = Some(("CP-PROTO", CHARGER_PASSWORD));
    assert_eq!(
        handshake_status(connect(app.port, "CP-PROTO", "ocpp0.1", auth).await),
        400
    );
    for (offered, chosen) in [
        ("ocpp0.1,ocpp2.0.1", "ocpp2.0.1"),
        ("ocpp0.1,ocpp1.6", "ocpp1.6"),
    ] {
        let cs = connect(app.port, "CP-PROTO", offered, auth).await.unwrap();
        assert_eq!(cs.protocol.as_deref(), Some(chosen), "{offered}");
    }
}

#[actix_web::test]
async fn the_2_0_1_provisioning_and_cache_calls_carry_each_cases_request_and_its_answer() {
    let (app, token) = app_with_station("CS-PROV").await;
    let mut cs = booted(&app, "CS-PROV").await;
    let cv = |component: &str, variable: &str| json!({ "component": { "name": component }, "variable": { "name": variable } });
    let two = [
        cv("OCPPCommCtrlr", "OfflineThreshold"),
        cv("AuthCtrlr", "AuthorizeRemoteStart"),
    ];
    let with = |mut v: Value, fields: Value| {
        for (k, x) in fields.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let profile = json!({ "configurationSlot": 1, "connectionData": { "ocppVersion": "OCPP20", "ocppTransport": "JSON",
        "ocppCsmsUrl": "wss://csms.example.com/ocpp", "messageTimeout": 30, "securityProfile": 1, "ocppInterface": "Wired0" } });
    let cases = [
        // TC_B_07: two variables asked, two results
        (
            "GetVariables",
            json!({ "getVariableData": two.clone() }),
            json!({ "getVariableResult": [
                with(two[0].clone(), json!({ "attributeStatus": "Accepted", "attributeValue": "60" })),
                with(two[1].clone(), json!({ "attributeStatus": "Accepted", "attributeValue": "false" })),
            ] }),
        ),
        // TC_B_10
        (
            "SetVariables",
            json!({ "setVariableData": [with(two[0].clone(), json!({ "attributeValue": "120" })), with(two[1].clone(), json!({ "attributeValue": "true" }))] }),
            json!({ "setVariableResult": [
                with(two[0].clone(), json!({ "attributeStatus": "Accepted" })),
                with(two[1].clone(), json!({ "attributeStatus": "Rejected" })),
            ] }),
        ),
        // TC_B_12, TC_B_14
        (
            "GetBaseReport",
            json!({ "requestId": 12, "reportBase": "ConfigurationInventory" }),
            json!({ "status": "Accepted" }),
        ),
        (
            "GetBaseReport",
            json!({ "requestId": 14, "reportBase": "SummaryInventory" }),
            json!({ "status": "NotSupported" }),
        ),
        // TC_B_18: Problem components: none; Available ones: a report follows
        (
            "GetReport",
            json!({ "requestId": 180, "componentCriteria": ["Problem"], "componentVariable": [{ "component": { "name": "EVSE", "evse": { "id": 1 } }, "variable": { "name": "AvailabilityState" } }] }),
            json!({ "status": "EmptyResultSet" }),
        ),
        (
            "GetReport",
            json!({ "requestId": 181, "componentCriteria": ["Available"], "componentVariable": [{ "component": { "name": "EVSE", "evse": { "id": 1 } }, "variable": { "name": "AvailabilityState" } }] }),
            json!({ "status": "Accepted" }),
        ),
        // TC_B_42, TC_B_44
        (
            "SetNetworkProfile",
            profile.clone(),
            json!({ "status": "Accepted" }),
        ),
        ("SetNetworkProfile", profile, json!({ "status": "Failed" })),
        // TC_C_37, TC_C_38
        ("ClearCache", json!({}), json!({ "status": "Accepted" })),
        ("ClearCache", json!({}), json!({ "status": "Rejected" })),
        // TC_F_06
        (
            "UnlockConnector",
            json!({ "evseId": 1, "connectorId": 1 }),
            json!({ "status": "Unlocked" }),
        ),
    ];
    for (action, payload, answer) in cases {
        let shown = ask(
            &app,
            &token,
            &mut cs,
            "CS-PROV",
            (action, payload, answer.clone()),
        )
        .await;
        assert_eq!(shown, answer, "{action}");
    }
    // the report that TC_B_18's Accepted announced is answered and kept
    let report = json!({ "requestId": 181, "seqNo": 0, "tbc": false, "generatedAt": "2026-11-21T10:00:00Z", "reportData": [
        { "component": { "name": "EVSE", "evse": { "id": 1 } }, "variable": { "name": "AvailabilityState" },
          "variableAttribute": [{ "value": "Available", "mutability": "ReadOnly" }] }
    ] });
    assert_eq!(cs.call("NotifyReport", report).await.unwrap(), json!({}));
    let model = app
        .graphql(
            "{ charger(id: \"CS-PROV\") { deviceModel(component: \"EVSE\") { evseId variable value } } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(
        model["data"]["charger"]["deviceModel"],
        json!([{ "evseId": 1, "variable": "AvailabilityState", "value": "Available" }]),
        "{model}"
    );
}

/// A Started transaction with the driver's token on EVSE 1, charging.
async fn charging(cs: &mut TestCharger, transaction_id: &str, id_tag: &str) {
    let mut started = with_meter(
        with_token(
            event("Started", 0, transaction_id, "2026-11-21T10:00:00Z"),
            id_tag,
        ),
        1_000,
        None,
        "Transaction.Begin",
    );
    started["transactionInfo"]["chargingState"] = json!("Charging");
    let answer = cs.call("TransactionEvent", started).await.unwrap();
    assert_eq!(answer["idTokenInfo"]["status"], "Accepted");
}

/// The Ended event of `charging`'s transaction.
fn ended(transaction_id: &str, seq_no: i64, trigger: &str, reason: &str) -> Value {
    let mut ended = with_meter(
        event("Ended", seq_no, transaction_id, "2026-11-21T10:30:00Z"),
        5_000,
        None,
        "Transaction.End",
    );
    ended["triggerReason"] = json!(trigger);
    ended["transactionInfo"]["stoppedReason"] = json!(reason);
    ended
}

#[actix_web::test]
async fn resets_of_a_2_0_1_station_and_its_evse_end_the_transaction_and_it_boots_again() {
    let (app, token) = app_with_station("CS-RESET").await;
    let (_, id_tag) = driver(&app, "reset@example.com").await;
    let mut cs = booted(&app, "CS-RESET").await;
    // TC_B_20: no transaction, the operator's soft reset is OnIdle without an EVSE
    let request = app.graphql(
        "mutation { resetCharger(chargerId: \"CS-RESET\", type: SOFT) }",
        json!({}),
        Some(&token),
    );
    let station = async {
        let (id, action, payload) = cs.next_server_call().await;
        assert_eq!(
            (action.as_str(), &payload),
            ("Reset", &json!({ "type": "OnIdle" }))
        );
        cs.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (reset, ()) = tokio::join!(request, station);
    assert_eq!(reset["data"]["resetCharger"], true, "{reset}");
    let boot = |reason: &str| json!({ "reason": reason, "chargingStation": { "vendorName": "TestVendor", "model": "TS-201" } });
    assert_eq!(
        cs.call("BootNotification", boot("RemoteReset"))
            .await
            .unwrap()["status"],
        "Accepted"
    );

    // TC_B_22 / TC_B_27: Immediate, station-wide and for EVSE 1, during a transaction
    for (n, payload) in [
        json!({ "type": "Immediate" }),
        json!({ "type": "Immediate", "evseId": 1 }),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = format!("TX-RESET-{n}");
        charging(&mut cs, &tx, &id_tag).await;
        let answer = ask(
            &app,
            &token,
            &mut cs,
            "CS-RESET",
            ("Reset", payload, json!({ "status": "Accepted" })),
        )
        .await;
        assert_eq!(answer["status"], "Accepted");
        cs.call(
            "TransactionEvent",
            ended(&tx, 1, "ResetCommand", "ImmediateReset"),
        )
        .await
        .unwrap();
        assert_eq!(
            stopped(&app, &tx).await,
            (Some("ImmediateReset".into()), true)
        );
    }
    // TC_B_21 / TC_B_26: OnIdle, Scheduled until the driver stops
    for (n, payload) in [
        json!({ "type": "OnIdle" }),
        json!({ "type": "OnIdle", "evseId": 1 }),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = format!("TX-IDLE-{n}");
        charging(&mut cs, &tx, &id_tag).await;
        let answer = ask(
            &app,
            &token,
            &mut cs,
            "CS-RESET",
            ("Reset", payload, json!({ "status": "Scheduled" })),
        )
        .await;
        assert_eq!(answer["status"], "Scheduled");
        let mut stop = with_token(event("Updated", 1, &tx, "2026-11-21T10:20:00Z"), &id_tag);
        stop["triggerReason"] = json!("StopAuthorized");
        let answer = cs.call("TransactionEvent", stop).await.unwrap();
        assert_eq!(answer["idTokenInfo"]["status"], "Accepted");
        cs.call(
            "TransactionEvent",
            ended(&tx, 2, "EVCommunicationLost", "EVDisconnected"),
        )
        .await
        .unwrap();
        assert_eq!(
            stopped(&app, &tx).await,
            (Some("EVDisconnected".into()), true)
        );
    }
    // TC_B_25: EVSE reset without a transaction
    let answer = ask(
        &app,
        &token,
        &mut cs,
        "CS-RESET",
        (
            "Reset",
            json!({ "type": "OnIdle", "evseId": 1 }),
            json!({ "status": "Accepted" }),
        ),
    )
    .await;
    assert_eq!(answer["status"], "Accepted");
    assert_eq!(
        cs.call("BootNotification", boot("ScheduledReset"))
            .await
            .unwrap()["status"],
        "Accepted"
    );
}

// ---- OCPP 2.0.1 block C ----

#[actix_web::test]
async fn a_2_0_1_station_is_told_invalid_blocked_and_expired_tokens_also_inside_transactions() {
    let (app, _) = app_with_station("CS-AUTH").await;
    let (_, valid) = driver(&app, "valid@example.com").await;
    let (_, blocked) = driver(&app, "blocked@example.com").await;
    let (_, expired) = driver(&app, "expired@example.com").await;
    sqlx::query("UPDATE users SET blocked = TRUE WHERE id = (SELECT user_id FROM id_tags WHERE id_tag = $1)")
        .bind(&blocked)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("UPDATE id_tags SET expires_at = now() - interval '1 minute' WHERE id_tag = $1")
        .bind(&expired)
        .execute(&app.db)
        .await
        .unwrap();
    let mut cs = booted(&app, "CS-AUTH").await;
    // TC_C_02, TC_C_06, TC_C_07
    for (token, expected) in [
        ("100000C02", "Invalid"),
        (blocked.as_str(), "Blocked"),
        (expired.as_str(), "Expired"),
    ] {
        let auth = cs
            .call(
                "Authorize",
                json!({ "idToken": { "idToken": token, "type": "ISO14443" } }),
            )
            .await
            .unwrap();
        assert_eq!(auth["idTokenInfo"]["status"], expected, "{token}");
    }
    // TC_C_08 / TC_C_20: a token from the station's cache authorises a transaction the
    // parking bay opened (Updated, Authorized): the CSMS's answer says what it thinks of it
    for (n, (token, expected)) in [(valid.as_str(), "Accepted"), ("100000C02", "Invalid")]
        .into_iter()
        .enumerate()
    {
        let tx = format!("TX-BAY-{n}");
        let mut opened = event("Started", 0, &tx, "2026-11-21T10:00:00Z");
        opened["triggerReason"] = json!("EVDetected");
        cs.call("TransactionEvent", opened).await.unwrap();
        let mut authorised = with_token(event("Updated", 1, &tx, "2026-11-21T10:01:00Z"), token);
        authorised["triggerReason"] = json!("Authorized");
        let answer = cs.call("TransactionEvent", authorised).await.unwrap();
        assert_eq!(answer["idTokenInfo"]["status"], expected, "{answer}");
    }
}

// ---- OCPP 2.0.1 block E ----

#[actix_web::test]
async fn every_start_and_stop_option_of_a_2_0_1_transaction_is_answered_and_stored() {
    let (app, _) = app_with_station("CS-TXOPT").await;
    let (driver_token, id_tag) = driver(&app, "txopt@example.com").await;
    let mut cs = booted(&app, "CS-TXOPT").await;
    let tokened = |e: Value| with_token(e, &id_tag);
    // (case, how the transaction starts: its first events, how it stops: trigger, stoppedReason)
    struct Case {
        name: &'static str,
        start: Vec<(&'static str, &'static str, Option<&'static str>, bool)>,
        stop: (&'static str, &'static str),
    }
    let cases = [
        // TC_E_01: power path closed: SuspendedEVSE first, then Charging
        Case {
            name: "E_01",
            start: vec![
                ("Started", "Authorized", Some("SuspendedEVSE"), true),
                ("Updated", "ChargingStateChanged", Some("Charging"), false),
            ],
            stop: ("StopAuthorized", "Local"),
        },
        // TC_E_02: energy transfer: Charging in the Started event
        Case {
            name: "E_02",
            start: vec![("Started", "ChargingStateChanged", Some("Charging"), true)],
            stop: ("StopAuthorized", "Local"),
        },
        // TC_E_03: cable first, then the driver authorises
        Case {
            name: "E_03",
            start: vec![
                ("Started", "CablePluggedIn", Some("EVConnected"), false),
                ("Updated", "Authorized", None, true),
                ("Updated", "ChargingStateChanged", Some("Charging"), false),
            ],
            stop: ("EVCommunicationLost", "EVDisconnected"),
        },
        // TC_E_04 / TC_E_10: authorisation first
        Case {
            name: "E_04",
            start: vec![
                ("Started", "Authorized", None, true),
                ("Updated", "CablePluggedIn", Some("EVConnected"), false),
                ("Updated", "ChargingStateChanged", Some("Charging"), false),
            ],
            stop: ("StopAuthorized", "Local"),
        },
        // TC_E_09: the transaction starts when the EV is connected
        Case {
            name: "E_09",
            start: vec![("Started", "CablePluggedIn", Some("EVConnected"), false)],
            stop: ("EVCommunicationLost", "EVDisconnected"),
        },
        // TC_E_12: a parking bay sensor starts it
        Case {
            name: "E_12",
            start: vec![("Started", "EVDetected", None, false)],
            stop: ("EVDeparted", "EVDisconnected"),
        },
        // TC_E_38: authorised and connected, the EV is not ready (SuspendedEV)
        Case {
            name: "E_38",
            start: vec![
                ("Started", "Authorized", None, true),
                (
                    "Updated",
                    "ChargingStateChanged",
                    Some("SuspendedEV"),
                    false,
                ),
            ],
            stop: ("EnergyLimitReached", "StoppedByEV"),
        },
        // TC_E_26: the EV side is unplugged (suspended), plugged again, charging again
        Case {
            name: "E_26",
            start: vec![
                ("Started", "Authorized", Some("Charging"), true),
                ("Updated", "EVCommunicationLost", Some("SuspendedEV"), false),
                ("Updated", "ChargingStateChanged", Some("Charging"), false),
            ],
            stop: ("StopAuthorized", "Local"),
        },
        // TC_E_15 / TC_E_08 / TC_E_07: the driver stops it at the station
        Case {
            name: "E_15",
            start: vec![("Started", "Authorized", Some("Charging"), true)],
            stop: ("StopAuthorized", "Local"),
        },
        // TC_E_14 / TC_E_20: cable out at the station / at the EV side
        Case {
            name: "E_14",
            start: vec![("Started", "Authorized", Some("Charging"), true)],
            stop: ("EVCommunicationLost", "EVDisconnected"),
        },
        // TC_E_16: deauthorised (the CSMS said Invalid)
        Case {
            name: "E_16",
            start: vec![("Started", "Authorized", Some("Charging"), true)],
            stop: ("Deauthorized", "DeAuthorized"),
        },
        // TC_E_17: deauthorised because the EV side was lost
        Case {
            name: "E_17",
            start: vec![("Started", "Authorized", Some("SuspendedEV"), true)],
            stop: ("EVCommunicationLost", "EVDisconnected"),
        },
        // TC_E_19: the EV leaves the parking bay
        Case {
            name: "E_19",
            start: vec![("Started", "Authorized", Some("Charging"), true)],
            stop: ("EVDeparted", "EVDisconnected"),
        },
        // TC_E_22: the EV stops the energy transfer
        Case {
            name: "E_22",
            start: vec![
                ("Started", "Authorized", Some("Charging"), true),
                (
                    "Updated",
                    "ChargingStateChanged",
                    Some("SuspendedEV"),
                    false,
                ),
            ],
            stop: ("ChargingStateChanged", "StoppedByEV"),
        },
        // TC_E_39: authorised but no EV within EVConnectionTimeout
        Case {
            name: "E_39",
            start: vec![("Started", "Authorized", None, true)],
            stop: ("EVConnectTimeout", "Timeout"),
        },
    ];
    for case in &cases {
        // TC_E_53: every transaction starts again at seqNo 0
        let tx = format!("TX-{}", case.name);
        let mut seq = 0;
        for (kind, trigger, state, with_id) in &case.start {
            let mut e = event(kind, seq, &tx, "2026-11-21T10:00:00Z");
            e["triggerReason"] = json!(trigger);
            if let Some(state) = state {
                e["transactionInfo"]["chargingState"] = json!(state);
            }
            if *kind == "Started" {
                e = with_meter(e, 1_000, None, "Transaction.Begin");
            }
            let e = if *with_id { tokened(e) } else { e };
            let answer = cs.call("TransactionEvent", e).await.unwrap();
            if *with_id {
                assert_eq!(answer["idTokenInfo"]["status"], "Accepted", "{}", case.name);
            }
            seq += 1;
        }
        let (trigger, reason) = case.stop;
        cs.call("TransactionEvent", ended(&tx, seq, trigger, reason))
            .await
            .unwrap();
        assert_eq!(
            stopped(&app, &tx).await,
            (Some(reason.to_string()), true),
            "{}",
            case.name
        );
    }
    // the driver's transactions became her sessions, all completed
    let sessions = app
        .graphql(
            "{ mySessions(status: COMPLETED) { stopReason } }",
            json!({}),
            Some(&driver_token),
        )
        .await;
    let with_token = cases.iter().filter(|c| c.start.iter().any(|s| s.3)).count();
    assert_eq!(
        sessions["data"]["mySessions"].as_array().map(Vec::len),
        Some(with_token),
        "{sessions}"
    );
}

#[actix_web::test]
async fn the_csms_asks_a_2_0_1_station_for_transaction_status_with_and_without_an_id() {
    let (app, token) = app_with_station("CS-TXSTAT").await;
    let (_, id_tag) = driver(&app, "txstat@example.com").await;
    let mut cs = booted(&app, "CS-TXSTAT").await;
    charging(&mut cs, "TX-Q", &id_tag).await;
    // TC_E_29 / TC_E_30: with the id of the ongoing transaction, with and without a queue
    for queued in [true, false] {
        let answer = json!({ "ongoingIndicator": true, "messagesInQueue": queued });
        let shown = ask(
            &app,
            &token,
            &mut cs,
            "CS-TXSTAT",
            (
                "GetTransactionStatus",
                json!({ "transactionId": "TX-Q" }),
                answer.clone(),
            ),
        )
        .await;
        assert_eq!(shown, answer);
    }
    // the queued event, sent offline, is taken
    let mut queued = with_meter(
        event("Updated", 1, "TX-Q", "2026-11-21T10:10:00Z"),
        2_000,
        None,
        "Sample.Periodic",
    );
    queued["offline"] = json!(true);
    cs.call("TransactionEvent", queued).await.unwrap();
    // TC_E_33 / TC_E_34: without an id
    for queued in [true, false] {
        let answer = json!({ "messagesInQueue": queued });
        let shown = ask(
            &app,
            &token,
            &mut cs,
            "CS-TXSTAT",
            ("GetTransactionStatus", json!({}), answer.clone()),
        )
        .await;
        assert_eq!(shown, answer);
    }
    let readings: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM meter_values m JOIN charger_transactions t ON t.id = m.transaction_pk WHERE t.transaction_ref = 'TX-Q'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(readings, 2, "the offline reading joined the transaction");
}

// ---- OCPP 2.0.1 block F ----

#[actix_web::test]
async fn a_remote_start_the_station_authorises_first_and_one_that_times_out_are_handled() {
    let f = crate::sessions::fixture().await;
    let mut cs = connect201(f.app.port, "CP-S1", Some(("CP-S1", CHARGER_PASSWORD))).await;
    cs.boot201().await;
    cs.call("StatusNotification", json!({ "timestamp": "2026-11-21T09:00:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1 }))
        .await
        .unwrap();
    for (tx, timeout) in [("TX-F02", false), ("TX-F04", true)] {
        let request = f.app.graphql(
            crate::sessions::START,
            json!({ "i": { "stationId": f.station.to_string() } }),
            Some(&f.driver),
        );
        let station = async {
            let (id, action, payload) = cs.next_server_call().await;
            assert_eq!(action, "RequestStartTransaction");
            // no transactionId: the EV is not connected yet
            cs.reply(&id, json!({ "status": "Accepted" })).await;
            payload
        };
        let (response, request) = tokio::join!(request, station);
        let session_id = response["data"]["startSession"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        // TC_F_02: AuthorizeRemoteStart is true: the station authorises the token first
        let auth = cs
            .call("Authorize", json!({ "idToken": request["idToken"] }))
            .await
            .unwrap();
        assert_eq!(auth["idTokenInfo"]["status"], "Accepted");
        let mut started = event("Started", 0, tx, "2026-11-21T10:00:00Z");
        started["triggerReason"] = json!("RemoteStart");
        started["idToken"] = request["idToken"].clone();
        started["transactionInfo"]["remoteStartId"] = request["remoteStartId"].clone();
        let answer = cs.call("TransactionEvent", started).await.unwrap();
        assert_eq!(answer["idTokenInfo"]["status"], "Accepted");
        assert!(crate::sessions::wait_status(&f, &session_id, "IN_PROGRESS").await);
        if timeout {
            // TC_F_04: no cable within the connection timeout
            let mut late = event("Updated", 1, tx, "2026-11-21T10:01:00Z");
            late["triggerReason"] = json!("EVConnectTimeout");
            cs.call("TransactionEvent", late).await.unwrap();
            cs.call(
                "TransactionEvent",
                ended(tx, 2, "EVConnectTimeout", "Timeout"),
            )
            .await
            .unwrap();
        } else {
            cs.call("TransactionEvent", ended(tx, 1, "StopAuthorized", "Local"))
                .await
                .unwrap();
        }
        assert!(crate::sessions::wait_status(&f, &session_id, "COMPLETED").await);
        cs.call("StatusNotification", json!({ "timestamp": "2026-11-21T10:31:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1 }))
            .await
            .unwrap();
    }
}

/// (case, TriggerMessage payload, what the station then sends)
type TriggerCase = (&'static str, Value, Vec<(&'static str, Value)>);

#[actix_web::test]
async fn trigger_message_reaches_a_2_0_1_station_and_the_triggered_messages_are_answered() {
    let (app, token) = app_with_station("CS-TRIG").await;
    let (_, id_tag) = driver(&app, "trig@example.com").await;
    let mut cs = booted(&app, "CS-TRIG").await;
    charging(&mut cs, "TX-TRIG", &id_tag).await;
    let mv = |evse: i64| json!({ "evseId": evse, "meterValue": [{ "timestamp": "2026-11-21T10:05:00Z", "sampledValue": [{ "value": 1500, "context": "Trigger", "measurand": "Energy.Active.Import.Register", "unitOfMeasure": { "unit": "Wh" } }] }] });
    let mut tx_event = with_meter(
        event("Updated", 1, "TX-TRIG", "2026-11-21T10:06:00Z"),
        1_600,
        None,
        "Trigger",
    );
    tx_event["triggerReason"] = json!("Trigger");
    tx_event["transactionInfo"]["chargingState"] = json!("Charging");
    let mut tx_event_all = tx_event.clone();
    tx_event_all["seqNo"] = json!(2);
    tx_event_all.as_object_mut().unwrap().remove("evse");
    let status = json!({ "timestamp": "2026-11-21T10:07:00Z", "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1 });
    let notify = json!({ "generatedAt": "2026-11-21T10:07:00Z", "seqNo": 0, "eventData": [{ "eventId": 1, "timestamp": "2026-11-21T10:07:00Z",
        "trigger": "Delta", "actualValue": "Occupied", "eventNotificationType": "HardWiredNotification",
        "component": { "name": "Connector", "evse": { "id": 1, "connectorId": 1 } }, "variable": { "name": "AvailabilityState" } }] });
    let cases: Vec<TriggerCase> = vec![
        (
            "F_11",
            json!({ "requestedMessage": "MeterValues", "evse": { "id": 1 } }),
            vec![("MeterValues", mv(1))],
        ),
        (
            "F_12",
            json!({ "requestedMessage": "MeterValues" }),
            vec![("MeterValues", mv(0)), ("MeterValues", mv(1))],
        ),
        (
            "F_13",
            json!({ "requestedMessage": "TransactionEvent", "evse": { "id": 1 } }),
            vec![("TransactionEvent", tx_event)],
        ),
        (
            "F_14",
            json!({ "requestedMessage": "TransactionEvent" }),
            vec![("TransactionEvent", tx_event_all)],
        ),
        (
            "F_15",
            json!({ "requestedMessage": "LogStatusNotification" }),
            vec![("LogStatusNotification", json!({ "status": "Idle" }))],
        ),
        (
            "F_18",
            json!({ "requestedMessage": "FirmwareStatusNotification" }),
            vec![("FirmwareStatusNotification", json!({ "status": "Idle" }))],
        ),
        (
            "F_20",
            json!({ "requestedMessage": "Heartbeat" }),
            vec![("Heartbeat", json!({}))],
        ),
        (
            "F_23/F_24",
            json!({ "requestedMessage": "StatusNotification", "evse": { "id": 1, "connectorId": 1 } }),
            vec![("StatusNotification", status), ("NotifyEvent", notify)],
        ),
    ];
    for (case, payload, then) in cases {
        let shown = ask(
            &app,
            &token,
            &mut cs,
            "CS-TRIG",
            ("TriggerMessage", payload, json!({ "status": "Accepted" })),
        )
        .await;
        assert_eq!(shown["status"], "Accepted", "{case}");
        for (action, message) in then {
            let answer = cs.call(action, message).await;
            assert!(answer.is_ok(), "{case} {action}: {answer:?}");
        }
    }
    // TC_F_27: the station does not implement the message asked for
    let shown = ask(
        &app,
        &token,
        &mut cs,
        "CS-TRIG",
        (
            "TriggerMessage",
            json!({ "requestedMessage": "PublishFirmwareStatusNotification" }),
            json!({ "status": "NotImplemented" }),
        ),
    )
    .await;
    assert_eq!(shown["status"], "NotImplemented");
    let triggered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM meter_values WHERE charger_id = 'CS-TRIG' AND context = 'Trigger'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(triggered, 5, "three MeterValues and two TransactionEvents");
    assert_eq!(
        connectors(&app, &token, "CS-TRIG").await,
        json!([{ "connectorId": 1, "status": "OCCUPIED" }])
    );
}

// ---- OCPP 2.0.1 block G ----

#[actix_web::test]
async fn availability_changes_reach_a_2_0_1_station_and_the_statuses_it_reports_are_kept() {
    let (app, token) = app_with_station("CS-AVAIL").await;
    let (_, id_tag) = driver(&app, "avail@example.com").await;
    let mut cs = booted(&app, "CS-AVAIL").await;
    let status = |s: &str| json!({ "timestamp": "2026-11-21T10:00:00Z", "connectorStatus": s, "evseId": 1, "connectorId": 1 });
    cs.call("StatusNotification", status("Available"))
        .await
        .unwrap();
    // (case, request, answer, the status the station then reports, what operators then see)
    let cases = [
        (
            "G_03",
            json!({ "operationalStatus": "Inoperative", "evse": { "id": 1 } }),
            "Unavailable",
            "UNAVAILABLE",
        ),
        (
            "G_04",
            json!({ "operationalStatus": "Operative", "evse": { "id": 1 } }),
            "Available",
            "AVAILABLE",
        ),
        (
            "G_05",
            json!({ "operationalStatus": "Inoperative" }),
            "Unavailable",
            "UNAVAILABLE",
        ),
        (
            "G_06",
            json!({ "operationalStatus": "Operative" }),
            "Available",
            "AVAILABLE",
        ),
        (
            "G_07",
            json!({ "operationalStatus": "Inoperative", "evse": { "id": 1, "connectorId": 1 } }),
            "Unavailable",
            "UNAVAILABLE",
        ),
        (
            "G_08",
            json!({ "operationalStatus": "Operative", "evse": { "id": 1, "connectorId": 1 } }),
            "Available",
            "AVAILABLE",
        ),
    ];
    for (case, payload, reported, seen) in cases {
        let shown = ask(
            &app,
            &token,
            &mut cs,
            "CS-AVAIL",
            (
                "ChangeAvailability",
                payload,
                json!({ "status": "Accepted" }),
            ),
        )
        .await;
        assert_eq!(shown["status"], "Accepted", "{case}");
        cs.call("StatusNotification", status(reported))
            .await
            .unwrap();
        assert_eq!(
            connectors(&app, &token, "CS-AVAIL").await,
            json!([{ "connectorId": 1, "status": seen }]),
            "{case}"
        );
    }
    // TC_G_11 / TC_G_14 / TC_G_17: during a transaction: Scheduled, Unavailable once it ends
    for (n, payload) in [
        json!({ "operationalStatus": "Inoperative", "evse": { "id": 1 } }),
        json!({ "operationalStatus": "Inoperative" }),
        json!({ "operationalStatus": "Inoperative", "evse": { "id": 1, "connectorId": 1 } }),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = format!("TX-AVAIL-{n}");
        charging(&mut cs, &tx, &id_tag).await;
        cs.call("StatusNotification", status("Occupied"))
            .await
            .unwrap();
        let shown = ask(
            &app,
            &token,
            &mut cs,
            "CS-AVAIL",
            (
                "ChangeAvailability",
                payload,
                json!({ "status": "Scheduled" }),
            ),
        )
        .await;
        assert_eq!(shown["status"], "Scheduled");
        assert_eq!(
            connectors(&app, &token, "CS-AVAIL").await,
            json!([{ "connectorId": 1, "status": "OCCUPIED" }])
        );
        cs.call("TransactionEvent", ended(&tx, 1, "StopAuthorized", "Local"))
            .await
            .unwrap();
        cs.call("StatusNotification", status("Unavailable"))
            .await
            .unwrap();
        assert_eq!(
            connectors(&app, &token, "CS-AVAIL").await,
            json!([{ "connectorId": 1, "status": "UNAVAILABLE" }])
        );
        assert_eq!(stopped(&app, &tx).await, (Some("Local".into()), true));
        let back = ask(
            &app,
            &token,
            &mut cs,
            "CS-AVAIL",
            (
                "ChangeAvailability",
                json!({ "operationalStatus": "Operative" }),
                json!({ "status": "Accepted" }),
            ),
        )
        .await;
        assert_eq!(back["status"], "Accepted");
        cs.call("StatusNotification", status("Available"))
            .await
            .unwrap();
    }
    // TC_G_20: a lock failure is an event the CSMS answers and keeps
    let lock = json!({ "generatedAt": "2026-11-21T11:00:00Z", "seqNo": 0, "eventData": [{ "eventId": 7, "timestamp": "2026-11-21T11:00:00Z",
        "trigger": "Delta", "actualValue": "true", "eventNotificationType": "HardWiredNotification",
        "component": { "name": "ConnectorPlugRetentionLock", "evse": { "id": 1, "connectorId": 1 } }, "variable": { "name": "Problem" } }] });
    assert_eq!(cs.call("NotifyEvent", lock).await.unwrap(), json!({}));
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM charger_reports WHERE charger_id = 'CS-AVAIL' AND kind = 'NotifyEvent' AND payload::text LIKE '%ConnectorPlugRetentionLock%'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(kept, 1);
}

// ---- OCPP 2.0.1 block J ----

#[actix_web::test]
async fn clock_aligned_sampled_and_signed_meter_values_of_a_2_0_1_station_are_kept() {
    let (app, _) = app_with_station("CS-METER").await;
    let (_, id_tag) = driver(&app, "meter@example.com").await;
    let mut cs = booted(&app, "CS-METER").await;
    let signed = json!({ "signedMeterData": "AQIDBA==", "signingMethod": "ECDSA-secp256r1-SHA256", "encodingMethod": "OCMF", "publicKey": "BQYHCA==" });
    let reading = |wh: i64, context: &str, at: &str| json!({ "timestamp": at, "sampledValue": [{ "value": wh, "context": context, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": { "unit": "Wh" } }] });
    // TC_J_01: clock-aligned, no transaction, for the station (EVSE 0) and EVSE 1
    for evse in [0, 1] {
        for (n, at) in [
            "2026-11-21T09:00:00Z",
            "2026-11-21T09:15:00Z",
            "2026-11-21T09:30:00Z",
        ]
        .into_iter()
        .enumerate()
        {
            let wh = 900 + i64::try_from(n).unwrap();
            cs.call(
                "MeterValues",
                json!({ "evseId": evse, "meterValue": [reading(wh, "Sample.Clock", at)] }),
            )
            .await
            .unwrap();
        }
    }
    let fiscal = json!({ "generatedAt": "2026-11-21T09:30:00Z", "seqNo": 0, "eventData": [{ "eventId": 2, "timestamp": "2026-11-21T09:30:00Z",
        "trigger": "Periodic", "actualValue": "902", "eventNotificationType": "HardWiredMonitor",
        "component": { "name": "FiscalMetering" }, "variable": { "name": "EnergyImportRegister" } }] });
    assert_eq!(cs.call("NotifyEvent", fiscal).await.unwrap(), json!({}));
    // TC_J_07 / TC_J_08: Transaction.Begin in the Started event (EVSE known, or not when authorised)
    let mut authorised = with_token(event("Started", 0, "TX-J", "2026-11-21T10:00:00Z"), &id_tag);
    authorised.as_object_mut().unwrap().remove("evse");
    cs.call("TransactionEvent", authorised).await.unwrap();
    let mut plugged = event("Updated", 1, "TX-J", "2026-11-21T10:00:30Z");
    plugged["triggerReason"] = json!("CablePluggedIn");
    plugged["meterValue"] = json!([reading(1_000, "Transaction.Begin", "2026-11-21T10:00:30Z")]);
    cs.call("TransactionEvent", plugged).await.unwrap();
    // TC_J_02 / TC_J_09: clock-aligned and periodic samples during the transaction
    for (seq, trigger, context, wh, at) in [
        (
            2,
            "MeterValueClock",
            "Sample.Clock",
            2_000,
            "2026-11-21T10:15:00Z",
        ),
        (
            3,
            "MeterValuePeriodic",
            "Sample.Periodic",
            2_500,
            "2026-11-21T10:20:00Z",
        ),
        (
            4,
            "MeterValuePeriodic",
            "Sample.Periodic",
            3_000,
            "2026-11-21T10:25:00Z",
        ),
    ] {
        let mut e = event("Updated", seq, "TX-J", at);
        e["triggerReason"] = json!(trigger);
        e["meterValue"] = json!([reading(wh, context, at)]);
        cs.call("TransactionEvent", e).await.unwrap();
    }
    // TC_J_03 / TC_J_04 / TC_J_10 / TC_J_11: the Ended event carries clock and periodic
    // samples, the last one Transaction.End, each signed
    let mut last = ended("TX-J", 5, "EVCommunicationLost", "EVDisconnected");
    let mut samples = vec![
        reading(3_200, "Sample.Clock", "2026-11-21T10:28:00Z"),
        reading(3_300, "Sample.Periodic", "2026-11-21T10:29:00Z"),
        reading(3_400, "Sample.Clock", "2026-11-21T10:30:00Z"),
    ];
    samples[2]["sampledValue"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "value": 3_400, "context": "Transaction.End", "measurand": "Energy.Active.Import.Register", "unitOfMeasure": { "unit": "Wh" } }));
    for sample in &mut samples {
        for value in sample["sampledValue"].as_array_mut().unwrap() {
            value["signedMeterValue"] = signed.clone();
        }
    }
    last["meterValue"] = json!(samples);
    cs.call("TransactionEvent", last).await.unwrap();

    let contexts: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT context, count(*) FROM meter_values WHERE charger_id = 'CS-METER' GROUP BY context ORDER BY context",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        contexts,
        vec![
            (Some("Sample.Clock".into()), 9),
            (Some("Sample.Periodic".into()), 3),
            (Some("Transaction.Begin".into()), 1),
            (Some("Transaction.End".into()), 1),
        ]
    );
    let (meter_stop, reason): (rust_decimal::Decimal, String) = sqlx::query_as(
        "SELECT meter_stop_wh, stop_reason FROM charger_transactions WHERE transaction_ref = 'TX-J'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(meter_stop, rust_decimal::Decimal::from(3_400));
    assert_eq!(reason, "EVDisconnected");
}

// ---- OCPP 1.6J core profile and remote trigger ----

/// A booted 1.6 charger with connector 1 Available, of a fresh app; returns (app, ADMIN token,
/// the charger, a driver's idTag).
async fn charger16(id: &str) -> (TestApp, String, TestCharger, String) {
    let (app, token) = app_with_station(id).await;
    let (_, id_tag) = driver(&app, &format!("{}@example.com", id.to_lowercase())).await;
    let mut cp = connect16(app.port, id, Some((id, crate::ocpp201::PASSWORD))).await;
    assert_eq!(cp.boot().await["status"], "Accepted");
    status16(&mut cp, 1, "Available", "NoError").await;
    (app, token, cp, id_tag)
}

async fn status16(cp: &mut TestCharger, connector: i64, status: &str, error: &str) {
    let answer = cp
        .call(
            "StatusNotification",
            json!({ "connectorId": connector, "errorCode": error, "status": status }),
        )
        .await
        .unwrap();
    assert_eq!(answer, json!({}));
}

async fn start16(cp: &mut TestCharger, tag: &str, at: &str) -> (i64, String) {
    let start = cp
        .call(
            "StartTransaction",
            json!({ "connectorId": 1, "idTag": tag, "meterStart": 1_000, "timestamp": at }),
        )
        .await
        .unwrap();
    (
        start["transactionId"].as_i64().unwrap(),
        start["idTagInfo"]["status"].as_str().unwrap().to_string(),
    )
}

async fn stop16(cp: &mut TestCharger, tid: i64, reason: &str, at: &str) -> Value {
    cp.call(
        "StopTransaction",
        json!({ "transactionId": tid, "meterStop": 4_000, "timestamp": at, "reason": reason }),
    )
    .await
    .unwrap()
}

/// (stop reason, stopped) of a 1.6 transaction.
async fn stopped16(app: &TestApp, tid: i64) -> (Option<String>, bool) {
    sqlx::query_as(
        "SELECT stop_reason, stopped_at IS NOT NULL FROM charger_transactions WHERE transaction_id = $1",
    )
    .bind(i32::try_from(tid).unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap()
}

#[actix_web::test]
async fn local_charging_sessions_of_a_1_6_charger_online_and_offline() {
    let (app, token, mut cp, tag) = charger16("CP-LOCAL").await;
    // TC_003: plugin first
    status16(&mut cp, 1, "Preparing", "NoError").await;
    let auth = cp.call("Authorize", json!({ "idTag": tag })).await.unwrap();
    assert_eq!(auth["idTagInfo"]["status"], "Accepted");
    let (tid, status) = start16(&mut cp, &tag, "2026-11-21T10:00:00Z").await;
    assert_eq!(status, "Accepted");
    status16(&mut cp, 1, "Charging", "NoError").await;
    stop16(&mut cp, tid, "Local", "2026-11-21T10:30:00Z").await;
    status16(&mut cp, 1, "Finishing", "NoError").await;
    status16(&mut cp, 1, "Available", "NoError").await;
    assert_eq!(stopped16(&app, tid).await, (Some("Local".into()), true));

    // TC_004_2: authorised, plugged, then the connection timeout makes it Available again
    cp.call("Authorize", json!({ "idTag": tag })).await.unwrap();
    status16(&mut cp, 1, "Preparing", "NoError").await;
    status16(&mut cp, 1, "Available", "NoError").await;

    // TC_005_1: cable out at the EV side stops the transaction
    let (tid, _) = start16(&mut cp, &tag, "2026-11-21T11:00:00Z").await;
    status16(&mut cp, 1, "Charging", "NoError").await;
    status16(&mut cp, 1, "Finishing", "NoError").await;
    stop16(&mut cp, tid, "EVDisconnected", "2026-11-21T11:20:00Z").await;
    assert_eq!(
        stopped16(&app, tid).await,
        (Some("EVDisconnected".into()), true)
    );
    status16(&mut cp, 1, "Available", "NoError").await;

    // TC_007: an idTag from the charger's cache starts without an Authorize
    status16(&mut cp, 1, "Preparing", "NoError").await;
    let (tid, status) = start16(&mut cp, &tag, "2026-11-21T12:00:00Z").await;
    assert_eq!(status, "Accepted");
    status16(&mut cp, 1, "Charging", "NoError").await;

    // TC_032_1: a power failure: boot, Finishing, StopTransaction PowerLoss
    let mut cp = connect16(
        app.port,
        "CP-LOCAL",
        Some(("CP-LOCAL", crate::ocpp201::PASSWORD)),
    )
    .await;
    assert_eq!(cp.boot().await["status"], "Accepted");
    status16(&mut cp, 0, "Available", "NoError").await;
    status16(&mut cp, 1, "Finishing", "NoError").await;
    stop16(&mut cp, tid, "PowerLoss", "2026-11-21T12:10:00Z").await;
    assert_eq!(stopped16(&app, tid).await, (Some("PowerLoss".into()), true));
    status16(&mut cp, 1, "Available", "NoError").await;

    // TC_037_1 / TC_039: started and stopped while offline, sent after reconnecting
    let (tid, status) = start16(&mut cp, &tag, "2026-11-20T08:00:00Z").await;
    assert_eq!(status, "Accepted");
    status16(&mut cp, 1, "Charging", "NoError").await;
    stop16(&mut cp, tid, "Local", "2026-11-20T08:45:00Z").await;
    status16(&mut cp, 1, "Available", "NoError").await;
    let started: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT started_at FROM charger_transactions WHERE transaction_id = $1")
            .bind(i32::try_from(tid).unwrap())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        started.to_rfc3339(),
        "2026-11-20T08:00:00+00:00",
        "the charger's time"
    );

    // TC_037_3: offline with an invalid idTag: Invalid, and the charger stops it
    let (tid, status) = start16(&mut cp, "100000C02", "2026-11-20T09:00:00Z").await;
    assert_eq!(status, "Invalid");
    status16(&mut cp, 1, "Charging", "NoError").await;
    stop16(&mut cp, tid, "DeAuthorized", "2026-11-20T09:00:05Z").await;
    assert_eq!(
        stopped16(&app, tid).await,
        (Some("DeAuthorized".into()), true)
    );
    status16(&mut cp, 1, "Available", "NoError").await;

    // TC_024: a lock failure is a Faulted connector
    status16(&mut cp, 1, "Preparing", "NoError").await;
    status16(&mut cp, 1, "Faulted", "ConnectorLockFailure").await;
    assert_eq!(
        connectors(&app, &token, "CP-LOCAL").await,
        json!([{ "connectorId": 0, "status": "AVAILABLE" }, { "connectorId": 1, "status": "FAULTED" }])
    );
    // TC_064: a vendor this server does not know
    let data = cp
        .call(
            "DataTransfer",
            json!({ "vendorId": "com.example.unknown", "messageId": "hello", "data": "x" }),
        )
        .await
        .unwrap();
    assert_eq!(data["status"], "UnknownVendorId");
}

#[actix_web::test]
async fn operator_calls_to_a_1_6_charger_carry_each_cases_request_and_its_answer() {
    let (app, token, mut cp, tag) = charger16("CP-OPS").await;
    let cases = [
        // TC_017_2 / TC_031, TC_030
        (
            "UnlockConnector",
            json!({ "connectorId": 1 }),
            json!({ "status": "NotSupported" }),
        ),
        (
            "UnlockConnector",
            json!({ "connectorId": 1 }),
            json!({ "status": "UnlockFailed" }),
        ),
        // TC_019_1: every key; TC_019_2: one key
        (
            "GetConfiguration",
            json!({}),
            json!({ "configurationKey": [{ "key": "HeartbeatInterval", "readonly": false, "value": "300" }, { "key": "SupportedFeatureProfiles", "readonly": true, "value": "Core,RemoteTrigger" }] }),
        ),
        (
            "GetConfiguration",
            json!({ "key": ["SupportedFeatureProfiles"] }),
            json!({ "configurationKey": [{ "key": "SupportedFeatureProfiles", "readonly": true, "value": "Core,RemoteTrigger" }], "unknownKey": [] }),
        ),
        // TC_021, TC_040_1, TC_040_2
        (
            "ChangeConfiguration",
            json!({ "key": "MeterValueSampleInterval", "value": "60" }),
            json!({ "status": "Accepted" }),
        ),
        (
            "ChangeConfiguration",
            json!({ "key": "NoSuchKey", "value": "1" }),
            json!({ "status": "NotSupported" }),
        ),
        (
            "ChangeConfiguration",
            json!({ "key": "MeterValueSampleInterval", "value": "-1" }),
            json!({ "status": "Rejected" }),
        ),
        // TC_028: a transaction the charger does not know
        (
            "RemoteStopTransaction",
            json!({ "transactionId": 424242 }),
            json!({ "status": "Rejected" }),
        ),
        // TC_055
        (
            "TriggerMessage",
            json!({ "requestedMessage": "MeterValues" }),
            json!({ "status": "Rejected" }),
        ),
    ];
    for (action, payload, answer) in cases {
        let shown = ask(
            &app,
            &token,
            &mut cp,
            "CP-OPS",
            (action, payload, answer.clone()),
        )
        .await;
        assert_eq!(shown, answer, "{action}");
    }
    // TC_054: each message triggered, then sent by the charger and answered
    let triggered: [(&str, Value); 5] = [
        (
            "MeterValues",
            json!({ "connectorId": 1, "meterValue": [{ "timestamp": "2026-11-21T10:00:00Z", "sampledValue": [{ "value": "1500", "context": "Trigger", "unit": "Wh", "measurand": "Energy.Active.Import.Register" }] }] }),
        ),
        ("Heartbeat", json!({})),
        (
            "StatusNotification",
            json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
        ),
        ("DiagnosticsStatusNotification", json!({ "status": "Idle" })),
        ("FirmwareStatusNotification", json!({ "status": "Idle" })),
    ];
    for (message, sent) in triggered {
        let mut payload = json!({ "requestedMessage": message });
        if matches!(message, "MeterValues" | "StatusNotification") {
            payload["connectorId"] = json!(1);
        }
        let shown = ask(
            &app,
            &token,
            &mut cp,
            "CP-OPS",
            ("TriggerMessage", payload, json!({ "status": "Accepted" })),
        )
        .await;
        assert_eq!(shown["status"], "Accepted");
        assert!(cp.call(message, sent).await.is_ok(), "{message}");
    }
    // TC_054's BootNotification
    let shown = ask(
        &app,
        &token,
        &mut cp,
        "CP-OPS",
        (
            "TriggerMessage",
            json!({ "requestedMessage": "BootNotification" }),
            json!({ "status": "Accepted" }),
        ),
    )
    .await;
    assert_eq!(shown["status"], "Accepted");
    assert_eq!(cp.boot().await["status"], "Accepted");

    // TC_018_1: unlocked during a transaction: Finishing, StopTransaction UnlockCommand
    let (tid, _) = start16(&mut cp, &tag, "2026-11-21T10:00:00Z").await;
    status16(&mut cp, 1, "Charging", "NoError").await;
    let shown = ask(
        &app,
        &token,
        &mut cp,
        "CP-OPS",
        (
            "UnlockConnector",
            json!({ "connectorId": 1 }),
            json!({ "status": "Unlocked" }),
        ),
    )
    .await;
    assert_eq!(shown["status"], "Unlocked");
    status16(&mut cp, 1, "Finishing", "NoError").await;
    stop16(&mut cp, tid, "UnlockCommand", "2026-11-21T10:10:00Z").await;
    assert_eq!(
        stopped16(&app, tid).await,
        (Some("UnlockCommand".into()), true)
    );
    status16(&mut cp, 1, "Available", "NoError").await;

    // TC_013 / TC_014: hard and soft reset, then the charger boots and reports its connectors
    for (kind, sent) in [("HARD", "Hard"), ("SOFT", "Soft")] {
        let mutation = format!("mutation {{ resetCharger(chargerId: \"CP-OPS\", type: {kind}) }}");
        let request = app.graphql(&mutation, json!({}), Some(&token));
        let charger = async {
            let (id, action, payload) = cp.next_server_call().await;
            assert_eq!(
                (action.as_str(), &payload),
                ("Reset", &json!({ "type": sent }))
            );
            cp.reply(&id, json!({ "status": "Accepted" })).await;
        };
        let (reset, ()) = tokio::join!(request, charger);
        assert_eq!(reset["data"]["resetCharger"], true, "{reset}");
        assert_eq!(cp.boot().await["status"], "Accepted");
        status16(&mut cp, 0, "Available", "NoError").await;
        status16(&mut cp, 1, "Available", "NoError").await;
    }
}

/// TC_B_31: a station told Pending takes the CSMS's configuration and trigger calls (here
/// TriggerMessage(BootNotification)) while anything that acts on charging (a reset) waits in
/// its queue until a boot is Accepted; then the reset follows.
#[actix_web::test]
async fn a_pending_station_is_triggered_to_boot_and_gets_the_rest_once_accepted() {
    // admission control answers Pending beyond one boot a second
    let app = spawn_app_with(|s| s.cluster.max_boots_per_sec = 1).await;
    let token = app.staff_token("ADMIN").await;
    let site = app.create_station("Pending station").await;
    for id in ["CS-B31-FIRST", "CS-B31"] {
        app.register_charger(&token, id, site, Some(crate::ocpp201::PASSWORD))
            .await;
    }
    let (pending_id, mut cs, _, _first) =
        one_of_two_told_pending(&app, "CS-B31-FIRST", "CS-B31").await;
    let reset_mutation =
        format!("mutation {{ resetCharger(chargerId: \"{pending_id}\", type: HARD) }}");

    // the reset is asked first; while the station is Pending it is not sent
    let reset = app.graphql(&reset_mutation, json!({}), Some(&token));
    tokio::pin!(reset);
    let early = tokio::time::timeout(Duration::from_millis(500), async {
        tokio::select! {
            call = cs.next_server_call() => format!("{call:?}"),
            answer = &mut reset => format!("{answer}"),
        }
    })
    .await;
    assert!(
        early.is_err(),
        "a call reached a Pending station: {early:?}"
    );
    // the trigger is sent at once, and answered
    let triggered = ask(
        &app,
        &token,
        &mut cs,
        pending_id,
        (
            "TriggerMessage",
            json!({ "requestedMessage": "BootNotification" }),
            json!({ "status": "Accepted" }),
        ),
    )
    .await;
    assert_eq!(triggered["status"], "Accepted", "{triggered}");
    // the station boots as triggered; once a boot is Accepted (a later admission window) the
    // queued reset arrives
    let station = async {
        let mut accepted = false;
        for _ in 0..20 {
            let answer = cs
                .call(
                    "BootNotification",
                    json!({ "reason": "Triggered", "chargingStation": { "vendorName": "TestVendor", "model": "TS-201" } }),
                )
                .await
                .expect("boot answered");
            if answer["status"] == "Accepted" {
                accepted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(accepted, "the station was never accepted");
        let (id, action, payload) = cs.next_server_call().await;
        cs.reply(&id, json!({ "status": "Accepted" })).await;
        (action, payload)
    };
    let (reset, (action, payload)) = tokio::join!(reset, station);
    assert_eq!(action, "Reset");
    assert_eq!(payload, json!({ "type": "Immediate" }));
    assert_eq!(reset["data"]["resetCharger"], true, "{reset}");
}
