//! Independent peers: chargers built with the third-party Python `ocpp` package run against the
//! server (1.6 and 2.0.1). The interpreter comes from `CHARGEGRID_PYTHON` (set by scripts/test.sh to the venv
//! that scripts/services.sh installs); without it the venv path is tried directly.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;

fn python() -> PathBuf {
    if let Ok(path) = std::env::var("CHARGEGRID_PYTHON") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cache =
        std::env::var("CHARGEGRID_CACHE").unwrap_or_else(|_| format!("{home}/.cache/chargegrid"));
    PathBuf::from(cache).join("venv/bin/python")
}

fn peer_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// Starts a peer script with its arguments; killed if the test ends first.
fn spawn_peer(script: &str, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(python())
        .arg(peer_script(script))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run the Python peer (is the venv installed? run scripts/services.sh)")
}

/// Waits (at most a minute) for a peer to exit successfully; returns what it printed.
async fn finished(peer: tokio::process::Child) -> String {
    let output = tokio::time::timeout(Duration::from_secs(60), peer.wait_with_output())
        .await
        .expect("the peer finishes")
        .expect("peer output");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "peer failed:\n{stdout}\n{stderr}");
    stdout
}

#[actix_web::test]
async fn the_python_ocpp_package_runs_a_1_6_lifecycle() {
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Peer station").await;
    app.register_charger(&token, "PY-16", station, Some("python-peer-secret-1"))
        .await;
    let (driver, _, _) = app
        .register("py@example.com", "correct horse battery")
        .await;
    let id_tag = app
        .graphql("{ me { idTag } }", json!({}), Some(&driver))
        .await["data"]["me"]["idTag"]
        .as_str()
        .unwrap()
        .to_string();

    let url = format!("ws://127.0.0.1:{}/ocpp", app.port);
    let script = peer_script("ocpp16_charge_point.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .args([
                url.as_str(),
                "PY-16",
                "python-peer-secret-1",
                id_tag.as_str(),
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("run the Python peer (is the venv installed? run scripts/services.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "peer failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("OK transaction"), "{stdout}");

    let stopped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM charger_transactions WHERE charger_id = 'PY-16' AND stopped_at IS NOT NULL AND meter_stop_wh = 3100",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stopped, 1);
    let model: Option<String> = sqlx::query_scalar("SELECT model FROM chargers WHERE id = 'PY-16'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(model.as_deref(), Some("PyModel"));
}

#[actix_web::test]
async fn the_python_ocpp_package_runs_2_0_1_transactions_and_an_app_session() {
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Peer station 2.0.1").await;
    app.register_charger(&token, "PY-201", station, Some("python-peer-secret-2"))
        .await;
    let (driver, _, _) = app
        .register("py201@example.com", "correct horse battery")
        .await;
    let funded = app.fund(&driver, "50.00").await;
    let id_tag = funded["idTag"].as_str().unwrap().to_string();

    let url = format!("ws://127.0.0.1:{}/ocpp", app.port);
    let peer = spawn_peer(
        "ocpp201_charge_point.py",
        &[
            url.as_str(),
            "PY-201",
            "python-peer-secret-2",
            id_tag.as_str(),
        ],
    );

    // the peer's RFID transaction is done and EVSE 1 is free again
    let rfid_done = app
        .wait_until(Duration::from_secs(30), || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM charger_transactions WHERE transaction_ref = 'PY-RFID' AND stopped_at IS NOT NULL) \
                 AND EXISTS (SELECT 1 FROM connector_status WHERE charger_id = 'PY-201' AND connector_id = 1 AND status = 'AVAILABLE')",
            )
            .fetch_one(&app.db)
            .await
            .unwrap_or(false)
        })
        .await;
    assert!(rfid_done, "the peer's RFID transaction did not complete");

    // then the app starts and ends a session on it
    let started = app
        .graphql(
            "mutation($i: StartSessionInput!) { startSession(input: $i) { id status } }",
            json!({ "i": { "stationId": station.to_string() } }),
            Some(&driver),
        )
        .await;
    // answered once the peer accepted RemoteStart; its Started event may already have landed
    let status = started["data"]["startSession"]["status"].as_str();
    assert!(
        matches!(status, Some("PENDING" | "IN_PROGRESS")),
        "{started}"
    );
    let session_id = started["data"]["startSession"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let session = |id: String| {
        let app = &app;
        let driver = &driver;
        async move {
            app.graphql(
                "query($id: ID!) { session(id: $id) { status energyKWh stopReason } }",
                json!({ "id": id }),
                Some(driver),
            )
            .await["data"]["session"]
                .clone()
        }
    };
    let charging = app
        .wait_until(Duration::from_secs(30), || async {
            session(session_id.clone()).await["energyKWh"] == 1.2
        })
        .await;
    assert!(charging, "{}", session(session_id.clone()).await);
    let ended = app
        .graphql(
            "mutation($id: ID!) { endSession(sessionId: $id) { status } }",
            json!({ "id": session_id }),
            Some(&driver),
        )
        .await;
    // the peer sends TransactionEvent(Ended) right after accepting the stop: the contract's
    // answer is STOPPING, or COMPLETED when that event was stored first
    let status = ended["data"]["endSession"]["status"].as_str();
    assert!(matches!(status, Some("STOPPING" | "COMPLETED")), "{ended}");

    let stdout = finished(peer).await;
    assert!(stdout.contains("OK rfid transaction"), "{stdout}");
    assert!(stdout.contains("OK remote transaction"), "{stdout}");

    let view = session(session_id.clone()).await;
    assert_eq!(view["status"], "COMPLETED", "{view}");
    assert_eq!(view["energyKWh"], 2.5);
    assert_eq!(view["stopReason"], "Remote");
    let (meter_stop, rfid_energy): (rust_decimal::Decimal, rust_decimal::Decimal) = sqlx::query_as(
        "SELECT t.meter_stop_wh, s.energy_kwh FROM charger_transactions t JOIN sessions s ON s.id = t.session_id \
         WHERE t.transaction_ref = 'PY-RFID'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(meter_stop, rust_decimal::Decimal::from(3100));
    assert_eq!(rfid_energy, rust_decimal::Decimal::from(3));
    let model: Option<String> =
        sqlx::query_scalar("SELECT model FROM chargers WHERE id = 'PY-201'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(model.as_deref(), Some("PyModel"));
}

#[actix_web::test]
async fn the_python_ocpp_package_keeps_a_reservation_cancels_one_and_uses_one() {
    const RESERVE: &str = "mutation($i: ReserveConnectorInput!) { reserveConnector(input: $i) { id status connectorId } }";
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Peer reservation station").await;
    app.register_charger(&token, "PY-RES", station, Some("python-peer-secret-3"))
        .await;
    let (driver, _, _) = app
        .register("pyres@example.com", "correct horse battery")
        .await;
    let id_tag = app.fund(&driver, "50.00").await["idTag"]
        .as_str()
        .unwrap()
        .to_string();

    let url = format!("ws://127.0.0.1:{}/ocpp", app.port);
    let peer = spawn_peer(
        "ocpp16_reservation.py",
        &[
            url.as_str(),
            "PY-RES",
            "python-peer-secret-3",
            id_tag.as_str(),
        ],
    );
    let booted = app
        .wait_until(Duration::from_secs(30), || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM connector_status WHERE charger_id = 'PY-RES' AND status = 'AVAILABLE'",
            )
            .fetch_one(&app.db)
            .await
            .unwrap_or(0)
                == 2
        })
        .await;
    assert!(booted, "the peer did not come up");

    let input = json!({ "i": { "stationId": station.to_string(), "chargerId": "PY-RES", "connectorId": 2 } });
    let first = app.graphql(RESERVE, input.clone(), Some(&driver)).await;
    assert_eq!(
        first["data"]["reserveConnector"]["status"], "ACCEPTED",
        "{first}"
    );
    let cancelled = app
        .graphql(
            "mutation($id: ID!) { cancelReservation(reservationId: $id) { status } }",
            json!({ "id": first["data"]["reserveConnector"]["id"] }),
            Some(&driver),
        )
        .await;
    assert_eq!(
        cancelled["data"]["cancelReservation"]["status"],
        "CANCELLED"
    );
    let second = app.graphql(RESERVE, input, Some(&driver)).await;
    assert_eq!(
        second["data"]["reserveConnector"]["status"], "ACCEPTED",
        "{second}"
    );
    // the charger shows connector 2 Reserved; the driver's start goes there
    let started = app
        .graphql(
            "mutation($i: StartSessionInput!) { startSession(input: $i) { id connectorId } }",
            json!({ "i": { "stationId": station.to_string() } }),
            Some(&driver),
        )
        .await;
    assert_eq!(
        started["data"]["startSession"]["connectorId"], 2,
        "{started}"
    );

    let stdout = finished(peer).await;
    assert!(stdout.contains("OK cancelled"), "{stdout}");
    assert!(stdout.contains("OK used"), "{stdout}");
    let (status, session): (String, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT status, session_id FROM reservations WHERE id = $1::uuid")
            .bind(second["data"]["reserveConnector"]["id"].as_str().unwrap())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(status, "USED");
    assert_eq!(
        session.map(|s| s.to_string()).as_deref(),
        started["data"]["startSession"]["id"].as_str()
    );
}

#[actix_web::test]
async fn the_python_ocpp_package_keeps_the_local_list_it_is_sent() {
    let app = spawn_app().await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("Peer list station").await;
    app.register_charger(&operator, "PY-LL", station, Some("python-peer-secret-4"))
        .await;
    for (email, card) in [("a@example.com", "04PYA"), ("b@example.com", "04PYB")] {
        let (token, _, _) = app.register(email, "correct horse battery").await;
        let added = app
            .graphql(
                "mutation($i: AddIdTokenInput!) { addIdToken(input: $i) { idToken } }",
                json!({ "i": { "idToken": card, "type": "ISO14443" } }),
                Some(&token),
            )
            .await;
        assert!(added["errors"].is_null(), "{added}");
    }
    let list = app
        .graphql(
            "mutation { createLocalList(name: \"Peers\") { id } }",
            json!({}),
            Some(&operator),
        )
        .await["data"]["createLocalList"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.graphql(
        "mutation($l: ID!) { addToLocalList(listId: $l, idTokens: [\"04PYA\", \"04PYB\"]) { size } }",
        json!({ "l": list }),
        Some(&operator),
    )
    .await;
    // given the list while offline: it gets it at its boot
    app.graphql(
        "mutation($l: ID!) { assignLocalList(chargerId: \"PY-LL\", listId: $l) }",
        json!({ "l": list }),
        Some(&operator),
    )
    .await;

    let url = format!("ws://127.0.0.1:{}/ocpp", app.port);
    let peer = spawn_peer(
        "ocpp16_local_list.py",
        &[url.as_str(), "PY-LL", "python-peer-secret-4", "2"],
    );
    let first = app
        .wait_until(Duration::from_secs(30), || async {
            sqlx::query_scalar::<_, i32>(
                "SELECT version FROM charger_local_lists WHERE charger_id = 'PY-LL'",
            )
            .fetch_one(&app.db)
            .await
            .unwrap_or(0)
                == 1
        })
        .await;
    assert!(first, "the peer did not get its list at boot");
    // then a card leaves the list: the peer gets the difference
    app.graphql(
        "mutation($l: ID!) { removeFromLocalList(listId: $l, idTokens: [\"04PYB\"]) { size } }",
        json!({ "l": list }),
        Some(&operator),
    )
    .await;

    let stdout = finished(peer).await;
    assert!(
        stdout.contains("OK list 1: 04PYA=Accepted 04PYB=Accepted"),
        "{stdout}"
    );
    assert!(stdout.contains("OK list 2: 04PYA=Accepted\n"), "{stdout}");
}

#[actix_web::test]
async fn the_python_ocpp_package_installs_a_campaigns_firmware_as_a_2_0_1_station() {
    let app = crate::helpers::spawn_app_with(|s| s.firmware.tick_ms = 100).await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("Peer firmware station").await;
    app.register_charger(&operator, "PY-FW", station, Some("python-peer-secret-5"))
        .await;
    let url = format!("ws://127.0.0.1:{}/ocpp", app.port);
    let peer = spawn_peer(
        "ocpp201_firmware.py",
        &[url.as_str(), "PY-FW", "python-peer-secret-5"],
    );
    let online = app
        .wait_until(Duration::from_secs(30), || async {
            sqlx::query_scalar::<_, bool>("SELECT online FROM chargers WHERE id = 'PY-FW'")
                .fetch_one(&app.db)
                .await
                .unwrap_or(false)
        })
        .await;
    assert!(online, "the peer did not connect");
    let started = app
        .graphql(
            "mutation($i: FirmwareCampaignInput!) { startFirmwareCampaign(input: $i) { id } }",
            json!({ "i": { "chargerIds": ["PY-FW"], "location": "https://fw.example.com/py-2.bin" } }),
            Some(&operator),
        )
        .await;
    let id = started["data"]["startFirmwareCampaign"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stdout = finished(peer).await;
    assert!(
        stdout.contains("OK installed https://fw.example.com/py-2.bin"),
        "{stdout}"
    );
    let completed = app
        .wait_until(Duration::from_secs(10), || async {
            app.graphql(
                "query($id: ID!) { firmwareCampaign(id: $id) { status } }",
                json!({ "id": id }),
                Some(&operator),
            )
            .await["data"]["firmwareCampaign"]["status"]
                == "COMPLETED"
        })
        .await;
    assert!(completed, "the campaign did not complete");
}
