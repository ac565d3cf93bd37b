//! GraphQL subscriptions over both WebSocket subprotocols.

use serde_json::json;

use crate::charger_client::connect16;
use crate::gql_ws::GqlSocket;
use crate::helpers::spawn_app;
use crate::helpers::CHARGER_PASSWORD;

const ON_CHARGER: &str = "subscription($id: ID!) { onChargerStatusChanged(chargerId: $id) { id online connectors { connectorId status } } }";

async fn charger_status_flow(legacy: bool) {
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Sub station").await;
    app.register_charger(&token, "CP-SUB", station, None).await;

    let mut sub = GqlSocket::connect(app.port, Some(&token), legacy)
        .await
        .expect("ack");
    sub.subscribe("1", ON_CHARGER, json!({ "id": "CP-SUB" }))
        .await;
    let first = sub.next().await.expect("current state");
    assert_eq!(first["onChargerStatusChanged"]["online"], false);

    let mut cp = connect16(app.port, "CP-SUB", Some(("CP-SUB", CHARGER_PASSWORD))).await;
    // wait until an update says online
    loop {
        let update = sub.next().await.expect("update");
        if update["onChargerStatusChanged"]["online"] == true {
            break;
        }
    }
    cp.boot().await;
    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Faulted" }),
    )
    .await
    .unwrap();
    loop {
        let update = sub.next().await.expect("update");
        if update["onChargerStatusChanged"]["connectors"]
            == json!([{ "connectorId": 1, "status": "FAULTED" }])
        {
            break;
        }
    }
    drop(cp);
    loop {
        let update = sub.next().await.expect("update");
        if update["onChargerStatusChanged"]["online"] == false {
            break;
        }
    }
}

#[actix_web::test]
async fn charger_status_changes_reach_graphql_transport_ws_subscribers() {
    charger_status_flow(false).await;
}

#[actix_web::test]
async fn charger_status_changes_reach_legacy_graphql_ws_subscribers() {
    charger_status_flow(true).await;
}

#[actix_web::test]
async fn subscriptions_need_a_valid_token_and_the_right_role() {
    let app = spawn_app().await;
    assert!(GqlSocket::connect(app.port, Some("not-a-token"), false)
        .await
        .is_err());

    let (driver, _, _) = app
        .register("sub@example.com", "correct horse battery")
        .await;
    let mut sub = GqlSocket::connect(app.port, Some(&driver), false)
        .await
        .expect("ack");
    sub.subscribe("1", ON_CHARGER, json!({ "id": "CP-X" }))
        .await;
    let error = sub.next().await.expect_err("forbidden");
    assert!(error.to_string().contains("FORBIDDEN"), "{error}");
}
