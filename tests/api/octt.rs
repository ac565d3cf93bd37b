//! The OCTT trigger (`POST /api/octt/{version}/{chargerId}/{action}`) that lets an external
//! OCPP test tool make the CSMS send its calls: off by default, bearer-token protected, the
//! charger's answer returned, every refusal with a clear status.

use serde_json::{json, Value};

use crate::charger_client::connect16;
use crate::helpers::{spawn_app, spawn_app_with, CHARGER_PASSWORD};

const TOKEN: &str = "octt-trigger-token-for-tests-0001";

pub async fn post(port: u16, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn the_trigger_is_off_unless_configured() {
    let app = spawn_app().await;
    let (status, body) = post(app.port, "/api/octt/1.6/CP-X/Reset", Some(TOKEN), json!({})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "disabled");
}

#[actix_web::test]
async fn a_test_tool_makes_the_csms_send_a_call_and_gets_the_chargers_answer() {
    let app = spawn_app_with(|s| {
        s.ocpp.octt_trigger_token = Some(TOKEN.to_string().into());
    })
    .await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("OCTT station").await;
    app.register_charger(&operator, "CP-OCTT", station, None)
        .await;

    let payload = json!({ "connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "TAG-1", "reservationId": 42 });
    // offline and unknown chargers, bad tokens, versions and payloads
    let (status, body) = post(
        app.port,
        "/api/octt/1.6/CP-OCTT/ReserveNow",
        Some(TOKEN),
        payload.clone(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = post(
        app.port,
        "/api/octt/1.6/CP-NONE/ReserveNow",
        Some(TOKEN),
        payload.clone(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        app.port,
        "/api/octt/1.6/CP-OCTT/ReserveNow",
        Some("wrong"),
        payload.clone(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = post(
        app.port,
        "/api/octt/1.6/CP-OCTT/ReserveNow",
        None,
        payload.clone(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = post(
        app.port,
        "/api/octt/3.0/CP-OCTT/ReserveNow",
        Some(TOKEN),
        payload.clone(),
    )
    .await;
    assert_eq!(status, 400);

    let mut cp = connect16(app.port, "CP-OCTT", Some(("CP-OCTT", CHARGER_PASSWORD))).await;
    cp.boot().await;
    let (status, body) = post(
        app.port,
        "/api/octt/2.0.1/CP-OCTT/ReserveNow",
        Some(TOKEN),
        payload.clone(),
    )
    .await;
    assert_eq!(status, 409, "a 1.6 charger: {body}");
    let (status, body) = post(
        app.port,
        "/api/octt/1.6/CP-OCTT/ReserveNow",
        Some(TOKEN),
        json!({ "connectorId": "one" }),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let request = post(
        app.port,
        "/api/octt/1.6/CP-OCTT/ReserveNow",
        Some(TOKEN),
        payload.clone(),
    );
    let charger = async {
        let (id, action, sent) = cp.next_server_call().await;
        cp.reply(&id, json!({ "status": "Accepted" })).await;
        (action, sent)
    };
    let ((status, body), (action, sent)) = tokio::join!(request, charger);
    assert_eq!(action, "ReserveNow");
    assert_eq!(sent, payload);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "action": "ReserveNow", "response": { "status": "Accepted" } })
    );
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'octtTrigger'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(audited >= 1);
}
