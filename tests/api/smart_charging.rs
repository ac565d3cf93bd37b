//! Load management end to end: a site with a 63 A three-phase connection and eight chargers
//! that answer the server's calls with the bundled simulator's own logic (profiles by purpose,
//! composite schedules) over real sockets. Sessions start one by one; at every moment the sum
//! of the limits in force on the chargers that charge stays within 63 A, and so does what the
//! cars draw (their meter values follow their limits); a charger that goes offline is counted
//! at what it may still draw until it is back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chargegrid_loadtest::charger::{answer_call, ChargerState};
use chargegrid_loadtest::connect::OcppVersion;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::charger_client::{connect16, TestCharger};
use crate::helpers::{spawn_app_with, TestApp, CHARGER_PASSWORD};

/// 32 A on three 230 V phases.
const NOMINAL_W: f64 = 32.0 * 230.0 * 3.0;
const WATTS_PER_AMP: f64 = 230.0 * 3.0;
const GRID_AMPS: f64 = 63.0;
const CHARGERS: usize = 8;

enum Command {
    Start(String, oneshot::Sender<()>),
    Meter(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
    Disconnect(oneshot::Sender<()>),
    Connect(oneshot::Sender<()>),
}

/// A simulated charger: the simulator's state, answered by the simulator's protocol logic, on
/// a socket this test drives.
struct Sim {
    state: Arc<Mutex<ChargerState>>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Sim {
    async fn send(&self, make: impl FnOnce(oneshot::Sender<()>) -> Command) {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).expect("charger task alive");
        tokio::time::timeout(Duration::from_secs(15), rx)
            .await
            .expect("charger command in time")
            .expect("charger command done");
    }

    /// The limit in force (A per phase) while a transaction runs; `None` when idle.
    fn limit_amps(&self) -> Option<f64> {
        let state = self.state.lock().expect("state");
        let c = &state.connectors[0];
        c.tx.as_ref().map(|_| c.cap_w(NOMINAL_W) / WATTS_PER_AMP)
    }

    fn holds_fallback(&self) -> bool {
        let state = self.state.lock().expect("state");
        let c = &state.connectors[0];
        c.max_limit_w.is_some() && c.default_limit_w.is_some()
    }
}

/// Every charger's state, and the highest sum of the limits in force on the chargers that
/// charge, taken after every change of any of them (a profile applied, a transaction started).
#[derive(Default)]
struct Fleet {
    states: Vec<Arc<Mutex<ChargerState>>>,
    worst: Mutex<f64>,
}

impl Fleet {
    /// The limits in force on the chargers that charge, summed (A per phase).
    fn total(&self) -> f64 {
        self.states
            .iter()
            .filter_map(|state| {
                let state = state.lock().expect("state");
                let c = &state.connectors[0];
                c.tx.as_ref().map(|_| c.cap_w(NOMINAL_W) / WATTS_PER_AMP)
            })
            .sum()
    }

    /// Applies one change to a charger and takes the sum right after it, one change at a time.
    fn change(&self, state: &Arc<Mutex<ChargerState>>, apply: impl FnOnce(&mut ChargerState)) {
        let mut worst = self.worst.lock().expect("worst");
        apply(&mut state.lock().expect("state"));
        *worst = worst.max(self.total());
    }
}

async fn answer_queued(cp: &mut TestCharger, state: &Arc<Mutex<ChargerState>>, fleet: &Fleet) {
    while let Some((id, action, payload)) = cp.server_calls.pop_front() {
        answer(cp, state, fleet, &id, &action, payload).await;
    }
}

async fn answer(
    cp: &mut TestCharger,
    state: &Arc<Mutex<ChargerState>>,
    fleet: &Fleet,
    id: &str,
    action: &str,
    payload: Value,
) {
    let mut reply = None;
    fleet.change(state, |state| {
        reply = Some(answer_call(OcppVersion::V16, state, action, payload));
    });
    let reply = reply.expect("answered");
    match reply {
        Ok(payload) => cp.reply(id, payload).await,
        Err((code, description)) => {
            cp.send_text(&json!([4, id, code, description, {}]).to_string())
                .await
        }
    }
}

async fn run_charger(
    port: u16,
    id: String,
    state: Arc<Mutex<ChargerState>>,
    fleet: Arc<Fleet>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let connect =
        |id: String| async move { connect16(port, &id, Some((&id, CHARGER_PASSWORD))).await };
    let mut cp = Some(connect(id.clone()).await);
    if let Some(cp) = cp.as_mut() {
        cp.boot().await;
        cp.call(
            "StatusNotification",
            json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
        )
        .await
        .expect("status");
    }
    let mut transaction: Option<i64> = None;
    let mut energy_wh = 0.0;
    loop {
        if let Some(socket) = cp.as_mut() {
            answer_queued(socket, &state, &fleet).await;
        }
        let command = match cp.as_mut() {
            Some(socket) => tokio::select! {
                command = commands.recv() => command,
                frame = socket.recv_within(Duration::from_millis(25)) => {
                    if let Some(frame) = frame {
                        if frame[0] == 2 {
                            let (mid, action) = (frame[1].as_str().unwrap_or_default().to_string(), frame[2].as_str().unwrap_or_default().to_string());
                            answer(socket, &state, &fleet, &mid, &action, frame[3].clone()).await;
                        }
                    }
                    continue;
                }
            },
            None => commands.recv().await,
        };
        let Some(command) = command else { return };
        match command {
            Command::Start(id_tag, done) => {
                let socket = cp.as_mut().expect("connected");
                let start = socket
                    .call(
                        "StartTransaction",
                        json!({ "connectorId": 1, "idTag": id_tag, "meterStart": energy_wh as i64, "timestamp": chrono::Utc::now() }),
                    )
                    .await
                    .expect("start answered");
                assert_eq!(start["idTagInfo"]["status"], "Accepted", "{start}");
                let tid = start["transactionId"].as_i64().expect("transactionId");
                transaction = Some(tid);
                {
                    let now = tokio::time::Instant::now();
                    let tx = chargegrid_loadtest::charger::Transaction {
                        id: Some(tid.to_string()),
                        id_tag,
                        remote: false,
                        remote_start_id: None,
                        meter_start_wh: energy_wh,
                        started: now,
                        stop_at: None,
                        meter_due: now,
                        stopping: false,
                        seq_no: 0,
                        refused: false,
                    };
                    fleet.change(&state, |state| state.connectors[0].tx = Some(tx));
                }
                socket
                    .call(
                        "StatusNotification",
                        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Charging" }),
                    )
                    .await
                    .expect("status");
                let _ = done.send(());
            }
            Command::Meter(done) => {
                let socket = cp.as_mut().expect("connected");
                let power = {
                    let state = state.lock().expect("state");
                    state.connectors[0].power_w(NOMINAL_W)
                };
                energy_wh += power / 60.0;
                socket
                    .call(
                        "MeterValues",
                        json!({ "connectorId": 1, "transactionId": transaction, "meterValue": [{ "timestamp": chrono::Utc::now(), "sampledValue": [
                            { "value": format!("{energy_wh:.0}"), "measurand": "Energy.Active.Import.Register", "unit": "Wh" },
                            { "value": format!("{power:.0}"), "measurand": "Power.Active.Import", "unit": "W" }
                        ] }] }),
                    )
                    .await
                    .expect("meter values");
                let _ = done.send(());
            }
            Command::Stop(done) => {
                let socket = cp.as_mut().expect("connected");
                socket
                    .call(
                        "StopTransaction",
                        json!({ "transactionId": transaction, "meterStop": energy_wh as i64, "timestamp": chrono::Utc::now(), "reason": "EVDisconnected" }),
                    )
                    .await
                    .expect("stop answered");
                fleet.change(&state, |state| {
                    state.connectors[0].tx = None;
                    // a TxProfile ends with its transaction
                    state.connectors[0].limit_w = None;
                });
                transaction = None;
                socket
                    .call(
                        "StatusNotification",
                        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
                    )
                    .await
                    .expect("status");
                let _ = done.send(());
            }
            Command::Disconnect(done) => {
                if let Some(mut socket) = cp.take() {
                    let _ = socket.ws.close(None).await;
                }
                let _ = done.send(());
            }
            Command::Connect(done) => {
                // the charger keeps its profiles and its transaction across the reconnect
                cp = Some(connect(id.clone()).await);
                let _ = done.send(());
            }
        }
    }
}

async fn staff_graphql(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    let response = app.graphql(query, variables, Some(token)).await;
    assert!(response["errors"].is_null(), "{query}: {response}");
    response["data"].clone()
}

/// Waits until every charging charger holds `amps` (within rounding), or panics with what they
/// hold.
async fn converge(app: &TestApp, sims: &[Sim], charging: &[usize], amps: f64) {
    let ok = app
        .wait_until(Duration::from_secs(15), || async {
            charging.iter().all(|&i| {
                sims[i]
                    .limit_amps()
                    .is_some_and(|held| (held - amps).abs() < 0.06)
            })
        })
        .await;
    let held: Vec<Option<f64>> = sims.iter().map(Sim::limit_amps).collect();
    assert!(
        ok,
        "expected {amps} A on chargers {charging:?}, they hold {held:?}"
    );
}

#[actix_web::test]
async fn a_63_amp_site_shares_among_eight_chargers_and_never_passes_its_limit() {
    let app = spawn_app_with(|s| {
        s.smart_charging.debounce_ms = 20;
        s.smart_charging.reconcile_secs = 1;
        s.smart_charging.lease_ms = 3_000;
    })
    .await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("Depot").await;
    let site = staff_graphql(
        &app,
        &operator,
        "mutation($i: CreateSiteInput!) { createSite(input: $i) { id gridLimitAmps phases voltage marginAmps } }",
        json!({ "i": { "name": "Depot", "gridLimitAmps": GRID_AMPS } }),
    )
    .await["createSite"]
        .clone();
    assert_eq!(site["phases"], 3);
    assert_eq!(site["voltage"], 230.0);
    let site_id = site["id"].as_str().expect("site id").to_string();

    let states: Vec<Arc<Mutex<ChargerState>>> = (0..CHARGERS)
        .map(|_| Arc::new(Mutex::new(ChargerState::new(1, NOMINAL_W, 60.0, 0.0))))
        .collect();
    let fleet = Arc::new(Fleet {
        states: states.clone(),
        worst: Mutex::new(0.0),
    });
    let mut sims = Vec::new();
    let mut tags = Vec::new();
    for (i, state) in states.into_iter().enumerate() {
        let id = format!("SITE-CP-{i}");
        app.register_charger(&operator, &id, station, None).await;
        staff_graphql(
            &app,
            &operator,
            "mutation($i: AttachChargerInput!) { attachCharger(input: $i) { id } }",
            json!({ "i": { "siteId": site_id, "chargerId": id, "maxAmps": 32.0, "minAmps": 6.0 } }),
        )
        .await;
        let (driver, _, _) = app
            .register(
                &format!("site-driver-{i}@example.com"),
                "correct horse battery",
            )
            .await;
        let user = app.fund(&driver, "500").await;
        tags.push(user["idTag"].as_str().expect("idTag").to_string());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_charger(app.port, id, state.clone(), fleet.clone(), rx));
        sims.push(Sim {
            state,
            commands: tx,
        });
    }
    let sims = Arc::new(sims);

    // every charger gets its maximum and a default at the minimum once it is connected
    let installed = app
        .wait_until(Duration::from_secs(15), || async {
            sims.iter().all(Sim::holds_fallback)
        })
        .await;
    assert!(
        installed,
        "fallback profiles were not installed on every charger"
    );
    {
        let state = sims[0].state.lock().expect("state");
        assert_eq!(state.connectors[0].max_limit_w, Some(32.0 * WATTS_PER_AMP));
        assert_eq!(
            state.connectors[0].default_limit_w,
            Some(6.0 * WATTS_PER_AMP)
        );
    }

    // sessions one by one: 63 A less 6 A kept for each idle charger, shared by those charging
    let expected = [21.0, 13.5, 11.0, 9.7, 9.0, 8.5, 8.1, 7.8];
    for n in 0..CHARGERS {
        let tag = tags[n].clone();
        sims[n].send(|done| Command::Start(tag, done)).await;
        let charging: Vec<usize> = (0..=n).collect();
        converge(&app, &sims, &charging, expected[n]).await;
        for &i in &charging {
            sims[i].send(Command::Meter).await;
        }
    }

    // what the cars draw, as the server measured it from their meter values, stays within it
    let load_query = "query($id: ID!) { site(id: $id) { load { allocatedAmps measuredAmps sessions { sessionId chargerId amps } } chargers { chargerId online fallbackInstalled } } }";
    let measured_ok = app
        .wait_until(Duration::from_secs(10), || async {
            let data = staff_graphql(&app, &operator, load_query, json!({ "id": site_id })).await;
            let load = &data["site"]["load"];
            let measured: Vec<f64> = load["measuredAmps"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            load["sessions"].as_array().map_or(0, Vec::len) == CHARGERS
                && measured.len() == 3
                && measured.iter().all(|m| *m > 60.0 && *m <= GRID_AMPS + 0.05)
        })
        .await;
    let data = staff_graphql(&app, &operator, load_query, json!({ "id": site_id })).await;
    assert!(measured_ok, "site load: {}", data["site"]["load"]);
    for amps in data["site"]["load"]["allocatedAmps"]
        .as_array()
        .expect("allocated")
    {
        assert!(amps.as_f64().unwrap_or(99.0) <= GRID_AMPS + 1e-6, "{data}");
    }
    assert!(data["site"]["chargers"]
        .as_array()
        .expect("chargers")
        .iter()
        .all(|c| c["fallbackInstalled"] == true && c["online"] == true));

    // charger 0 goes offline while charging: it may still draw its 7.8 A and a new
    // transaction's 6 A, so the other seven share 63 - 13.8 = 49.2 A: 7.0 A each
    sims[0].send(Command::Disconnect).await;
    converge(&app, &sims, &[1, 2, 3, 4, 5, 6, 7], 7.0).await;
    assert!((sims[0].limit_amps().unwrap_or_default() - 7.8).abs() < 0.06);
    // back: everyone at 7.8 again
    sims[0].send(Command::Connect).await;
    converge(&app, &sims, &(0..CHARGERS).collect::<Vec<_>>(), 7.8).await;

    // four leave: the four left and the idle reserve share it again (63 - 24 = 39 / 4 = 9.75)
    for i in 4..CHARGERS {
        sims[i].send(Command::Stop).await;
    }
    converge(&app, &sims, &[0, 1, 2, 3], 9.7).await;

    let worst = *fleet.worst.lock().expect("worst");
    assert!(
        worst <= GRID_AMPS + 1e-6,
        "the limits in force summed to {worst} A at one moment (limit {GRID_AMPS} A)"
    );
    assert!(worst > 60.0, "the monitor saw the site busy ({worst} A)");
}

/// Answers the server's calls until `done` says it has seen what it waits for: charging
/// profiles are accepted and remembered, composite schedules report the TxProfile in force.
/// Returns every call answered: (action, payload).
async fn serve_until(
    cs: &mut TestCharger,
    mut done: impl FnMut(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut seen: Vec<(String, Value)> = Vec::new();
    let mut tx_limit = 32.0;
    while !done(&seen) {
        let (id, action, payload) = cs.next_server_call().await;
        let reply = match action.as_str() {
            "SetChargingProfile" => {
                if payload["chargingProfile"]["chargingProfilePurpose"] == "TxProfile" {
                    tx_limit = payload["chargingProfile"]["chargingSchedule"][0]
                        ["chargingSchedulePeriod"][0]["limit"]
                        .as_f64()
                        .unwrap_or(0.0);
                }
                json!({ "status": "Accepted" })
            }
            "GetCompositeSchedule" => json!({ "status": "Accepted", "schedule": {
                "evseId": payload["evseId"], "duration": 60, "scheduleStart": chrono::Utc::now(),
                "chargingRateUnit": "A", "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": tx_limit }]
            } }),
            _ => json!({ "status": "Accepted" }),
        };
        cs.reply(&id, reply).await;
        seen.push((action, payload));
    }
    seen
}

/// The limit of the last TxProfile among `calls`.
fn last_tx_limit(calls: &[(String, Value)]) -> Option<f64> {
    calls
        .iter()
        .rev()
        .find(|(action, p)| {
            action == "SetChargingProfile"
                && p["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"
        })
        .and_then(|(_, p)| {
            p["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"]
                .as_f64()
        })
}

fn tx_profile_at(limit: f64) -> impl FnMut(&[(String, Value)]) -> bool {
    move |calls| last_tx_limit(calls).is_some_and(|l| (l - limit).abs() < 0.06)
}

#[actix_web::test]
async fn a_2_0_1_station_s_external_limits_and_ev_needs_shape_its_allocation() {
    use crate::ocpp201::{app_with_station, booted, event, with_token};
    let (app, admin) = app_with_station("K-CS").await;
    let site = staff_graphql(
        &app,
        &admin,
        "mutation($i: CreateSiteInput!) { createSite(input: $i) { id } }",
        json!({ "i": { "name": "Garage", "gridLimitAmps": 32.0 } }),
    )
    .await["createSite"]["id"]
        .as_str()
        .expect("site id")
        .to_string();
    staff_graphql(
        &app,
        &admin,
        "mutation($i: AttachChargerInput!) { attachCharger(input: $i) { id } }",
        json!({ "i": { "siteId": site, "chargerId": "K-CS", "maxAmps": 32.0, "minAmps": 6.0 } }),
    )
    .await;
    let mut cs = booted(&app, "K-CS").await;

    // TC_K_03, TC_K_10, TC_K_70: the station's maximum and the default for all EVSEs, both
    // Absolute from now, with different ids
    let fallback = serve_until(&mut cs, |calls| calls.len() >= 2).await;
    let purposes: Vec<&Value> = fallback
        .iter()
        .map(|(_, p)| &p["chargingProfile"]["chargingProfilePurpose"])
        .collect();
    assert_eq!(
        purposes,
        vec!["ChargingStationMaxProfile", "TxDefaultProfile"]
    );
    for (action, p) in &fallback {
        assert_eq!(action, "SetChargingProfile");
        assert_eq!(p["evseId"], 0);
        assert_eq!(p["chargingProfile"]["chargingProfileKind"], "Absolute");
        assert!(p["chargingProfile"]["chargingSchedule"][0]["startSchedule"].is_string());
        assert_eq!(
            p["chargingProfile"]["chargingSchedule"][0]["chargingRateUnit"],
            "A"
        );
    }
    assert_ne!(
        fallback[0].1["chargingProfile"]["id"],
        fallback[1].1["chargingProfile"]["id"]
    );
    assert_eq!(
        fallback[1].1["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]
            ["limit"],
        6.0
    );

    cs.call("StatusNotification", json!({ "timestamp": chrono::Utc::now(), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1 }))
        .await
        .expect("status");
    let (driver, _, _) = app
        .register("k-driver@example.com", "correct horse battery")
        .await;
    let user = app.fund(&driver, "100").await;
    let tag = user["idTag"].as_str().expect("idTag");
    let started = cs
        .call(
            "TransactionEvent",
            with_token(
                event("Started", 0, "TX-K", &chrono::Utc::now().to_rfc3339()),
                tag,
            ),
        )
        .await
        .expect("started");
    assert_eq!(started["idTokenInfo"]["status"], "Accepted", "{started}");

    // TC_K_60: the session's TxProfile names its transaction on its EVSE: all 32 A are its own
    let calls = serve_until(&mut cs, tx_profile_at(32.0)).await;
    let (_, tx) = calls
        .iter()
        .rev()
        .find(|(a, _)| a == "SetChargingProfile")
        .expect("a TxProfile");
    assert_eq!(tx["evseId"], 1);
    assert_eq!(tx["chargingProfile"]["transactionId"], "TX-K");

    // operators watch the site's load live
    let mut watch = crate::gql_ws::GqlSocket::connect(app.port, Some(&admin), false)
        .await
        .expect("subscription socket");
    watch
        .subscribe(
            "load",
            "subscription($id: ID!) { onSiteLoadChanged(siteId: $id) { id load { allocatedAmps sessions { chargerId amps } } } }",
            json!({ "id": site }),
        )
        .await;
    let first = watch.next().await.expect("the site as it is");
    assert_eq!(first["onSiteLoadChanged"]["id"], site.as_str());

    // TC_K_48: an EMS limits the EVSE to 10 A; the allocation honours it
    let limit = cs
        .call(
            "NotifyChargingLimit",
            json!({ "evseId": 1, "chargingLimit": { "chargingLimitSource": "EMS", "isGridCritical": false },
                    "chargingSchedule": [{ "id": 1, "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 10.0 }] }] }),
        )
        .await
        .expect("NotifyChargingLimit answered");
    assert_eq!(limit, json!({}));
    serve_until(&mut cs, tx_profile_at(10.0)).await;
    let mut seen_live = false;
    for _ in 0..20 {
        let update = watch.next().await.expect("a load update");
        if update["onSiteLoadChanged"]["load"]["sessions"][0]["amps"] == 10.0 {
            seen_live = true;
            break;
        }
    }
    assert!(
        seen_live,
        "onSiteLoadChanged never showed the 10 A allocation"
    );
    let data = staff_graphql(
        &app,
        &admin,
        "query($id: ID!) { site(id: $id) { chargers { chargerId externalLimitAmps } } }",
        json!({ "id": site }),
    )
    .await;
    assert_eq!(data["site"]["chargers"][0]["externalLimitAmps"], 10.0);

    // TC_K_50/51: released, the session gets the site back
    let cleared = cs
        .call(
            "ClearedChargingLimit",
            json!({ "chargingLimitSource": "EMS", "evseId": 1 }),
        )
        .await
        .expect("ClearedChargingLimit answered");
    assert_eq!(cleared, json!({}));
    serve_until(&mut cs, tx_profile_at(32.0)).await;

    // TC_K_57: the car can take 16 A at most: Accepted, and a TxProfile of 16 A follows
    let needs = cs
        .call(
            "NotifyEVChargingNeeds",
            json!({ "evseId": 1, "chargingNeeds": { "requestedEnergyTransfer": "AC_three_phase",
                "departureTime": (chrono::Utc::now() + chrono::Duration::hours(3)).to_rfc3339(),
                "acChargingParameters": { "energyAmount": 20000, "evMinCurrent": 6, "evMaxCurrent": 16, "evMaxVoltage": 400 } } }),
        )
        .await
        .expect("NotifyEVChargingNeeds answered");
    assert_eq!(needs["status"], "Accepted");
    serve_until(&mut cs, tx_profile_at(16.0)).await;
    // the site's load shows the allocation once the round that pushed it has stored it, and
    // so does the session's record
    let load_query = "query($id: ID!) { site(id: $id) { load { sessions { sessionId amps } } } }";
    let stored = app
        .wait_until(Duration::from_secs(10), || async {
            let load = staff_graphql(&app, &admin, load_query, json!({ "id": site })).await;
            load["site"]["load"]["sessions"][0]["amps"] == 16.0
        })
        .await;
    let load = staff_graphql(&app, &admin, load_query, json!({ "id": site })).await;
    assert!(stored, "{load}");
    let session_id = load["site"]["load"]["sessions"][0]["sessionId"].clone();
    let session = staff_graphql(
        &app,
        &admin,
        "query($id: ID!) { session(id: $id) { allocatedAmps } }",
        json!({ "id": session_id }),
    )
    .await;
    assert_eq!(session["session"]["allocatedAmps"], 16.0);
    let schedule = |limit: f64| {
        json!({ "timeBase": chrono::Utc::now(), "evseId": 1, "chargingSchedule": { "id": 1, "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": limit }] } })
    };
    let within = cs
        .call("NotifyEVChargingSchedule", schedule(16.0))
        .await
        .expect("answered");
    assert_eq!(within["status"], "Accepted");
    // TC_K_55: a schedule above what the car was given is refused
    let beyond = cs
        .call("NotifyEVChargingSchedule", schedule(20.0))
        .await
        .expect("answered");
    assert_eq!(beyond["status"], "Rejected");

    // TC_K_29: the operator asks for the station's profiles; its report is answered and kept
    let ask = app.graphql(
        "mutation($c: ID!, $a: String!, $p: JSON!) { sendChargerCommand(chargerId: $c, action: $a, payload: $p) }",
        json!({ "c": "K-CS", "a": "GetChargingProfiles", "p": { "requestId": 7, "evseId": 0, "chargingProfile": { "chargingProfilePurpose": "TxDefaultProfile" } } }),
        Some(&admin),
    );
    let station = async {
        loop {
            let (id, action, _) = cs.next_server_call().await;
            let reply = match action.as_str() {
                "GetCompositeSchedule" => json!({ "status": "Rejected" }),
                _ => json!({ "status": "Accepted" }),
            };
            cs.reply(&id, reply).await;
            if action == "GetChargingProfiles" {
                break;
            }
        }
    };
    let (asked, ()) = tokio::join!(ask, station);
    assert!(asked["errors"].is_null(), "{asked}");
    let report = cs
        .call(
            "ReportChargingProfiles",
            json!({ "requestId": 7, "chargingLimitSource": "CSO", "evseId": 0, "chargingProfile": [
                fallback[1].1["chargingProfile"].clone()
            ] }),
        )
        .await
        .expect("ReportChargingProfiles answered");
    assert_eq!(report, json!({}));
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM charger_reports WHERE charger_id = 'K-CS' AND kind = 'ReportChargingProfiles'",
    )
    .fetch_one(&app.db)
    .await
    .expect("count");
    assert_eq!(kept, 1);
}

/// TC_K_53 and TC_K_59 on a station that is on no site and whose car names no maximum: the
/// needs are Accepted and a TxProfile follows at the station's rated current (32 A when it is
/// not known); when the CSMS changed the profile and the car sends its needs again, another
/// TxProfile follows and the car's schedule within it is Accepted.
#[actix_web::test]
async fn a_car_without_limits_still_gets_a_schedule_for_its_needs() {
    use crate::ocpp201::{app_with_station, booted, event, with_token};
    let (app, admin) = app_with_station("K-FREE").await;
    let mut cs = booted(&app, "K-FREE").await;
    let (driver, _, _) = app
        .register("k-free@example.com", "correct horse battery")
        .await;
    let user = app.fund(&driver, "100").await;
    let tag = user["idTag"].as_str().expect("idTag");
    let started = cs
        .call(
            "TransactionEvent",
            with_token(
                event("Started", 0, "TX-FREE", &chrono::Utc::now().to_rfc3339()),
                tag,
            ),
        )
        .await
        .expect("started");
    assert_eq!(started["idTokenInfo"]["status"], "Accepted", "{started}");

    let needs = json!({ "evseId": 1, "maxScheduleTuples": 10,
        "chargingNeeds": { "requestedEnergyTransfer": "AC_three_phase" } });
    let answer = cs
        .call("NotifyEVChargingNeeds", needs.clone())
        .await
        .expect("NotifyEVChargingNeeds answered");
    assert_eq!(answer["status"], "Accepted", "{answer}");
    let calls = serve_until(&mut cs, tx_profile_at(32.0)).await;
    let (_, tx) = calls.last().expect("a TxProfile");
    assert_eq!(tx["chargingProfile"]["transactionId"], "TX-FREE");
    assert_eq!(tx["evseId"], 1);

    // TC_K_59: the CSMS (here its operator) renegotiates; the car sends its needs again
    let renegotiate = app.graphql(
        "mutation($c: ID!, $a: String!, $p: JSON!) { sendChargerCommand(chargerId: $c, action: $a, payload: $p) }",
        json!({ "c": "K-FREE", "a": "SetChargingProfile", "p": { "evseId": 1, "chargingProfile": {
            "id": 2, "stackLevel": 0, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Relative",
            "transactionId": "TX-FREE", "chargingSchedule": [{ "id": 1, "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 10.0 }] }] } } }),
        Some(&admin),
    );
    let (sent, _) = tokio::join!(renegotiate, serve_until(&mut cs, tx_profile_at(10.0)));
    assert!(sent["errors"].is_null(), "{sent}");
    let again = cs
        .call("NotifyEVChargingNeeds", needs)
        .await
        .expect("NotifyEVChargingNeeds answered");
    assert_eq!(again["status"], "Accepted", "{again}");
    let calls = serve_until(&mut cs, tx_profile_at(32.0)).await;
    let (_, tx) = calls.last().expect("a TxProfile");
    let schedule = tx["chargingProfile"]["chargingSchedule"][0].clone();
    let accepted = cs
        .call(
            "NotifyEVChargingSchedule",
            json!({ "timeBase": chrono::Utc::now(), "evseId": 1, "chargingSchedule": schedule }),
        )
        .await
        .expect("answered");
    assert_eq!(accepted["status"], "Accepted", "{accepted}");
}
