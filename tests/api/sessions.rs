//! Charging sessions from the app: the whole journey, every failure path, ownership, actor
//! crashes and server restarts, against a real OCPP charger client.

use std::time::Duration;

use serde_json::{json, Value};

use crate::charger_client::{connect16, TestCharger};
use crate::gql_ws::GqlSocket;
use crate::helpers::CHARGER_PASSWORD;
use crate::helpers::{error_code, spawn_app_with, spawn_with_settings, TestApp};
use chargegrid::actors::messages::{CrashSession, SessionActorCount, SessionChanged};

pub const START: &str = "mutation($i: StartSessionInput!) { startSession(input: $i) { id status chargerId connectorId energyKWh } }";
pub const END: &str = "mutation($id: ID!) { endSession(sessionId: $id) { id status energyKWh } }";
pub const SESSION: &str = "query($id: ID!) { session(id: $id) { id status energyKWh powerKW startTime endTime connectorId stopReason } }";
pub const ON_SESSION: &str = "subscription($id: ID!) { onSessionStatusChanged(sessionId: $id) { status energyKWh powerKW } }";

pub struct Fixture {
    pub app: TestApp,
    pub operator: String,
    pub driver: String,
    pub station: uuid::Uuid,
    pub id_tag: String,
}

async fn fixture_with(customize: impl FnOnce(&mut chargegrid::configuration::Settings)) -> Fixture {
    let app = spawn_app_with(customize).await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("Session station").await;
    app.register_charger(&operator, "CP-S1", station, None)
        .await;
    let (driver, _, _) = app
        .register("driver@example.com", "correct horse battery")
        .await;
    let me = app.fund(&driver, "50.00").await;
    let id_tag = me["idTag"].as_str().unwrap().to_string();
    Fixture {
        app,
        operator,
        driver,
        station,
        id_tag,
    }
}

pub async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

/// A booted charger with connector 1 Available.
async fn online_charger(app: &TestApp, id: &str) -> TestCharger {
    let mut cp = connect16(app.port, id, Some((id, CHARGER_PASSWORD))).await;
    cp.boot().await;
    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
    )
    .await
    .unwrap();
    cp
}

fn meter(tid: i64, wh: i64, w: i64, at: &str) -> Value {
    json!({ "connectorId": 1, "transactionId": tid, "meterValue": [{ "timestamp": at, "sampledValue": [
        { "value": wh.to_string(), "unit": "Wh", "measurand": "Energy.Active.Import.Register" },
        { "value": w.to_string(), "unit": "W", "measurand": "Power.Active.Import" }
    ] }] })
}

/// startSession while the charger accepts the RemoteStart; returns (session id, idTag the charger got, connector).
async fn start_accepted(f: &Fixture, cp: &mut TestCharger) -> (String, String, i64) {
    let request = f.app.graphql(
        START,
        json!({ "i": { "stationId": f.station.to_string() } }),
        Some(&f.driver),
    );
    let charger = async {
        let (id, action, payload) = cp.next_server_call().await;
        assert_eq!(action, "RemoteStartTransaction");
        cp.reply(&id, json!({ "status": "Accepted" })).await;
        payload
    };
    let (response, payload) = tokio::join!(request, charger);
    let session = &response["data"]["startSession"];
    assert_eq!(session["status"], "PENDING", "{response}");
    (
        session["id"].as_str().unwrap().to_string(),
        payload["idTag"].as_str().unwrap().to_string(),
        payload["connectorId"].as_i64().unwrap_or(1),
    )
}

async fn charger_starts(cp: &mut TestCharger, id_tag: &str, meter_start: i64) -> i64 {
    let start = cp
        .call("StartTransaction", json!({ "connectorId": 1, "idTag": id_tag, "meterStart": meter_start, "timestamp": "2026-11-21T10:00:00Z" }))
        .await
        .unwrap();
    assert_eq!(start["idTagInfo"]["status"], "Accepted");
    start["transactionId"].as_i64().unwrap()
}

/// The driver's `onSessionStatusChanged` subscription, checked to start at `first`.
pub async fn watch(f: &Fixture, session_id: &str, first: &str) -> GqlSocket {
    let mut sub = GqlSocket::connect(f.app.port, Some(&f.driver), false)
        .await
        .expect("ack");
    sub.subscribe("s", ON_SESSION, json!({ "id": session_id }))
        .await;
    assert_eq!(
        sub.next().await.unwrap()["onSessionStatusChanged"]["status"],
        first
    );
    sub
}

pub async fn session_status(f: &Fixture, id: &str) -> Value {
    f.app
        .graphql(SESSION, json!({ "id": id }), Some(&f.driver))
        .await["data"]["session"]
        .clone()
}

pub async fn wait_status(f: &Fixture, id: &str, status: &str) -> bool {
    f.app
        .wait_until(Duration::from_secs(10), || async {
            session_status(f, id).await["status"] == status
        })
        .await
}

#[actix_web::test]
async fn the_whole_journey_from_start_to_completed_with_live_updates() {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let (session_id, id_tag, connector) = start_accepted(&f, &mut cp).await;
    assert_eq!(id_tag, f.id_tag, "the charger gets the user's idTag");
    assert_eq!(connector, 1);

    let mut sub = watch(&f, &session_id, "PENDING").await;

    let tid = charger_starts(&mut cp, &id_tag, 10_000).await;
    assert_eq!(
        sub.next().await.unwrap()["onSessionStatusChanged"]["status"],
        "IN_PROGRESS"
    );

    cp.call(
        "MeterValues",
        meter(tid, 13_500, 11_000, "2026-11-21T10:20:00Z"),
    )
    .await
    .unwrap();
    let update = sub.next().await.unwrap();
    assert_eq!(
        update["onSessionStatusChanged"]["energyKWh"], 3.5,
        "{update}"
    );
    assert_eq!(update["onSessionStatusChanged"]["powerKW"], 11.0);
    cp.call(
        "MeterValues",
        meter(tid, 21_000, 7_400, "2026-11-21T10:40:00Z"),
    )
    .await
    .unwrap();
    // throttled to one update a second: the next one carries the latest reading
    let update = sub.next().await.unwrap();
    assert_eq!(
        update["onSessionStatusChanged"]["energyKWh"], 11.0,
        "{update}"
    );

    let request = f
        .app
        .graphql(END, json!({ "id": session_id }), Some(&f.driver));
    let charger = async {
        let (id, action, payload) = cp.next_server_call().await;
        assert_eq!(action, "RemoteStopTransaction");
        assert_eq!(payload["transactionId"], tid);
        cp.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (ended, ()) = tokio::join!(request, charger);
    assert_eq!(ended["data"]["endSession"]["status"], "STOPPING", "{ended}");
    assert_eq!(
        sub.next().await.unwrap()["onSessionStatusChanged"]["status"],
        "STOPPING"
    );

    cp.call("StopTransaction", json!({ "transactionId": tid, "meterStop": 22_400, "timestamp": "2026-11-21T10:58:00Z", "reason": "Remote" }))
        .await
        .unwrap();
    let done = sub.next().await.unwrap();
    assert_eq!(
        done["onSessionStatusChanged"]["status"], "COMPLETED",
        "{done}"
    );
    assert_eq!(done["onSessionStatusChanged"]["energyKWh"], 12.4);

    let view = session_status(&f, &session_id).await;
    assert_eq!(view["startTime"], "2026-11-21T10:00:00+00:00");
    assert_eq!(view["endTime"], "2026-11-21T10:58:00+00:00");
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
async fn start_fails_with_charger_offline_when_the_charger_is_not_connected() {
    let f = fixture().await;
    let r = f
        .app
        .graphql(
            START,
            json!({ "i": { "stationId": f.station.to_string() } }),
            Some(&f.driver),
        )
        .await;
    assert_eq!(error_code(&r).as_deref(), Some("CHARGER_OFFLINE"), "{r}");
}

#[actix_web::test]
async fn a_refused_start_is_rejected() {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let request = f.app.graphql(
        START,
        json!({ "i": { "stationId": f.station.to_string() } }),
        Some(&f.driver),
    );
    let charger = async {
        let (id, _, _) = cp.next_server_call().await;
        cp.reply(&id, json!({ "status": "Rejected" })).await;
    };
    let (r, ()) = tokio::join!(request, charger);
    assert_eq!(error_code(&r).as_deref(), Some("CHARGER_REJECTED"), "{r}");
    let status: String = sqlx::query_scalar("SELECT status FROM sessions")
        .fetch_one(&f.app.db)
        .await
        .unwrap();
    assert_eq!(status, "REJECTED");
}

#[actix_web::test]
async fn an_unanswered_start_times_out_and_the_session_fails() {
    let f = fixture_with(|s| s.ocpp.call_timeout_secs = 1).await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let r = f
        .app
        .graphql(
            START,
            json!({ "i": { "stationId": f.station.to_string() } }),
            Some(&f.driver),
        )
        .await;
    assert_eq!(error_code(&r).as_deref(), Some("CHARGER_TIMEOUT"), "{r}");
    let (_, action, _) = cp.next_server_call().await;
    assert_eq!(action, "RemoteStartTransaction");
    let status: String = sqlx::query_scalar("SELECT status FROM sessions")
        .fetch_one(&f.app.db)
        .await
        .unwrap();
    assert_eq!(status, "FAILED");
}

#[actix_web::test]
async fn busy_and_faulted_connectors_are_refused() {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "GroundFailure", "status": "Faulted" }),
    )
    .await
    .unwrap();
    let r = f
        .app
        .graphql(
            START,
            json!({ "i": { "stationId": f.station.to_string(), "connectorId": 1 } }),
            Some(&f.driver),
        )
        .await;
    assert_eq!(error_code(&r).as_deref(), Some("CONNECTOR_BUSY"), "{r}");
    let r = f
        .app
        .graphql(
            START,
            json!({ "i": { "stationId": f.station.to_string() } }),
            Some(&f.driver),
        )
        .await;
    assert_eq!(
        error_code(&r).as_deref(),
        Some("CONNECTOR_BUSY"),
        "no connector available: {r}"
    );
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&f.app.db)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

#[actix_web::test]
async fn a_low_wallet_is_insufficient_funds() {
    let f = fixture().await;
    let _cp = online_charger(&f.app, "CP-S1").await;
    let (poor, _, _) = f
        .app
        .register("poor@example.com", "correct horse battery")
        .await;
    let r = f
        .app
        .graphql(
            START,
            json!({ "i": { "stationId": f.station.to_string() } }),
            Some(&poor),
        )
        .await;
    assert_eq!(error_code(&r).as_deref(), Some("INSUFFICIENT_FUNDS"), "{r}");
}

#[actix_web::test]
async fn concurrent_starts_on_one_connector_let_exactly_one_win() {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let (other, _, _) = f
        .app
        .register("other@example.com", "correct horse battery")
        .await;
    f.app.fund(&other, "50").await;
    let input = json!({ "i": { "stationId": f.station.to_string(), "connectorId": 1 } });
    let a = f.app.graphql(START, input.clone(), Some(&f.driver));
    let b = f.app.graphql(START, input, Some(&other));
    let charger = async {
        let (id, _, _) = cp.next_server_call().await;
        cp.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (a, b, ()) = tokio::join!(a, b, charger);
    let codes = [error_code(&a), error_code(&b)];
    assert_eq!(codes.iter().filter(|c| c.is_none()).count(), 1, "{a} {b}");
    assert!(
        codes.contains(&Some("CONNECTOR_BUSY".to_string())),
        "{a} {b}"
    );
}

#[actix_web::test]
async fn a_pending_session_the_charger_never_starts_expires_to_failed() {
    let f = fixture_with(|s| s.sessions.pending_timeout_secs = 1).await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let (session_id, _, _) = start_accepted(&f, &mut cp).await;
    assert!(
        wait_status(&f, &session_id, "FAILED").await,
        "pending session never expired"
    );
}

#[actix_web::test]
async fn a_charger_disconnecting_mid_session_resumes_and_completes_after_reconnect() {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let (session_id, id_tag, _) = start_accepted(&f, &mut cp).await;
    let tid = charger_starts(&mut cp, &id_tag, 0).await;
    cp.call(
        "MeterValues",
        meter(tid, 2_000, 7_000, "2026-11-21T10:10:00Z"),
    )
    .await
    .unwrap();
    drop(cp);
    let offline = f
        .app
        .wait_until(Duration::from_secs(10), || async {
            f.app
                .graphql(
                    "query { charger(id: \"CP-S1\") { online } }",
                    json!({}),
                    Some(&f.operator),
                )
                .await["data"]["charger"]["online"]
                == false
        })
        .await;
    assert!(offline);
    // the session's actor left with its charger (one comes back with the charger), and the
    // API no longer finds it here
    let gone = no_session_actors_within(&f.app, Duration::from_secs(10)).await;
    assert!(gone, "a session actor stayed behind its charger");
    assert!(f
        .app
        .ctx
        .local_sessions
        .get(session_id.parse().unwrap())
        .is_none());
    assert_eq!(
        session_status(&f, &session_id).await["status"],
        "IN_PROGRESS"
    );

    // the charger comes back and delivers what it queued while offline
    let mut cp = connect16(f.app.port, "CP-S1", Some(("CP-S1", CHARGER_PASSWORD))).await;
    cp.call(
        "MeterValues",
        meter(tid, 5_000, 7_000, "2026-11-21T10:30:00Z"),
    )
    .await
    .unwrap();
    cp.call("StopTransaction", json!({ "transactionId": tid, "meterStop": 6_000, "timestamp": "2026-11-21T10:40:00Z", "reason": "EVDisconnected" }))
        .await
        .unwrap();
    assert!(wait_status(&f, &session_id, "COMPLETED").await);
    assert_eq!(session_status(&f, &session_id).await["energyKWh"], 6.0);
}

#[actix_web::test]
async fn only_the_owner_or_staff_can_see_update_or_end_a_session() {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let (session_id, _, _) = start_accepted(&f, &mut cp).await;
    let (stranger, _, stranger_id) = f
        .app
        .register("stranger@example.com", "correct horse battery")
        .await;
    let r = f
        .app
        .graphql(SESSION, json!({ "id": session_id }), Some(&stranger))
        .await;
    assert_eq!(error_code(&r).as_deref(), Some("FORBIDDEN"));
    let r = f
        .app
        .graphql(END, json!({ "id": session_id }), Some(&stranger))
        .await;
    assert_eq!(error_code(&r).as_deref(), Some("FORBIDDEN"));
    let r = f
        .app
        .graphql(
            "mutation($id: ID!) { updateSession(input: {sessionId: $id, maxEnergyKwh: 5}) { id } }",
            json!({ "id": session_id }),
            Some(&stranger),
        )
        .await;
    assert_eq!(error_code(&r).as_deref(), Some("FORBIDDEN"));
    let mut sub = GqlSocket::connect(f.app.port, Some(&stranger), false)
        .await
        .expect("ack");
    sub.subscribe("x", ON_SESSION, json!({ "id": session_id }))
        .await;
    assert!(sub.next().await.is_err());
    // the session's actor checks the caller on its own read too (a command from another
    // replica, or one this replica's API sent straight to it)
    let refused = f
        .app
        .ctx
        .sessions
        .send(chargegrid::actors::messages::SessionCommand::End {
            session_id: session_id.parse().unwrap(),
            caller: Some(stranger_id.parse().unwrap()),
        })
        .await
        .unwrap();
    assert_eq!(
        refused.map(|s| s.status),
        Err(chargegrid::actors::messages::SessionCommandError::Forbidden)
    );
    // an operator may look
    let r = f
        .app
        .graphql(SESSION, json!({ "id": session_id }), Some(&f.operator))
        .await;
    assert_eq!(r["data"]["session"]["status"], "PENDING");
}

#[actix_web::test]
async fn update_session_caps_power_and_stops_at_the_energy_limit() {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let (session_id, id_tag, _) = start_accepted(&f, &mut cp).await;
    let tid = charger_starts(&mut cp, &id_tag, 1_000).await;

    let request = f.app.graphql(
        "mutation($id: ID!) { updateSession(input: {sessionId: $id, maxPowerKw: 7.4, maxEnergyKwh: 2}) { maxPowerKw maxEnergyKwh } }",
        json!({ "id": session_id }),
        Some(&f.driver),
    );
    let charger = async {
        let (id, action, payload) = cp.next_server_call().await;
        assert_eq!(action, "SetChargingProfile");
        let profile = &payload["csChargingProfiles"];
        assert_eq!(profile["chargingProfilePurpose"], "TxProfile");
        assert_eq!(profile["transactionId"], tid);
        assert_eq!(
            profile["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"],
            7400.0
        );
        cp.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (r, ()) = tokio::join!(request, charger);
    assert_eq!(r["data"]["updateSession"]["maxEnergyKwh"], 2.0, "{r}");

    // 2.5 kWh delivered: over the limit, the server stops the session by itself
    cp.call(
        "MeterValues",
        meter(tid, 3_500, 7_400, "2026-11-21T10:20:00Z"),
    )
    .await
    .unwrap();
    let (id, action, payload) = cp.next_server_call().await;
    assert_eq!(action, "RemoteStopTransaction");
    assert_eq!(payload["transactionId"], tid);
    cp.reply(&id, json!({ "status": "Accepted" })).await;
    assert!(wait_status(&f, &session_id, "STOPPING").await);
}

/// Starts a session, changes Postgres behind its actor's back (as another writer's commit
/// would: the energy limit is already passed), crashes the actor, and expects the actor that
/// takes over to stop the session without any new reading: only one that read Postgres knows.
async fn a_crashed_actor_acts_on_what_postgres_holds(panic: bool) {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let (session_id, id_tag, _) = start_accepted(&f, &mut cp).await;
    let _tid = charger_starts(&mut cp, &id_tag, 0).await;
    sqlx::query("UPDATE sessions SET max_energy_kwh = 1, energy_kwh = 1.5 WHERE id = $1::uuid")
        .bind(&session_id)
        .execute(&f.app.db)
        .await
        .unwrap();
    let crashed = f
        .app
        .ctx
        .sessions
        .send(CrashSession {
            session_id: session_id.parse().unwrap(),
            panic,
        })
        .await
        .unwrap();
    assert!(crashed);
    let (id, action, _) = cp.next_server_call().await;
    assert_eq!(action, "RemoteStopTransaction");
    cp.reply(&id, json!({ "status": "Accepted" })).await;
    assert!(wait_status(&f, &session_id, "STOPPING").await);
    assert_eq!(f.app.ctx.sessions.send(SessionActorCount).await.unwrap(), 1);
    // the gauge counts actors that exist: a dead one is not among them
    assert_eq!(f.app.ctx.metrics.sessions_active.get(), 1);
}

#[actix_web::test]
async fn a_crashed_session_actor_is_restarted_from_postgres() {
    // it stops: actix restarts it in place, and it reloads before deciding
    a_crashed_actor_acts_on_what_postgres_holds(false).await;
}

#[actix_web::test]
async fn a_session_actor_that_panics_is_replaced_from_postgres() {
    // a bug in a handler: the actor's task unwinds and its address goes dead (actix restarts
    // only actors that stop); the supervisor must start a new one, which reads Postgres
    a_crashed_actor_acts_on_what_postgres_holds(true).await;
}

#[actix_web::test]
async fn open_sessions_survive_a_server_restart() {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let (session_id, id_tag, _) = start_accepted(&f, &mut cp).await;
    let tid = charger_starts(&mut cp, &id_tag, 500).await;
    cp.call(
        "MeterValues",
        meter(tid, 4_500, 7_000, "2026-11-21T10:10:00Z"),
    )
    .await
    .unwrap();

    // restart: same database, new process state
    let settings = {
        let mut s = (*f.app.ctx.settings).clone();
        s.http.bind = "127.0.0.1:0".into();
        s
    };
    f.app.stop().await;
    drop(cp);
    let restarted = spawn_with_settings(settings).await;
    // the session's actor lives where its charger is: none until the charger is back
    assert_eq!(
        restarted
            .ctx
            .sessions
            .send(SessionActorCount)
            .await
            .unwrap(),
        0
    );
    let mut cp = connect16(restarted.port, "CP-S1", Some(("CP-S1", CHARGER_PASSWORD))).await;
    let rehydrated = restarted
        .wait_until(Duration::from_secs(5), || async {
            restarted
                .ctx
                .sessions
                .send(SessionActorCount)
                .await
                .unwrap_or(0)
                == 1
        })
        .await;
    assert!(rehydrated, "the open session did not get its actor back");

    cp.call("StopTransaction", json!({ "transactionId": tid, "meterStop": 9_500, "timestamp": "2026-11-21T10:50:00Z", "reason": "Local" }))
        .await
        .unwrap();
    let completed = restarted
        .wait_until(Duration::from_secs(10), || async {
            restarted
                .graphql(SESSION, json!({ "id": session_id }), Some(&f.driver))
                .await["data"]["session"]["status"]
                == "COMPLETED"
        })
        .await;
    assert!(completed);
    let energy = restarted
        .graphql(SESSION, json!({ "id": session_id }), Some(&f.driver))
        .await["data"]["session"]["energyKWh"]
        .clone();
    assert_eq!(energy, 9.0);
}

#[actix_web::test]
async fn an_rfid_start_with_a_known_tag_creates_a_session() {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let tid = charger_starts(&mut cp, &f.id_tag, 0).await;
    let mine = f
        .app
        .graphql(
            "{ mySessions { status chargerId connectorId } }",
            json!({}),
            Some(&f.driver),
        )
        .await;
    assert_eq!(
        mine["data"]["mySessions"],
        json!([{ "status": "IN_PROGRESS", "chargerId": "CP-S1", "connectorId": 1 }]),
        "{mine}"
    );
    cp.call(
        "StopTransaction",
        json!({ "transactionId": tid, "meterStop": 1_000, "timestamp": "2026-11-21T10:30:00Z" }),
    )
    .await
    .unwrap();
    let done = f
        .app
        .graphql(
            "{ mySessions(status: COMPLETED) { energyKWh } }",
            json!({}),
            Some(&f.driver),
        )
        .await;
    assert_eq!(done["data"]["mySessions"][0]["energyKWh"], 1.0);
}

#[actix_web::test]
async fn ending_a_pending_session_cancels_it() {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let (session_id, _, _) = start_accepted(&f, &mut cp).await;
    let r = f
        .app
        .graphql(END, json!({ "id": session_id }), Some(&f.driver))
        .await;
    assert_eq!(r["data"]["endSession"]["status"], "FAILED", "{r}");
    let again = f
        .app
        .graphql(END, json!({ "id": session_id }), Some(&f.driver))
        .await;
    assert_eq!(
        again["data"]["endSession"]["status"], "FAILED",
        "ending twice is harmless"
    );
}

#[actix_web::test]
async fn a_stopping_snapshot_racing_the_chargers_stop_never_hides_the_completion() {
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    let (session_id, id_tag, _) = start_accepted(&f, &mut cp).await;
    let tid = charger_starts(&mut cp, &id_tag, 0).await;
    assert!(wait_status(&f, &session_id, "IN_PROGRESS").await);
    let mut sub = watch(&f, &session_id, "IN_PROGRESS").await;

    // endSession's STOPPING snapshot reaches the actor stamped later than the charger's
    // COMPLETED (its transaction began first): the completion must still win
    let id: uuid::Uuid = session_id.parse().unwrap();
    let mut stopping = chargegrid::store::sessions::find(&f.app.db, id)
        .await
        .unwrap()
        .unwrap();
    stopping.status = "STOPPING".into();
    stopping.updated_at += chrono::Duration::seconds(30);
    let stale = stopping.clone();
    f.app
        .ctx
        .sessions
        .send(SessionChanged {
            session: Box::new(stopping),
        })
        .await
        .unwrap();
    assert_eq!(
        sub.next().await.unwrap()["onSessionStatusChanged"]["status"],
        "STOPPING"
    );
    cp.call("StopTransaction", json!({ "transactionId": tid, "meterStop": 2_000, "timestamp": "2026-11-21T10:30:00Z", "reason": "Local" }))
        .await
        .unwrap();
    assert_eq!(
        sub.next().await.unwrap()["onSessionStatusChanged"]["status"],
        "COMPLETED"
    );
    let gone = no_session_actors_within(&f.app, Duration::from_secs(5)).await;
    assert!(gone, "the session actor outlived its completed session");

    // the same stale snapshot arriving after the end brings no actor back
    f.app
        .ctx
        .sessions
        .send(SessionChanged {
            session: Box::new(stale),
        })
        .await
        .unwrap();
    assert_eq!(f.app.ctx.sessions.send(SessionActorCount).await.unwrap(), 0);
    assert_eq!(session_status(&f, &session_id).await["status"], "COMPLETED");
}

/// A charger's start gets its session's actor from the start's own snapshot, without reading
/// the session back, unless a command reached the session here while it had no actor: then that
/// snapshot is older than Postgres, and the actor must read first. Here the command set an energy
/// cap the session is already past, which only an actor that read Postgres acts on.
#[actix_web::test]
async fn a_snapshot_older_than_a_command_applied_without_an_actor_is_read_back() {
    use chargegrid::actors::messages::SessionCommand;
    let f = fixture().await;
    let mut cp = online_charger(&f.app, "CP-S1").await;
    // an open session of the charger, as a charger's start writes it, with no actor yet
    let session_id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, station_id, charger_id, connector_id, id_tag, status, origin, start_time, meter_start_wh, meter_last_wh, energy_kwh) \
         SELECT $1, t.user_id, $2, 'CP-S1', 1, t.id_tag, 'IN_PROGRESS', 'CHARGER', now(), 0, 1500, 1.5 FROM id_tags t WHERE t.id_tag = $3",
    )
    .bind(session_id)
    .bind(f.station)
    .bind(&f.id_tag)
    .execute(&f.app.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO charger_transactions (charger_id, connector_id, transaction_id, id_tag, id_tag_status, session_id, started_at, meter_start_wh) \
         VALUES ('CP-S1', 1, 424242, $1, 'Accepted', $2, now(), 0)",
    )
    .bind(&f.id_tag)
    .bind(session_id)
    .execute(&f.app.db)
    .await
    .unwrap();
    let snapshot = chargegrid::store::sessions::find(&f.app.db, session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.created_at, snapshot.updated_at);
    // the driver's cap is applied here while the session has no actor (no snapshot follows)...
    let capped = f
        .app
        .ctx
        .sessions
        .send(SessionCommand::Update {
            session_id,
            max_power_kw: None,
            max_energy_kwh: Some(rust_decimal::Decimal::ONE),
            caller: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(capped.max_energy_kwh, Some(rust_decimal::Decimal::ONE));
    assert_eq!(f.app.ctx.sessions.send(SessionActorCount).await.unwrap(), 0);
    // ...and then the start's snapshot, from before the cap, reaches the supervisor
    f.app
        .ctx
        .sessions
        .send(SessionChanged {
            session: Box::new(snapshot),
        })
        .await
        .unwrap();
    let (id, action, payload) = cp.next_server_call().await;
    assert_eq!(action, "RemoteStopTransaction", "{payload}");
    assert_eq!(payload["transactionId"], 424242);
    cp.reply(&id, json!({ "status": "Accepted" })).await;
    assert!(wait_status(&f, &session_id.to_string(), "STOPPING").await);
}

#[actix_web::test]
async fn start_session_names_the_charger_problem_of_a_station() {
    let f = fixture().await;
    let start = |input: Value| {
        let app = &f.app;
        let driver = f.driver.clone();
        async move {
            app.graphql(START, json!({ "i": input }), Some(&driver))
                .await
        }
    };
    // unknown station, unknown charger at a known station, a station without chargers
    let r = start(json!({ "stationId": uuid::Uuid::new_v4().to_string() })).await;
    assert_eq!(error_code(&r).as_deref(), Some("NOT_FOUND"), "{r}");
    assert!(r.to_string().contains("station not found"), "{r}");
    let r = start(json!({ "stationId": f.station.to_string(), "chargerId": "CP-ELSEWHERE" })).await;
    assert_eq!(error_code(&r).as_deref(), Some("NOT_FOUND"), "{r}");
    assert!(
        r.to_string().contains("no such charger at this station"),
        "{r}"
    );
    let empty = f.app.create_station("Empty station").await;
    let r = start(json!({ "stationId": empty.to_string() })).await;
    assert_eq!(error_code(&r).as_deref(), Some("NOT_FOUND"), "{r}");
    assert!(r.to_string().contains("has no OCPP charger"), "{r}");

    // with three chargers the app has to say which one
    for id in ["CP-S2", "CP-S3"] {
        f.app
            .register_charger(&f.operator, id, f.station, None)
            .await;
    }
    let r = start(json!({ "stationId": f.station.to_string() })).await;
    assert_eq!(error_code(&r).as_deref(), Some("BAD_USER_INPUT"), "{r}");
    assert!(r.to_string().contains("this station has 3 chargers"), "{r}");
    // naming one that is registered there but not connected reaches it: offline
    let r = start(json!({ "stationId": f.station.to_string(), "chargerId": "CP-S3" })).await;
    assert_eq!(error_code(&r).as_deref(), Some("CHARGER_OFFLINE"), "{r}");
}

#[actix_web::test]
async fn start_session_checks_the_connector_and_limits_starts_per_driver() {
    let f = fixture_with(|s| s.sessions.max_starts_per_minute = 3).await;
    let _cp = online_charger(&f.app, "CP-S1").await;
    let input = json!({ "i": { "stationId": f.station.to_string(), "connectorId": 7 } });
    for _ in 0..3 {
        let response = f.app.graphql(START, input.clone(), Some(&f.driver)).await;
        assert_eq!(
            error_code(&response).as_deref(),
            Some("BAD_USER_INPUT"),
            "{response}"
        );
        assert!(response["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no connector 7"));
    }
    let limited = f.app.graphql(START, input, Some(&f.driver)).await;
    assert_eq!(
        error_code(&limited).as_deref(),
        Some("RATE_LIMITED"),
        "{limited}"
    );
    assert!(
        limited["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&f.app.db)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

/// Whether the session actors of `app`'s replica are all gone within `within`.
async fn no_session_actors_within(app: &TestApp, within: Duration) -> bool {
    app.wait_until(within, || async {
        app.ctx.sessions.send(SessionActorCount).await.unwrap() == 0
    })
    .await
}
