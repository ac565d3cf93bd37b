//! OCPP 1.6J over real WebSockets: handshake rules, the charger lifecycle, transactions,
//! CSMS-initiated calls, malformed input and liveness.

use std::time::Duration;

use serde_json::{json, Value};

use crate::charger_client::{connect, connect16};
use crate::helpers::{error_code, spawn_app, spawn_app_with, TestApp};

const PASSWORD: &str = "charger-secret-0001";
const CHARGER_QUERY: &str = "query($id: ID!) { charger(id: $id) { id online protocol vendor model firmwareVersion lastSeen connectors { connectorId status } } }";

/// An app with one registered, password-protected charger; returns (app, an ADMIN token: the
/// tests send every CSMS-initiated action, some of which need ADMIN).
async fn app_with_charger(id: &str) -> (TestApp, String) {
    app_with_charger_and(id, |_| {}).await
}

async fn app_with_charger_and(
    id: &str,
    customize: impl FnOnce(&mut chargegrid::configuration::Settings),
) -> (TestApp, String) {
    let app = spawn_app_with(customize).await;
    let token = app.staff_token("ADMIN").await;
    let station = app.create_station("Test station").await;
    app.register_charger(&token, id, station, Some(PASSWORD))
        .await;
    (app, token)
}

async fn charger_view(app: &TestApp, token: &str, id: &str) -> Value {
    app.graphql(CHARGER_QUERY, json!({ "id": id }), Some(token))
        .await["data"]["charger"]
        .clone()
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
async fn the_full_charger_lifecycle() {
    let (app, token) = app_with_charger("CP-LIFE").await;
    let (driver, _, _) = app
        .register("driver@example.com", "correct horse battery")
        .await;
    let id_tag = app
        .graphql("{ me { idTag } }", json!({}), Some(&driver))
        .await["data"]["me"]["idTag"]
        .as_str()
        .unwrap()
        .to_string();

    let mut cp = connect16(app.port, "CP-LIFE", Some(("CP-LIFE", PASSWORD))).await;
    assert_eq!(cp.protocol.as_deref(), Some("ocpp1.6"));
    let boot = cp.boot().await;
    assert_eq!(boot["status"], "Accepted");
    assert_eq!(boot["interval"], 300);
    assert!(boot["currentTime"].is_string());

    let hb = cp.call("Heartbeat", json!({})).await.unwrap();
    assert!(hb["currentTime"].is_string());

    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
    )
    .await
    .unwrap();
    let auth = cp
        .call("Authorize", json!({ "idTag": id_tag }))
        .await
        .unwrap();
    assert_eq!(auth["idTagInfo"]["status"], "Accepted");
    let unknown = cp
        .call("Authorize", json!({ "idTag": "NOBODY" }))
        .await
        .unwrap();
    assert_eq!(unknown["idTagInfo"]["status"], "Invalid");

    let view = charger_view(&app, &token, "CP-LIFE").await;
    assert_eq!(view["online"], true);
    assert_eq!(view["protocol"], "OCPP16");
    assert_eq!(view["vendor"], "TestVendor");
    assert_eq!(view["firmwareVersion"], "1.2.3");
    assert_eq!(
        view["connectors"],
        json!([{ "connectorId": 1, "status": "AVAILABLE" }])
    );

    let start = cp
        .call(
            "StartTransaction",
            json!({ "connectorId": 1, "idTag": id_tag, "meterStart": 1000, "timestamp": "2026-11-21T10:00:00Z" }),
        )
        .await
        .unwrap();
    assert_eq!(start["idTagInfo"]["status"], "Accepted");
    let tid = start["transactionId"].as_i64().unwrap();
    assert!(tid > 0);
    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Charging" }),
    )
    .await
    .unwrap();
    cp.call(
        "MeterValues",
        json!({ "connectorId": 1, "transactionId": tid, "meterValue": [{
            "timestamp": "2026-11-21T10:15:00Z",
            "sampledValue": [
                { "value": "6.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register" },
                { "value": "11000", "unit": "W", "measurand": "Power.Active.Import" }
            ]
        }] }),
    )
    .await
    .unwrap();
    let stop = cp
        .call(
            "StopTransaction",
            json!({ "transactionId": tid, "meterStop": 12000, "timestamp": "2026-11-21T10:30:00Z", "reason": "EVDisconnected", "idTag": id_tag }),
        )
        .await
        .unwrap();
    assert_eq!(stop["idTagInfo"]["status"], "Accepted");

    let (meter_stop, reason): (rust_decimal::Decimal, String) = sqlx::query_as(
        "SELECT meter_stop_wh, stop_reason FROM charger_transactions WHERE transaction_id = $1",
    )
    .bind(tid as i32)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(meter_stop, rust_decimal::Decimal::from(12000));
    assert_eq!(reason, "EVDisconnected");
    let energy: rust_decimal::Decimal = sqlx::query_scalar(
        "SELECT value FROM meter_values WHERE measurand = 'Energy.Active.Import.Register' AND charger_id = 'CP-LIFE'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        energy,
        rust_decimal::Decimal::from(6500),
        "kWh normalised to Wh"
    );

    let events: Vec<String> = sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(
        events.contains(&"CHARGER_CONNECTED".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"CONNECTOR_STATUS_CHANGED".to_string()),
        "{events:?}"
    );

    drop(cp);
    let offline = app
        .wait_until(Duration::from_secs(10), || async {
            charger_view(&app, &token, "CP-LIFE").await["online"] == false
        })
        .await;
    assert!(offline, "charger still online after disconnecting");
    let disconnected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'CHARGER_DISCONNECTED'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(disconnected, 1);
}

#[actix_web::test]
async fn blocked_users_tags_are_blocked() {
    let (app, _) = app_with_charger("CP-BLOCK").await;
    let (driver, _, user_id) = app
        .register("blocked@example.com", "correct horse battery")
        .await;
    let id_tag = app
        .graphql("{ me { idTag } }", json!({}), Some(&driver))
        .await["data"]["me"]["idTag"]
        .as_str()
        .unwrap()
        .to_string();
    sqlx::query("UPDATE users SET blocked = TRUE WHERE id = $1::uuid")
        .bind(&user_id)
        .execute(&app.db)
        .await
        .unwrap();
    let mut cp = connect16(app.port, "CP-BLOCK", Some(("CP-BLOCK", PASSWORD))).await;
    cp.boot().await;
    let auth = cp
        .call("Authorize", json!({ "idTag": id_tag }))
        .await
        .unwrap();
    assert_eq!(auth["idTagInfo"]["status"], "Blocked");
}

#[actix_web::test]
async fn handshakes_are_refused_for_bad_ids_protocols_chargers_and_passwords() {
    let (app, _) = app_with_charger("CP-GATE").await;
    let status = crate::charger_client::handshake_status;
    let auth = Some(("CP-GATE", PASSWORD));
    assert_eq!(
        status(connect(app.port, "CP-GATE", "ocpp1.5", auth).await),
        400,
        "unsupported subprotocol"
    );
    assert_eq!(
        status(connect(app.port, "CP-GATE", "", auth).await),
        400,
        "no subprotocol"
    );
    assert_eq!(
        status(connect(app.port, "CP%3AGATE", "ocpp1.6", auth).await),
        400,
        "':' in the id"
    );
    assert_eq!(
        status(connect(app.port, &"X".repeat(49), "ocpp1.6", None).await),
        400,
        "id too long"
    );
    assert_eq!(
        status(connect(app.port, "CP-NOBODY", "ocpp1.6", None).await),
        404,
        "unknown charger"
    );
    assert_eq!(
        status(
            connect(
                app.port,
                "CP-GATE",
                "ocpp1.6",
                Some(("CP-GATE", "wrong-password-0000"))
            )
            .await
        ),
        401,
        "wrong password"
    );
    assert_eq!(
        status(connect(app.port, "CP-GATE", "ocpp1.6", None).await),
        401,
        "no credentials"
    );
    assert_eq!(
        status(connect(app.port, "CP-GATE", "ocpp1.6", Some(("OTHER", PASSWORD))).await),
        401,
        "wrong user name"
    );
    assert_eq!(
        status(connect(app.port, "CP-GATE", "ocpp1.6", auth).await),
        101
    );
    // the refused attempts never registered a connection
    let connected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'CHARGER_CONNECTED'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(connected <= 1);
}

#[actix_web::test]
async fn auto_provisioning_accepts_unknown_chargers_at_once_only_when_told_to() {
    let app = spawn_app_with(|s| {
        s.ocpp.auto_provision = true;
        s.ocpp.auto_accept_provisioned = true;
    })
    .await;
    let mut cp = connect16(app.port, "CP-NEW-1", None).await;
    assert_eq!(cp.boot().await["status"], "Accepted");
    let provisioned: bool =
        sqlx::query_scalar("SELECT auto_provisioned FROM chargers WHERE id = 'CP-NEW-1'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(provisioned);
}

#[actix_web::test]
async fn malformed_frames_get_the_right_call_errors_and_the_connection_survives() {
    let (app, _) = app_with_charger("CP-BAD").await;
    let mut cp = connect16(app.port, "CP-BAD", Some(("CP-BAD", PASSWORD))).await;
    cp.boot().await;

    let cases: Vec<(String, &str)> = vec![
        (r#"[2,"m1","Heartbeat",{"#.to_string(), "FormationViolation"),
        (r#"[2,"m2","BootNotification",{"chargePointVendor":7,"chargePointModel":"M"}]"#.to_string(), "TypeConstraintViolation"),
        (r#"[2,"m3","BootNotification",{"chargePointVendor":"V"}]"#.to_string(), "OccurenceConstraintViolation"),
        (r#"[2,"m4","FlyToTheMoon",{}]"#.to_string(), "NotImplemented"),
        (r#"[2,"m5","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Dancing"}]"#.to_string(), "PropertyConstraintViolation"),
        (r#"[2,"m6","Heartbeat"]"#.to_string(), "ProtocolError"),
        (format!(r#"[2,"m7","DataTransfer",{{"vendorId":"X","data":"{}"}}]"#, "x".repeat(70 * 1024)), "FormationViolation"),
    ];
    for (frame, expected) in cases {
        cp.send_text(&frame).await;
        let answer = cp
            .recv_within(Duration::from_secs(5))
            .await
            .expect("an answer");
        assert_eq!(answer[0], 4, "{answer}");
        assert_eq!(
            answer[2],
            expected,
            "for {}: {answer}",
            &frame[..frame.len().min(80)]
        );
        // the connection is still good
        assert!(cp.call("Heartbeat", json!({})).await.is_ok());
    }

    // no readable message id: dropped silently, the next call still works
    cp.send_text("this is not OCPP").await;
    cp.send_text(r#"{"hello":"world"}"#).await;
    let hb = cp.call("Heartbeat", json!({})).await;
    assert!(hb.is_ok());
}

#[actix_web::test]
async fn frames_beyond_the_hard_limit_close_the_socket_with_a_reason() {
    let (app, _) = app_with_charger("CP-HUGE").await;
    let mut cp = connect16(app.port, "CP-HUGE", Some(("CP-HUGE", PASSWORD))).await;
    cp.boot().await;
    let frame = format!(
        r#"[2,"big","DataTransfer",{{"vendorId":"X","data":"{}"}}]"#,
        "x".repeat(300 * 1024)
    );
    cp.send_text(&frame).await;
    let (code, reason) = cp.closed().await.expect("a close frame");
    assert_eq!(code, 1009);
    assert!(reason.contains("exceeds"), "{reason}");
}

#[actix_web::test]
async fn repeated_start_and_stop_transactions_are_idempotent() {
    let (app, _) = app_with_charger("CP-DUP").await;
    let mut cp = connect16(app.port, "CP-DUP", Some(("CP-DUP", PASSWORD))).await;
    cp.boot().await;
    let start = json!({ "connectorId": 1, "idTag": "RFID-UNKNOWN", "meterStart": 0, "timestamp": "2026-11-20T08:00:00Z" });
    let first = cp.call("StartTransaction", start.clone()).await.unwrap();
    let second = cp.call("StartTransaction", start).await.unwrap();
    assert_eq!(first["transactionId"], second["transactionId"]);
    assert_eq!(first["idTagInfo"]["status"], "Invalid");
    let other = cp
        .call("StartTransaction", json!({ "connectorId": 2, "idTag": "RFID-UNKNOWN", "meterStart": 0, "timestamp": "2026-11-20T08:00:00Z" }))
        .await
        .unwrap();
    assert!(
        other["transactionId"].as_i64() > first["transactionId"].as_i64(),
        "ids increase"
    );

    let tid = first["transactionId"].clone();
    let stop =
        json!({ "transactionId": tid, "meterStop": 5000, "timestamp": "2026-11-20T09:00:00Z" });
    cp.call("StopTransaction", stop.clone()).await.unwrap();
    let stored_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT updated_at FROM charger_transactions WHERE transaction_id = $1")
            .bind(tid.as_i64().unwrap() as i32)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let again = cp
        .call(
            "StopTransaction",
            json!({ "transactionId": tid, "meterStop": 9999, "timestamp": "2026-11-20T09:30:00Z" }),
        )
        .await;
    assert!(again.is_ok(), "a repeated StopTransaction is answered");
    let (meter, updated): (rust_decimal::Decimal, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT meter_stop_wh, updated_at FROM charger_transactions WHERE transaction_id = $1",
    )
    .bind(tid.as_i64().unwrap() as i32)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        meter,
        rust_decimal::Decimal::from(5000),
        "the repeat changed nothing"
    );
    assert_eq!(updated, stored_at);
}

#[actix_web::test]
async fn stop_transaction_for_an_unknown_transaction_is_answered_and_recorded() {
    let (app, _) = app_with_charger("CP-RECON").await;
    let mut cp = connect16(app.port, "CP-RECON", Some(("CP-RECON", PASSWORD))).await;
    cp.boot().await;
    let answer = cp
        .call("StopTransaction", json!({ "transactionId": 987654, "meterStop": 10, "timestamp": "2026-11-20T09:00:00Z" }))
        .await;
    assert!(answer.is_ok());
    let kind: String =
        sqlx::query_scalar("SELECT kind FROM charger_reports WHERE charger_id = 'CP-RECON'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(kind, "UnknownStopTransaction");
}

#[actix_web::test]
async fn stop_transaction_is_answered_only_after_it_is_stored() {
    let (app, _) = app_with_charger("CP-DURABLE").await;
    let mut cp = connect16(app.port, "CP-DURABLE", Some(("CP-DURABLE", PASSWORD))).await;
    cp.boot().await;
    let start = cp
        .call("StartTransaction", json!({ "connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": "2026-11-20T08:00:00Z" }))
        .await
        .unwrap();
    let tid = start["transactionId"].as_i64().unwrap();

    // hold a lock that blocks the write
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE charger_transactions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    cp.send_text(&json!([2, "stop-1", "StopTransaction", { "transactionId": tid, "meterStop": 100, "timestamp": "2026-11-20T08:30:00Z" }]).to_string())
        .await;
    assert!(
        cp.recv_within(Duration::from_millis(700)).await.is_none(),
        "answered while the write was still blocked"
    );
    blocker.rollback().await.unwrap();
    let answer = cp.await_answer("stop-1").await;
    assert!(answer.is_ok());
    let stopped: bool = sqlx::query_scalar(
        "SELECT stopped_at IS NOT NULL FROM charger_transactions WHERE transaction_id = $1",
    )
    .bind(tid as i32)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(stopped);
}

#[actix_web::test]
async fn every_csms_initiated_call_reaches_the_charger_and_returns_its_answer() {
    let (app, token) = app_with_charger("CP-CMD").await;
    let mut cp = connect16(app.port, "CP-CMD", Some(("CP-CMD", PASSWORD))).await;
    cp.boot().await;
    let cases = vec![
        (
            "RemoteStartTransaction",
            json!({ "idTag": "TAG1", "connectorId": 1 }),
            json!({ "status": "Accepted" }),
        ),
        (
            "RemoteStopTransaction",
            json!({ "transactionId": 5 }),
            json!({ "status": "Accepted" }),
        ),
        (
            "Reset",
            json!({ "type": "Soft" }),
            json!({ "status": "Accepted" }),
        ),
        (
            "UnlockConnector",
            json!({ "connectorId": 1 }),
            json!({ "status": "Unlocked" }),
        ),
        (
            "ChangeAvailability",
            json!({ "connectorId": 1, "type": "Inoperative" }),
            json!({ "status": "Scheduled" }),
        ),
        (
            "GetConfiguration",
            json!({ "key": ["HeartbeatInterval"] }),
            json!({ "configurationKey": [{ "key": "HeartbeatInterval", "readonly": false, "value": "300" }] }),
        ),
        (
            "ChangeConfiguration",
            json!({ "key": "HeartbeatInterval", "value": "120" }),
            json!({ "status": "Accepted" }),
        ),
        (
            "TriggerMessage",
            json!({ "requestedMessage": "StatusNotification", "connectorId": 1 }),
            json!({ "status": "Accepted" }),
        ),
        ("ClearCache", json!({}), json!({ "status": "Accepted" })),
        (
            "DataTransfer",
            json!({ "vendorId": "com.example", "data": "ping" }),
            json!({ "status": "Accepted", "data": "pong" }),
        ),
        (
            "SetChargingProfile",
            json!({ "connectorId": 1, "csChargingProfiles": {
            "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
            "chargingSchedule": { "chargingRateUnit": "W", "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 7400.0 }] } } }),
            json!({ "status": "Accepted" }),
        ),
        (
            "ClearChargingProfile",
            json!({ "id": 1 }),
            json!({ "status": "Accepted" }),
        ),
        (
            "GetCompositeSchedule",
            json!({ "connectorId": 1, "duration": 3600 }),
            json!({ "status": "Rejected" }),
        ),
    ];
    for (action, payload, answer) in cases {
        let request = command(&app, &token, "CP-CMD", action, payload.clone());
        let charger = async {
            let (id, got_action, got_payload) = cp.next_server_call().await;
            assert_eq!(got_action, action);
            assert_eq!(got_payload, payload);
            cp.reply(&id, answer.clone()).await;
        };
        let (response, ()) = tokio::join!(request, charger);
        assert_eq!(
            response["data"]["sendChargerCommand"], answer,
            "{action}: {response}"
        );
    }

    // resetCharger per the contract
    let request = app.graphql(
        "mutation { resetCharger(chargerId: \"CP-CMD\", type: HARD) }",
        json!({}),
        Some(&token),
    );
    let charger = async {
        let (id, action, payload) = cp.next_server_call().await;
        assert_eq!(
            (action.as_str(), &payload),
            ("Reset", &json!({ "type": "Hard" }))
        );
        cp.reply(&id, json!({ "status": "Rejected" })).await;
    };
    let (response, ()) = tokio::join!(request, charger);
    assert_eq!(response["data"]["resetCharger"], false, "{response}");
}

#[actix_web::test]
async fn invalid_commands_and_invalid_answers_are_reported() {
    let (app, token) = app_with_charger("CP-VALID").await;
    let mut cp = connect16(app.port, "CP-VALID", Some(("CP-VALID", PASSWORD))).await;
    cp.boot().await;
    let bad = command(
        &app,
        &token,
        "CP-VALID",
        "UnlockConnector",
        json!({ "connectorId": "one" }),
    )
    .await;
    assert_eq!(error_code(&bad).as_deref(), Some("BAD_USER_INPUT"));

    let request = command(&app, &token, "CP-VALID", "ClearCache", json!({}));
    let charger = async {
        let (id, _, _) = cp.next_server_call().await;
        cp.send_text(&json!([4, id, "NotSupported", "no cache here", {}]).to_string())
            .await;
    };
    let (response, ()) = tokio::join!(request, charger);
    assert_eq!(
        error_code(&response).as_deref(),
        Some("CHARGER_REJECTED"),
        "{response}"
    );
}

#[actix_web::test]
async fn commands_to_an_offline_charger_fail_with_charger_offline() {
    let (app, token) = app_with_charger("CP-AWAY").await;
    let response = app
        .graphql(
            "mutation { resetCharger(chargerId: \"CP-AWAY\") }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(error_code(&response).as_deref(), Some("CHARGER_OFFLINE"));
}

#[actix_web::test]
async fn a_silent_charger_times_out_without_blocking_later_calls() {
    let (app, token) = app_with_charger_and("CP-MUTE", |s| s.ocpp.call_timeout_secs = 3).await;
    let mut cp = connect16(app.port, "CP-MUTE", Some(("CP-MUTE", PASSWORD))).await;
    cp.boot().await;
    let first = command(&app, &token, "CP-MUTE", "ClearCache", json!({})).await;
    assert_eq!(
        error_code(&first).as_deref(),
        Some("CHARGER_TIMEOUT"),
        "{first}"
    );
    let (ignored_id, _, _) = cp.next_server_call().await;

    let request = command(&app, &token, "CP-MUTE", "ClearCache", json!({}));
    let charger = async {
        let (id, action, _) = cp.next_server_call().await;
        assert_ne!(id, ignored_id);
        assert_eq!(action, "ClearCache");
        // a late answer to the first call is ignored
        cp.reply(&ignored_id, json!({ "status": "Rejected" })).await;
        cp.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (second, ()) = tokio::join!(request, charger);
    assert_eq!(
        second["data"]["sendChargerCommand"]["status"], "Accepted",
        "{second}"
    );
}

#[actix_web::test]
async fn calls_crossing_in_both_directions_do_not_deadlock() {
    let (app, token) = app_with_charger("CP-CROSS").await;
    let mut cp = connect16(app.port, "CP-CROSS", Some(("CP-CROSS", PASSWORD))).await;
    cp.boot().await;
    let request = command(
        &app,
        &token,
        "CP-CROSS",
        "TriggerMessage",
        json!({ "requestedMessage": "Heartbeat" }),
    );
    let charger = async {
        let (id, _, _) = cp.next_server_call().await;
        // before answering, the charger sends its own calls and gets their answers
        let hb = cp.call("Heartbeat", json!({})).await;
        assert!(hb.is_ok());
        let status = cp
            .call(
                "StatusNotification",
                json!({ "connectorId": 0, "errorCode": "NoError", "status": "Available" }),
            )
            .await;
        assert!(status.is_ok());
        cp.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (response, ()) = tokio::join!(request, charger);
    assert_eq!(
        response["data"]["sendChargerCommand"]["status"], "Accepted",
        "{response}"
    );
}

#[actix_web::test]
async fn the_newest_connection_wins() {
    let (app, token) = app_with_charger("CP-TWIN").await;
    let mut old = connect16(app.port, "CP-TWIN", Some(("CP-TWIN", PASSWORD))).await;
    old.boot().await;
    let mut new = connect16(app.port, "CP-TWIN", Some(("CP-TWIN", PASSWORD))).await;
    new.boot().await;
    let (code, reason) = old.closed().await.expect("the old socket is closed");
    assert_eq!(code, 1008);
    assert!(reason.contains("newer connection"), "{reason}");

    // commands go to the new connection, and it stays online
    let request = command(&app, &token, "CP-TWIN", "ClearCache", json!({}));
    let charger = async {
        let (id, _, _) = new.next_server_call().await;
        new.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (response, ()) = tokio::join!(request, charger);
    assert_eq!(response["data"]["sendChargerCommand"]["status"], "Accepted");
    assert_eq!(charger_view(&app, &token, "CP-TWIN").await["online"], true);
}

#[actix_web::test]
async fn chargers_that_connect_together_are_pinged_on_phases_of_their_own() {
    let ping = Duration::from_secs(4);
    let app = spawn_app_with(|s| {
        s.ocpp.auto_provision = true;
        s.ocpp.auto_accept_provisioned = true;
        s.ocpp.ping_interval_secs = ping.as_secs();
    })
    .await;
    // sixteen chargers connect at once, each read from its connection on: a ping is timed when
    // it arrives, counted from that charger's own connection. Pinged on one clock they would all
    // come one interval after connecting
    let port = app.port;
    let offsets = futures_util::future::join_all((0..16).map(|i| async move {
        let mut cp = connect16(port, &format!("CP-PHASE-{i}"), None).await;
        let connected = tokio::time::Instant::now();
        let at = cp.next_ping_within(ping * 3).await.expect("a ping");
        at.duration_since(connected).as_secs_f64()
    }))
    .await;
    let (first, last) = offsets
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), o| (lo.min(*o), hi.max(*o)));
    assert!(
        last <= ping.as_secs_f64() + 2.0,
        "the first ping comes within one interval: {offsets:?}"
    );
    // sixteen phases drawn over four seconds all within one second of each other: ~1e-8
    assert!(
        last - first >= 1.0,
        "the chargers' first pings came together: {offsets:?}"
    );
}

#[actix_web::test]
async fn a_charger_that_stops_answering_pings_is_marked_offline() {
    let (app, token) = app_with_charger_and("CP-GHOST", |s| {
        s.ocpp.ping_interval_secs = 1;
        // long enough that the first view below finds it online on a loaded machine
        s.ocpp.offline_grace_secs = 5;
    })
    .await;
    let mut cp = connect16(app.port, "CP-GHOST", Some(("CP-GHOST", PASSWORD))).await;
    cp.boot().await;
    assert_eq!(charger_view(&app, &token, "CP-GHOST").await["online"], true);
    // keep the socket open but never read again: no pongs go back
    let offline = app
        .wait_until(Duration::from_secs(20), || async {
            charger_view(&app, &token, "CP-GHOST").await["online"] == false
        })
        .await;
    assert!(offline, "a silent charger stayed online");
    drop(cp);
}

#[actix_web::test]
async fn operators_only_for_charger_operations() {
    let app = spawn_app().await;
    let (driver, _, _) = app
        .register("nosy@example.com", "correct horse battery")
        .await;
    let response = app
        .graphql("{ chargers { id } }", json!({}), Some(&driver))
        .await;
    assert_eq!(error_code(&response).as_deref(), Some("FORBIDDEN"));
    let response = app
        .graphql(
            "mutation { resetCharger(chargerId: \"X\") }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(error_code(&response).as_deref(), Some("UNAUTHENTICATED"));
}

#[actix_web::test]
async fn a_handshake_beyond_the_admission_limit_waits_its_turn_then_is_told_when_to_retry() {
    let (app, _) = app_with_charger_and("CP-QUEUE", |s| {
        s.cluster.max_concurrent_handshakes = 1;
        s.cluster.handshake_wait_ms = 300;
    })
    .await;
    let auth = Some(("CP-QUEUE", PASSWORD));
    // the only slot is busy for longer than the wait: refused with 503 and Retry-After
    let busy = app.ctx.handshakes.clone().acquire_owned().await.unwrap();
    let response = app
        .http
        .get(format!("{}/ocpp/CP-QUEUE", app.address))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Protocol", "ocpp1.6")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let retry: u32 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry));
    // a handshake that arrives while the slot is busy but gets it within the wait is served
    // (the slot is freed a third of the wait after the handshake was sent)
    let port = app.port;
    let waiting = tokio::spawn(async move { connect(port, "CP-QUEUE", "ocpp1.6", auth).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(busy);
    assert!(waiting.await.unwrap().is_ok());
}

/// `Decimal::MAX`: any scaling of it overflowed `rust_decimal` and panicked the charger actor.
const DECIMAL_MAX: &str = "79228162514264337593543950335";

#[actix_web::test]
async fn absurd_meter_values_are_refused_with_a_call_error_and_the_connection_survives() {
    let (app, _) = app_with_charger("CP-ABSURD").await;
    let mut cp = connect16(app.port, "CP-ABSURD", Some(("CP-ABSURD", PASSWORD))).await;
    cp.boot().await;
    let sampled = |value: &str, unit: &str, phase: Option<&str>| {
        let mut v =
            json!({ "value": value, "unit": unit, "measurand": "Energy.Active.Import.Register" });
        if let Some(p) = phase {
            v["phase"] = json!(p);
            v["measurand"] = json!("Power.Active.Import");
        }
        json!({ "connectorId": 1, "meterValue": [{ "timestamp": "2026-11-21T10:00:00Z", "sampledValue": [v] }] })
    };
    let cases = [
        sampled(DECIMAL_MAX, "kWh", None),
        sampled(DECIMAL_MAX, "kW", Some("L1")),
        sampled("2000000000", "kWh", None),
        sampled("-1e14", "Wh", None),
    ];
    for payload in cases {
        let answer = cp.call("MeterValues", payload.clone()).await;
        let (code, description) = answer.expect_err("an absurd value is refused");
        assert_eq!(
            code, "PropertyConstraintViolation",
            "{payload}: {description}"
        );
        // the same socket still works
        assert!(cp.call("Heartbeat", json!({})).await.is_ok());
    }
    // three phases each in range still sum without harm
    let phases: Vec<Value> = ["L1", "L2", "L3"]
        .iter()
        .map(|p| json!({ "value": "999999999", "unit": "kW", "measurand": "Power.Active.Import", "phase": p }))
        .collect();
    let ok = cp
        .call(
            "MeterValues",
            json!({ "connectorId": 1, "meterValue": [{ "timestamp": "2026-11-21T10:00:00Z", "sampledValue": phases }] }),
        )
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM meter_values")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 3, "only the in-range message is stored");

    // the end of a transaction is never refused for an absurd sample: it is dropped
    let start = cp
        .call("StartTransaction", json!({ "connectorId": 1, "idTag": "SOMECARD", "meterStart": 0, "timestamp": "2026-11-21T10:00:00Z" }))
        .await
        .unwrap();
    let stop = cp
        .call(
            "StopTransaction",
            json!({ "transactionId": start["transactionId"], "meterStop": 1500, "timestamp": "2026-11-21T10:30:00Z",
                "transactionData": [{ "timestamp": "2026-11-21T10:30:00Z", "sampledValue": [
                    { "value": DECIMAL_MAX, "unit": "kWh" }, { "value": "1500", "unit": "Wh" }] }] }),
        )
        .await;
    assert!(stop.is_ok(), "{stop:?}");
    let stopped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM charger_transactions WHERE stopped_at IS NOT NULL AND meter_stop_wh = 1500",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stopped, 1);
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM meter_values WHERE transaction_pk IS NOT NULL")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(kept, 1, "the in-range sample of the stop is kept");
}
