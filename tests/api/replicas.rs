//! Three real `chargegrid serve` processes against the same Postgres, Redis, RabbitMQ and Mongo:
//! a session started through replica A on a charger held by replica C, watched from replica B;
//! SIGTERM on C moves its charger (which reconnects) to A where the session completes; kill -9
//! of B loses no session and no event.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::charger_client::{connect16, TestCharger};
use crate::gql_ws::GqlSocket;
use crate::helpers::{isolated_settings, CHARGER_PASSWORD, TEST_JWT_SECRET};

const BIN: &str = env!("CARGO_BIN_EXE_chargegrid");

struct Replica {
    port: u16,
    child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start_replica(settings: &chargegrid::configuration::Settings, node: &str) -> Replica {
    let port = free_port();
    let child = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", settings.database.url.expose_secret())
        .env("MONGODB_URL", settings.mongodb.url.expose_secret())
        .env("REDIS_URL", settings.redis.url.expose_secret())
        .env("AMQP_URL", settings.amqp.url.expose_secret())
        .env("MQTT_URL", settings.mqtt.url.expose_secret())
        .env("JWT_SECRET", TEST_JWT_SECRET)
        .env("HTTP_BIND", format!("127.0.0.1:{port}"))
        .env("NODE_ID", node)
        .env("CHARGEGRID__REDIS__KEY_PREFIX", &settings.redis.key_prefix)
        .env("CHARGEGRID__EVENTS__NAMESPACE", &settings.events.namespace)
        .env("CHARGEGRID__EVENTS__EPHEMERAL", "true")
        .env("CHARGEGRID__EVENTS__RELAY_POLL_INTERVAL_MS", "200")
        // the test counts the events written from the outbox (see `isolated_settings`)
        .env(
            "CHARGEGRID__EVENTS__OUTBOX_RETENTION_HOURS",
            settings.events.outbox_retention_hours.to_string(),
        )
        .env("CHARGEGRID__CLUSTER__LEASE_MS", "3000")
        .env("CHARGEGRID__HTTP__SHUTDOWN_TIMEOUT_SECS", "5")
        .env("CHARGEGRID__HTTP__WORKERS", "2")
        // the test polls the API from one address
        .env("CHARGEGRID__GRAPHQL__REQUESTS_PER_SEC", "100000")
        .env("CHARGEGRID__GRAPHQL__REQUEST_BURST", "100000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chargegrid serve");
    let http = crate::helpers::http_client();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/ready"))
            .send()
            .await;
        if matches!(ready, Ok(r) if r.status() == 200) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica {node} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Replica { port, child }
}

async fn sessions_active(port: u16) -> i64 {
    crate::helpers::sessions_active(&format!("http://127.0.0.1:{port}")).await
}

async fn gql(port: u16, query: &str, variables: Value, token: Option<&str>) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await.unwrap().json().await.unwrap()
}

async fn register(port: u16, email: &str) -> (String, String) {
    let r = gql(
        port,
        "mutation($e: String!) { register(input: {email: $e, name: \"R\", password: \"correct horse battery\"}) { accessToken user { id } } }",
        json!({ "e": email }),
        None,
    )
    .await;
    (
        r["data"]["register"]["accessToken"]
            .as_str()
            .unwrap()
            .to_string(),
        r["data"]["register"]["user"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_charging(cp: &mut TestCharger, id_tag: &str) -> i64 {
    let tx = cp
        .call("StartTransaction", json!({ "connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": "2026-11-21T10:00:00Z" }))
        .await
        .unwrap();
    tx["transactionId"].as_i64().unwrap()
}

async fn meter(cp: &mut TestCharger, tid: i64, wh: i64) {
    cp.call("MeterValues", json!({ "connectorId": 1, "transactionId": tid, "meterValue": [{ "timestamp": "2026-11-21T10:20:00Z",
        "sampledValue": [{ "value": wh.to_string(), "unit": "Wh" }] }] }))
        .await
        .unwrap();
}

#[actix_web::test]
async fn replicas_route_drain_and_survive_a_crash_without_losing_sessions_or_events() {
    let settings = isolated_settings().await;
    let db = sqlx::PgPool::connect(settings.database.url.expose_secret())
        .await
        .unwrap();
    let a = start_replica(&settings, "node-a").await;
    let b = start_replica(&settings, "node-b").await;
    let mut c = start_replica(&settings, "node-c").await;

    let (operator, operator_id) = register(a.port, "ops@example.com").await;
    // an ADMIN: operator commands, and the wallet credit drivers get in tests
    sqlx::query("UPDATE users SET role = 'ADMIN' WHERE id = $1::uuid")
        .bind(&operator_id)
        .execute(&db)
        .await
        .unwrap();
    let operator = gql(a.port, "mutation { login(email: \"ops@example.com\", password: \"correct horse battery\") { accessToken } }", json!({}), None)
        .await["data"]["login"]["accessToken"]
        .as_str()
        .map(String::from)
        .unwrap_or(operator);
    let station = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO stations (id, name, latitude, longitude) VALUES ($1, 'Cluster', 52.5, 13.4)",
    )
    .bind(station)
    .execute(&db)
    .await
    .unwrap();
    for id in ["CP-X", "CP-Y"] {
        let r = gql(a.port, "mutation($c: ID!, $s: ID!, $p: String) { registerCharger(input: {chargerId: $c, stationId: $s, password: $p, securityProfile: 1}) { id } }",
            json!({ "c": id, "s": station, "p": CHARGER_PASSWORD }), Some(&operator)).await;
        assert!(r["errors"].is_null(), "{r}");
    }
    let (driver, driver_id) = register(a.port, "drive@example.com").await;
    let id_tag = gql(
        a.port,
        "mutation($u: ID!) { creditWallet(userId: $u, amount: \"40\", reason: \"test\", idempotencyKey: \"t\") { idTag } }",
        json!({ "u": driver_id }),
        Some(&operator),
    )
    .await["data"]["creditWallet"]["idTag"]
        .as_str()
        .unwrap()
        .to_string();
    let _ = driver_id;

    // CP-X on C; the session is started through A
    let mut cp_x = connect16(c.port, "CP-X", Some(("CP-X", CHARGER_PASSWORD))).await;
    cp_x.boot().await;
    cp_x.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
    )
    .await
    .unwrap();
    let start = gql(a.port, "mutation($s: ID!) { startSession(input: {stationId: $s, chargerId: \"CP-X\"}) { id status } }",
        json!({ "s": station }), Some(&driver));
    let charger = async {
        let (id, action, _) = cp_x.next_server_call().await;
        assert_eq!(action, "RemoteStartTransaction");
        cp_x.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (started, ()) = tokio::join!(start, charger);
    let session_x = started["data"]["startSession"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_string();
    let tid_x = start_charging(&mut cp_x, &id_tag).await;

    // a subscriber on B follows the session
    let mut sub = GqlSocket::connect(b.port, Some(&driver), false)
        .await
        .expect("ack on B");
    sub.subscribe(
        "x",
        "subscription($id: ID!) { onSessionStatusChanged(sessionId: $id) { status energyKWh } }",
        json!({ "id": session_x }),
    )
    .await;
    assert_eq!(
        sub.next().await.unwrap()["onSessionStatusChanged"]["status"],
        "IN_PROGRESS"
    );
    meter(&mut cp_x, tid_x, 4_000).await;
    loop {
        if sub.next().await.unwrap()["onSessionStatusChanged"]["energyKWh"] == 4.0 {
            break;
        }
    }
    // started through A, watched from B: its one actor runs on C, which holds the charger
    assert_eq!(
        (
            sessions_active(a.port).await,
            sessions_active(b.port).await,
            sessions_active(c.port).await
        ),
        (0, 0, 1),
        "session actors on (A, B, C)"
    );

    // SIGTERM C: the charger is asked to reconnect, does so to A, and the session completes
    let status = Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _) = cp_x.closed().await.expect("C closes the charger's socket");
    assert_eq!(code, 1001, "going away");
    let exited = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let code = c.child.wait().map(|s| s.success());
        (code, started.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(exited.0.ok(), Some(true), "C exits cleanly");
    assert!(
        exited.1 < Duration::from_secs(20),
        "C exits within the grace period"
    );
    let mut cp_x = connect16(a.port, "CP-X", Some(("CP-X", CHARGER_PASSWORD))).await;
    cp_x.call(
        "StopTransaction",
        json!({ "transactionId": tid_x, "meterStop": 6_500, "timestamp": "2026-11-21T10:45:00Z" }),
    )
    .await
    .unwrap();
    loop {
        let update = sub.next().await.unwrap();
        if update["onSessionStatusChanged"]["status"] == "COMPLETED" {
            assert_eq!(update["onSessionStatusChanged"]["energyKWh"], 6.5);
            break;
        }
    }
    // it moved to A with its charger and ended there: no actor is left anywhere
    until("no session actor left", || async {
        sessions_active(a.port).await == 0 && sessions_active(b.port).await == 0
    })
    .await;

    // CP-Y charging on B; B is killed outright
    let mut cp_y = connect16(b.port, "CP-Y", Some(("CP-Y", CHARGER_PASSWORD))).await;
    cp_y.boot().await;
    let tid_y = start_charging(&mut cp_y, &id_tag).await;
    meter(&mut cp_y, tid_y, 2_000).await;
    let mut b = b;
    b.child.kill().unwrap();
    let _ = b.child.wait();
    assert!(
        cp_y.recv_within(Duration::from_secs(10)).await.is_none(),
        "the socket dies with B"
    );
    let mut cp_y = connect16(a.port, "CP-Y", Some(("CP-Y", CHARGER_PASSWORD))).await;
    cp_y.call(
        "StopTransaction",
        json!({ "transactionId": tid_y, "meterStop": 5_000, "timestamp": "2026-11-21T11:00:00Z" }),
    )
    .await
    .unwrap();

    let energies = || async {
        sqlx::query_as::<_, (String, rust_decimal::Decimal)>(
            "SELECT status, energy_kwh FROM sessions ORDER BY created_at",
        )
        .fetch_all(&db)
        .await
        .unwrap()
    };
    until("both sessions completed", || async {
        energies()
            .await
            .iter()
            .filter(|(s, _)| s == "COMPLETED")
            .count()
            == 2
    })
    .await;
    let done = energies().await;
    assert_eq!(done[0].1, rust_decimal::Decimal::new(65, 1));
    assert_eq!(done[1].1, rust_decimal::Decimal::new(50, 1));
    // nothing stays behind in the outbox: A relays what B wrote before it died
    until("every event published", || async {
        let unpublished: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&db)
                .await
                .unwrap();
        unpublished == 0
    })
    .await;
    let ended: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'SESSION_ENDED'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(ended, 2);
    drop(a);
}

#[actix_web::test]
async fn every_transaction_message_acknowledged_before_a_kill_9_is_in_postgres() {
    const CHARGERS: usize = 12;
    let settings = isolated_settings().await;
    let db = sqlx::PgPool::connect(settings.database.url.expose_secret())
        .await
        .unwrap();
    let mut server = start_replica(&settings, "node-burst").await;
    let station = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO stations (id, name, latitude, longitude) VALUES ($1, 'Burst', 52.5, 13.4)",
    )
    .bind(station)
    .execute(&db)
    .await
    .unwrap();
    let hash = chargegrid::auth::password::hash(CHARGER_PASSWORD.to_string())
        .await
        .unwrap();
    sqlx::query("INSERT INTO chargers (id, station_id, password_hash) SELECT 'CP-BURST-' || i, $1, $3 FROM generate_series(1, $2::int) AS i")
        .bind(station)
        .bind(CHARGERS as i32)
        .bind(hash)
        .execute(&db)
        .await
        .unwrap();
    let (driver, _) = register(server.port, "burst@example.com").await;
    let id_tag = gql(server.port, "{ me { idTag } }", json!({}), Some(&driver)).await["data"]["me"]
        ["idTag"]
        .as_str()
        .unwrap()
        .to_string();

    // every charger: a transaction, then readings back to back; what was acknowledged is kept
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, i64)>::new()));
    let mut chargers = Vec::new();
    for i in 1..=CHARGERS {
        let (port, id_tag, acknowledged) = (server.port, id_tag.clone(), acknowledged.clone());
        chargers.push(tokio::spawn(async move {
            let id = format!("CP-BURST-{i}");
            let mut cp = connect16(port, &id, Some((&id, CHARGER_PASSWORD))).await;
            cp.boot().await;
            let tid = start_charging(&mut cp, &id_tag).await;
            for wh in 1.. {
                let reading = json!({ "connectorId": 1, "transactionId": tid, "meterValue": [{
                    "timestamp": "2026-11-21T10:20:00Z", "sampledValue": [{ "value": wh.to_string(), "unit": "Wh" }] }] });
                match cp.try_call("MeterValues", reading).await {
                    Some(Ok(_)) => acknowledged.lock().unwrap().push((id.clone(), wh)),
                    Some(Err(e)) => panic!("a reading was refused: {e:?}"),
                    None => return, // the server is gone
                }
            }
        }));
    }
    // kill -9 in the middle of the burst
    until("a burst of acknowledged readings", || async {
        acknowledged.lock().unwrap().len() >= 400
    })
    .await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for charger in chargers {
        charger.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 400);

    // restarted on the same database, nothing acknowledged is missing
    let restarted = start_replica(&settings, "node-burst").await;
    let stored: std::collections::HashSet<(String, i64)> = sqlx::query_as::<_, (String, i64)>(
        "SELECT charger_id, value::int8 FROM meter_values WHERE transaction_pk IS NOT NULL",
    )
    .fetch_all(&db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let missing: Vec<&(String, i64)> = acknowledged
        .iter()
        .filter(|a| !stored.contains(*a))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged readings are not in Postgres, e.g. {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(5)]
    );
    // and the sessions carry the readings they acknowledged
    let behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sessions WHERE status = 'IN_PROGRESS' AND meter_last_wh IS NULL",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(behind, 0);
    drop(restarted);
}
