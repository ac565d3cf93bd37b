//! Drivers' tokens: RFID cards registered to a driver, what chargers are told in Authorize
//! (status, expiry, group), blocking with ClearCache, expiry, the concurrent-transaction rule,
//! fleet groups using a reservation; 1.6 and 2.0.1 over real sockets.

use std::time::Duration;

use serde_json::{json, Value};

use crate::charger_client::{connect16, connect201, TestCharger};
use crate::helpers::{error_code, spawn_app, TestApp, CHARGER_PASSWORD};

const ADD: &str = "mutation($i: AddIdTokenInput!) { addIdToken(input: $i) { idToken type userId groupIdToken chargerGroupIdToken blocked expiresAt } }";
const MINE: &str = "{ myIdTokens { idToken type blocked } }";
const BLOCK: &str = "mutation($t: String!) { blockIdToken(idToken: $t) { idToken blocked } }";
const GROUP: &str = "mutation($t: String!, $g: String) { setIdTokenGroup(idToken: $t, groupIdToken: $g) { idToken groupIdToken chargerGroupIdToken } }";

struct Fixture {
    app: TestApp,
    operator: String,
    station: uuid::Uuid,
    /// (token, app idTag)
    alice: (String, String),
    bob: (String, String),
}

async fn fixture(chargers: &[&str]) -> Fixture {
    let app = spawn_app().await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("Token station").await;
    for charger in chargers {
        app.register_charger(&operator, charger, station, None)
            .await;
    }
    let alice = app.funded_driver("alice@example.com").await;
    let bob = app.funded_driver("bob@example.com").await;
    Fixture {
        app,
        operator,
        station,
        alice,
        bob,
    }
}

async fn add_card(f: &Fixture, token: &str, card: &str) -> Value {
    f.app
        .graphql(
            ADD,
            json!({ "i": { "idToken": card, "type": "ISO14443" } }),
            Some(token),
        )
        .await
}

async fn charger16(app: &TestApp, id: &str) -> TestCharger {
    let mut cp = connect16(app.port, id, Some((id, CHARGER_PASSWORD))).await;
    cp.boot().await;
    for connector in [1, 2] {
        cp.call(
            "StatusNotification",
            json!({ "connectorId": connector, "errorCode": "NoError", "status": "Available" }),
        )
        .await
        .unwrap();
    }
    cp
}

async fn authorize16(cp: &mut TestCharger, tag: &str) -> Value {
    cp.call("Authorize", json!({ "idTag": tag })).await.unwrap()["idTagInfo"].clone()
}

async fn start16(cp: &mut TestCharger, connector: i64, tag: &str) -> Value {
    cp.call(
        "StartTransaction",
        json!({ "connectorId": connector, "idTag": tag, "meterStart": 0, "timestamp": chrono::Utc::now().to_rfc3339() }),
    )
    .await
    .unwrap()
}

#[actix_web::test]
async fn a_drivers_card_is_accepted_with_its_group_and_expiry_by_1_6_and_2_0_1_chargers() {
    let f = fixture(&["CP-T1", "CS-T1"]).await;
    let expires = (chrono::Utc::now() + chrono::Duration::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let added = f
        .app
        .graphql(
            ADD,
            json!({ "i": { "idToken": "04A1B2C3D4E5F6", "type": "ISO14443", "expiresAt": expires } }),
            Some(&f.alice.0),
        )
        .await;
    let card = &added["data"]["addIdToken"];
    assert_eq!(card["type"], "ISO14443", "{added}");
    assert_eq!(card["blocked"], false);
    assert_eq!(card["groupIdToken"], Value::Null);
    assert_eq!(
        card["chargerGroupIdToken"],
        f.alice.1.as_str(),
        "her own group: her app token"
    );
    let mine = f.app.graphql(MINE, json!({}), Some(&f.alice.0)).await;
    let tokens: Vec<&str> = mine["data"]["myIdTokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["idToken"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, [f.alice.1.as_str(), "04A1B2C3D4E5F6"]);

    // bad and taken tokens
    let taken = add_card(&f, &f.bob.0, "04A1B2C3D4E5F6").await;
    assert_eq!(error_code(&taken).as_deref(), Some("CONFLICT"));
    for (token, kind) in [
        ("X".repeat(37), "ISO14443"),
        ("with space".to_string(), "ISO14443"),
        ("CENTRAL-1".to_string(), "CENTRAL"),
    ] {
        let bad = f
            .app
            .graphql(
                ADD,
                json!({ "i": { "idToken": token, "type": kind } }),
                Some(&f.bob.0),
            )
            .await;
        assert_eq!(error_code(&bad).as_deref(), Some("BAD_USER_INPUT"), "{bad}");
    }
    let anonymous = f
        .app
        .graphql(
            ADD,
            json!({ "i": { "idToken": "04FF", "type": "ISO14443" } }),
            None,
        )
        .await;
    assert_eq!(error_code(&anonymous).as_deref(), Some("UNAUTHENTICATED"));

    // a 1.6 charger: Accepted, her group as parentIdTag, the card's expiry
    let mut cp = charger16(&f.app, "CP-T1").await;
    let info = authorize16(&mut cp, "04A1B2C3D4E5F6").await;
    assert_eq!(info["status"], "Accepted");
    assert_eq!(info["parentIdTag"], f.alice.1.as_str());
    assert_eq!(
        info["expiryDate"].as_str().map(|d| &d[..19]),
        Some(&expires[..19])
    );
    assert_eq!(
        authorize16(&mut cp, "UNKNOWN-CARD").await,
        json!({ "status": "Invalid" })
    );
    // a start with the card opens her session
    let start = start16(&mut cp, 1, "04A1B2C3D4E5F6").await;
    assert_eq!(start["idTagInfo"]["status"], "Accepted");
    let sessions = f
        .app
        .graphql("{ mySessions { status } }", json!({}), Some(&f.alice.0))
        .await;
    assert_eq!(
        sessions["data"]["mySessions"].as_array().map(Vec::len),
        Some(1)
    );

    // a 2.0.1 station: the group as groupIdToken; charging already on another charger:
    // ConcurrentTx
    let mut cs = connect201(f.app.port, "CS-T1", Some(("CS-T1", CHARGER_PASSWORD))).await;
    cs.boot201().await;
    let answer = cs
        .call(
            "Authorize",
            json!({ "idToken": { "idToken": "04A1B2C3D4E5F6", "type": "ISO14443" } }),
        )
        .await
        .unwrap();
    assert_eq!(answer["idTokenInfo"]["status"], "ConcurrentTx", "{answer}");
    assert_eq!(
        answer["idTokenInfo"]["groupIdToken"],
        json!({ "idToken": f.alice.1, "type": "Central" })
    );
    // 1.6 keeps ConcurrentTx for StartTransaction, and the charger running it may ask again
    assert_eq!(
        authorize16(&mut cp, "04A1B2C3D4E5F6").await["status"],
        "Accepted"
    );
    let tid = start["transactionId"].as_i64().unwrap();
    cp.call(
        "StopTransaction",
        json!({ "transactionId": tid, "meterStop": 1000, "timestamp": chrono::Utc::now().to_rfc3339() }),
    )
    .await
    .unwrap();
    let answer = cs
        .call(
            "Authorize",
            json!({ "idToken": { "idToken": "04A1B2C3D4E5F6", "type": "ISO14443" } }),
        )
        .await
        .unwrap();
    assert_eq!(answer["idTokenInfo"]["status"], "Accepted", "{answer}");
}

#[actix_web::test]
async fn a_blocked_card_is_refused_and_chargers_that_saw_it_clear_their_cache() {
    let f = fixture(&["CP-T2"]).await;
    add_card(&f, &f.alice.0, "04BLOCKME").await;
    let mut cp = charger16(&f.app, "CP-T2").await;
    let start = start16(&mut cp, 1, "04BLOCKME").await;
    cp.call(
        "StopTransaction",
        json!({ "transactionId": start["transactionId"], "meterStop": 500, "timestamp": chrono::Utc::now().to_rfc3339() }),
    )
    .await
    .unwrap();

    // another driver cannot block it; its owner can, and the charger is told to clear its cache
    let foreign = f
        .app
        .graphql(BLOCK, json!({ "t": "04BLOCKME" }), Some(&f.bob.0))
        .await;
    assert_eq!(error_code(&foreign).as_deref(), Some("NOT_FOUND"));
    let blocked = f
        .app
        .graphql(BLOCK, json!({ "t": "04BLOCKME" }), Some(&f.alice.0))
        .await;
    assert_eq!(
        blocked["data"]["blockIdToken"]["blocked"], true,
        "{blocked}"
    );
    let (id, action, _) = tokio::time::timeout(Duration::from_secs(10), cp.next_server_call())
        .await
        .expect("ClearCache sent");
    assert_eq!(action, "ClearCache");
    cp.reply(&id, json!({ "status": "Accepted" })).await;
    assert_eq!(authorize16(&mut cp, "04BLOCKME").await["status"], "Blocked");
    let start = start16(&mut cp, 2, "04BLOCKME").await;
    assert_eq!(start["idTagInfo"]["status"], "Blocked");
    // blocking again changes nothing and clears nothing
    let again = f
        .app
        .graphql(BLOCK, json!({ "t": "04BLOCKME" }), Some(&f.operator))
        .await;
    assert_eq!(again["data"]["blockIdToken"]["blocked"], true);
    assert!(cp.recv_within(Duration::from_millis(300)).await.is_none());
}

#[actix_web::test]
async fn an_expired_card_is_refused() {
    let f = fixture(&["CP-T3"]).await;
    add_card(&f, &f.alice.0, "04EXPIRES").await;
    sqlx::query(
        "UPDATE id_tags SET expires_at = now() - interval '1 minute' WHERE id_tag = '04EXPIRES'",
    )
    .execute(&f.app.db)
    .await
    .unwrap();
    let mut cp = charger16(&f.app, "CP-T3").await;
    assert_eq!(authorize16(&mut cp, "04EXPIRES").await["status"], "Expired");
    assert_eq!(
        start16(&mut cp, 1, "04EXPIRES").await["idTagInfo"]["status"],
        "Expired"
    );
}

#[actix_web::test]
async fn a_fleet_card_uses_a_reservation_held_for_its_group() {
    let f = fixture(&["CP-T4"]).await;
    add_card(&f, &f.bob.0, "04FLEETBOB").await;
    // operators put alice's app token and bob's card into one fleet
    for token in [f.alice.1.as_str(), "04FLEETBOB"] {
        let set = f
            .app
            .graphql(
                GROUP,
                json!({ "t": token, "g": "FLEET-7" }),
                Some(&f.operator),
            )
            .await;
        assert_eq!(
            set["data"]["setIdTokenGroup"]["groupIdToken"], "FLEET-7",
            "{set}"
        );
    }
    let driver_tries = f
        .app
        .graphql(
            GROUP,
            json!({ "t": "04FLEETBOB", "g": null }),
            Some(&f.bob.0),
        )
        .await;
    assert_eq!(error_code(&driver_tries).as_deref(), Some("FORBIDDEN"));

    let mut cp = charger16(&f.app, "CP-T4").await;
    let reserve = f.app.graphql(
        "mutation($i: ReserveConnectorInput!) { reserveConnector(input: $i) { status } }",
        json!({ "i": { "stationId": f.station.to_string(), "chargerId": "CP-T4", "connectorId": 1 } }),
        Some(&f.alice.0),
    );
    let charger = async {
        let (id, action, payload) = cp.next_server_call().await;
        cp.reply(&id, json!({ "status": "Accepted" })).await;
        (action, payload)
    };
    let (reserved, (action, payload)) = tokio::join!(reserve, charger);
    assert_eq!(reserved["data"]["reserveConnector"]["status"], "ACCEPTED");
    assert_eq!(action, "ReserveNow");
    assert_eq!(
        payload["parentIdTag"], "FLEET-7",
        "held for the fleet: {payload}"
    );
    // bob's fleet card: the same parentIdTag, and the start on the held connector is his
    assert_eq!(
        authorize16(&mut cp, "04FLEETBOB").await["parentIdTag"],
        "FLEET-7"
    );
    let start = start16(&mut cp, 1, "04FLEETBOB").await;
    assert_eq!(start["idTagInfo"]["status"], "Accepted", "{start}");
    let status: String = sqlx::query_scalar("SELECT status FROM reservations")
        .fetch_one(&f.app.db)
        .await
        .unwrap();
    assert_eq!(status, "USED");

    // operators find tokens by group; drivers may not search
    let found = f
        .app
        .graphql(
            "{ idTokens(groupIdToken: \"FLEET-7\") { idToken } }",
            json!({}),
            Some(&f.operator),
        )
        .await;
    assert_eq!(
        found["data"]["idTokens"].as_array().map(Vec::len),
        Some(2),
        "{found}"
    );
    let refused = f
        .app
        .graphql("{ idTokens { idToken } }", json!({}), Some(&f.alice.0))
        .await;
    assert_eq!(error_code(&refused).as_deref(), Some("FORBIDDEN"));
}

#[actix_web::test]
async fn a_2_0_1_stations_transaction_answers_carry_the_group_so_fleet_cards_and_a_master_pass_stop_it(
) {
    let f = fixture(&["CS-T5"]).await;
    add_card(&f, &f.alice.0, "04FLEETA").await;
    add_card(&f, &f.bob.0, "04FLEETB").await;
    add_card(&f, &f.bob.0, "04MASTER").await;
    for (token, group) in [
        ("04FLEETA", "FLEET-9"),
        ("04FLEETB", "FLEET-9"),
        ("04MASTER", "MASTERPASS"),
    ] {
        let set = f
            .app
            .graphql(GROUP, json!({ "t": token, "g": group }), Some(&f.operator))
            .await;
        assert!(set["errors"].is_null(), "{set}");
    }
    let mut cs = connect201(f.app.port, "CS-T5", Some(("CS-T5", CHARGER_PASSWORD))).await;
    cs.boot201().await;
    let event = |event: &str, seq: i64, trigger: &str, token: &str, extra: Value| {
        let mut payload = json!({
            "eventType": event, "timestamp": chrono::Utc::now().to_rfc3339(), "triggerReason": trigger,
            "seqNo": seq, "transactionInfo": { "transactionId": "T-GROUP" },
            "evse": { "id": 1, "connectorId": 1 },
            "idToken": { "idToken": token, "type": "ISO14443" }
        });
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                payload["transactionInfo"][k] = v;
            }
        }
        payload
    };
    let fleet = json!({ "idToken": "FLEET-9", "type": "Central" });
    // started by one fleet card (TC_C_39/40): Accepted with the group
    let started = cs
        .call(
            "TransactionEvent",
            event("Started", 0, "Authorized", "04FLEETA", json!({})),
        )
        .await
        .unwrap();
    assert_eq!(started["idTokenInfo"]["status"], "Accepted");
    assert_eq!(started["idTokenInfo"]["groupIdToken"], fleet, "{started}");
    // another card of the fleet presented to stop it: the same group, so the station lets it
    let other = cs
        .call(
            "Authorize",
            json!({ "idToken": { "idToken": "04FLEETB", "type": "ISO14443" } }),
        )
        .await
        .unwrap();
    assert_eq!(other["idTokenInfo"]["groupIdToken"], fleet);
    let stop_authorized = cs
        .call(
            "TransactionEvent",
            event("Updated", 1, "StopAuthorized", "04FLEETB", json!({})),
        )
        .await
        .unwrap();
    assert_eq!(stop_authorized["idTokenInfo"]["groupIdToken"], fleet);
    // a master pass (its group is the station's MasterPassGroupId) ends it (TC_C_47-49)
    let ended = cs
        .call(
            "TransactionEvent",
            event(
                "Ended",
                2,
                "StopAuthorized",
                "04MASTER",
                json!({ "stoppedReason": "MasterPass" }),
            ),
        )
        .await
        .unwrap();
    assert_eq!(ended["idTokenInfo"]["status"], "Accepted");
    assert_eq!(
        ended["idTokenInfo"]["groupIdToken"],
        json!({ "idToken": "MASTERPASS", "type": "Central" })
    );
    // the session stays alice's, ended
    let sessions = f
        .app
        .graphql("{ mySessions { status } }", json!({}), Some(&f.alice.0))
        .await;
    assert_eq!(
        sessions["data"]["mySessions"][0]["status"], "COMPLETED",
        "{sessions}"
    );
}
