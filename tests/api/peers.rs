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

/// The CSMS side of the OCA smart-charging cases (block K) against an independent station: the
/// OCTT trigger makes the server send each case's call, the station (tests/peers/
/// ocpp201_smart_charging.py) keeps profiles as the specification says and checks what it gets.
#[actix_web::test]
async fn the_python_ocpp_package_runs_the_csms_side_of_the_smart_charging_cases() {
    use crate::octt::post;
    const TOKEN: &str = "octt-trigger-token-for-peers-01";
    let app = crate::helpers::spawn_app_with(|s| {
        s.ocpp.octt_trigger_token = Some(TOKEN.to_string().into());
    })
    .await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("Peer smart station").await;
    app.register_charger(&operator, "PY-K", station, Some("python-peer-secret-6"))
        .await;
    let site = app
        .graphql(
            "mutation($i: CreateSiteInput!) { createSite(input: $i) { id } }",
            json!({ "i": { "name": "Peer site", "gridLimitAmps": 32.0 } }),
            Some(&operator),
        )
        .await["data"]["createSite"]["id"]
        .as_str()
        .expect("site id")
        .to_string();
    let attached = app
        .graphql(
            "mutation($i: AttachChargerInput!) { attachCharger(input: $i) { id } }",
            json!({ "i": { "siteId": site, "chargerId": "PY-K", "maxAmps": 32.0, "minAmps": 6.0 } }),
            Some(&operator),
        )
        .await;
    assert!(attached["errors"].is_null(), "{attached}");
    let (driver, _, _) = app
        .register("pyk@example.com", "correct horse battery")
        .await;
    app.fund(&driver, "50.00").await;

    let url = format!("ws://127.0.0.1:{}/ocpp", app.port);
    let peer = spawn_peer(
        "ocpp201_smart_charging.py",
        &[url.as_str(), "PY-K", "python-peer-secret-6"],
    );
    // connected, and the site's fallback (station maximum, default at the minimum) installed
    let ready = app
        .wait_until(Duration::from_secs(30), || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT fallback_installed_at IS NOT NULL FROM site_chargers WHERE charger_id = 'PY-K'",
            )
            .fetch_one(&app.db)
            .await
            .unwrap_or(false)
        })
        .await;
    assert!(ready, "the peer did not come up with its fallback profiles");

    let trigger = |action: &'static str, body: serde_json::Value| {
        let port = app.port;
        async move {
            post(
                port,
                &format!("/api/octt/2.0.1/PY-K/{action}"),
                Some(TOKEN),
                body,
            )
            .await
        }
    };
    let profile = |id: i64, purpose: &str, kind: &str, stack: i64, limit: f64| {
        let mut schedule = json!({ "id": id, "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": limit }] });
        if kind != "Relative" {
            schedule["startSchedule"] = json!("2026-12-01T00:00:00Z");
        }
        let mut p = json!({ "id": id, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": kind, "chargingSchedule": [schedule] });
        if kind == "Recurring" {
            p["recurrencyKind"] = json!("Daily");
        }
        p
    };
    let status = |body: &serde_json::Value| body["response"]["status"].as_str().map(String::from);

    // TC_K_02: a TxProfile without an ongoing transaction: the station's Rejected is reported
    let (code, body) = trigger(
        "SetChargingProfile",
        json!({ "evseId": 1, "chargingProfile": profile(201, "TxProfile", "Relative", 1, 10.0) }),
    )
    .await;
    assert_eq!(
        (code, status(&body).as_deref()),
        (200, Some("Rejected")),
        "{body}"
    );
    // TC_K_15: the station does not support the profile: its CALLERROR reaches the tool
    let (code, body) = trigger(
        "SetChargingProfile",
        json!({ "evseId": 1, "chargingProfile": profile(1500, "TxDefaultProfile", "Absolute", 3, 10.0) }),
    )
    .await;
    assert_eq!(code, 502, "{body}");
    assert!(body["error"].to_string().contains("NotSupported"), "{body}");
    // TC_K_19: a recurring profile
    let (code, body) = trigger(
        "SetChargingProfile",
        json!({ "evseId": 1, "chargingProfile": profile(1901, "TxDefaultProfile", "Recurring", 2, 16.0) }),
    )
    .await;
    assert_eq!(
        (code, status(&body).as_deref()),
        (200, Some("Accepted")),
        "{body}"
    );
    // TC_K_06: cleared by EVSE, purpose and stack level
    let (_, body) = trigger(
        "ClearChargingProfile",
        json!({ "chargingProfileCriteria": { "evseId": 1, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 2 } }),
    )
    .await;
    assert_eq!(status(&body).as_deref(), Some("Accepted"), "{body}");
    // TC_K_08: nothing to clear
    let (_, body) = trigger("ClearChargingProfile", json!({ "chargingProfileId": 4242 })).await;
    assert_eq!(status(&body).as_deref(), Some("Unknown"), "{body}");
    // TC_K_05: set, then cleared by id
    let (_, body) = trigger(
        "SetChargingProfile",
        json!({ "evseId": 1, "chargingProfile": profile(1902, "TxDefaultProfile", "Absolute", 2, 12.0) }),
    )
    .await;
    assert_eq!(status(&body).as_deref(), Some("Accepted"), "{body}");
    let (_, body) = trigger("ClearChargingProfile", json!({ "chargingProfileId": 1902 })).await;
    assert_eq!(status(&body).as_deref(), Some("Accepted"), "{body}");

    // TC_K_29 - TC_K_36, TC_K_52: GetChargingProfiles as the OCTT sends them (EVSE 0, EVSE 1 or
    // none, with a purpose, ids, a stack level, a source, or a purpose and a stack level), and
    // one that matches nothing; each answer, and every ReportChargingProfiles that follows it,
    // is kept. The station holds the site's TxDefaultProfile on EVSE 0, this one on EVSE 1 and
    // its own EMS limit on EVSE 1.
    let (_, body) = trigger(
        "SetChargingProfile",
        json!({ "evseId": 1, "chargingProfile": profile(1903, "TxDefaultProfile", "Absolute", 1, 14.0) }),
    )
    .await;
    assert_eq!(status(&body).as_deref(), Some("Accepted"), "{body}");
    let default = json!({ "chargingProfilePurpose": "TxDefaultProfile" });
    let requests = [
        (
            29,
            json!({ "evseId": 0, "chargingProfile": default }),
            "Accepted",
            1,
        ),
        (
            30,
            json!({ "evseId": 1, "chargingProfile": default }),
            "Accepted",
            1,
        ),
        (31, json!({ "chargingProfile": default }), "Accepted", 2),
        (
            32,
            json!({ "chargingProfile": { "chargingProfileId": [1903] } }),
            "Accepted",
            1,
        ),
        (
            33,
            json!({ "evseId": 1, "chargingProfile": { "stackLevel": 1 } }),
            "Accepted",
            1,
        ),
        (
            34,
            json!({ "evseId": 1, "chargingProfile": { "chargingLimitSource": ["EMS"] } }),
            "Accepted",
            1,
        ),
        (
            35,
            json!({ "evseId": 1, "chargingProfile": default }),
            "Accepted",
            1,
        ),
        (
            36,
            json!({ "evseId": 1, "chargingProfile": { "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1 } }),
            "Accepted",
            1,
        ),
        (
            99,
            json!({ "evseId": 1, "chargingProfile": { "chargingProfilePurpose": "TxProfile" } }),
            "NoProfiles",
            0,
        ),
    ];
    for (request_id, mut body, expected, reports) in requests {
        body["requestId"] = json!(request_id);
        let (_, answer) = trigger("GetChargingProfiles", body).await;
        assert_eq!(
            status(&answer).as_deref(),
            Some(expected),
            "K_{request_id}: {answer}"
        );
        let kept = app
            .wait_until(Duration::from_secs(10), || async {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM charger_reports WHERE charger_id = 'PY-K' \
                     AND kind = 'ReportChargingProfiles' AND (payload->>'requestId')::int = $1",
                )
                .bind(request_id)
                .fetch_one(&app.db)
                .await
                .unwrap_or(-1)
                    == reports
            })
            .await;
        assert!(kept, "K_{request_id}: {reports} reports expected");
    }
    let ems: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM charger_reports WHERE charger_id = 'PY-K' AND kind = 'ReportChargingProfiles' \
         AND payload->>'chargingLimitSource' = 'EMS' AND (payload->>'requestId')::int = 34",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(ems, 1, "K_52: the EMS limit in the report");

    // TC_K_43, TC_K_44: the composite schedule of EVSE 1 and of the station
    for evse in [1, 0] {
        let (_, body) = trigger(
            "GetCompositeSchedule",
            json!({ "evseId": evse, "duration": 300, "chargingRateUnit": "A" }),
        )
        .await;
        assert_eq!(status(&body).as_deref(), Some("Accepted"), "{body}");
        assert_eq!(body["response"]["schedule"]["evseId"], evse, "{body}");
    }

    // TC_K_37: an app start on the load-managed station carries a TxProfile at its minimum;
    // TC_K_58: the site's allocation then renegotiates it and the car's schedule is accepted
    let started = app
        .graphql(
            "mutation($i: StartSessionInput!) { startSession(input: $i) { id } }",
            json!({ "i": { "stationId": station.to_string() } }),
            Some(&driver),
        )
        .await;
    if !started["errors"].is_null() {
        // the peer's own complaint says more than the start's failure
        let stdout = finished(peer).await;
        panic!("{started}\n{stdout}");
    }
    let session_id = started["data"]["startSession"]["id"]
        .as_str()
        .expect("session id")
        .to_string();
    let allocated = app
        .wait_until(Duration::from_secs(20), || async {
            sqlx::query_scalar::<_, f64>(
                "SELECT amps FROM session_allocations WHERE session_id = $1::uuid AND applied",
            )
            .bind(&session_id)
            .fetch_optional(&app.db)
            .await
            .ok()
            .flatten()
            .is_some_and(|amps| amps > 6.0)
        })
        .await;
    assert!(allocated, "the site did not allocate the new session");
    let ended = app
        .graphql(
            "mutation($id: ID!) { endSession(sessionId: $id) { status } }",
            json!({ "id": session_id }),
            Some(&driver),
        )
        .await;
    assert!(ended["errors"].is_null(), "{ended}");
    let completed = app
        .wait_until(Duration::from_secs(20), || async {
            sqlx::query_scalar::<_, String>("SELECT status FROM sessions WHERE id = $1::uuid")
                .bind(&session_id)
                .fetch_one(&app.db)
                .await
                .is_ok_and(|status| status == "COMPLETED")
        })
        .await;
    assert!(
        completed,
        "the station's Ended event did not end the session"
    );
    let (_, body) = trigger("Reset", json!({ "type": "OnIdle" })).await;
    assert_eq!(status(&body).as_deref(), Some("Accepted"), "{body}");

    let stdout = finished(peer).await;
    for line in [
        "OK rejected TxProfile 201 without a running transaction",
        "OK set 1901 TxDefaultProfile Recurring on 1 at 16.0",
        "OK cleared [1901]: Accepted",
        "OK cleared []: Unknown",
        "OK cleared [1902]: Accepted",
        "OK get profiles 99: NoProfiles",
        "OK reported 31: 2 reports",
        "OK composite 0:",
        "OK remote start with TxProfile 9001 at 6.0",
        "OK EV schedule within",
        "OK transaction ended",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
}
