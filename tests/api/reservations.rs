//! Reservations: a driver holds a connector from the app, the charger is asked with ReserveNow,
//! only that driver may start there (by app or card), it is used, cancelled (CancelReservation)
//! or expires on the server even while its charger is offline; 1.6 and 2.0.1.

use std::time::Duration;

use serde_json::{json, Value};

use crate::charger_client::{connect16, connect201, TestCharger};
use crate::helpers::{error_code, spawn_app_with, TestApp, CHARGER_PASSWORD};

const RESERVE: &str = "mutation($i: ReserveConnectorInput!) { reserveConnector(input: $i) { id status chargerId connectorId expiresAt reason } }";
const CANCEL: &str =
    "mutation($id: ID!) { cancelReservation(reservationId: $id) { id status reason } }";
const MINE: &str = "{ myReservations { id status connectorId reason sessionId } }";
const START: &str =
    "mutation($i: StartSessionInput!) { startSession(input: $i) { id status connectorId } }";
const CONNECTORS: &str =
    "query($id: ID!) { charger(id: $id) { connectors { connectorId status } } }";

struct Fixture {
    app: TestApp,
    operator: String,
    station: uuid::Uuid,
    /// (token, idTag) of two funded drivers
    alice: (String, String),
    bob: (String, String),
}

async fn fixture(charger: &str) -> Fixture {
    let app = spawn_app_with(|s| s.reservations.sweep_secs = 1).await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("Reservation station").await;
    app.register_charger(&operator, charger, station, None)
        .await;
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

/// A booted 1.6 charger with two Available connectors.
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

/// Runs `request` while the charger answers the one call it gets with `answer`; returns the
/// API's response and the call (action, payload).
async fn with_answer(
    cp: &mut TestCharger,
    request: impl std::future::Future<Output = Value>,
    answer: Value,
) -> (Value, (String, Value)) {
    let charger = async {
        let (id, action, payload) = cp.next_server_call().await;
        cp.reply(&id, answer).await;
        (action, payload)
    };
    tokio::join!(request, charger)
}

async fn reserve(f: &Fixture, token: &str, charger: &str, connector: Option<i32>) -> Value {
    let mut input =
        json!({ "stationId": f.station.to_string(), "chargerId": charger, "minutes": 10 });
    if let Some(c) = connector {
        input["connectorId"] = json!(c);
    }
    f.app
        .graphql(RESERVE, json!({ "i": input }), Some(token))
        .await
}

async fn mine(f: &Fixture, token: &str) -> Vec<Value> {
    f.app.graphql(MINE, json!({}), Some(token)).await["data"]["myReservations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn connector_status(f: &Fixture, charger: &str, connector: i64) -> Value {
    let response = f
        .app
        .graphql(CONNECTORS, json!({ "id": charger }), Some(&f.operator))
        .await;
    response["data"]["charger"]["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["connectorId"] == connector)
        .map(|c| c["status"].clone())
        .unwrap_or_default()
}

#[actix_web::test]
async fn a_reserved_connector_is_held_for_its_driver_who_starts_there_and_uses_it() {
    let f = fixture("CP-R1").await;
    let mut cp = charger16(&f.app, "CP-R1").await;

    let (response, (action, payload)) = with_answer(
        &mut cp,
        reserve(&f, &f.alice.0, "CP-R1", Some(1)),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(action, "ReserveNow");
    assert_eq!(payload["connectorId"], 1);
    assert_eq!(
        payload["idTag"],
        f.alice.1.as_str(),
        "held for alice's token"
    );
    assert!(payload["reservationId"].is_i64(), "{payload}");
    let reservation = &response["data"]["reserveConnector"];
    assert_eq!(reservation["status"], "ACCEPTED", "{response}");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(payload["expiryDate"].as_str().unwrap())
            .unwrap()
            .timestamp(),
        chrono::DateTime::parse_from_rfc3339(reservation["expiresAt"].as_str().unwrap())
            .unwrap()
            .timestamp(),
        "the charger holds it exactly as long as the server"
    );
    // everyone sees it reserved, before the charger says so itself
    assert_eq!(connector_status(&f, "CP-R1", 1).await, "RESERVED");
    assert_eq!(connector_status(&f, "CP-R1", 2).await, "AVAILABLE");

    // bob cannot start on it, nor reserve it; he is given the other connector
    let refused = f
        .app
        .graphql(
            START,
            json!({ "i": { "stationId": f.station.to_string(), "chargerId": "CP-R1", "connectorId": 1 } }),
            Some(&f.bob.0),
        )
        .await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("CONNECTOR_BUSY"),
        "{refused}"
    );
    let again = reserve(&f, &f.bob.0, "CP-R1", Some(1)).await;
    assert_eq!(
        error_code(&again).as_deref(),
        Some("CONNECTOR_BUSY"),
        "{again}"
    );
    let (started, (action, payload)) = with_answer(
        &mut cp,
        f.app.graphql(
            START,
            json!({ "i": { "stationId": f.station.to_string(), "chargerId": "CP-R1" } }),
            Some(&f.bob.0),
        ),
        json!({ "status": "Rejected" }),
    )
    .await;
    assert_eq!(action, "RemoteStartTransaction");
    assert_eq!(
        payload["connectorId"], 2,
        "bob is sent to the free connector: {started}"
    );

    // the charger reports it Reserved; alice starts there from the app
    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Reserved" }),
    )
    .await
    .unwrap();
    let (started, (action, payload)) = with_answer(
        &mut cp,
        f.app.graphql(
            START,
            json!({ "i": { "stationId": f.station.to_string(), "chargerId": "CP-R1" } }),
            Some(&f.alice.0),
        ),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(action, "RemoteStartTransaction");
    assert_eq!(
        payload["connectorId"], 1,
        "alice goes to her connector: {started}"
    );
    let session_id = started["data"]["startSession"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let start = cp
        .call(
            "StartTransaction",
            json!({ "connectorId": 1, "idTag": f.alice.1, "meterStart": 100, "timestamp": chrono::Utc::now().to_rfc3339(), "reservationId": payload_reservation(&f).await }),
        )
        .await
        .unwrap();
    assert_eq!(start["idTagInfo"]["status"], "Accepted");
    let used = mine(&f, &f.alice.0).await;
    assert_eq!(used[0]["status"], "USED", "{used:?}");
    assert_eq!(used[0]["sessionId"], session_id.as_str());
    // a used reservation holds nothing: the connector shows what the charger says
    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
    )
    .await
    .unwrap();
    assert_eq!(connector_status(&f, "CP-R1", 1).await, "AVAILABLE");
}

/// The OCPP reservationId of alice's live reservation, as the charger was given it.
async fn payload_reservation(f: &Fixture) -> i64 {
    sqlx::query_scalar::<_, i32>(
        "SELECT ocpp_id FROM reservations WHERE status IN ('PENDING', 'ACCEPTED') ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_one(&f.app.db)
    .await
    .map(i64::from)
    .unwrap()
}

#[actix_web::test]
async fn a_card_start_on_a_connector_held_for_another_driver_is_refused() {
    let f = fixture("CP-R2").await;
    let mut cp = charger16(&f.app, "CP-R2").await;
    let (response, _) = with_answer(
        &mut cp,
        reserve(&f, &f.alice.0, "CP-R2", Some(1)),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(response["data"]["reserveConnector"]["status"], "ACCEPTED");
    // a charger that ignores its reservation and lets bob's card start there is told Invalid
    let start = cp
        .call(
            "StartTransaction",
            json!({ "connectorId": 1, "idTag": f.bob.1, "meterStart": 0, "timestamp": chrono::Utc::now().to_rfc3339() }),
        )
        .await
        .unwrap();
    assert_eq!(start["idTagInfo"]["status"], "Invalid", "{start}");
    let sessions = f
        .app
        .graphql("{ mySessions { id } }", json!({}), Some(&f.bob.0))
        .await;
    assert_eq!(
        sessions["data"]["mySessions"],
        json!([]),
        "bob got no session"
    );
    // on the other connector his card is fine, and alice's reservation is untouched
    let start = cp
        .call(
            "StartTransaction",
            json!({ "connectorId": 2, "idTag": f.bob.1, "meterStart": 0, "timestamp": chrono::Utc::now().to_rfc3339() }),
        )
        .await
        .unwrap();
    assert_eq!(start["idTagInfo"]["status"], "Accepted");
    assert_eq!(mine(&f, &f.alice.0).await[0]["status"], "ACCEPTED");
}

#[actix_web::test]
async fn a_cancelled_reservation_is_released_on_the_charger_and_frees_the_connector() {
    let f = fixture("CP-R3").await;
    let mut cp = charger16(&f.app, "CP-R3").await;
    let (response, _) = with_answer(
        &mut cp,
        reserve(&f, &f.alice.0, "CP-R3", Some(2)),
        json!({ "status": "Accepted" }),
    )
    .await;
    let id = response["data"]["reserveConnector"]["id"].clone();
    let ocpp_id = payload_reservation(&f).await;
    // only its driver (or staff) may cancel it
    let foreign = f
        .app
        .graphql(CANCEL, json!({ "id": id }), Some(&f.bob.0))
        .await;
    assert_eq!(error_code(&foreign).as_deref(), Some("NOT_FOUND"));
    let (cancelled, (action, payload)) = with_answer(
        &mut cp,
        f.app.graphql(CANCEL, json!({ "id": id }), Some(&f.alice.0)),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(action, "CancelReservation");
    assert_eq!(payload["reservationId"], ocpp_id);
    assert_eq!(
        cancelled["data"]["cancelReservation"]["status"],
        "CANCELLED"
    );
    // cancelling again changes nothing and asks the charger nothing
    let again = f
        .app
        .graphql(CANCEL, json!({ "id": id }), Some(&f.alice.0))
        .await;
    assert_eq!(again["data"]["cancelReservation"]["status"], "CANCELLED");
    assert!(cp.recv_within(Duration::from_millis(300)).await.is_none());
    // bob may hold it now
    let (response, _) = with_answer(
        &mut cp,
        reserve(&f, &f.bob.0, "CP-R3", Some(2)),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(
        response["data"]["reserveConnector"]["status"], "ACCEPTED",
        "{response}"
    );
}

#[actix_web::test]
async fn refusals_limits_and_an_offline_charger_are_reported() {
    let f = fixture("CP-R4").await;
    // the charger's own refusal becomes the reservation's status
    let mut cp = charger16(&f.app, "CP-R4").await;
    let (response, _) = with_answer(
        &mut cp,
        reserve(&f, &f.alice.0, "CP-R4", Some(1)),
        json!({ "status": "Occupied" }),
    )
    .await;
    assert_eq!(
        response["data"]["reserveConnector"]["status"], "OCCUPIED",
        "{response}"
    );
    // a refused reservation holds nothing; one live reservation per driver
    let (response, _) = with_answer(
        &mut cp,
        reserve(&f, &f.alice.0, "CP-R4", Some(1)),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(response["data"]["reserveConnector"]["status"], "ACCEPTED");
    let second = reserve(&f, &f.alice.0, "CP-R4", Some(2)).await;
    assert_eq!(error_code(&second).as_deref(), Some("CONFLICT"), "{second}");
    // absurd input
    for minutes in [0, 100_000] {
        let bad = f
            .app
            .graphql(
                RESERVE,
                json!({ "i": { "stationId": f.station.to_string(), "chargerId": "CP-R4", "minutes": minutes } }),
                Some(&f.bob.0),
            )
            .await;
        assert_eq!(error_code(&bad).as_deref(), Some("BAD_USER_INPUT"), "{bad}");
    }
    let unknown = reserve(&f, &f.bob.0, "CP-R4", Some(7)).await;
    assert_eq!(error_code(&unknown).as_deref(), Some("BAD_USER_INPUT"));
    let anonymous = f
        .app
        .graphql(
            RESERVE,
            json!({ "i": { "stationId": f.station.to_string() } }),
            None,
        )
        .await;
    assert_eq!(error_code(&anonymous).as_deref(), Some("UNAUTHENTICATED"));
    // offline: refused at once
    drop(cp);
    let offline = f
        .app
        .wait_until(Duration::from_secs(10), || async {
            error_code(&reserve(&f, &f.bob.0, "CP-R4", Some(2)).await).as_deref()
                == Some("CHARGER_OFFLINE")
        })
        .await;
    assert!(offline, "a reservation on an offline charger is refused");
}

#[actix_web::test]
async fn two_drivers_racing_for_one_connector_cannot_both_hold_it() {
    let f = fixture("CP-R5").await;
    let mut cp = charger16(&f.app, "CP-R5").await;
    let both = async {
        tokio::join!(
            reserve(&f, &f.alice.0, "CP-R5", Some(1)),
            reserve(&f, &f.bob.0, "CP-R5", Some(1))
        )
    };
    tokio::pin!(both);
    // the charger answers every ReserveNow it gets until both requests are done
    let (a, b) = loop {
        tokio::select! {
            done = &mut both => break done,
            (id, _, _) = cp.next_server_call() => cp.reply(&id, json!({ "status": "Accepted" })).await,
        }
    };
    let won = [&a, &b]
        .iter()
        .filter(|r| r["data"]["reserveConnector"]["status"] == "ACCEPTED")
        .count();
    let busy = [&a, &b]
        .iter()
        .filter(|r| error_code(r).as_deref() == Some("CONNECTOR_BUSY"))
        .count();
    assert_eq!((won, busy), (1, 1), "{a} {b}");
}

#[actix_web::test]
async fn an_unused_reservation_expires_on_the_server_while_its_charger_is_offline() {
    let f = fixture("CP-R6").await;
    let mut cp = charger16(&f.app, "CP-R6").await;
    let (response, _) = with_answer(
        &mut cp,
        reserve(&f, &f.alice.0, "CP-R6", None),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(
        response["data"]["reserveConnector"]["connectorId"],
        Value::Null
    );
    drop(cp);
    // its time runs out (moved forward here rather than waited for)
    sqlx::query("UPDATE reservations SET expires_at = now() - interval '1 second'")
        .execute(&f.app.db)
        .await
        .unwrap();
    let expired = f
        .app
        .wait_until(Duration::from_secs(10), || async {
            mine(&f, &f.alice.0).await[0]["status"] == "EXPIRED"
        })
        .await;
    assert!(expired, "{:?}", mine(&f, &f.alice.0).await);
    // alice may reserve again once the charger is back
    let mut cp = charger16(&f.app, "CP-R6").await;
    let (response, _) = with_answer(
        &mut cp,
        reserve(&f, &f.alice.0, "CP-R6", Some(1)),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(response["data"]["reserveConnector"]["status"], "ACCEPTED");
}

#[actix_web::test]
async fn a_2_0_1_station_holds_an_evse_uses_it_and_reports_its_own_expiry() {
    let f = fixture("CS-R7").await;
    let mut cs = connect201(f.app.port, "CS-R7", Some(("CS-R7", CHARGER_PASSWORD))).await;
    cs.boot201().await;
    for evse in [1, 2] {
        cs.call(
            "StatusNotification",
            json!({ "timestamp": chrono::Utc::now().to_rfc3339(), "connectorStatus": "Available", "evseId": evse, "connectorId": 1 }),
        )
        .await
        .unwrap();
    }
    let (response, (action, payload)) = with_answer(
        &mut cs,
        reserve(&f, &f.alice.0, "CS-R7", Some(1)),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(action, "ReserveNow");
    assert_eq!(payload["evseId"], 1);
    assert_eq!(
        payload["idToken"],
        json!({ "idToken": f.alice.1, "type": "Central" })
    );
    assert_eq!(response["data"]["reserveConnector"]["status"], "ACCEPTED");
    let reservation_id = payload["id"].as_i64().unwrap();

    // bob's card on that EVSE is refused; alice's start uses her reservation
    let refused = cs
        .call(
            "TransactionEvent",
            json!({ "eventType": "Started", "timestamp": chrono::Utc::now().to_rfc3339(), "triggerReason": "Authorized", "seqNo": 0,
                    "transactionInfo": { "transactionId": "T-BOB" }, "evse": { "id": 1, "connectorId": 1 },
                    "idToken": { "idToken": f.bob.1, "type": "ISO14443" } }),
        )
        .await
        .unwrap();
    assert_eq!(refused["idTokenInfo"]["status"], "Invalid", "{refused}");
    let used = cs
        .call(
            "TransactionEvent",
            json!({ "eventType": "Started", "timestamp": chrono::Utc::now().to_rfc3339(), "triggerReason": "Authorized", "seqNo": 0,
                    "transactionInfo": { "transactionId": "T-ALICE" }, "evse": { "id": 1, "connectorId": 1 },
                    "reservationId": reservation_id,
                    "idToken": { "idToken": f.alice.1, "type": "Central" } }),
        )
        .await
        .unwrap();
    assert_eq!(used["idTokenInfo"]["status"], "Accepted");
    assert_eq!(mine(&f, &f.alice.0).await[0]["status"], "USED");

    // bob's reservation of any EVSE ends when the station says it expired
    let (response, (_, payload)) = with_answer(
        &mut cs,
        reserve(&f, &f.bob.0, "CS-R7", None),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(response["data"]["reserveConnector"]["status"], "ACCEPTED");
    assert!(payload.get("evseId").is_none(), "any EVSE: {payload}");
    cs.call(
        "ReservationStatusUpdate",
        json!({ "reservationId": payload["id"], "reservationUpdateStatus": "Expired" }),
    )
    .await
    .unwrap();
    let bobs = mine(&f, &f.bob.0).await;
    assert_eq!(bobs[0]["status"], "EXPIRED", "{bobs:?}");
    // an update for a reservation the server does not know is answered all the same
    let unknown = cs
        .call(
            "ReservationStatusUpdate",
            json!({ "reservationId": 987_654, "reservationUpdateStatus": "Removed" }),
        )
        .await;
    assert_eq!(unknown, Ok(json!({})));
}

#[actix_web::test]
async fn a_2_0_1_station_holds_any_evse_of_a_connector_type_and_a_1_6_charger_cannot() {
    let f = fixture("CS-R8").await;
    let operator = f.operator.clone();
    f.app
        .register_charger(&operator, "CP-R8", f.station, None)
        .await;
    let mut cs = connect201(f.app.port, "CS-R8", Some(("CS-R8", CHARGER_PASSWORD))).await;
    cs.boot201().await;
    let by_type = |charger: &str, kind: &str| json!({ "i": { "stationId": f.station.to_string(), "chargerId": charger, "connectorType": kind, "minutes": 10 } });
    let (response, (action, payload)) = with_answer(
        &mut cs,
        f.app
            .graphql(RESERVE, by_type("CS-R8", "cType2"), Some(&f.alice.0)),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(action, "ReserveNow");
    assert_eq!(payload["connectorType"], "cType2", "{payload}");
    assert!(payload.get("evseId").is_none(), "{payload}");
    assert_eq!(response["data"]["reserveConnector"]["status"], "ACCEPTED");
    // not a type OCPP knows, or with a connectorId too
    let unknown = f
        .app
        .graphql(RESERVE, by_type("CS-R8", "Schuko-XL"), Some(&f.bob.0))
        .await;
    assert_eq!(error_code(&unknown).as_deref(), Some("BAD_USER_INPUT"));
    // a 1.6 charger has no connector types: refused before it is asked
    let mut cp = charger16(&f.app, "CP-R8").await;
    let refused = f
        .app
        .graphql(RESERVE, by_type("CP-R8", "cType2"), Some(&f.bob.0))
        .await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("BAD_USER_INPUT"),
        "{refused}"
    );
    assert!(cp.recv_within(Duration::from_millis(300)).await.is_none());
}

/// TC_053 (1.6) and TC_H_19 (2.0.1): a reservation carries the driver's group (parentIdTag /
/// groupIdToken) and another card of that group may use it; a card outside the group may not.
#[actix_web::test]
async fn a_reservation_is_held_for_the_drivers_group() {
    const GROUP: &str = "mutation($t: String!, $g: String) { setIdTokenGroup(idToken: $t, groupIdToken: $g) { groupIdToken } }";
    let f = fixture("CP-RG").await;
    f.app
        .register_charger(&f.operator, "CS-RG", f.station, None)
        .await;
    let carol = f.app.funded_driver("carol@example.com").await;
    // alice and bob drive for one fleet; carol does not
    for tag in [&f.alice.1, &f.bob.1] {
        let set = f
            .app
            .graphql(
                GROUP,
                json!({ "t": tag, "g": "FLEET-RG" }),
                Some(&f.operator),
            )
            .await;
        assert_eq!(
            set["data"]["setIdTokenGroup"]["groupIdToken"], "FLEET-RG",
            "{set}"
        );
    }

    // 1.6: ReserveNow names the fleet as parentIdTag; bob's card uses alice's reservation
    let mut cp = charger16(&f.app, "CP-RG").await;
    let (response, (_, payload)) = with_answer(
        &mut cp,
        reserve(&f, &f.alice.0, "CP-RG", Some(1)),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(
        response["data"]["reserveConnector"]["status"], "ACCEPTED",
        "{response}"
    );
    assert_eq!(payload["parentIdTag"], "FLEET-RG", "{payload}");
    let outsider = cp
        .call(
            "StartTransaction",
            json!({ "connectorId": 1, "idTag": carol.1, "meterStart": 0, "timestamp": chrono::Utc::now().to_rfc3339() }),
        )
        .await
        .unwrap();
    assert_eq!(outsider["idTagInfo"]["status"], "Invalid", "{outsider}");
    let member = cp
        .call(
            "StartTransaction",
            json!({ "connectorId": 1, "idTag": f.bob.1, "meterStart": 0, "reservationId": payload["reservationId"],
                    "timestamp": chrono::Utc::now().to_rfc3339() }),
        )
        .await
        .unwrap();
    assert_eq!(member["idTagInfo"]["status"], "Accepted", "{member}");
    assert_eq!(member["idTagInfo"]["parentIdTag"], "FLEET-RG", "{member}");
    assert_eq!(mine(&f, &f.alice.0).await[0]["status"], "USED");

    // 2.0.1: ReserveNow carries the fleet as groupIdToken; bob's card starts on the EVSE
    let mut cs = connect201(f.app.port, "CS-RG", Some(("CS-RG", CHARGER_PASSWORD))).await;
    cs.boot201().await;
    cs.call(
        "StatusNotification",
        json!({ "timestamp": chrono::Utc::now().to_rfc3339(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1 }),
    )
    .await
    .unwrap();
    let (response, (_, payload)) = with_answer(
        &mut cs,
        reserve(&f, &f.alice.0, "CS-RG", Some(1)),
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(
        response["data"]["reserveConnector"]["status"], "ACCEPTED",
        "{response}"
    );
    assert_eq!(
        payload["groupIdToken"],
        json!({ "idToken": "FLEET-RG", "type": "Central" })
    );
    let started = cs
        .call(
            "TransactionEvent",
            json!({ "eventType": "Started", "timestamp": chrono::Utc::now().to_rfc3339(), "triggerReason": "Authorized", "seqNo": 0,
                    "transactionInfo": { "transactionId": "T-FLEET" }, "evse": { "id": 1, "connectorId": 1 },
                    "reservationId": payload["id"],
                    "idToken": { "idToken": f.bob.1, "type": "ISO14443" } }),
        )
        .await
        .unwrap();
    assert_eq!(started["idTokenInfo"]["status"], "Accepted", "{started}");
    assert_eq!(
        started["idTokenInfo"]["groupIdToken"]["idToken"],
        "FLEET-RG"
    );
    let alices = mine(&f, &f.alice.0).await;
    assert!(
        alices.iter().filter(|r| r["status"] == "USED").count() == 2,
        "{alices:?}"
    );
}
