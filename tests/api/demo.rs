//! `chargegrid seed-demo`'s demo fleet: what a newcomer signs in and charges with.

use serde_json::json;

use crate::charger_client::connect16;
use crate::helpers::spawn_app;
use chargegrid::commands::demo_fleet;

#[actix_web::test]
async fn the_demo_fleet_can_sign_in_connect_and_charge_and_a_second_seed_changes_nothing() {
    let app = spawn_app().await;
    let deps = chargegrid::ocm::sync::SyncDeps::from(&app.ctx);
    chargegrid::commands::seed_demo::import_demo_pois(&deps)
        .await
        .expect("bundled stations");
    let first = demo_fleet::ensure(&app.ctx.core()).await.expect("seed");
    let second = demo_fleet::ensure(&app.ctx.core())
        .await
        .expect("seed again");
    assert_eq!(first.created_chargers, demo_fleet::CHARGERS as usize);
    assert!(first.operator_created && first.driver_created);
    assert_eq!(second.created_chargers, 0);
    assert!(!second.operator_created && !second.driver_created);

    // the driver's wallet was credited once, through the audited creditWallet path
    let login = |email: &str, password: &str| {
        app.graphql(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken user { role walletBalance } } }",
            json!({ "e": email, "p": password }),
            None,
        )
    };
    let driver = login(demo_fleet::DRIVER_EMAIL, demo_fleet::DRIVER_PASSWORD).await;
    assert_eq!(
        driver["data"]["login"]["user"],
        json!({ "role": "DRIVER", "walletBalance": "50.00" }),
        "{driver}"
    );
    let credits: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'creditWallet'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(credits, 1);
    let operator = login(demo_fleet::OPERATOR_EMAIL, demo_fleet::OPERATOR_PASSWORD).await;
    assert_eq!(
        operator["data"]["login"]["user"]["role"], "ADMIN",
        "{operator}"
    );

    // a demo charger connects with the printed password, and the driver can charge there
    let id = "DEMO-000001";
    let mut cp = connect16(app.port, id, Some((id, demo_fleet::CHARGER_PASSWORD))).await;
    cp.boot().await;
    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
    )
    .await
    .unwrap();
    let station = first
        .chargers
        .iter()
        .find(|(charger, _, _)| charger == id)
        .map(|(_, station, _)| *station)
        .unwrap();
    let token = driver["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let start = app.graphql(
        "mutation($i: StartSessionInput!) { startSession(input: $i) { status chargerId } }",
        json!({ "i": { "stationId": station.to_string(), "chargerId": id } }),
        Some(&token),
    );
    let charger = async {
        let (call, action, _) = cp.next_server_call().await;
        assert_eq!(action, "RemoteStartTransaction");
        cp.reply(&call, json!({ "status": "Accepted" })).await;
    };
    let (started, ()) = tokio::join!(start, charger);
    assert_eq!(
        started["data"]["startSession"],
        json!({ "status": "PENDING", "chargerId": id }),
        "{started}"
    );
}
