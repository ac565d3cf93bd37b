//! Diagnostics and logs: an operator asks a charger for its log, the charger uploads it to the
//! URL the server gave it (one upload per request), reports its progress, and operators
//! download it; 1.6 GetDiagnostics and 2.0.1 GetLog over real sockets.

use std::time::Duration;

use serde_json::{json, Value};

use crate::charger_client::{connect16, connect201};
use crate::helpers::{error_code, spawn_app, CHARGER_PASSWORD};

const REQUEST: &str = "mutation($c: ID!, $t: ChargerLogType) { requestChargerLog(chargerId: $c, type: $t) { id status fileName downloadPath } }";
const LOGS: &str = "query($c: ID!) { chargerLogs(chargerId: $c) { id type status chargerStatus fileName sizeBytes downloadPath } }";

#[actix_web::test]
async fn a_chargers_diagnostics_are_uploaded_to_the_server_and_downloaded_by_operators() {
    let app = spawn_app().await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("Log station").await;
    app.register_charger(&operator, "CP-LOG", station, None)
        .await;
    app.register_charger(&operator, "CS-LOG", station, None)
        .await;
    let mut cp = connect16(app.port, "CP-LOG", Some(("CP-LOG", CHARGER_PASSWORD))).await;
    cp.boot().await;

    // 1.6: GetDiagnostics with an upload URL on this server; the charger names its file
    let request = app.graphql(REQUEST, json!({ "c": "CP-LOG" }), Some(&operator));
    let charger = async {
        let (id, action, payload) = cp.next_server_call().await;
        cp.reply(&id, json!({ "fileName": "diag-2026.zip" })).await;
        (action, payload)
    };
    let (response, (action, payload)) = tokio::join!(request, charger);

    assert_eq!(action, "GetDiagnostics");
    let requested = &response["data"]["requestChargerLog"];
    assert_eq!(requested["status"], "REQUESTED", "{response}");
    assert_eq!(requested["fileName"], "diag-2026.zip");
    assert_eq!(requested["downloadPath"], Value::Null);
    let location = payload["location"].as_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("http://127.0.0.1:{}/uploads/logs/", app.port)),
        "{location}"
    );
    cp.call(
        "DiagnosticsStatusNotification",
        json!({ "status": "Uploading" }),
    )
    .await
    .unwrap();
    let http = crate::helpers::http_client();
    let uploaded = http
        .put(&location)
        .body(b"line 1\nline 2\n".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status().as_u16(), 201);
    // one upload per request; an unknown secret is nothing
    let again = http.put(&location).body("x").send().await.unwrap();
    assert_eq!(again.status().as_u16(), 404);
    let guessed = http
        .put(format!(
            "http://127.0.0.1:{}/uploads/logs/guessed",
            app.port
        ))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(guessed.status().as_u16(), 404);
    cp.call(
        "DiagnosticsStatusNotification",
        json!({ "status": "Uploaded" }),
    )
    .await
    .unwrap();
    let logs = app
        .graphql(LOGS, json!({ "c": "CP-LOG" }), Some(&operator))
        .await;
    let log = &logs["data"]["chargerLogs"][0];
    assert_eq!(log["status"], "UPLOADED", "{logs}");
    assert_eq!(log["chargerStatus"], "Uploaded");
    assert_eq!(log["sizeBytes"], 14);
    let path = log["downloadPath"].as_str().unwrap().to_string();

    // operators download it; drivers and anonymous callers do not
    let url = format!("http://127.0.0.1:{}{path}", app.port);
    let file = http.get(&url).bearer_auth(&operator).send().await.unwrap();
    assert_eq!(file.status().as_u16(), 200);
    assert!(file.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("diag-2026.zip"));
    assert_eq!(file.bytes().await.unwrap().as_ref(), b"line 1\nline 2\n");
    let (driver, _, _) = app.register("d@example.com", "correct horse battery").await;
    let refused = http.get(&url).bearer_auth(&driver).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let forbidden = app
        .graphql(LOGS, json!({ "c": "CP-LOG" }), Some(&driver))
        .await;
    assert_eq!(error_code(&forbidden).as_deref(), Some("FORBIDDEN"));

    // 2.0.1: GetLog with its requestId; a refusal is reported and the request FAILED
    let mut cs = connect201(app.port, "CS-LOG", Some(("CS-LOG", CHARGER_PASSWORD))).await;
    cs.boot201().await;
    let request = app.graphql(
        REQUEST,
        json!({ "c": "CS-LOG", "t": "SECURITY" }),
        Some(&operator),
    );
    let charger = async {
        let (id, action, payload) = cs.next_server_call().await;
        cs.reply(&id, json!({ "status": "Rejected" })).await;
        (action, payload)
    };
    let (response, (action, payload)) = tokio::join!(request, charger);
    assert_eq!(action, "GetLog");
    assert_eq!(payload["logType"], "SecurityLog");
    assert!(payload["requestId"].is_i64());
    assert_eq!(
        error_code(&response).as_deref(),
        Some("CHARGER_REJECTED"),
        "{response}"
    );
    let request = app.graphql(REQUEST, json!({ "c": "CS-LOG" }), Some(&operator));
    let charger = async {
        let (id, _, payload) = cs.next_server_call().await;
        cs.reply(
            &id,
            json!({ "status": "Accepted", "filename": "station.log" }),
        )
        .await;
        payload
    };
    let (_, payload) = tokio::join!(request, charger);
    assert_eq!(payload["logType"], "DiagnosticsLog");
    cs.call(
        "LogStatusNotification",
        json!({ "status": "UploadFailure", "requestId": payload["requestId"] }),
    )
    .await
    .unwrap();
    let failed = app
        .wait_until(Duration::from_secs(5), || async {
            let logs = app
                .graphql(LOGS, json!({ "c": "CS-LOG" }), Some(&operator))
                .await;
            logs["data"]["chargerLogs"][0]["status"] == "FAILED"
                && logs["data"]["chargerLogs"][1]["status"] == "FAILED"
        })
        .await;
    assert!(failed);
}
