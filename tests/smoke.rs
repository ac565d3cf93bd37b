//! The bundled smoke scenario (`loadtest/scenarios/smoke.toml`) against the real server binary:
//! `chargegrid migrate` on a fresh database, `chargegrid all` with auto-provisioning, then the
//! simulator in-process. Every connection must be established and every boot accepted, the
//! server must answer every call without a protocol error, and every local RFID session must
//! complete and be stored. A tenth of the chargers speak OCPP 2.0.1: while the server does not
//! offer it they must be refused cleanly at the handshake (counted once, never retried). App sessions (GraphQL `startSession`) are detected: until the
//! server has them they must be reported as skipped, afterwards every one must complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chargegrid_loadtest::{Progress, Scenario};
use sqlx::{Connection, PgConnection};

const JWT_SECRET: &str = "smoke-test-secret-smoke-test-secret-0123";
const OPERATOR_EMAIL: &str = "smoke-operator@example.com";
const OPERATOR_PASSWORD: &str = "smoke operator password";

/// The server process; killed when the test ends, whatever happens.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique_name() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    // the cg_t_<secs>_ prefix lets tests/api's sweep drop it after two hours
    format!("cg_t_{secs}_{}", uuid::Uuid::new_v4().simple())
}

fn with_path(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("a URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn chargegrid(name: &str, db_url: &str, mongo_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chargegrid"));
    command
        .env("DATABASE_URL", db_url)
        .env("MONGODB_URL", mongo_url)
        .env("JWT_SECRET", JWT_SECRET)
        .env("NODE_ID", "smoke")
        .env("RUST_LOG", "warn")
        .env("CHARGEGRID__REDIS__KEY_PREFIX", name)
        // exchanges and queues of its own: a durable `chargegrid.billing` that another run (a
        // benchmark's `serve`, which has no billing worker) left full of other databases'
        // SESSION_ENDED events would bury this run's own
        .env("CHARGEGRID__EVENTS__NAMESPACE", name)
        .env("CHARGEGRID__EVENTS__EPHEMERAL", "true")
        .env("CHARGEGRID__OCPP__AUTO_PROVISION", "true")
        .env("CHARGEGRID__OCPP__AUTO_ACCEPT_PROVISIONED", "true")
        // one address, many simulated drivers starting sessions back to back
        .env("CHARGEGRID__GRAPHQL__REQUESTS_PER_SEC", "100000")
        .env("CHARGEGRID__GRAPHQL__REQUEST_BURST", "100000")
        .env("CHARGEGRID__SESSIONS__MAX_STARTS_PER_MINUTE", "100000")
        // the scenario registers a handful of drivers from one address
        .env("CHARGEGRID__AUTH__LOGIN_MAX_PER_CLIENT", "10000")
        .stdin(Stdio::null());
    command
}

async fn start_server(name: &str, db_url: &str, mongo_url: &str) -> Server {
    let status = chargegrid(name, db_url, mongo_url)
        .arg("migrate")
        .status()
        .expect("run chargegrid migrate");
    assert!(status.success(), "chargegrid migrate failed");
    let output = chargegrid(name, db_url, mongo_url)
        .args([
            "user",
            "create",
            "--email",
            OPERATOR_EMAIL,
            "--name",
            "Smoke Operator",
            "--role",
            // an ADMIN: registers chargers, and funds the simulated drivers (creditWallet)
            "ADMIN",
        ])
        .env("CHARGEGRID_USER_PASSWORD", OPERATOR_PASSWORD)
        .output()
        .expect("run chargegrid user create");
    assert!(
        output.status.success(),
        "chargegrid user create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let port = free_port();
    let log = std::env::temp_dir().join(format!("{name}.log"));
    let log_file = std::fs::File::create(&log).expect("server log file");
    let child = chargegrid(name, db_url, mongo_url)
        .arg("all")
        .env("HTTP_BIND", format!("127.0.0.1:{port}"))
        // every simulated driver registers from 127.0.0.1
        .env("CHARGEGRID__AUTH__LOGIN_MAX_PER_CLIENT", "100000")
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("start chargegrid serve");
    let server = Server { child, port, log };
    // forgets an idle connection before the server's 5 s keep-alive closes it under a request
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .expect("HTTP client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "chargegrid serve did not come up in 30 s; log: {}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_scenario_runs_without_a_single_error_against_a_fresh_server() {
    let name = unique_name();
    let db_url = with_path(
        &env_or(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/chargegrid",
        ),
        &name,
    );
    let mongo_url = with_path(
        &env_or("MONGODB_URL", "mongodb://127.0.0.1:27017/chargegrid"),
        &name,
    );
    let server = start_server(&name, &db_url, &mongo_url).await;
    let mut db = PgConnection::connect(&db_url)
        .await
        .expect("connect the smoke database");
    let station: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO stations (id, name, latitude, longitude) VALUES (gen_random_uuid(), 'Smoke station', 52.52, 13.405) RETURNING id",
    )
    .fetch_one(&mut db)
    .await
    .expect("insert a station");

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("loadtest/scenarios/smoke.toml");
    let mut scenario = Scenario::from_file(&path).expect("the smoke scenario parses");
    scenario.urls = vec![format!("ws://127.0.0.1:{}/ocpp", server.port)];
    // half of the session chargers go through the app, so the GraphQL flow is exercised (or
    // reported as skipped while the server has no session API)
    scenario.sessions.local_share = 0.5;
    scenario.app.station_id = Some(station.to_string());
    scenario.app.operator_email = Some(OPERATOR_EMAIL.into());
    scenario.app.operator_password = Some(OPERATOR_PASSWORD.into());
    // every charger has a credential: the ones the app registers get this password, and the
    // others (auto-provisioned) present it too
    scenario.password = Some("smoke-charger-password-01".into());
    // a tenth of the chargers speak 2.0.1: refused cleanly (and counted once each) until the
    // server offers ocpp2.0.1, connected like the others afterwards
    scenario.ocpp201_share = 0.1;
    // app sessions register a driver each and go through startSession: give them room
    scenario.duration_secs = 14.0;
    // a loaded CI machine answers slowly: the last sessions get room to end (chargers leave as
    // soon as they are idle, so this only costs time when something is late)
    scenario.drain_secs = 10.0;
    let chargers = u64::from(scenario.chargers);

    let report = chargegrid_loadtest::run(scenario, Progress::Quiet)
        .await
        .expect("the scenario is valid");
    let summary = report.summary();
    println!("{summary}");
    let log = || std::fs::read_to_string(&server.log).unwrap_or_default();

    let v201 = u64::from(
        report
            .versions
            .get("ocpp2.0.1")
            .copied()
            .unwrap_or_default(),
    );
    assert!(v201 > 0, "the scenario mixes in 2.0.1 chargers: {summary}");
    let refused = report
        .connections
        .failed
        .get("subprotocol_refused")
        .copied()
        .unwrap_or_default();
    assert!(
        refused == 0 || refused == v201,
        "each 2.0.1 charger is refused once and never retried, or none is: {summary}"
    );
    let reachable = chargers - refused;
    assert_eq!(report.connections.attempted, chargers, "{summary}");
    assert_eq!(
        report.connections.established,
        reachable,
        "{summary}\n{}",
        log()
    );
    assert_eq!(report.failed_connections(), refused, "{summary}");
    assert_eq!(report.connections.boots_accepted, reachable, "{summary}");
    assert_eq!(report.connections.closed_by_server, 0, "{summary}");
    assert_eq!(report.protocol_errors.total, 0, "{summary}");
    assert_eq!(report.call_timeouts, 0, "{summary}");
    assert!(
        report.sent.get("Heartbeat").copied().unwrap_or_default() >= reachable,
        "{summary}"
    );
    assert_eq!(report.sessions.app.users_registered, 4, "{summary}");

    // local sessions of refused chargers are reported as skipped, all others must complete
    let local = report.sessions.planned_local - report.sessions.skipped;
    assert!(local > 0, "the scenario plans local sessions: {summary}");
    assert!(refused > 0 || report.sessions.skipped == 0, "{summary}");
    let app = &report.sessions.app;
    match app.status.as_str() {
        "ran" => {
            // app sessions on chargers the server refused can only find them offline
            let offline = app
                .failures
                .get("startSession: CHARGER_OFFLINE")
                .copied()
                .unwrap_or_default();
            assert!(refused > 0 || offline == 0, "{summary}");
            assert_eq!(
                app.sessions_completed + offline,
                app.sessions_planned,
                "{summary}"
            );
            assert_eq!(
                report.sessions.completed,
                local + app.sessions_completed,
                "{summary}"
            );
        }
        "skipped" => {
            assert!(
                app.reason
                    .as_deref()
                    .unwrap_or_default()
                    .contains("startSession"),
                "{summary}"
            );
            assert_eq!(report.sessions.completed, local, "{summary}");
        }
        other => panic!("app sessions were planned, status {other}: {summary}"),
    }
    assert_eq!(report.sessions.failed, 0, "{summary}");

    // what the operator would see: every charger provisioned, every session stored as stopped
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM chargers")
        .fetch_one(&mut db)
        .await
        .expect("count chargers");
    assert_eq!(
        stored as u64, reachable,
        "refused chargers are never provisioned"
    );
    let stopped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM charger_transactions WHERE stopped_at IS NOT NULL AND meter_stop_wh > meter_start_wh",
    )
    .fetch_one(&mut db)
    .await
    .expect("count transactions");
    assert_eq!(stopped as u64, report.sessions.completed, "{summary}");

    // every completed session is billed (the billing worker runs in `chargegrid all`)
    let completed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions WHERE status = 'COMPLETED'")
            .fetch_one(&mut db)
            .await
            .expect("count sessions");
    if app.status == "ran" {
        assert!(
            completed > 0,
            "app sessions ran but none completed: {summary}"
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let billed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sessions s JOIN invoices i ON i.session_id = s.id WHERE s.status = 'COMPLETED'",
        )
        .fetch_one(&mut db)
        .await
        .expect("count invoices");
        if billed == completed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{billed} of {completed} completed sessions billed; log: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.close().await.ok();
}
