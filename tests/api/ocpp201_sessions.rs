//! The app's charging session journey against an OCPP 2.0.1 station: the same mutations, the
//! same statuses and events as with 1.6; only the wire differs (RequestStartTransaction with a
//! remoteStartId, TransactionEvent, RequestStopTransaction with the station's transactionId).

use serde_json::{json, Value};

use crate::charger_client::{connect201, TestCharger};
use crate::gql_ws::GqlSocket;
use crate::helpers::{TestApp, CHARGER_PASSWORD};
use crate::ocpp201::{event, with_meter};
use crate::sessions::{fixture, session_status, wait_status, Fixture, END, ON_SESSION, START};

/// A booted 2.0.1 station with EVSE 1 (and 2) Available.
async fn station(app: &TestApp, id: &str) -> TestCharger {
    let mut cs = connect201(app.port, id, Some((id, CHARGER_PASSWORD))).await;
    cs.boot201().await;
    for evse in [1, 2] {
        cs.call("StatusNotification", json!({ "timestamp": "2026-11-21T09:00:00Z", "connectorStatus": "Available", "evseId": evse, "connectorId": 1 }))
            .await
            .unwrap();
    }
    cs
}

/// startSession while the station accepts the RequestStartTransaction with `answer`; returns
/// (session id, the request's payload).
async fn start_accepted(f: &Fixture, cs: &mut TestCharger, answer: Value) -> (String, Value) {
    let request = f.app.graphql(
        START,
        json!({ "i": { "stationId": f.station.to_string() } }),
        Some(&f.driver),
    );
    let station = async {
        let (id, action, payload) = cs.next_server_call().await;
        assert_eq!(action, "RequestStartTransaction");
        cs.reply(&id, answer).await;
        payload
    };
    let (response, payload) = tokio::join!(request, station);
    let session = &response["data"]["startSession"];
    assert_eq!(session["status"], "PENDING", "{response}");
    (session["id"].as_str().unwrap().to_string(), payload)
}

/// The next live update whose status is `status`.
async fn next_with_status(sub: &mut GqlSocket, status: &str) -> Value {
    loop {
        let update = sub.next().await.expect("a live update");
        if update["onSessionStatusChanged"]["status"] == status {
            return update["onSessionStatusChanged"].clone();
        }
    }
}

async fn remote_start_id(f: &Fixture, session_id: &str) -> i64 {
    sqlx::query_scalar::<_, Option<i32>>("SELECT remote_start_id FROM sessions WHERE id = $1::uuid")
        .bind(session_id)
        .fetch_one(&f.app.db)
        .await
        .unwrap()
        .map(i64::from)
        .unwrap()
}

#[actix_web::test]
async fn the_whole_2_0_1_journey_from_start_to_completed_with_live_updates() {
    let f = fixture().await;
    let mut cs = station(&f.app, "CP-S1").await;
    let (session_id, request) = start_accepted(&f, &mut cs, json!({ "status": "Accepted" })).await;
    let remote_start_id = remote_start_id(&f, &session_id).await;
    assert_eq!(
        request,
        json!({ "idToken": { "idToken": f.id_tag, "type": "Central" }, "remoteStartId": remote_start_id, "evseId": 1 })
    );

    let mut sub = GqlSocket::connect(f.app.port, Some(&f.driver), false)
        .await
        .expect("ack");
    sub.subscribe("s", ON_SESSION, json!({ "id": session_id }))
        .await;
    next_with_status(&mut sub, "PENDING").await;

    let mut started = with_meter(
        event("Started", 0, "TX-J", "2026-11-21T10:00:00Z"),
        10_000,
        None,
        "Transaction.Begin",
    );
    started["triggerReason"] = json!("RemoteStart");
    started["idToken"] = json!({ "idToken": f.id_tag, "type": "Central" });
    started["transactionInfo"]["remoteStartId"] = json!(remote_start_id);
    let answer = cs.call("TransactionEvent", started).await.unwrap();
    assert_eq!(answer["idTokenInfo"]["status"], "Accepted");
    next_with_status(&mut sub, "IN_PROGRESS").await;

    let updated = |seq: i64, wh: i64, w: i64, at: &str| {
        with_meter(
            event("Updated", seq, "TX-J", at),
            wh,
            Some(w),
            "Sample.Periodic",
        )
    };
    cs.call(
        "TransactionEvent",
        updated(1, 13_500, 11_000, "2026-11-21T10:20:00Z"),
    )
    .await
    .unwrap();
    let live = next_with_status(&mut sub, "IN_PROGRESS").await;
    assert_eq!(live["energyKWh"], 3.5, "{live}");
    assert_eq!(live["powerKW"], 11.0);

    // a power cap becomes a TxProfile for the station's transaction
    let request = f.app.graphql(
        "mutation($id: ID!) { updateSession(input: { sessionId: $id, maxPowerKw: 7.4 }) { status maxPowerKw } }",
        json!({ "id": session_id }),
        Some(&f.driver),
    );
    let charger = async {
        let (id, action, payload) = cs.next_server_call().await;
        assert_eq!(action, "SetChargingProfile");
        assert_eq!(payload["evseId"], 1);
        let profile = &payload["chargingProfile"];
        assert_eq!(profile["transactionId"], "TX-J");
        assert_eq!(profile["chargingProfilePurpose"], "TxProfile");
        assert_eq!(
            profile["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"],
            7400.0
        );
        cs.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (capped, ()) = tokio::join!(request, charger);
    assert_eq!(
        capped["data"]["updateSession"]["maxPowerKw"], 7.4,
        "{capped}"
    );

    cs.call(
        "TransactionEvent",
        updated(2, 21_000, 7_400, "2026-11-21T10:40:00Z"),
    )
    .await
    .unwrap();
    assert!(
        f.app
            .wait_until(std::time::Duration::from_secs(10), || async {
                session_status(&f, &session_id).await["energyKWh"] == 11.0
            })
            .await
    );

    let request = f
        .app
        .graphql(END, json!({ "id": session_id }), Some(&f.driver));
    let charger = async {
        let (id, action, payload) = cs.next_server_call().await;
        assert_eq!(action, "RequestStopTransaction");
        assert_eq!(payload, json!({ "transactionId": "TX-J" }));
        cs.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (ended, ()) = tokio::join!(request, charger);
    assert_eq!(ended["data"]["endSession"]["status"], "STOPPING", "{ended}");
    next_with_status(&mut sub, "STOPPING").await;

    let mut last = with_meter(
        event("Ended", 3, "TX-J", "2026-11-21T10:58:00Z"),
        22_400,
        None,
        "Transaction.End",
    );
    last["triggerReason"] = json!("RemoteStop");
    last["transactionInfo"]["stoppedReason"] = json!("Remote");
    cs.call("TransactionEvent", last).await.unwrap();
    let done = next_with_status(&mut sub, "COMPLETED").await;
    assert_eq!(done["energyKWh"], 12.4);

    let view = session_status(&f, &session_id).await;
    assert_eq!(view["startTime"], "2026-11-21T10:00:00+00:00");
    assert_eq!(view["endTime"], "2026-11-21T10:58:00+00:00");
    assert_eq!(view["stopReason"], "Remote");
    let body: String =
        sqlx::query_scalar("SELECT body FROM outbox WHERE event_type = 'SESSION_ENDED'")
            .fetch_one(&f.app.db)
            .await
            .unwrap();
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["sessionId"], session_id.as_str());
    assert_eq!(event["energyKwh"], 12.4);
    assert_eq!(event["durationMinutes"], 58);
    assert_eq!(event["stopReason"], "Remote");
    let started: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'SESSION_STARTED'")
            .fetch_one(&f.app.db)
            .await
            .unwrap();
    assert_eq!(started, 1);
}

#[actix_web::test]
async fn a_remote_start_joins_the_transaction_a_plugged_in_car_already_opened() {
    let f = fixture().await;
    let mut cs = station(&f.app, "CP-S1").await;
    // the driver plugged into EVSE 2 first: the station opened a transaction without a token
    let mut plugged = with_meter(
        event("Started", 0, "TX-PLUG", "2026-11-21T10:00:00Z"),
        500,
        None,
        "Transaction.Begin",
    );
    plugged["triggerReason"] = json!("CablePluggedIn");
    plugged["evse"] = json!({ "id": 2, "connectorId": 1 });
    assert_eq!(
        cs.call("TransactionEvent", plugged).await.unwrap(),
        json!({})
    );

    // the app asks for the first free EVSE (1); the station starts where the car is
    let (session_id, request) = start_accepted(
        &f,
        &mut cs,
        json!({ "status": "Accepted", "transactionId": "TX-PLUG" }),
    )
    .await;
    let mut authorised = event("Updated", 1, "TX-PLUG", "2026-11-21T10:01:00Z");
    authorised["triggerReason"] = json!("RemoteStart");
    authorised["evse"] = json!({ "id": 2, "connectorId": 1 });
    authorised["idToken"] = request["idToken"].clone();
    authorised["transactionInfo"]["remoteStartId"] = request["remoteStartId"].clone();
    cs.call("TransactionEvent", authorised).await.unwrap();
    assert!(wait_status(&f, &session_id, "IN_PROGRESS").await);
    assert_eq!(session_status(&f, &session_id).await["connectorId"], 2);

    let mut ended = with_meter(
        event("Ended", 2, "TX-PLUG", "2026-11-21T10:31:00Z"),
        3_500,
        None,
        "Transaction.End",
    );
    ended["evse"] = json!({ "id": 2, "connectorId": 1 });
    cs.call("TransactionEvent", ended).await.unwrap();
    assert!(wait_status(&f, &session_id, "COMPLETED").await);
    let view = session_status(&f, &session_id).await;
    assert_eq!(view["energyKWh"], 3.0, "{view}");
    assert_eq!(view["stopReason"], "Local", "no stoppedReason means Local");
}
