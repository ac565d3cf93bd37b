//! A hostile world: anonymous floods, over-eager clients and what the public may see. Each test
//! reproduces a hole that was found in the code and fails without its fix.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::charger_client::{connect16, handshake_status};
use crate::gql_ws::GqlSocket;
use crate::helpers::{error_code, spawn_app, spawn_app_with, TestApp};

const PASSWORD: &str = "charger-secret-0001";

/// `chargegrid_store_batch_size{batch=…}` as (count, sum) from the server's `/metrics`.
async fn batches(app: &TestApp, batch: &str) -> (u64, u64) {
    let text = reqwest::get(format!("{}/metrics", app.address))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let read = |suffix: &str| {
        let prefix = format!("chargegrid_store_batch_size_{suffix}{{batch=\"{batch}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    (read("count"), read("sum"))
}

/// The issue's request: 133 aliases of a 100-station page with its chargers, ~8 KB, anonymous.
#[actix_web::test]
async fn an_aliased_flood_of_station_pages_is_refused_before_it_runs() {
    let app = spawn_app().await;
    let aliases: String = (0..133)
        .map(|i| {
            format!("a{i}: stations(near: {{latitude: 52.5, longitude: 13.4}}, first: 100) {{ chargers {{ id }} }} ")
        })
        .collect();
    let response = app
        .graphql(&format!("{{ {aliases} }}"), json!({}), None)
        .await;
    assert_eq!(
        error_code(&response).as_deref(),
        Some("BAD_USER_INPUT"),
        "{response}"
    );
    let message = response["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("complex"), "{message}");
    assert!(response["data"].is_null());

    // one honest page of the map still works
    let page = app
        .graphql(
            "{ stations(near: {latitude: 52.5, longitude: 13.4}, first: 20) { id name chargers { id online connectors { connectorId status } } } }",
            json!({}),
            None,
        )
        .await;
    assert!(page["errors"].is_null(), "{page}");
}

/// A page of 30 stations with their chargers and connectors: each nested level is one batch,
/// never one statement per parent. The parents come from one list, so every child of a level
/// asks in the same poll; 30 aliases of `station(id:)` would resolve their parents one by one
/// (cache, then Postgres) and spread a level over as many batch windows as a loaded machine
/// makes them.
#[actix_web::test]
async fn nested_lists_load_in_one_batch_per_level() {
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    for i in 0..30 {
        let station = app.create_station(&format!("Batch station {i}")).await;
        app.register_charger(&token, &format!("CP-BATCH-{i}"), station, Some(PASSWORD))
            .await;
    }
    app.ctx
        .stations
        .reload(&app.db)
        .await
        .expect("index reload");
    let before = (
        batches(&app, "graphql_station_chargers").await,
        batches(&app, "graphql_charger_connectors").await,
    );
    let response = app
        .graphql(
            "{ stations(near: {latitude: 52.52, longitude: 13.405}, radiusKm: 1, first: 30) { chargers { id connectors { status } } } }",
            json!({}),
            None,
        )
        .await;
    assert!(response["errors"].is_null(), "{response}");
    let mut seen: Vec<String> = response["data"]["stations"]
        .as_array()
        .expect("a list of stations")
        .iter()
        .flat_map(|s| s["chargers"].as_array().cloned().unwrap_or_default())
        .map(|c| c["id"].as_str().unwrap_or_default().to_string())
        .collect();
    seen.sort();
    let mut expected: Vec<String> = (0..30).map(|i| format!("CP-BATCH-{i}")).collect();
    expected.sort();
    assert_eq!(seen, expected);
    let (chargers, connectors) = (
        batches(&app, "graphql_station_chargers").await,
        batches(&app, "graphql_charger_connectors").await,
    );
    // (batches, keys): 30 stations' chargers in one statement, then 30 chargers' connectors
    assert_eq!(
        (chargers.0 - before.0 .0, chargers.1 - before.0 .1),
        (1, 30),
        "{chargers:?}"
    );
    assert_eq!(
        (connectors.0 - before.1 .0, connectors.1 - before.1 .1),
        (1, 30),
        "{connectors:?}"
    );
}

#[actix_web::test]
async fn a_client_over_its_request_rate_is_refused_and_others_are_not() {
    // one request a minute refills: a loaded machine taking seconds between them changes nothing
    let app = spawn_app_with(|s| {
        s.graphql.requests_per_sec = 1.0 / 60.0;
        s.graphql.request_burst = 3;
    })
    .await;
    // registering counts as one request of this address
    let (driver, _, _) = app
        .register("rate@example.com", "correct horse battery")
        .await;
    let query = json!({ "query": "{ __typename }" });
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = app
            .http
            .post(format!("{}/graphql", app.address))
            .json(&query)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert!(response.headers().get("retry-after").is_some());
            let body: Value = response.json().await.unwrap();
            assert_eq!(error_code(&body).as_deref(), Some("RATE_LIMITED"));
        }
    }
    assert_eq!(statuses, vec![200, 200, 429]);
    // a signed-in driver is counted on their own, not with the address
    let me = app
        .graphql("{ me { email } }", json!({}), Some(&driver))
        .await;
    assert_eq!(me["data"]["me"]["email"], "rate@example.com", "{me}");
}

#[actix_web::test]
async fn a_query_over_its_time_budget_is_cancelled() {
    let app = spawn_app_with(|s| s.graphql.request_timeout_ms = 300).await;
    let station = app.create_station("Slow station").await;
    // hold the chargers table so the query cannot finish
    let mut blocker = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE chargers IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let response = app
        .http
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": format!("{{ station(id: \"{station}\") {{ chargers {{ id }} }} }}") }))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("answered within the budget, not when the lock goes");
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body).as_deref(), Some("RATE_LIMITED"), "{body}");
    tx.rollback().await.unwrap();
    let after = app
        .graphql(
            &format!("{{ station(id: \"{station}\") {{ chargers {{ id }} }} }}"),
            json!({}),
            None,
        )
        .await;
    assert!(after["errors"].is_null(), "{after}");
}

/// API queries stuck on the database take every connection of the API's pool; a charger's
/// Authorize is still answered at once from the chargers' pool.
#[actix_web::test]
async fn api_load_cannot_take_the_connections_chargers_need() {
    let app = spawn_app_with(|s| s.database.max_connections = 3).await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Pool station").await;
    app.register_charger(&token, "CP-POOL", station, Some(PASSWORD))
        .await;
    let (driver, _, _) = app
        .register("pool@example.com", "correct horse battery")
        .await;
    let id_tag = app
        .graphql("{ me { idTag } }", json!({}), Some(&driver))
        .await["data"]["me"]["idTag"]
        .as_str()
        .unwrap()
        .to_string();
    let mut cp = connect16(app.port, "CP-POOL", Some(("CP-POOL", PASSWORD))).await;
    cp.boot().await;

    let mut blocker = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE chargers IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut stuck = Vec::new();
    for _ in 0..6 {
        let (http, address) = (app.http.clone(), app.address.clone());
        let query = format!("{{ station(id: \"{station}\") {{ chargers {{ id }} }} }}");
        stuck.push(tokio::spawn(async move {
            http.post(format!("{address}/graphql"))
                .json(&json!({ "query": query }))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
        // separate batches, each holding a connection of its own
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // wait until the API's queries are stuck behind the lock (all three of its connections;
    // on a pool shared with the chargers, whatever the other users left of it)
    let mut admin = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'chargers'::regclass",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if waiting >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API's queries wait on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = tokio::time::timeout(
        Duration::from_secs(3),
        cp.call("Authorize", json!({ "idTag": id_tag })),
    )
    .await
    .expect("Authorize answered while the API's pool is exhausted")
    .expect("a CALLRESULT");
    assert_eq!(answer["idTagInfo"]["status"], "Accepted");
    tx.rollback().await.unwrap();
    for request in stuck {
        assert_eq!(request.await.unwrap().unwrap(), 200);
    }
}

#[actix_web::test]
async fn anonymous_callers_and_drivers_see_only_the_public_charger_fields() {
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Public station").await;
    app.register_charger(&token, "CP-PUBLIC", station, Some(PASSWORD))
        .await;
    let mut cp = connect16(app.port, "CP-PUBLIC", Some(("CP-PUBLIC", PASSWORD))).await;
    cp.boot().await;
    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
    )
    .await
    .unwrap();
    let (driver, _, _) = app
        .register("public@example.com", "correct horse battery")
        .await;
    let query = format!(
        "{{ station(id: \"{station}\") {{ chargers {{ id online protocol vendor model firmwareVersion lastSeen nodeId connectors {{ connectorId status }} }} }} }}"
    );
    for caller in [None, Some(driver.as_str())] {
        let response = app.graphql(&query, json!({}), caller).await;
        assert!(response["errors"].is_null(), "{response}");
        let charger = &response["data"]["station"]["chargers"][0];
        assert_eq!(charger["id"], "CP-PUBLIC");
        assert_eq!(charger["online"], true);
        assert_eq!(charger["connectors"][0]["status"], "AVAILABLE");
        for private in [
            "protocol",
            "vendor",
            "model",
            "firmwareVersion",
            "lastSeen",
            "nodeId",
        ] {
            assert!(charger[private].is_null(), "{private} is public: {charger}");
        }
    }
    let staff = app.graphql(&query, json!({}), Some(&token)).await;
    let charger = &staff["data"]["station"]["chargers"][0];
    assert_eq!(charger["vendor"], "TestVendor", "{staff}");
    assert_eq!(charger["firmwareVersion"], "1.2.3");
    assert_eq!(charger["protocol"], "OCPP16");
    assert!(charger["nodeId"].is_string());
}

const REGISTER: &str = "mutation($c: ID!, $s: ID!, $p: String) { registerCharger(input: {chargerId: $c, stationId: $s, password: $p, securityProfile: 1}) { id registrationStatus } }";

#[actix_web::test]
async fn auto_provisioned_chargers_are_pending_until_an_operator_adopts_them() {
    let app = spawn_app_with(|s| s.ocpp.auto_provision = true).await;
    let token = app.staff_token("OPERATOR").await;
    let mut cp = connect16(app.port, "CP-STRAY", None).await;
    assert_eq!(cp.boot().await["status"], "Pending");
    // a Pending charger may boot and beat, nothing else
    cp.call("Heartbeat", json!({})).await.unwrap();
    let refused = cp
        .call(
            "StartTransaction",
            json!({ "connectorId": 1, "idTag": "ANYONE", "meterStart": 0, "timestamp": "2026-12-03T10:00:00Z" }),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.0, "SecurityError");
    assert_eq!(cp.boot().await["status"], "Pending");
    let view = app
        .graphql(
            "{ charger(id: \"CP-STRAY\") { registrationStatus } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(
        view["data"]["charger"]["registrationStatus"], "PENDING",
        "{view}"
    );
    let refused: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(refused, 0);

    // adoption gives it a station and a password; its Pending connection is closed
    let station = app.create_station("Adopting station").await;
    let adopted = app
        .graphql(
            REGISTER,
            json!({ "c": "CP-STRAY", "s": station.to_string(), "p": PASSWORD }),
            Some(&token),
        )
        .await;
    assert_eq!(
        adopted["data"]["registerCharger"]["registrationStatus"], "ACCEPTED",
        "{adopted}"
    );
    assert!(
        cp.closed().await.is_some(),
        "the quarantined connection is closed"
    );
    // without the password it is now refused; with it, accepted
    assert_eq!(
        handshake_status(
            crate::charger_client::connect(app.port, "CP-STRAY", "ocpp1.6", None).await
        ),
        401
    );
    let mut cp = connect16(app.port, "CP-STRAY", Some(("CP-STRAY", PASSWORD))).await;
    assert_eq!(cp.boot().await["status"], "Accepted");
}

#[actix_web::test]
async fn every_charger_needs_a_credential_and_keeps_it() {
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Credential station").await;
    // a new charger without a password is refused
    let response = app
        .graphql(
            REGISTER,
            json!({ "c": "CP-BARE", "s": station.to_string(), "p": null }),
            Some(&token),
        )
        .await;
    assert_eq!(
        error_code(&response).as_deref(),
        Some("BAD_USER_INPUT"),
        "{response}"
    );
    // one that slipped in without (an older release, a hand-made row) cannot connect
    sqlx::query("INSERT INTO chargers (id, station_id) VALUES ('CP-OLD', $1)")
        .bind(station)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        handshake_status(crate::charger_client::connect(app.port, "CP-OLD", "ocpp1.6", None).await),
        401
    );
    // re-registering without a password keeps the stored one
    app.register_charger(&token, "CP-KEEP", station, Some(PASSWORD))
        .await;
    let again = app
        .graphql(
            REGISTER,
            json!({ "c": "CP-KEEP", "s": station.to_string(), "p": null }),
            Some(&token),
        )
        .await;
    assert!(again["errors"].is_null(), "{again}");
    assert_eq!(
        handshake_status(
            crate::charger_client::connect(app.port, "CP-KEEP", "ocpp1.6", None).await
        ),
        401
    );
    let mut cp = connect16(app.port, "CP-KEEP", Some(("CP-KEEP", PASSWORD))).await;
    cp.boot().await;
    // a new password closes the connection opened with the old one
    app.register_charger(&token, "CP-KEEP", station, Some("a-brand-new-password-02"))
        .await;
    assert!(cp.closed().await.is_some(), "the old connection is closed");
    assert_eq!(
        handshake_status(
            crate::charger_client::connect(
                app.port,
                "CP-KEEP",
                "ocpp1.6",
                Some(("CP-KEEP", PASSWORD))
            )
            .await
        ),
        401
    );
}

#[actix_web::test]
async fn an_operator_can_put_a_charger_back_to_pending() {
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Quarantine station").await;
    app.register_charger(&token, "CP-QUAR", station, Some(PASSWORD))
        .await;
    let mut cp = connect16(app.port, "CP-QUAR", Some(("CP-QUAR", PASSWORD))).await;
    assert_eq!(cp.boot().await["status"], "Accepted");
    let (driver, _, _) = app
        .register("quar@example.com", "correct horse battery")
        .await;
    let denied = app
        .graphql(
            "mutation { quarantineCharger(chargerId: \"CP-QUAR\") { id } }",
            json!({}),
            Some(&driver),
        )
        .await;
    assert_eq!(error_code(&denied).as_deref(), Some("FORBIDDEN"));
    let done = app
        .graphql(
            "mutation { quarantineCharger(chargerId: \"CP-QUAR\") { registrationStatus } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(
        done["data"]["quarantineCharger"]["registrationStatus"], "PENDING",
        "{done}"
    );
    assert!(cp.closed().await.is_some());
    let mut cp = connect16(app.port, "CP-QUAR", Some(("CP-QUAR", PASSWORD))).await;
    assert_eq!(cp.boot().await["status"], "Pending");
    let refused = cp
        .call("Authorize", json!({ "idTag": "ANYONE" }))
        .await
        .unwrap_err();
    assert_eq!(refused.0, "SecurityError");
}

const ME: &str = "{ me { email role } }";

/// Logout revokes the access token too: HTTP requests are refused at once and an open
/// subscription socket is closed with 4403.
#[actix_web::test]
async fn logging_out_revokes_the_access_token_and_closes_its_sockets() {
    let app = spawn_app().await;
    let (access, refresh, _) = app
        .register("bye@example.com", "correct horse battery")
        .await;
    let mut socket = GqlSocket::connect(app.port, Some(&access), false)
        .await
        .expect("signed in");
    assert_eq!(
        socket.closed_within(Duration::from_millis(3500)).await,
        None
    );
    let out = app
        .graphql(
            "mutation($r: String!) { logout(refreshToken: $r) }",
            json!({ "r": refresh }),
            Some(&access),
        )
        .await;
    assert_eq!(out["data"]["logout"], true, "{out}");
    let me = app.graphql(ME, json!({}), Some(&access)).await;
    assert_eq!(error_code(&me).as_deref(), Some("UNAUTHENTICATED"), "{me}");
    assert_eq!(
        socket.closed_within(Duration::from_secs(10)).await,
        Some(4403)
    );
    // a new socket with the revoked token is refused
    assert!(GqlSocket::connect(app.port, Some(&access), false)
        .await
        .is_err());
}

#[actix_web::test]
async fn an_expired_token_closes_its_socket_with_4401() {
    let app = spawn_app_with(|s| s.auth.access_token_ttl_secs = 2).await;
    let (access, _, _) = app
        .register("short@example.com", "correct horse battery")
        .await;
    let mut socket = GqlSocket::connect(app.port, Some(&access), false)
        .await
        .expect("signed in");
    assert_eq!(
        socket.closed_within(Duration::from_secs(12)).await,
        Some(4401)
    );
}

/// Blocking a user and changing a role take effect within seconds on tokens already issued,
/// on every replica (the check reads Postgres, not this process's memory of the change).
#[actix_web::test]
async fn blocking_and_role_changes_apply_to_tokens_already_issued() {
    let app = spawn_app().await;
    let operator = app.staff_token("OPERATOR").await;
    let staff_query = "{ chargers { id } }";
    assert!(app.graphql(staff_query, json!({}), Some(&operator)).await["errors"].is_null());
    let mut socket = GqlSocket::connect(app.port, Some(&operator), false)
        .await
        .expect("signed in");
    sqlx::query("UPDATE users SET role = 'DRIVER' WHERE role = 'OPERATOR'")
        .execute(&app.db)
        .await
        .unwrap();
    assert!(
        app.wait_until(Duration::from_secs(5), || async {
            error_code(&app.graphql(staff_query, json!({}), Some(&operator)).await).as_deref()
                == Some("FORBIDDEN")
        })
        .await,
        "a demoted operator's token still has the role"
    );
    assert_eq!(
        socket.closed_within(Duration::from_secs(10)).await,
        Some(4403)
    );

    let (driver, _, _) = app
        .register("blocked@example.com", "correct horse battery")
        .await;
    assert!(app.graphql(ME, json!({}), Some(&driver)).await["errors"].is_null());
    sqlx::query("UPDATE users SET blocked = TRUE WHERE email = 'blocked@example.com'")
        .execute(&app.db)
        .await
        .unwrap();
    assert!(
        app.wait_until(Duration::from_secs(5), || async {
            error_code(&app.graphql(ME, json!({}), Some(&driver)).await).as_deref()
                == Some("UNAUTHENTICATED")
        })
        .await,
        "a blocked user's token still works"
    );
}

/// Wrong Basic passwords are counted per charger and per address (in Redis): past the limit the
/// handshake is refused with 429 before any password check, the right password included.
#[actix_web::test]
async fn failed_charger_logins_are_limited_per_charger_and_per_address() {
    let app = spawn_app_with(|s| {
        s.ocpp.auth_failures_per_charger = 3;
        s.ocpp.auth_failures_per_address = 5;
    })
    .await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Guess station").await;
    for id in ["CP-GUESS", "CP-OTHER", "CP-THIRD"] {
        app.register_charger(&token, id, station, Some(PASSWORD))
            .await;
    }
    let connect = |id: &'static str, password: &'static str| {
        crate::charger_client::connect(app.port, id, "ocpp1.6", Some((id, password)))
    };
    for _ in 0..3 {
        assert_eq!(
            handshake_status(connect("CP-GUESS", "not-the-password-000").await),
            401
        );
    }
    let locked = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/ocpp/CP-GUESS", app.port))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Protocol", "ocpp1.6")
        .basic_auth("CP-GUESS", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(
        locked.status().as_u16(),
        429,
        "the right password is not checked while locked"
    );
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    // another charger is not locked by CP-GUESS's failures, until the address is
    assert_eq!(handshake_status(connect("CP-OTHER", PASSWORD).await), 101);
    for _ in 0..2 {
        assert_eq!(
            handshake_status(connect("CP-OTHER", "not-the-password-000").await),
            401
        );
    }
    assert_eq!(handshake_status(connect("CP-THIRD", PASSWORD).await), 429);
    // a credential verified before is recognised without a check, and never locked out
    assert_eq!(handshake_status(connect("CP-OTHER", PASSWORD).await), 101);
}

/// Handshakes waiting for a password check do not hold the admission slots: an honest charger
/// is admitted while wrong-password handshakes queue for argon2.
#[actix_web::test]
async fn password_checks_wait_outside_the_admission_slots() {
    let app = spawn_app_with(|s| {
        s.cluster.max_concurrent_handshakes = 2;
        s.cluster.handshake_wait_ms = 1000;
        s.ocpp.auth_failures_per_charger = 1000;
        s.ocpp.auth_failures_per_address = 1000;
    })
    .await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Flood station").await;
    app.register_charger(&token, "CP-HONEST", station, Some(PASSWORD))
        .await;
    app.register_charger(&token, "CP-TARGET", station, Some(PASSWORD))
        .await;
    // the honest charger connected before: its credential is remembered
    drop(connect16(app.port, "CP-HONEST", Some(("CP-HONEST", PASSWORD))).await);
    let port = app.port;
    let flood: Vec<_> = (0..24)
        .map(|i| {
            tokio::spawn(async move {
                let password = format!("wrong-password-{i:05}");
                crate::charger_client::connect(
                    port,
                    "CP-TARGET",
                    "ocpp1.6",
                    Some(("CP-TARGET", &password)),
                )
                .await
                .err()
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // more password checks wait than there are admission slots: they wait outside them
    while app.ctx.charger_auth.queued() < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "wrong passwords queue for argon2 beyond the two admission slots"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        handshake_status(
            crate::charger_client::connect(
                port,
                "CP-HONEST",
                "ocpp1.6",
                Some(("CP-HONEST", PASSWORD))
            )
            .await
        ),
        101
    );
    for attempt in flood {
        assert!(matches!(
            attempt.await.unwrap(),
            Some(crate::charger_client::ConnectError::Status(401))
        ));
    }
}

/// Subscription sockets need a sign-in and are capped per address, per user and per socket.
#[actix_web::test]
async fn subscription_sockets_are_signed_in_and_capped() {
    let app = spawn_app_with(|s| {
        s.graphql.max_sockets_per_address = 4;
        s.graphql.max_sockets_per_user = 2;
        s.graphql.max_subscriptions_per_socket = 2;
    })
    .await;
    assert!(
        GqlSocket::connect(app.port, None, false).await.is_err(),
        "anonymous socket"
    );
    let token = app.staff_token("OPERATOR").await;
    let mut first = GqlSocket::connect(app.port, Some(&token), false)
        .await
        .expect("first");
    let second = GqlSocket::connect(app.port, Some(&token), false)
        .await
        .expect("second");
    assert!(
        GqlSocket::connect(app.port, Some(&token), false)
            .await
            .is_err(),
        "a third socket for the same user"
    );
    drop(second);
    let mut third = None;
    for _ in 0..100 {
        if let Ok(socket) = GqlSocket::connect(app.port, Some(&token), false).await {
            third = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(third.is_some(), "a closed socket frees its place");

    // two operations at once per socket; the third is refused, the socket stays
    let watch = "subscription($c: ID!) { onChargerStatusChanged(chargerId: $c) { id online } }";
    let station = app.create_station("Sub station").await;
    app.register_charger(&token, "CP-SUBCAP", station, Some(PASSWORD))
        .await;
    for id in ["1", "2", "3"] {
        first
            .subscribe(id, watch, json!({ "c": "CP-SUBCAP" }))
            .await;
    }
    let mut refused = 0;
    let mut delivered = 0;
    while refused + delivered < 3 {
        match first.next().await {
            Ok(_) => delivered += 1,
            Err(payload) => {
                assert!(payload.to_string().contains("RATE_LIMITED"), "{payload}");
                refused += 1;
            }
        }
    }
    assert_eq!((delivered, refused), (2, 1));

    // the address cap counts every socket from it, whoever signs in on it (first, third and
    // these two make four)
    let (other, _, _) = app
        .register("subs@example.com", "correct horse battery")
        .await;
    let _fourth = GqlSocket::connect(app.port, Some(&other), false)
        .await
        .expect("fourth");
    let _fifth = GqlSocket::connect(app.port, Some(&other), false)
        .await
        .expect("fifth");
    let mut request = format!("ws://127.0.0.1:{}/graphql", app.port)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static("graphql-transport-ws"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429)
        }
        other => panic!("a fifth socket from the address: {:?}", other.map(|_| ())),
    }
}

/// The charge point id is percent-decoded once: `CP%252D1` is the (invalid) id `CP%2D1`, never
/// the charger `CP-1`.
#[actix_web::test]
async fn a_doubly_encoded_charger_id_is_not_another_charger() {
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Encoded station").await;
    app.register_charger(&token, "CP-1", station, Some(PASSWORD))
        .await;
    let doubly =
        crate::charger_client::connect(app.port, "CP%252D1", "ocpp1.6", Some(("CP-1", PASSWORD)))
            .await;
    assert_eq!(handshake_status(doubly), 400);
    let once =
        crate::charger_client::connect(app.port, "CP%2D1", "ocpp1.6", Some(("CP-1", PASSWORD)))
            .await;
    assert_eq!(handshake_status(once), 101);
}

/// Operators run chargers; changing their credentials, software, network or authorization data
/// is for administrators. Every command is in the audit log with who sent it and how it went.
#[actix_web::test]
async fn operator_commands_are_audited_and_sensitive_ones_need_an_admin() {
    let app = spawn_app().await;
    let operator = app.staff_token("OPERATOR").await;
    let admin = app.staff_token("ADMIN").await;
    let station = app.create_station("Audit station").await;
    app.register_charger(&operator, "CP-AUDIT", station, Some(PASSWORD))
        .await;
    let mut cp = connect16(app.port, "CP-AUDIT", Some(("CP-AUDIT", PASSWORD))).await;
    cp.boot().await;
    let change = "mutation($a: String!, $p: JSON!) { sendChargerCommand(chargerId: \"CP-AUDIT\", action: $a, payload: $p) }";
    let key = json!({ "key": "AuthorizationKey", "value": "0123456789abcdef0123" });
    let refused = app
        .graphql(
            change,
            json!({ "a": "ChangeConfiguration", "p": key }),
            Some(&operator),
        )
        .await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{refused}"
    );
    // the operator may still reset it
    let reset = app.graphql(
        "mutation { resetCharger(chargerId: \"CP-AUDIT\") }",
        json!({}),
        Some(&operator),
    );
    let charger = async {
        let (id, action, _) = cp.next_server_call().await;
        assert_eq!(action, "Reset");
        cp.reply(&id, json!({ "status": "Accepted" })).await;
        let (id, action, payload) = cp.next_server_call().await;
        assert_eq!(action, "ChangeConfiguration");
        assert_eq!(payload["key"], "AuthorizationKey");
        cp.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let admin_change = async {
        let reset = reset.await;
        assert_eq!(reset["data"]["resetCharger"], true, "{reset}");
        app.graphql(
            change,
            json!({ "a": "ChangeConfiguration", "p": key }),
            Some(&admin),
        )
        .await
    };
    let (changed, ()) = tokio::join!(admin_change, charger);
    assert_eq!(
        changed["data"]["sendChargerCommand"]["status"], "Accepted",
        "{changed}"
    );

    let audit: Vec<(String, Option<String>, Value)> = sqlx::query_as(
        "SELECT action, target, details FROM audit_log WHERE target = 'CP-AUDIT' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let seen: Vec<(String, String)> = audit
        .iter()
        .map(|(action, _, details)| {
            (
                format!("{action}:{}", details["action"].as_str().unwrap_or("")),
                details["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("registerCharger:".to_string(), String::new()),
            (
                "sendChargerCommand:ChangeConfiguration".to_string(),
                "FORBIDDEN".to_string()
            ),
            ("resetCharger:".to_string(), "ok".to_string()),
            (
                "sendChargerCommand:ChangeConfiguration".to_string(),
                "ok".to_string()
            ),
        ]
    );
    // no payload, so no credential, in the log
    assert!(!audit
        .iter()
        .any(|(_, _, d)| d.to_string().contains("0123456789abcdef0123")));
}

/// With an internal listener, `/metrics` and `/ready` are served only there; `/ready` names
/// what is down without the error text.
#[actix_web::test]
async fn internal_endpoints_live_on_their_own_listener() {
    let app = spawn_app_with(|s| s.http.internal_bind = Some("127.0.0.1:0".into())).await;
    let internal = *app.ctx.internal_port.get().expect("an internal listener");
    for path in ["/metrics", "/ready"] {
        let public = reqwest::get(format!("{}{path}", app.address))
            .await
            .unwrap();
        assert_eq!(
            public.status().as_u16(),
            404,
            "{path} on the public listener"
        );
        let inside = reqwest::get(format!("http://127.0.0.1:{internal}{path}"))
            .await
            .unwrap();
        assert_eq!(
            inside.status().as_u16(),
            200,
            "{path} on the internal listener"
        );
    }
    // liveness stays on the public listener (it tells nothing)
    let live = reqwest::get(format!("{}/healthz", app.address))
        .await
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);

    let broken = spawn_app_with(|s| s.redis.url = "redis://127.0.0.1:1".into()).await;
    let ready: Value = reqwest::get(format!("{}/ready", broken.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["redis"], "down", "{ready}");
    assert!(
        !ready.to_string().contains("127.0.0.1"),
        "raw error text: {ready}"
    );
}

/// Behind a trusted proxy the client is the right-most X-Forwarded-For address the proxies did
/// not add; addresses a client writes itself are never believed, and without trusted proxies
/// the header is ignored.
#[actix_web::test]
async fn the_client_address_comes_from_trusted_proxies_only() {
    let send = |app: &TestApp, forwarded: &'static str| {
        app.http
            .post(format!("{}/graphql", app.address))
            .header("X-Forwarded-For", forwarded)
            .json(&json!({ "query": "{ __typename }" }))
            .send()
    };
    let behind = spawn_app_with(|s| {
        s.graphql.requests_per_sec = 1.0 / 60.0;
        s.graphql.request_burst = 2;
        s.http.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            send(&behind, "203.0.113.7")
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
    }
    assert_eq!(
        send(&behind, "203.0.113.7")
            .await
            .unwrap()
            .status()
            .as_u16(),
        429
    );
    // another client behind the same proxy has its own budget
    assert_eq!(
        send(&behind, "198.51.100.9")
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // a spoofed left-most entry changes nothing: the proxy appended the real address
    assert_eq!(
        send(&behind, "192.0.2.1, 203.0.113.7")
            .await
            .unwrap()
            .status()
            .as_u16(),
        429
    );

    let direct = spawn_app_with(|s| {
        s.graphql.requests_per_sec = 1.0 / 60.0;
        s.graphql.request_burst = 2;
    })
    .await;
    let statuses = [
        send(&direct, "192.0.2.1").await.unwrap().status().as_u16(),
        send(&direct, "192.0.2.2").await.unwrap().status().as_u16(),
        send(&direct, "192.0.2.3").await.unwrap().status().as_u16(),
    ];
    assert_eq!(
        statuses,
        [200, 200, 429],
        "a header from a direct client is ignored"
    );
}

/// What a charger stores is bounded: connector ids are capped, and old or excess reports are
/// deleted.
#[actix_web::test]
async fn charger_supplied_storage_is_bounded() {
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Bounded station").await;
    app.register_charger(&token, "CP-BOUND", station, Some(PASSWORD))
        .await;
    let mut cp = connect16(app.port, "CP-BOUND", Some(("CP-BOUND", PASSWORD))).await;
    cp.boot().await;
    let refused = cp
        .call(
            "StatusNotification",
            json!({ "connectorId": 4_000_000_000u64, "errorCode": "NoError", "status": "Available" }),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.0, "PropertyConstraintViolation");
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM connector_status WHERE charger_id = 'CP-BOUND'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(rows, 0);

    // 15 reports of which 3 are past retention; keep at most 10 per charger
    sqlx::query(
        "INSERT INTO charger_reports (charger_id, kind, payload, received_at) \
         SELECT 'CP-BOUND', 'DataTransfer', '{}'::jsonb, now() - make_interval(days => CASE WHEN i <= 3 THEN 100 ELSE 0 END) - make_interval(secs => i) \
         FROM generate_series(1, 15) AS i",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let deleted =
        chargegrid::store::chargers::prune_reports(&app.db, Duration::from_secs(90 * 86_400), 10)
            .await
            .unwrap();
    assert_eq!(deleted, 5);
    let left: Vec<i64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM now() - received_at)::bigint FROM charger_reports ORDER BY received_at DESC",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(left.len(), 10);
    assert!(
        left.iter().all(|age| *age < 86_400),
        "only recent reports stay: {left:?}"
    );
}
