//! Several replicas in one test process sharing Postgres, Redis and RabbitMQ: commands routed
//! to the replica that holds the charger, newest connection wins across replicas, and a
//! draining replica's chargers moving to another with their sessions.

use std::time::Duration;

use serde_json::{json, Value};

use crate::charger_client::connect16;
use crate::helpers::CHARGER_PASSWORD;
use crate::helpers::{spawn_app_with, spawn_with_settings, TestApp};

/// Two replicas (A, B) of one deployment.
async fn two_replicas() -> (TestApp, TestApp) {
    let a = spawn_app_with(|s| s.node_id = "replica-a".into()).await;
    let mut settings = (*a.ctx.settings).clone();
    settings.node_id = "replica-b".into();
    settings.http.bind = "127.0.0.1:0".into();
    let b = spawn_with_settings(settings).await;
    (a, b)
}

async fn driver_with_funds(app: &TestApp) -> (String, String) {
    let (token, _, _) = app
        .register("roamer@example.com", "correct horse battery")
        .await;
    let me = app.fund(&token, "30").await;
    (token, me["idTag"].as_str().unwrap().to_string())
}

async fn owner_node(app: &TestApp, charger: &str) -> Option<String> {
    chargegrid::store::ownership::owner_of(
        &app.ctx.redis,
        &app.ctx.settings.redis.key_prefix,
        charger,
    )
    .await
    .unwrap()
    .map(|o| o.node_id)
}

async fn sessions_active(app: &TestApp) -> i64 {
    crate::helpers::sessions_active(&app.address).await
}

#[actix_web::test]
async fn a_session_started_on_one_replica_runs_on_the_charger_held_by_another() {
    let (a, b) = two_replicas().await;
    let operator = a.staff_token("OPERATOR").await;
    let station = a.create_station("Shared station").await;
    a.register_charger(&operator, "CP-ROUTE", station, None)
        .await;
    let (driver, _) = driver_with_funds(&a).await;

    let mut cp = connect16(b.port, "CP-ROUTE", Some(("CP-ROUTE", CHARGER_PASSWORD))).await;
    cp.boot().await;
    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
    )
    .await
    .unwrap();
    let held = a
        .wait_until(Duration::from_secs(5), || async {
            owner_node(&a, "CP-ROUTE").await.as_deref() == Some("replica-b")
        })
        .await;
    assert!(held, "replica B did not record ownership");

    // the mutation lands on A; the charger is on B
    let request = a.graphql(
        "mutation($s: ID!) { startSession(input: {stationId: $s}) { id status } }",
        json!({ "s": station.to_string() }),
        Some(&driver),
    );
    let charger = async {
        let (id, action, payload) = cp.next_server_call().await;
        assert_eq!(action, "RemoteStartTransaction");
        cp.reply(&id, json!({ "status": "Accepted" })).await;
        payload["idTag"].as_str().unwrap().to_string()
    };
    let (started, id_tag) = tokio::join!(request, charger);
    assert_eq!(
        started["data"]["startSession"]["status"], "PENDING",
        "{started}"
    );
    let session_id = started["data"]["startSession"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tx = cp
        .call("StartTransaction", json!({ "connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": "2026-11-21T10:00:00Z" }))
        .await
        .unwrap();
    let tid = tx["transactionId"].as_i64().unwrap();
    // exactly one session actor, on the replica holding the charger
    let on_b = b
        .wait_until(Duration::from_secs(5), || async {
            sessions_active(&b).await == 1
        })
        .await;
    assert!(on_b, "no session actor on the charger's replica");
    assert_eq!(
        sessions_active(&a).await,
        0,
        "a session actor on the API's replica"
    );

    let request = a.graphql(
        "mutation($id: ID!) { endSession(sessionId: $id) { status } }",
        json!({ "id": session_id }),
        Some(&driver),
    );
    let charger = async {
        let (id, action, payload) = cp.next_server_call().await;
        assert_eq!(
            (action.as_str(), payload["transactionId"].as_i64()),
            ("RemoteStopTransaction", Some(tid))
        );
        cp.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (ended, ()) = tokio::join!(request, charger);
    assert_eq!(ended["data"]["endSession"]["status"], "STOPPING", "{ended}");
    cp.call(
        "StopTransaction",
        json!({ "transactionId": tid, "meterStop": 5000, "timestamp": "2026-11-21T10:30:00Z" }),
    )
    .await
    .unwrap();
    let none_left = b
        .wait_until(Duration::from_secs(5), || async {
            sessions_active(&b).await == 0
        })
        .await;
    assert!(none_left, "the session actor outlived its session");
    assert_eq!(sessions_active(&a).await, 0);

    // operator commands too
    let request = a.graphql(
        "mutation { resetCharger(chargerId: \"CP-ROUTE\") }",
        json!({}),
        Some(&operator),
    );
    let charger = async {
        let (id, action, _) = cp.next_server_call().await;
        assert_eq!(action, "Reset");
        cp.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (reset, ()) = tokio::join!(request, charger);
    assert_eq!(reset["data"]["resetCharger"], true, "{reset}");
}

#[actix_web::test]
async fn the_newest_connection_wins_across_replicas() {
    let (a, b) = two_replicas().await;
    let operator = a.staff_token("OPERATOR").await;
    let station = a.create_station("Twin station").await;
    a.register_charger(&operator, "CP-HOP", station, None).await;

    let mut on_a = connect16(a.port, "CP-HOP", Some(("CP-HOP", CHARGER_PASSWORD))).await;
    on_a.boot().await;
    let held = a
        .wait_until(Duration::from_secs(5), || async {
            owner_node(&a, "CP-HOP").await.as_deref() == Some("replica-a")
        })
        .await;
    assert!(held);
    let mut on_b = connect16(b.port, "CP-HOP", Some(("CP-HOP", CHARGER_PASSWORD))).await;
    on_b.boot().await;
    let (code, reason) = on_a
        .closed()
        .await
        .expect("replica A closes its stale socket");
    assert_eq!(code, 1008);
    assert!(reason.contains("newer connection"), "{reason}");
    assert_eq!(owner_node(&a, "CP-HOP").await.as_deref(), Some("replica-b"));

    // a command sent to A reaches the charger through B
    let request = a.graphql(
        "mutation { sendChargerCommand(chargerId: \"CP-HOP\", action: \"ClearCache\", payload: {}) }",
        json!({}),
        Some(&operator),
    );
    let charger = async {
        let (id, _, _) = on_b.next_server_call().await;
        on_b.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (r, ()) = tokio::join!(request, charger);
    assert_eq!(r["data"]["sendChargerCommand"]["status"], "Accepted", "{r}");
    let online: Value = a
        .graphql(
            "{ charger(id: \"CP-HOP\") { online nodeId } }",
            json!({}),
            Some(&operator),
        )
        .await["data"]["charger"]
        .clone();
    assert_eq!(online, json!({ "online": true, "nodeId": "replica-b" }));
}

#[actix_web::test]
async fn a_draining_replica_hands_its_chargers_and_sessions_to_another() {
    let (a, b) = two_replicas().await;
    let operator = a.staff_token("OPERATOR").await;
    let station = a.create_station("Drain station").await;
    a.register_charger(&operator, "CP-DRAIN", station, None)
        .await;
    let (driver, id_tag) = driver_with_funds(&a).await;

    let mut cp = connect16(b.port, "CP-DRAIN", Some(("CP-DRAIN", CHARGER_PASSWORD))).await;
    cp.boot().await;
    let tx = cp
        .call("StartTransaction", json!({ "connectorId": 1, "idTag": id_tag, "meterStart": 1_000, "timestamp": "2026-11-21T10:00:00Z" }))
        .await
        .unwrap();
    let tid = tx["transactionId"].as_i64().unwrap();
    cp.call("MeterValues", json!({ "connectorId": 1, "transactionId": tid, "meterValue": [{ "timestamp": "2026-11-21T10:10:00Z",
        "sampledValue": [{ "value": "3000", "unit": "Wh" }] }] }))
        .await
        .unwrap();

    // B drains (as on SIGTERM): the charger is told to go away and reconnects to A
    let (closed, ()) = tokio::join!(cp.closed(), b.drain());
    assert_eq!(
        closed.map(|(code, _)| code),
        Some(1001),
        "a going-away close"
    );
    let mut cp = connect16(a.port, "CP-DRAIN", Some(("CP-DRAIN", CHARGER_PASSWORD))).await;
    let moved = a
        .wait_until(Duration::from_secs(5), || async {
            owner_node(&a, "CP-DRAIN").await.as_deref() == Some("replica-a")
        })
        .await;
    assert!(moved, "replica A did not take the charger over");
    cp.call(
        "StopTransaction",
        json!({ "transactionId": tid, "meterStop": 9_000, "timestamp": "2026-11-21T10:40:00Z" }),
    )
    .await
    .unwrap();
    let done = a
        .wait_until(Duration::from_secs(10), || async {
            let s = a
                .graphql(
                    "{ mySessions { status energyKWh } }",
                    json!({}),
                    Some(&driver),
                )
                .await;
            s["data"]["mySessions"][0] == json!({ "status": "COMPLETED", "energyKWh": 8.0 })
        })
        .await;
    assert!(done, "the session did not complete on replica A");
}

#[actix_web::test]
async fn boots_beyond_the_admission_rate_are_told_to_come_back_later() {
    let app = spawn_app_with(|s| {
        s.ocpp.auto_provision = true;
        s.ocpp.auto_accept_provisioned = true;
        s.cluster.max_boots_per_sec = 1;
    })
    .await;
    // four boots sent together: with one admitted per second, even a window that turns over
    // between them admits at most two, so at least two are told to come back
    let mut chargers = Vec::new();
    for i in 1..=4 {
        chargers.push(connect16(app.port, &format!("CP-STORM-{i}"), None).await);
    }
    let answers =
        futures_util::future::join_all(chargers.iter_mut().map(|charger| charger.boot())).await;
    let accepted = answers.iter().filter(|a| a["status"] == "Accepted").count();
    let pending: Vec<&Value> = answers
        .iter()
        .filter(|a| a["status"] == "Pending")
        .collect();
    assert!((1..=2).contains(&accepted), "{answers:?}");
    assert_eq!(accepted + pending.len(), 4, "{answers:?}");
    let retry = pending[0]["interval"].as_u64().unwrap();
    assert!((10..=60).contains(&retry), "retry interval {retry}");
}

fn auth_checks(app: &TestApp, decided_by: &str) -> u64 {
    app.ctx
        .metrics
        .charger_auth_checks_total
        .with_label_values(&[decided_by])
        .get()
}

async fn refused(port: u16, id: &str, password: &str) -> bool {
    matches!(
        crate::charger_client::connect(port, id, "ocpp1.6", Some((id, password))).await,
        Err(crate::charger_client::ConnectError::Status(401))
    )
}

#[actix_web::test]
async fn a_password_verified_on_one_replica_is_not_verified_with_argon2_again_on_another() {
    let (a, b) = two_replicas().await;
    let operator = a.staff_token("OPERATOR").await;
    let station = a.create_station("Auth station").await;
    a.register_charger(&operator, "CP-AUTH", station, Some("first-password-0001"))
        .await;

    let cp = connect16(a.port, "CP-AUTH", Some(("CP-AUTH", "first-password-0001"))).await;
    assert_eq!(auth_checks(&a, "argon2"), 1);
    drop(cp);
    // the charger moves to B (its replica went away): B trusts A's check
    let cp = connect16(b.port, "CP-AUTH", Some(("CP-AUTH", "first-password-0001"))).await;
    assert_eq!(auth_checks(&b, "shared"), 1);
    assert_eq!(auth_checks(&b, "argon2"), 0);
    drop(cp);
    let cp = connect16(b.port, "CP-AUTH", Some(("CP-AUTH", "first-password-0001"))).await;
    assert_eq!(auth_checks(&b, "memory"), 1);
    drop(cp);
    // a remembered check never lets another password in
    assert!(refused(b.port, "CP-AUTH", "guessed-password-01").await);
    assert_eq!(auth_checks(&b, "wrong"), 1);

    // the operator changes the password on A: the old one is refused on B too, although B
    // remembers it as verified, because the check is bound to the stored hash
    a.register_charger(&operator, "CP-AUTH", station, Some("second-password-002"))
        .await;
    assert!(refused(b.port, "CP-AUTH", "first-password-0001").await);
    let _cp = connect16(b.port, "CP-AUTH", Some(("CP-AUTH", "second-password-002"))).await;
    assert_eq!(auth_checks(&b, "argon2"), 1);
}

#[actix_web::test]
async fn a_charger_actor_that_died_without_unregistering_is_pruned_and_its_lease_released() {
    use chargegrid::actors::messages::RegisterCharger;
    // a long lease (renewed, and dead actors pruned, every 5 s): a lease that is released is
    // gone long before it would expire
    let app = spawn_app_with(|s| {
        s.node_id = "replica-prune".into();
        s.cluster.lease_ms = 15_000;
    })
    .await;
    // an address whose actor is gone (its mailbox dropped), as after a panic in the actor
    let (tx, rx) = actix::dev::channel::channel::<chargegrid::actors::ChargerActor>(16);
    drop(rx);
    let connection = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO chargers (id, online, node_id, connection_id) VALUES ('CP-GHOST', TRUE, 'replica-prune', $1)")
        .bind(connection)
        .execute(&app.db)
        .await
        .unwrap();
    // held here, as the registration below holds it (claimed first by the test, so that what
    // is asserted does not depend on catching the moment between a claim and a renewal)
    let owner = chargegrid::store::ownership::Owner {
        node_id: "replica-prune".into(),
        connection_id: connection,
    };
    chargegrid::store::ownership::claim_many(
        &app.ctx.redis,
        &app.ctx.settings.redis.key_prefix,
        &[("CP-GHOST".to_string(), owner)],
        60_000,
    )
    .await
    .unwrap();
    app.ctx.registry.do_send(RegisterCharger {
        charger_id: "CP-GHOST".into(),
        connection_id: connection,
        addr: actix::Addr::new(tx),
    });
    // the next renewal forgets the dead actor: the charger shows offline, as its actor's
    // `stopping` would have recorded...
    let offline = app
        .wait_until(Duration::from_secs(20), || async {
            !sqlx::query_scalar::<_, bool>("SELECT online FROM chargers WHERE id = 'CP-GHOST'")
                .fetch_one(&app.db)
                .await
                .unwrap()
        })
        .await;
    assert!(offline, "a dead actor's charger still shows online");
    // ...and its lease is released instead of renewed (it would last another 15 s or more)
    let released = app
        .wait_until(Duration::from_secs(3), || async {
            owner_node(&app, "CP-GHOST").await.is_none()
        })
        .await;
    assert!(released, "the lease of a dead actor is still held");
    let connected = app
        .ctx
        .registry
        .send(chargegrid::actors::messages::ConnectedChargers)
        .await
        .unwrap();
    assert!(connected.is_empty(), "{connected:?}");
}
