//! OCPP 2.0.1 over real WebSockets: negotiation next to 1.6, the station lifecycle, a
//! transaction through TransactionEvent, every CSMS-initiated call, the device model, kept
//! reports, malformed input with 2.0.1 error codes, and durability before answers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::charger_client::{connect, connect201, TestCharger};
use crate::helpers::{error_code, spawn_app, TestApp};

pub const PASSWORD: &str = "station-secret-0001";
const CHARGER_QUERY: &str = "query($id: ID!) { charger(id: $id) { id online protocol vendor model firmwareVersion connectors { connectorId status } } }";

/// An app with one registered, password-protected station; returns (app, an ADMIN token: the
/// tests send every CSMS-initiated action, some of which need ADMIN).
pub async fn app_with_station(id: &str) -> (TestApp, String) {
    let app = spawn_app().await;
    let token = app.staff_token("ADMIN").await;
    let station = app.create_station("2.0.1 station").await;
    app.register_charger(&token, id, station, Some(PASSWORD))
        .await;
    (app, token)
}

/// A booted 2.0.1 station.
pub async fn booted(app: &TestApp, id: &str) -> TestCharger {
    let mut cs = connect201(app.port, id, Some((id, PASSWORD))).await;
    assert_eq!(cs.protocol.as_deref(), Some("ocpp2.0.1"));
    assert_eq!(cs.boot201().await["status"], "Accepted");
    cs
}

/// Registers a driver and returns (access token, idTag).
pub async fn driver(app: &TestApp, email: &str) -> (String, String) {
    let (token, _, _) = app.register(email, "correct horse battery").await;
    let id_tag = app
        .graphql("{ me { idTag } }", json!({}), Some(&token))
        .await["data"]["me"]["idTag"]
        .as_str()
        .unwrap()
        .to_string();
    (token, id_tag)
}

/// A TransactionEvent on EVSE 1 / connector 1.
pub fn event(kind: &str, seq_no: i64, transaction_id: &str, at: &str) -> Value {
    let trigger = match kind {
        "Started" => "Authorized",
        "Ended" => "EVDeparted",
        _ => "MeterValuePeriodic",
    };
    json!({
        "eventType": kind, "timestamp": at, "triggerReason": trigger, "seqNo": seq_no,
        "transactionInfo": { "transactionId": transaction_id },
        "evse": { "id": 1, "connectorId": 1 }
    })
}

/// `event` with an idToken of type ISO14443 (an RFID card).
pub fn with_token(mut event: Value, id_token: &str) -> Value {
    event["idToken"] = json!({ "idToken": id_token, "type": "ISO14443" });
    event
}

/// `event` with one meter value: the energy register (Wh) and optionally the power (W).
pub fn with_meter(mut event: Value, wh: i64, w: Option<i64>, context: &str) -> Value {
    let at = event["timestamp"].clone();
    let mut sampled = vec![json!({
        "value": wh, "measurand": "Energy.Active.Import.Register", "context": context,
        "unitOfMeasure": { "unit": "Wh" }
    })];
    if let Some(w) = w {
        sampled.push(json!({ "value": w, "measurand": "Power.Active.Import", "context": context, "unitOfMeasure": { "unit": "W" } }));
    }
    event["meterValue"] = json!([{ "timestamp": at, "sampledValue": sampled }]);
    event
}

async fn command(app: &TestApp, token: &str, id: &str, action: &str, payload: Value) -> Value {
    app.graphql(
        "mutation($c: ID!, $a: String!, $p: JSON!) { sendChargerCommand(chargerId: $c, action: $a, payload: $p) }",
        json!({ "c": id, "a": action, "p": payload }),
        Some(token),
    )
    .await
}

#[actix_web::test]
async fn the_2_0_1_lifecycle_boot_status_authorize_and_an_rfid_transaction() {
    let (app, token) = app_with_station("CS-LIFE").await;
    let (driver_token, id_tag) = driver(&app, "rfid@example.com").await;
    let mut cs = connect201(app.port, "CS-LIFE", Some(("CS-LIFE", PASSWORD))).await;
    let boot = cs.boot201().await;
    assert_eq!(boot["status"], "Accepted");
    assert_eq!(boot["interval"], 300);
    assert!(boot["currentTime"].is_string());
    assert!(cs.call("Heartbeat", json!({})).await.unwrap()["currentTime"].is_string());
    cs.call("StatusNotification", json!({ "timestamp": "2026-11-21T09:59:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1 }))
        .await
        .unwrap();
    let view = app
        .graphql(CHARGER_QUERY, json!({ "id": "CS-LIFE" }), Some(&token))
        .await["data"]["charger"]
        .clone();
    assert_eq!(view["protocol"], "OCPP201");
    assert_eq!(view["vendor"], "TestVendor");
    assert_eq!(view["model"], "TS-201");
    assert_eq!(view["firmwareVersion"], "2.0.1-test");
    assert_eq!(
        view["connectors"],
        json!([{ "connectorId": 1, "status": "AVAILABLE" }])
    );
    let reason: Option<String> =
        sqlx::query_scalar("SELECT last_boot_reason FROM chargers WHERE id = 'CS-LIFE'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(reason.as_deref(), Some("PowerUp"));

    for (kind, token_value, expected) in [
        ("ISO14443", id_tag.as_str(), "Accepted"),
        ("eMAID", id_tag.as_str(), "Accepted"),
        ("Central", "NOBODY-KNOWS-ME", "Invalid"),
        ("NoAuthorization", "", "Accepted"),
    ] {
        let auth = cs
            .call(
                "Authorize",
                json!({ "idToken": { "idToken": token_value, "type": kind } }),
            )
            .await
            .unwrap();
        assert_eq!(auth["idTokenInfo"]["status"], expected, "{kind}");
    }

    // an RFID start: the station plugs in, then authorises on the first event
    let started = cs
        .call(
            "TransactionEvent",
            with_meter(
                with_token(
                    event("Started", 0, "TX-LIFE-1", "2026-11-21T10:00:00Z"),
                    &id_tag,
                ),
                1_000,
                None,
                "Transaction.Begin",
            ),
        )
        .await
        .unwrap();
    assert_eq!(started["idTokenInfo"]["status"], "Accepted");
    cs.call("StatusNotification", json!({ "timestamp": "2026-11-21T10:00:01Z", "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1 }))
        .await
        .unwrap();
    let updated = cs
        .call(
            "TransactionEvent",
            with_meter(
                event("Updated", 1, "TX-LIFE-1", "2026-11-21T10:15:00Z"),
                6_500,
                Some(11_000),
                "Sample.Periodic",
            ),
        )
        .await
        .unwrap();
    // no idToken, no idTokenInfo: only the running cost
    assert_eq!(
        updated.as_object().map(|o| o.keys().collect::<Vec<_>>()),
        Some(vec![&"totalCost".to_string()]),
        "{updated}"
    );
    let sessions = app
        .graphql(
            "{ mySessions { status energyKWh powerKW connectorId startTime } }",
            json!({}),
            Some(&driver_token),
        )
        .await;
    let session = &sessions["data"]["mySessions"][0];
    assert_eq!(session["status"], "IN_PROGRESS", "{sessions}");
    assert_eq!(session["energyKWh"], 5.5);
    assert_eq!(session["powerKW"], 11.0);
    assert_eq!(session["connectorId"], 1);
    assert_eq!(session["startTime"], "2026-11-21T10:00:00+00:00");

    cs.call("MeterValues", json!({ "evseId": 1, "meterValue": [{ "timestamp": "2026-11-21T10:20:00Z", "sampledValue": [{ "value": 230.1, "measurand": "Voltage", "phase": "L1-N", "unitOfMeasure": { "unit": "V" } }] }] }))
        .await
        .unwrap();
    let mut ended = with_meter(
        event("Ended", 2, "TX-LIFE-1", "2026-11-21T10:30:00Z"),
        12,
        None,
        "Transaction.End",
    );
    ended["meterValue"][0]["sampledValue"][0]["unitOfMeasure"] = json!({ "unit": "kWh" });
    ended["transactionInfo"]["stoppedReason"] = json!("EVDisconnected");
    cs.call("TransactionEvent", ended).await.unwrap();

    let (meter_stop, reason, voltage_linked): (rust_decimal::Decimal, String, bool) = sqlx::query_as(
        "SELECT t.meter_stop_wh, t.stop_reason, EXISTS (SELECT 1 FROM meter_values m WHERE m.transaction_pk = t.id AND m.measurand = 'Voltage') \
         FROM charger_transactions t WHERE t.transaction_ref = 'TX-LIFE-1'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        meter_stop,
        rust_decimal::Decimal::from(12_000),
        "kWh normalised to Wh"
    );
    assert_eq!(reason, "EVDisconnected");
    assert!(
        voltage_linked,
        "MeterValues belong to the transaction running on the EVSE"
    );
    let body: String =
        sqlx::query_scalar("SELECT body FROM outbox WHERE event_type = 'SESSION_ENDED'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let ended: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ended["energyKwh"], 11.0);
    assert_eq!(ended["durationMinutes"], 30);
    assert_eq!(ended["stopReason"], "EVDisconnected");
    assert_eq!(ended["chargerId"], "CS-LIFE");
}

#[actix_web::test]
async fn a_blocked_users_token_is_blocked() {
    let (app, _) = app_with_station("CS-BLOCK").await;
    let (_, id_tag) = driver(&app, "blocked201@example.com").await;
    sqlx::query("UPDATE users SET blocked = TRUE WHERE id = (SELECT user_id FROM id_tags WHERE id_tag = $1)")
        .bind(&id_tag)
        .execute(&app.db)
        .await
        .unwrap();
    let mut cs = booted(&app, "CS-BLOCK").await;
    let auth = cs
        .call(
            "Authorize",
            json!({ "idToken": { "idToken": id_tag, "type": "ISO14443" } }),
        )
        .await
        .unwrap();
    assert_eq!(auth["idTokenInfo"]["status"], "Blocked");
    let started = cs
        .call(
            "TransactionEvent",
            with_token(event("Started", 0, "TX-B", "2026-11-21T10:00:00Z"), &id_tag),
        )
        .await
        .unwrap();
    assert_eq!(started["idTokenInfo"]["status"], "Blocked");
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(sessions, 0, "a blocked user gets no session");
}

#[actix_web::test]
async fn a_station_offering_both_subprotocols_gets_its_first_choice() {
    let (app, _) = app_with_station("CS-BOTH").await;
    let auth = Some(("CS-BOTH", PASSWORD));
    let mut first = connect(app.port, "CS-BOTH", "ocpp2.0.1, ocpp1.6", auth)
        .await
        .unwrap();
    assert_eq!(first.protocol.as_deref(), Some("ocpp2.0.1"));
    assert_eq!(first.boot201().await["status"], "Accepted");
    let protocol = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT protocol FROM chargers WHERE id = 'CS-BOTH'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap()
    };
    assert_eq!(protocol().await.as_deref(), Some("OCPP201"));

    let mut second = connect(app.port, "CS-BOTH", "ocpp1.6, ocpp2.0.1", auth)
        .await
        .unwrap();
    assert_eq!(second.protocol.as_deref(), Some("ocpp1.6"));
    // it speaks 1.6 now: a 1.6 boot is accepted, a 2.0.1 one is not
    assert_eq!(second.boot().await["status"], "Accepted");
    let wrong = second
        .call(
            "BootNotification",
            json!({ "reason": "PowerUp", "chargingStation": { "vendorName": "V", "model": "M" } }),
        )
        .await;
    assert_eq!(
        wrong.err().map(|e| e.0).as_deref(),
        Some("OccurenceConstraintViolation")
    );
    let switched = app
        .wait_until(Duration::from_secs(10), || async {
            protocol().await.as_deref() == Some("OCPP16")
        })
        .await;
    assert!(switched);
    assert!(first.closed().await.is_some(), "the newest connection wins");
}

#[actix_web::test]
async fn malformed_2_0_1_frames_get_2_0_1_call_errors_and_the_connection_survives() {
    let (app, _) = app_with_station("CS-BAD").await;
    let mut cs = booted(&app, "CS-BAD").await;
    let long_id = "T".repeat(37);
    let cases: Vec<(String, &str)> = vec![
        (r#"[2,"m1","Heartbeat",{"#.to_string(), "FormatViolation"),
        (r#"[2,"m2","BootNotification",{"reason":"PowerUp","chargingStation":{"vendorName":7,"model":"M"}}]"#.to_string(), "TypeConstraintViolation"),
        (r#"[2,"m3","BootNotification",{"reason":"PowerUp"}]"#.to_string(), "OccurrenceConstraintViolation"),
        (r#"[2,"m4","FlyToTheMoon",{}]"#.to_string(), "NotImplemented"),
        (r#"[2,"m5","NotifyDisplayMessages",{"requestId":"one"}]"#.to_string(), "TypeConstraintViolation"),
        (r#"[2,"m6","StatusNotification",{"timestamp":"2026-11-21T10:00:00Z","connectorStatus":"Dancing","evseId":1,"connectorId":1}]"#.to_string(), "PropertyConstraintViolation"),
        (format!(r#"[2,"m7","TransactionEvent",{{"eventType":"Started","timestamp":"2026-11-21T10:00:00Z","triggerReason":"Authorized","seqNo":0,"transactionInfo":{{"transactionId":"{long_id}"}}}}]"#), "PropertyConstraintViolation"),
        (r#"[2,"m8","BootNotification",{"reason":"PowerUp","chargingStation":{"vendorName":"V","model":"MMMMMMMMMMMMMMMMMMMMMMMMM"}}]"#.to_string(), "PropertyConstraintViolation"),
        (r#"[2,"m9","Heartbeat"]"#.to_string(), "ProtocolError"),
        (r#"[7,"m10","Heartbeat",{}]"#.to_string(), "MessageTypeNotSupported"),
        (format!(r#"[2,"m11","DataTransfer",{{"vendorId":"X","data":"{}"}}]"#, "x".repeat(70 * 1024)), "FormatViolation"),
    ];
    for (frame, expected) in cases {
        cs.send_text(&frame).await;
        let answer = cs
            .recv_within(Duration::from_secs(5))
            .await
            .expect("an answer");
        assert_eq!(answer[0], 4, "{answer}");
        assert_eq!(
            answer[2],
            expected,
            "for {}: {answer}",
            &frame[..frame.len().min(90)]
        );
        assert!(cs.call("Heartbeat", json!({})).await.is_ok(), "still up");
    }
    cs.send_text("not OCPP at all").await;
    assert!(cs.call("Heartbeat", json!({})).await.is_ok());
}

#[actix_web::test]
async fn notify_event_security_firmware_and_log_notifications_are_kept_as_reports() {
    let (app, _) = app_with_station("CS-REP").await;
    let mut cs = booted(&app, "CS-REP").await;
    let calls = [
        (
            "NotifyEvent",
            json!({ "generatedAt": "2026-11-21T10:00:00Z", "seqNo": 0, "eventData": [{
            "eventId": 1, "timestamp": "2026-11-21T10:00:00Z", "trigger": "Alerting", "actualValue": "Faulted",
            "eventNotificationType": "HardWiredNotification", "component": { "name": "Connector", "evse": { "id": 1, "connectorId": 1 } },
            "variable": { "name": "AvailabilityState" } }] }),
        ),
        (
            "SecurityEventNotification",
            json!({ "type": "FirmwareUpdated", "timestamp": "2026-11-21T10:01:00Z", "techInfo": "v2" }),
        ),
        (
            "FirmwareStatusNotification",
            json!({ "status": "Installed", "requestId": 3 }),
        ),
        (
            "LogStatusNotification",
            json!({ "status": "Uploaded", "requestId": 4 }),
        ),
        (
            "DataTransfer",
            json!({ "vendorId": "com.example", "messageId": "hello", "data": "x" }),
        ),
    ];
    for (action, payload) in calls {
        let answer = cs.call(action, payload).await.unwrap();
        if action == "DataTransfer" {
            assert_eq!(answer["status"], "UnknownVendorId");
        } else {
            assert_eq!(answer, json!({}), "{action}");
        }
    }
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM charger_reports WHERE charger_id = 'CS-REP' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        [
            "NotifyEvent",
            "FirmwareStatusNotification",
            "LogStatusNotification",
            "DataTransfer"
        ]
    );
    // security events have a table of their own
    let tech: String =
        sqlx::query_scalar("SELECT tech_info FROM security_events WHERE charger_id = 'CS-REP'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(tech, "v2");
}

#[actix_web::test]
async fn transaction_event_is_answered_only_after_it_is_stored() {
    let (app, _) = app_with_station("CS-DURABLE").await;
    let mut cs = booted(&app, "CS-DURABLE").await;
    cs.call(
        "TransactionEvent",
        event("Started", 0, "TX-D", "2026-11-21T10:00:00Z"),
    )
    .await
    .unwrap();
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE charger_transactions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let ended = event("Ended", 1, "TX-D", "2026-11-21T10:30:00Z");
    cs.send_text(&json!([2, "end-1", "TransactionEvent", ended]).to_string())
        .await;
    assert!(
        cs.recv_within(Duration::from_millis(700)).await.is_none(),
        "answered while the write was still blocked"
    );
    blocker.rollback().await.unwrap();
    assert!(cs.await_answer("end-1").await.is_ok());
    let stopped: bool = sqlx::query_scalar(
        "SELECT stopped_at IS NOT NULL FROM charger_transactions WHERE transaction_ref = 'TX-D'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(stopped);
}

#[actix_web::test]
async fn every_csms_initiated_2_0_1_call_reaches_the_station_and_returns_its_answer() {
    let (app, token) = app_with_station("CS-CMD").await;
    let mut cs = booted(&app, "CS-CMD").await;
    let component = json!({ "component": { "name": "OCPPCommCtrlr" }, "variable": { "name": "HeartbeatInterval" } });
    let cases = vec![
        (
            "RequestStartTransaction",
            json!({ "idToken": { "idToken": "TAG1", "type": "Central" }, "remoteStartId": 7, "evseId": 1 }),
            json!({ "status": "Accepted", "transactionId": "TX-9" }),
        ),
        (
            "RequestStopTransaction",
            json!({ "transactionId": "TX-9" }),
            json!({ "status": "Accepted" }),
        ),
        (
            "Reset",
            json!({ "type": "OnIdle" }),
            json!({ "status": "Scheduled" }),
        ),
        (
            "UnlockConnector",
            json!({ "evseId": 1, "connectorId": 1 }),
            json!({ "status": "Unlocked" }),
        ),
        (
            "ChangeAvailability",
            json!({ "operationalStatus": "Inoperative", "evse": { "id": 1 } }),
            json!({ "status": "Scheduled" }),
        ),
        (
            "TriggerMessage",
            json!({ "requestedMessage": "StatusNotification", "evse": { "id": 1, "connectorId": 1 } }),
            json!({ "status": "Accepted" }),
        ),
        (
            "GetVariables",
            json!({ "getVariableData": [component.clone()] }),
            json!({ "getVariableResult": [{ "attributeStatus": "Accepted", "attributeValue": "300", "component": { "name": "OCPPCommCtrlr" }, "variable": { "name": "HeartbeatInterval" } }] }),
        ),
        (
            "SetVariables",
            json!({ "setVariableData": [{ "attributeValue": "120", "component": { "name": "OCPPCommCtrlr" }, "variable": { "name": "HeartbeatInterval" } }] }),
            json!({ "setVariableResult": [{ "attributeStatus": "Accepted", "component": { "name": "OCPPCommCtrlr" }, "variable": { "name": "HeartbeatInterval" } }] }),
        ),
        (
            "GetBaseReport",
            json!({ "requestId": 1, "reportBase": "FullInventory" }),
            json!({ "status": "Accepted" }),
        ),
        (
            "SetChargingProfile",
            json!({ "evseId": 1, "chargingProfile": { "id": 5, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute", "chargingSchedule": [{ "id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 7400.0 }] }] } }),
            json!({ "status": "Accepted" }),
        ),
        (
            "ClearChargingProfile",
            json!({ "chargingProfileId": 5 }),
            json!({ "status": "Accepted" }),
        ),
        (
            "GetTransactionStatus",
            json!({ "transactionId": "TX-9" }),
            json!({ "ongoingIndicator": false, "messagesInQueue": false }),
        ),
    ];
    for (action, payload, answer) in cases {
        let request = command(&app, &token, "CS-CMD", action, payload.clone());
        let station = async {
            let (id, got_action, got_payload) = cs.next_server_call().await;
            assert_eq!(got_action, action);
            assert_eq!(got_payload, payload);
            cs.reply(&id, answer.clone()).await;
        };
        let (response, ()) = tokio::join!(request, station);
        assert_eq!(
            response["data"]["sendChargerCommand"], answer,
            "{action}: {response}"
        );
    }

    for (reset_type, expected, status, accepted) in [
        ("HARD", "Immediate", "Accepted", true),
        ("SOFT", "OnIdle", "Rejected", false),
    ] {
        let mutation =
            format!("mutation {{ resetCharger(chargerId: \"CS-CMD\", type: {reset_type}) }}");
        let request = app.graphql(&mutation, json!({}), Some(&token));
        let station = async {
            let (id, action, payload) = cs.next_server_call().await;
            assert_eq!(
                (action.as_str(), &payload),
                ("Reset", &json!({ "type": expected }))
            );
            cs.reply(&id, json!({ "status": status })).await;
        };
        let (response, ()) = tokio::join!(request, station);
        assert_eq!(response["data"]["resetCharger"], accepted, "{response}");
    }

    // a 1.6 action is not a 2.0.1 command; an answer of the wrong shape is the station's fault
    let one_six = command(
        &app,
        &token,
        "CS-CMD",
        "RemoteStartTransaction",
        json!({ "idTag": "X" }),
    )
    .await;
    assert_eq!(error_code(&one_six).as_deref(), Some("BAD_USER_INPUT"));
    let request = command(&app, &token, "CS-CMD", "ClearCache", json!({}));
    let station = async {
        let (id, _, _) = cs.next_server_call().await;
        cs.reply(&id, json!({ "status": "Perhaps" })).await;
    };
    let (response, ()) = tokio::join!(request, station);
    assert_eq!(
        error_code(&response).as_deref(),
        Some("CHARGER_REJECTED"),
        "{response}"
    );
}

#[actix_web::test]
async fn notify_report_fills_the_device_model_that_operators_can_read() {
    let (app, token) = app_with_station("CS-DM").await;
    let mut cs = booted(&app, "CS-DM").await;
    let request = command(
        &app,
        &token,
        "CS-DM",
        "GetBaseReport",
        json!({ "requestId": 11, "reportBase": "FullInventory" }),
    );
    let station = async {
        let (id, _, _) = cs.next_server_call().await;
        cs.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (accepted, ()) = tokio::join!(request, station);
    assert_eq!(accepted["data"]["sendChargerCommand"]["status"], "Accepted");

    let part = |seq: i64, tbc: bool, at: &str, data: Value| json!({ "requestId": 11, "seqNo": seq, "tbc": tbc, "generatedAt": at, "reportData": data });
    cs.call("NotifyReport", part(0, true, "2026-11-21T10:00:00Z", json!([
        { "component": { "name": "OCPPCommCtrlr" }, "variable": { "name": "HeartbeatInterval" },
          "variableAttribute": [{ "value": "300", "mutability": "ReadWrite" }],
          "variableCharacteristics": { "unit": "s", "dataType": "integer", "supportsMonitoring": false } }
    ]))).await.unwrap();
    cs.call("NotifyReport", part(1, false, "2026-11-21T10:00:00Z", json!([
        { "component": { "name": "EVSE", "evse": { "id": 1 } }, "variable": { "name": "Power" },
          "variableAttribute": [{ "value": "22000", "mutability": "ReadOnly" }, { "type": "MaxSet", "value": "11000", "mutability": "ReadWrite" }],
          "variableCharacteristics": { "unit": "W", "dataType": "decimal", "supportsMonitoring": true } }
    ]))).await.unwrap();
    // an older report arriving late does not overwrite the newer value
    cs.call("NotifyReport", part(0, false, "2026-11-21T09:00:00Z", json!([
        { "component": { "name": "OCPPCommCtrlr" }, "variable": { "name": "HeartbeatInterval" },
          "variableAttribute": [{ "value": "60", "mutability": "ReadWrite" }] }
    ]))).await.unwrap();

    let query = "query($id: ID!, $c: String) { charger(id: $id) { deviceModel(component: $c) { component evseId variable attributeType value mutability dataType unit } } }";
    let all = app
        .graphql(query, json!({ "id": "CS-DM" }), Some(&token))
        .await;
    let rows = all["data"]["charger"]["deviceModel"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{all}");
    assert_eq!(
        rows[0],
        json!({ "component": "EVSE", "evseId": 1, "variable": "Power", "attributeType": "Actual", "value": "22000", "mutability": "ReadOnly", "dataType": "decimal", "unit": "W" })
    );
    let comm = app
        .graphql(
            query,
            json!({ "id": "CS-DM", "c": "OCPPCommCtrlr" }),
            Some(&token),
        )
        .await;
    assert_eq!(
        comm["data"]["charger"]["deviceModel"],
        json!([{ "component": "OCPPCommCtrlr", "evseId": null, "variable": "HeartbeatInterval", "attributeType": "Actual", "value": "300", "mutability": "ReadWrite", "dataType": "integer", "unit": "s" }])
    );
    let (driver_token, _) = driver(&app, "curious@example.com").await;
    let denied = app
        .graphql(query, json!({ "id": "CS-DM" }), Some(&driver_token))
        .await;
    assert_eq!(error_code(&denied).as_deref(), Some("FORBIDDEN"));
}

#[actix_web::test]
async fn absurd_meter_values_are_refused_with_a_call_error_and_the_connection_survives() {
    let (app, _) = app_with_station("CS-ABSURD").await;
    let mut cs = booted(&app, "CS-ABSURD").await;
    let huge = json!({ "value": 1e26, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": { "unit": "kWh" } });
    let scaled = json!({ "value": 7.9e27, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": { "unit": "Wh", "multiplier": 3 } });
    let wild = json!({ "value": 5, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": { "unit": "Wh", "multiplier": 2147483647 } });
    for sampled in [huge, scaled, wild] {
        let meter = json!({ "evseId": 1, "meterValue": [{ "timestamp": "2026-11-21T10:00:00Z", "sampledValue": [sampled.clone()] }] });
        let (code, description) = cs
            .call("MeterValues", meter)
            .await
            .expect_err("an absurd value is refused");
        assert_eq!(
            code, "PropertyConstraintViolation",
            "{sampled}: {description}"
        );
        let mut event = event("Updated", 1, "TX-ABSURD", "2026-11-21T10:00:00Z");
        event["meterValue"] =
            json!([{ "timestamp": "2026-11-21T10:00:00Z", "sampledValue": [sampled.clone()] }]);
        let (code, _) = cs
            .call("TransactionEvent", event)
            .await
            .expect_err("an absurd value is refused");
        assert_eq!(code, "PropertyConstraintViolation", "{sampled}");
        assert!(cs.call("Heartbeat", json!({})).await.is_ok());
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM meter_values")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 0);

    // the end of a transaction is never refused for an absurd sample: it is dropped
    let mut ended = event("Ended", 2, "TX-ABSURD", "2026-11-21T10:30:00Z");
    ended["meterValue"] = json!([{ "timestamp": "2026-11-21T10:30:00Z", "sampledValue": [
        { "value": 1e26, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": { "unit": "kWh" } }] }]);
    let answer = cs.call("TransactionEvent", ended).await;
    assert!(answer.is_ok(), "{answer:?}");
    let stopped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM charger_transactions WHERE transaction_ref = 'TX-ABSURD' AND stopped_at IS NOT NULL",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stopped, 1);
}

/// The answers to operators' GetMonitoringReport, GetDisplayMessages, PublishFirmware and
/// CustomerInformation are kept and shown to operators; customer data to ADMINs only.
#[actix_web::test]
async fn monitoring_display_firmware_and_customer_reports_are_kept_for_operators() {
    let (app, admin) = app_with_station("CS-REP").await;
    let operator = app.staff_token("OPERATOR").await;
    let mut cs = booted(&app, "CS-REP").await;
    let now = chrono::Utc::now().to_rfc3339();
    let reports = [
        (
            "NotifyMonitoringReport",
            json!({ "requestId": 7, "seqNo": 0, "generatedAt": now,
            "monitor": [{ "component": { "name": "EVSE" }, "variable": { "name": "Power" },
                          "variableMonitoring": [{ "id": 1, "transaction": false, "value": 22000.0, "type": "UpperThreshold", "severity": 5 }] }] }),
        ),
        (
            "NotifyDisplayMessages",
            json!({ "requestId": 8, "messageInfo": [{ "id": 1, "priority": "NormalCycle",
            "message": { "format": "UTF8", "content": "Welcome" } }] }),
        ),
        (
            "PublishFirmwareStatusNotification",
            json!({ "status": "Published", "location": ["http://cs.local/fw.bin"], "requestId": 9 }),
        ),
        (
            "NotifyCustomerInformation",
            json!({ "data": "card 04A1: Ana Driver", "seqNo": 0, "generatedAt": now, "requestId": 10 }),
        ),
    ];
    for (action, payload) in &reports {
        let answer = cs.call(action, payload.clone()).await;
        assert_eq!(answer, Ok(json!({})), "{action}");
    }
    let query =
        "query($k: String) { charger(id: \"CS-REP\") { reports(kind: $k) { kind payload } } }";
    let seen = app
        .graphql(query, json!({ "k": null }), Some(&operator))
        .await;
    let kinds: Vec<&str> = seen["data"]["charger"]["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    for (action, _) in &reports[..3] {
        assert!(kinds.contains(action), "{action} in {kinds:?}");
    }
    assert!(!kinds.contains(&"NotifyCustomerInformation"), "{kinds:?}");
    let monitoring = app
        .graphql(
            query,
            json!({ "k": "NotifyMonitoringReport" }),
            Some(&operator),
        )
        .await;
    assert_eq!(
        monitoring["data"]["charger"]["reports"][0]["payload"]["monitor"][0]["variable"]["name"],
        "Power"
    );
    let refused = app
        .graphql(
            query,
            json!({ "k": "NotifyCustomerInformation" }),
            Some(&operator),
        )
        .await;
    assert_eq!(error_code(&refused).as_deref(), Some("FORBIDDEN"));
    let customer = app
        .graphql(
            query,
            json!({ "k": "NotifyCustomerInformation" }),
            Some(&admin),
        )
        .await;
    assert_eq!(
        customer["data"]["charger"]["reports"][0]["payload"]["data"],
        "card 04A1: Ana Driver"
    );
}

/// TC_B_08: the station reported DeviceDataCtrlr.ItemsPerMessage[GetVariables] = 4; an
/// operator's GetVariables of ten variables goes as requests of at most four, and the operator
/// gets the ten results in the order asked.
#[actix_web::test]
async fn get_variables_respects_the_stations_items_per_message() {
    let (app, token) = app_with_station("CS-IPM").await;
    let mut cs = booted(&app, "CS-IPM").await;
    cs.call("NotifyReport", json!({ "requestId": 1, "seqNo": 0, "generatedAt": "2026-11-21T10:00:00Z", "reportData": [
        { "component": { "name": "DeviceDataCtrlr" }, "variable": { "name": "ItemsPerMessage", "instance": "GetVariables" },
          "variableAttribute": [{ "value": "4", "mutability": "ReadOnly" }] }
    ] })).await.expect("NotifyReport answered");
    let asked: Vec<Value> = (0..10)
        .map(|i| json!({ "component": { "name": "OCPPCommCtrlr" }, "variable": { "name": format!("V{i}") } }))
        .collect();
    let request = command(
        &app,
        &token,
        "CS-IPM",
        "GetVariables",
        json!({ "getVariableData": asked }),
    );
    let station = async {
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < 10 {
            let (id, action, payload) = cs.next_server_call().await;
            assert_eq!(action, "GetVariables");
            let data = payload["getVariableData"]
                .as_array()
                .expect("a list")
                .clone();
            sizes.push(data.len());
            let results: Vec<Value> = data
                .iter()
                .map(|d| {
                    json!({ "attributeStatus": "Accepted", "attributeValue": "1",
                    "component": d["component"], "variable": d["variable"] })
                })
                .collect();
            cs.reply(&id, json!({ "getVariableResult": results })).await;
        }
        sizes
    };
    let (answer, sizes) = tokio::join!(request, station);
    assert_eq!(sizes, vec![4, 4, 2]);
    let results = answer["data"]["sendChargerCommand"]["getVariableResult"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .clone();
    let names: Vec<&str> = results
        .iter()
        .filter_map(|r| r["variable"]["name"].as_str())
        .collect();
    assert_eq!(names, (0..10).map(|i| format!("V{i}")).collect::<Vec<_>>());
}
