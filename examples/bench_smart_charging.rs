//! Benchmark of load management (not a test), in two parts:
//!
//! 1. **Re-allocation time**: a site with `--site-chargers` chargers (ten circuits, a mix of
//!    three- and single-phase chargers on rotated phases) and as many active sessions with caps,
//!    car demands and priorities; each round turns the stored records into the allocator's
//!    input and allocates, as a controller's round does between its reads and its pushes.
//!    `--rounds` rounds with a few sessions' draw changed each time; p50/p99/max.
//! 2. **New session to every affected charger holding its new profile**: the application runs
//!    in process against a fresh database; a child process (this example with `--client`)
//!    connects `--connected` password-protected OCPP 1.6 chargers, `--site-chargers` of them on
//!    one site, each of those with a session, plus `--starts` idle site chargers. Then, one at a
//!    time, a new session starts on an idle one: the time from its StartTransaction answer until
//!    every charging charger of the site holds its new TxProfile (a new session takes a share
//!    from every other one, so every one of them gets a lower limit).
//!
//! ```sh
//! cargo run --release --features bench --example bench_smart_charging -- \
//!     [--site-chargers 1000] [--connected 10000] [--starts 20] [--rounds 2000]
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chargegrid::configuration::{Settings, SmartChargingSettings};
use chargegrid::domain::{Email, PersonName, Role};
use chargegrid::smart::input::SiteView;
use chargegrid::smart::round::Memory;
use chargegrid::startup::Application;
use chargegrid::store::sites::{ActiveSession, CircuitRecord, SiteChargerRecord, SiteRecord};
use chargegrid::store::{postgres::MIGRATOR, users};
use chrono::Utc;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const PASSWORD: &str = "smart-bench-password";

#[derive(Parser, Clone)]
struct Args {
    /// Chargers of the site with a session each.
    #[arg(long, default_value_t = 1000)]
    site_chargers: usize,
    /// Chargers connected in all (the rest are on no site).
    #[arg(long, default_value_t = 10_000)]
    connected: usize,
    /// New sessions started one at a time (each on an idle site charger).
    #[arg(long, default_value_t = 20)]
    starts: usize,
    /// Allocation rounds timed in part 1.
    #[arg(long, default_value_t = 2000)]
    rounds: usize,
    /// Only part 1.
    #[arg(long)]
    allocation_only: bool,
    /// Internal: run as the chargers' process against this port.
    #[arg(long)]
    client: Option<u16>,
    /// Internal (client): idTags file, one per line (site chargers first).
    #[arg(long)]
    tags: Option<String>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

// ---------------------------------------------------------------------------------------------
// part 1: the allocation itself

fn synthetic_site(
    n: usize,
    rng: &mut StdRng,
) -> (
    SiteRecord,
    Vec<CircuitRecord>,
    Vec<SiteChargerRecord>,
    Vec<ActiveSession>,
) {
    let site_id = Uuid::new_v4();
    let now = Utc::now();
    let site = SiteRecord {
        id: site_id,
        name: "bench".into(),
        grid_limit_amps: (n as f64) * 12.0,
        phases: 3,
        voltage: 230.0,
        margin_amps: 10.0,
        other_load_amps: 50.0,
        reported_load_amps: None,
        reported_load_at: None,
        created_at: now,
    };
    let circuits: Vec<CircuitRecord> = (0..10)
        .map(|i| CircuitRecord {
            id: Uuid::new_v4(),
            site_id,
            parent_id: None,
            name: format!("panel {i}"),
            limit_amps: (n as f64) * 1.6,
        })
        .collect();
    let rotations = ["RST", "STR", "TRS"];
    let chargers: Vec<SiteChargerRecord> = (0..n)
        .map(|i| SiteChargerRecord {
            charger_id: format!("CP-{i:05}"),
            site_id,
            circuit_id: Some(circuits[i % circuits.len()].id),
            phases: if i % 5 == 0 { 1 } else { 3 },
            phase_rotation: rotations[i % 3].into(),
            min_amps: 6.0,
            max_amps: if i % 4 == 0 { 16.0 } else { 32.0 },
            external_limit_amps: (i % 50 == 0).then_some(10.0),
            external_limit_source: None,
            fallback_installed_at: Some(now),
            online: i % 100 != 7,
            protocol: Some("OCPP16".into()),
            last_boot_at: None,
            connectors: 1,
        })
        .collect();
    let sessions: Vec<ActiveSession> = (0..n)
        .map(|i| ActiveSession {
            id: Uuid::new_v4(),
            charger_id: format!("CP-{i:05}"),
            connector_id: Some(1),
            status: "IN_PROGRESS".into(),
            power_kw: Some(rng.gen_range(1.0..22.0)),
            max_power_kw: (i % 7 == 0).then_some(7.4),
            energy_kwh: rng.gen_range(0.0..30.0),
            start_time: Some(now - chrono::Duration::seconds(rng.gen_range(0..7200))),
            plan: if i % 3 == 0 {
                "FLAT_RATE"
            } else {
                "PAY_AS_YOU_GO"
            }
            .into(),
            departure_time: (i % 9 == 0).then(|| now + chrono::Duration::hours(2)),
            need_kwh: (i % 9 == 0).then_some(30.0),
            ev_max_amps: (i % 11 == 0).then_some(16.0),
            ev_phases: (i % 13 == 0).then_some(1),
            allocated_amps: Some(10.0),
            applied: Some(true),
            transaction_id: Some(i as i32 + 1),
            transaction_ref: None,
        })
        .collect();
    (site, circuits, chargers, sessions)
}

fn allocation_rounds(args: &Args) -> anyhow::Result<Histogram<u64>> {
    let mut rng = StdRng::seed_from_u64(7);
    let (site, circuits, chargers, mut sessions) = synthetic_site(args.site_chargers, &mut rng);
    let settings = SmartChargingSettings::default();
    let mut memory = Memory::default();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut sink = 0.0;
    for round in 0..args.rounds + 100 {
        // a few cars' draw changed since the last round; some draw less than they are given
        for _ in 0..5 {
            let i = rng.gen_range(0..sessions.len());
            sessions[i].power_kw = Some(rng.gen_range(0.5..22.0));
            let id = sessions[i].id;
            memory
                .demand
                .insert(id, (rng.gen_bool(0.3).then(|| rng.gen_range(4.0..20.0)), 2));
        }
        let started = Instant::now();
        let view = SiteView::new(
            &site,
            &circuits,
            &chargers,
            &sessions,
            &settings,
            Utc::now(),
        );
        let input = view.input(&memory);
        let result = chargegrid::domain::allocation::allocate(&input);
        let elapsed = started.elapsed();
        sink += result.sessions.first().map_or(0.0, |a| a.amps);
        if round >= 100 {
            histogram.record(elapsed.as_micros().max(1) as u64)?;
        }
    }
    if sink < 0.0 {
        println!("(unreachable {sink})");
    }
    Ok(histogram)
}

// ---------------------------------------------------------------------------------------------
// part 2: the application and its chargers

async fn fresh_settings() -> anyhow::Result<(Settings, String, String)> {
    let mut settings = Settings::default();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(url) = env("DATABASE_URL") {
        settings.database.url = SecretString::from(url);
    }
    for (name, target) in [
        ("REDIS_URL", &mut settings.redis.url),
        ("AMQP_URL", &mut settings.amqp.url),
        ("MONGODB_URL", &mut settings.mongodb.url),
    ] {
        if let Some(url) = env(name) {
            *target = SecretString::from(url);
        }
    }
    let suffix = Uuid::new_v4().simple().to_string();
    let name = format!("cg_bench_{suffix}");
    let mut url = url::Url::parse(settings.database.url.expose_secret())?;
    url.set_path("/postgres");
    let admin_url = url.to_string();
    PgConnection::connect(&admin_url)
        .await
        .context("Postgres is not reachable (run scripts/services.sh)")?
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await?;
    url.set_path(&format!("/{name}"));
    let pool = PgPool::connect(url.as_str()).await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    settings.database.url = SecretString::from(url.to_string());
    settings.http.bind = "127.0.0.1:0".into();
    settings.auth.jwt_secret = Some(SecretString::from(format!("bench-{suffix}")));
    settings.node_id = "bench".into();
    settings.redis.key_prefix = format!("cgbench{suffix}");
    settings.events.namespace = format!("cgbench{suffix}");
    settings.events.ephemeral = true;
    settings.database.max_connections = 30;
    settings.ocpp.auto_provision = false;
    // the chargers connect as fast as the handshakes go; boots are not spread out
    settings.cluster.max_boots_per_sec = 20_000;
    Ok((settings, admin_url, name))
}

/// The site, its chargers, every other charger and one funded driver per site charger; the
/// drivers' idTags in the order of the site chargers.
async fn seed(db: &PgPool, args: &Args) -> anyhow::Result<Vec<String>> {
    let password_hash = chargegrid::auth::password::hash(PASSWORD.to_string()).await?;
    let station = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO stations (id, name, latitude, longitude) VALUES ($1, 'Bench', 52.5, 13.4)",
    )
    .bind(station)
    .execute(db)
    .await?;
    sqlx::query(
        "INSERT INTO chargers (id, station_id, password_hash) \
         SELECT 'SB-' || lpad(i::text, 6, '0'), $1, $2 FROM generate_series(0, $3 - 1) i",
    )
    .bind(station)
    .bind(&password_hash)
    .bind(args.connected as i64)
    .execute(db)
    .await?;
    let on_site = (args.site_chargers + args.starts) as i64;
    // 12 A per charging car, less the idle ones' reserve: every new session lowers every share
    let site = Uuid::new_v4();
    sqlx::query("INSERT INTO sites (id, name, grid_limit_amps) VALUES ($1, 'Bench depot', $2)")
        .bind(site)
        .bind(12.0 * args.site_chargers as f64)
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO site_chargers (charger_id, site_id, max_amps, min_amps) \
         SELECT 'SB-' || lpad(i::text, 6, '0'), $1, 32, 6 FROM generate_series(0, $2 - 1) i",
    )
    .bind(site)
    .bind(on_site)
    .execute(db)
    .await?;
    let name = PersonName::parse("Bench Driver")?;
    let mut tags = Vec::new();
    for index in 0..on_site {
        let email = Email::parse(&format!("smart-{index}@example.com"))?;
        let mut tx = db.begin().await?;
        let user = users::insert(
            &mut tx,
            users::NewUser {
                email: &email,
                name: &name,
                password_hash: "not-a-login",
                role: Role::Driver,
                currency: "EUR",
            },
        )
        .await?;
        tx.commit().await?;
        sqlx::query("UPDATE users SET wallet_balance = 1000000 WHERE id = $1")
            .bind(user.id)
            .execute(db)
            .await?;
        tags.push(users::app_id_tag(db, user.id).await?);
    }
    Ok(tags)
}

async fn run(args: Args) -> anyhow::Result<()> {
    println!("## Load management\n");
    let histogram = allocation_rounds(&args)?;
    println!(
        "re-allocation, {} chargers and {} sessions on one site (10 circuits), {} rounds: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 <= 5 ms)",
        args.site_chargers,
        args.site_chargers,
        args.rounds,
        ms(histogram.value_at_quantile(0.5)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.max())
    );
    if args.allocation_only {
        return Ok(());
    }

    let (mut settings, admin_url, name) = fresh_settings().await?;
    settings.smart_charging.debounce_ms = 20;
    let db = PgPool::connect(settings.database.url.expose_secret()).await?;
    let tags = seed(&db, &args).await?;
    let tags_file = std::env::temp_dir().join(format!("{name}.tags"));
    std::fs::write(&tags_file, tags.join("\n"))?;
    let app = Application::build(settings).await?;
    let port = app.port();
    println!(
        "(application in process on port {port}; {} chargers connect from a child process)",
        args.connected
    );
    let server = actix_rt::spawn(app.run_until_stopped());

    let mut child = Command::new(std::env::current_exe()?)
        .args(["--client", &port.to_string(), "--tags"])
        .arg(&tags_file)
        .args([
            "--site-chargers",
            &args.site_chargers.to_string(),
            "--connected",
            &args.connected.to_string(),
            "--starts",
            &args.starts.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    })
    .await?;
    let status = child.wait()?;
    for line in &lines {
        println!("{line}");
    }
    server.abort();
    db.close().await;
    let _ = std::fs::remove_file(&tags_file);
    if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
        let _ = admin
            .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
            .await;
    }
    if !status.success() {
        bail!("the chargers' process failed ({status})");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the chargers' process

/// What every site charger last got: (when, TxProfile limit).
type Received = Arc<Mutex<HashMap<usize, (Instant, f64)>>>;

struct Socket {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

async fn connect(port: u16, id: &str) -> anyhow::Result<Socket> {
    use base64::Engine;
    let mut request = format!("ws://127.0.0.1:{port}/ocpp/{id}").into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("ocpp1.6"),
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{PASSWORD}"));
    request.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Basic {basic}"))?,
    );
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(Socket { ws, next_id: 1 })
}

/// Answers the server's calls (SetChargingProfile recorded, GetCompositeSchedule from it)
/// while waiting for the answer to our own call `id`, if any.
async fn pump(
    socket: &mut Socket,
    index: usize,
    received: &Received,
    waiting_for: Option<&str>,
    limit: &mut f64,
) -> anyhow::Result<Option<Value>> {
    while let Some(message) = socket.ws.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text)?;
        match frame[0].as_u64() {
            Some(2) => {
                let action = frame[2].as_str().unwrap_or_default();
                let payload = &frame[3];
                let reply = match action {
                    "SetChargingProfile" => {
                        let profile = &payload["csChargingProfiles"];
                        if profile["chargingProfilePurpose"] == "TxProfile" {
                            *limit = profile["chargingSchedule"]["chargingSchedulePeriod"][0]
                                ["limit"]
                                .as_f64()
                                .unwrap_or(0.0);
                            received
                                .lock()
                                .map_err(|_| anyhow::anyhow!("poisoned"))?
                                .insert(index, (Instant::now(), *limit));
                        }
                        json!({ "status": "Accepted" })
                    }
                    "GetCompositeSchedule" => {
                        json!({ "status": "Accepted", "connectorId": payload["connectorId"],
                        "scheduleStart": Utc::now(), "chargingSchedule": { "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": *limit }] } })
                    }
                    _ => json!({ "status": "Accepted" }),
                };
                socket
                    .ws
                    .send(Message::Text(json!([3, frame[1], reply]).to_string()))
                    .await?;
            }
            Some(3) | Some(4) if waiting_for.is_some_and(|id| frame[1] == id) => {
                return Ok(Some(frame));
            }
            _ => {}
        }
    }
    if waiting_for.is_some() {
        bail!("the server closed the connection");
    }
    Ok(None)
}

async fn call(
    socket: &mut Socket,
    index: usize,
    received: &Received,
    limit: &mut f64,
    action: &str,
    payload: Value,
) -> anyhow::Result<Value> {
    let id = socket.next_id.to_string();
    socket.next_id += 1;
    socket
        .ws
        .send(Message::Text(json!([2, id, action, payload]).to_string()))
        .await?;
    let frame = pump(socket, index, received, Some(&id), limit)
        .await?
        .context("no answer")?;
    if frame[0] != 3 {
        bail!("{action} refused: {frame}");
    }
    Ok(frame[2].clone())
}

/// A charger: connects, boots, and (site chargers) starts its session when told; then answers
/// the server until the end.
async fn charger(
    port: u16,
    index: usize,
    tag: Option<String>,
    start: tokio::sync::watch::Receiver<usize>,
    received: Received,
    ready: Arc<AtomicUsize>,
    started: Arc<Mutex<HashMap<usize, Instant>>>,
) -> anyhow::Result<()> {
    let id = format!("SB-{index:06}");
    let mut socket = {
        let mut attempt = 0;
        loop {
            match connect(port, &id).await {
                Ok(socket) => break socket,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    let _ = e;
                }
                Err(e) => return Err(e),
            }
        }
    };
    let mut limit = 0.0;
    let boot = call(
        &mut socket,
        index,
        &received,
        &mut limit,
        "BootNotification",
        json!({ "chargePointVendor": "Bench", "chargePointModel": "SB-1" }),
    )
    .await?;
    if boot["status"] != "Accepted" {
        bail!("{id} not accepted: {boot}");
    }
    call(
        &mut socket,
        index,
        &received,
        &mut limit,
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
    )
    .await?;
    ready.fetch_add(1, Ordering::SeqCst);
    let Some(tag) = tag else {
        // not charging: answer whatever comes until the end
        pump(&mut socket, index, &received, None, &mut limit).await?;
        return Ok(());
    };
    // wait for our turn (the site's first sessions start together, the measured ones one by one)
    let mut start = start;
    loop {
        if *start.borrow() > index {
            break;
        }
        tokio::select! {
            changed = start.changed() => changed?,
            answered = pump(&mut socket, index, &received, None, &mut limit) => { answered?; return Ok(()); }
        }
    }
    let answer = call(
        &mut socket,
        index,
        &received,
        &mut limit,
        "StartTransaction",
        json!({ "connectorId": 1, "idTag": tag, "meterStart": 0, "timestamp": Utc::now() }),
    )
    .await?;
    if answer["idTagInfo"]["status"] != "Accepted" {
        bail!("{id}: start refused: {answer}");
    }
    started
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .insert(index, Instant::now());
    call(
        &mut socket,
        index,
        &received,
        &mut limit,
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Charging" }),
    )
    .await?;
    pump(&mut socket, index, &received, None, &mut limit).await?;
    Ok(())
}

fn client(args: Args, port: u16) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let tags: Vec<String> = std::fs::read_to_string(args.tags.as_deref().context("--tags")?)?
            .lines()
            .map(String::from)
            .collect();
        let received: Received = Arc::default();
        let started: Arc<Mutex<HashMap<usize, Instant>>> = Arc::default();
        let ready = Arc::new(AtomicUsize::new(0));
        let (turn, start) = tokio::sync::watch::channel(0usize);
        let connecting = Instant::now();
        for index in 0..args.connected {
            let tag = tags.get(index).cloned();
            tokio::spawn(charger(port, index, tag, start.clone(), received.clone(), ready.clone(), started.clone()));
            if index % 500 == 499 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        while ready.load(Ordering::SeqCst) < args.connected {
            if connecting.elapsed() > Duration::from_secs(180) {
                bail!("only {} of {} chargers booted", ready.load(Ordering::SeqCst), args.connected);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("{} chargers connected and booted in {:.1} s", args.connected, connecting.elapsed().as_secs_f64());

        // the site's sessions
        let everyone = |n: usize| {
            let received = received.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let count = received.lock().map(|r| r.len()).unwrap_or(0);
                    if count >= n {
                        return true;
                    }
                    if Instant::now() > deadline {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        turn.send(args.site_chargers)?;
        if !everyone(args.site_chargers).await {
            bail!("the site's first sessions did not all get a TxProfile");
        }
        // settle: the ramp's last rounds are over once no profile arrived for two seconds
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let latest = received.lock().map(|r| r.values().map(|(t, _)| *t).max()).ok().flatten();
            if latest.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
                break;
            }
        }

        let mut histogram = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
        let mut widest: Option<(usize, f64)> = None;
        for n in 0..args.starts {
            let index = args.site_chargers + n;
            let before: HashMap<usize, f64> = received
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .iter()
                .map(|(i, (_, limit))| (*i, *limit))
                .collect();
            turn.send(index + 1)?;
            let t0 = loop {
                if let Some(t) = started.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.get(&index) {
                    break *t;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            // the new session's profile, then quiet for a second: every charger whose share
            // moved (allocations are in 0.1 A steps, so a share moves when it crosses a step)
            // holds its new limit by the last profile received
            let deadline = Instant::now() + Duration::from_secs(60);
            let (affected, last) = loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let received = received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                let new_one = received.get(&index).is_some_and(|(at, _)| *at >= t0);
                let changed: Vec<Instant> = received
                    .iter()
                    .filter(|(i, (at, limit))| *at >= t0 && before.get(i).is_none_or(|old| (limit - old).abs() > 1e-9))
                    .map(|(_, (at, _))| *at)
                    .collect();
                let last = changed.iter().max().copied().unwrap_or(t0);
                if new_one && last.elapsed() >= Duration::from_secs(1) {
                    break (changed.len(), last);
                }
                drop(received);
                if Instant::now() > deadline {
                    bail!("start {n}: the new session got no profile within 60 s");
                }
            };
            let took = (last - t0).as_secs_f64() * 1000.0;
            histogram.record((last - t0).as_micros().max(1) as u64)?;
            println!("start {}: {affected} chargers got a new profile, the last {took:.0} ms after the start", n + 1);
            if widest.is_none_or(|(a, _)| affected > a) {
                widest = Some((affected, took));
            }
        }
        println!(
            "new session -> every charger whose share moved holds its new TxProfile, {} connected, {} sessions on the site, {} starts: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            args.connected,
            args.site_chargers,
            args.starts,
            ms(histogram.value_at_quantile(0.5)),
            ms(histogram.value_at_quantile(0.99)),
            ms(histogram.max())
        );
        if let Some((affected, took)) = widest {
            println!("the start that moved the most shares: {affected} chargers, all holding their new profile {took:.0} ms after it");
        }
        Ok(())
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(port) = args.client {
        return client(args, port);
    }
    if args.site_chargers == 0 || args.site_chargers + args.starts > args.connected {
        bail!(
            "--site-chargers must be at least 1 and --site-chargers + --starts at most --connected"
        );
    }
    actix_rt::System::new().block_on(run(args))
}
