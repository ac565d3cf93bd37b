//! Benchmark: the durable path of transaction messages, as the session-core issue defines it.
//! N password-protected chargers per protocol run in closed loop (one call in flight each, as
//! OCPP allows). Each transaction is a start for a funded driver's idTag, `--meter-values`
//! readings and a stop: OCPP 1.6 StartTransaction, MeterValues and StopTransaction; OCPP 2.0.1
//! TransactionEvent Started, Updated and Ended. Every message is answered only once it is
//! durably stored. Billing and notifications run in the same process (as `chargegrid all`)
//! and invoice every session; after the load the benchmark waits for the invoices and counts
//! sessions left without one.
//!
//! It starts the application in process against a fresh database, as the tests do. The load
//! runs on its own thread and runtime; messages are counted once every charger is connected and
//! the warm-up has passed.
//!
//! ```sh
//! cargo run --release --features bench --example bench_transaction_events -- --chargers 200 --seconds 20
//! ```

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chargegrid::configuration::Settings;
use chargegrid::domain::{Email, PersonName, Role};
use chargegrid::startup::Application;
use chargegrid::store::{postgres::MIGRATOR, users};
use chargegrid_loadtest::machine::{MachineCpu, Reading};
use chrono::{DateTime, Utc};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The server's allocator (see `src/main.rs`), for the application and the simulator alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Clone)]
struct Args {
    /// Chargers per protocol, each with one message in flight.
    #[arg(long, default_value_t = 200)]
    chargers: usize,
    /// Meter readings per transaction (between its start and its stop).
    #[arg(long, default_value_t = 20)]
    meter_values: u64,
    /// Measured seconds per protocol.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Transaction writer shards (`ocpp.transaction_writer_shards`); 0 keeps the default.
    #[arg(long, default_value_t = 0)]
    writer_shards: usize,
    /// Unmeasured seconds before that.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Finished sessions already in the database when the load starts (a database in
    /// service; see `seed_history`).
    #[arg(long, default_value_t = 100_000)]
    history: i64,
    /// One protocol only (`1.6` or `2.0.1`), for profiling one of them; both by default.
    #[arg(long)]
    only: Option<String>,
}

#[derive(Clone, Copy)]
enum Protocol {
    V16,
    V201,
}

impl Protocol {
    fn subprotocol(self) -> &'static str {
        match self {
            Protocol::V16 => "ocpp1.6",
            Protocol::V201 => "ocpp2.0.1",
        }
    }

    fn charger_id(self, index: usize) -> String {
        match self {
            Protocol::V16 => format!("BENCH16-{index}"),
            Protocol::V201 => format!("BENCH201-{index}"),
        }
    }

    fn version(self) -> &'static str {
        match self {
            Protocol::V16 => "1.6",
            Protocol::V201 => "2.0.1",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Protocol::V16 => "OCPP 1.6 Start/MeterValues/Stop",
            Protocol::V201 => "OCPP 2.0.1 TransactionEvent",
        }
    }
}

/// What one charger measured.
struct Measured {
    latencies_us: Histogram<u64>,
    /// The same answers by the message's part in its transaction: start, reading, stop.
    by_kind: [Histogram<u64>; 3],
    answered: u64,
    errors: u64,
    /// Transactions stopped within the measured window.
    transactions: u64,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 120_000_000, 3)?)
}

impl Measured {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latencies_us: histogram()?,
            by_kind: [histogram()?, histogram()?, histogram()?],
            answered: 0,
            errors: 0,
            transactions: 0,
        })
    }
}

/// A message's part in its transaction (an index of `Measured::by_kind`).
const START: usize = 0;
const READING: usize = 1;
const STOP: usize = 2;
const KINDS: [&str; 3] = ["start", "reading", "stop"];

/// A charger's connection and its side of the RPC.
struct Charger {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Charger {
    async fn connect(port: u16, id: &str, protocol: Protocol) -> anyhow::Result<Self> {
        use base64::Engine;
        let mut request = format!("ws://127.0.0.1:{port}/ocpp/{id}").into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol.subprotocol()),
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{PASSWORD}"));
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Basic {basic}"))?,
        );
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { ws, next_id: 1 })
    }

    /// Sends a CALL whose payload is JSON text already and waits for its answer: `Ok(Ok(frame))`
    /// with the CALLRESULT frame's text, `Ok(Err(code))` for a CALLERROR. The answer is
    /// recognised by its head and parsed only by a caller that needs its payload: the simulator
    /// runs on the cores it measures, and a reading's answer has nothing to read.
    async fn call(
        &mut self,
        action: &str,
        payload: &str,
    ) -> anyhow::Result<Result<String, String>> {
        let id = self.next_id;
        self.next_id += 1;
        self.ws
            .send(Message::Text(format!(
                "[2,\"{id}\",\"{action}\",{payload}]"
            )))
            .await?;
        let result_head = format!("[3,\"{id}\",");
        let error_head = format!("[4,\"{id}\",");
        while let Some(message) = self.ws.next().await {
            let Message::Text(text) = message? else {
                continue;
            };
            if text.starts_with(&result_head) {
                return Ok(Ok(text));
            }
            if text.starts_with(&error_head) {
                let frame: Value = serde_json::from_str(&text)?;
                return Ok(Err(frame[2].as_str().unwrap_or("?").to_string()));
            }
        }
        bail!("the server closed the connection")
    }
}

/// A reading's `meterValue`, as JSON text (formatted, not built as a tree: see `Charger::call`).
fn energy_and_power(at: DateTime<Utc>, wh: u64, v201: bool) -> String {
    let at = at.to_rfc3339();
    if v201 {
        format!(
            r#"[{{"timestamp":"{at}","sampledValue":[{{"value":{wh},"measurand":"Energy.Active.Import.Register","unitOfMeasure":{{"unit":"Wh"}}}},{{"value":11000,"measurand":"Power.Active.Import","unitOfMeasure":{{"unit":"W"}}}}]}}]"#
        )
    } else {
        format!(
            r#"[{{"timestamp":"{at}","sampledValue":[{{"value":"{wh}","measurand":"Energy.Active.Import.Register","unit":"Wh"}},{{"value":"11000","measurand":"Power.Active.Import","unit":"W"}}]}}]"#
        )
    }
}

/// The chargers' Basic password (every charger has one; the server verifies it with argon2).
const PASSWORD: &str = "bench-charger-secret";

/// Counts a message sent at `sent` if it falls in the measured window.
fn count(
    measured: &mut Measured,
    kind: usize,
    sent: Instant,
    count_from: Instant,
    answer: &Result<String, String>,
) {
    if sent < count_from {
        return;
    }
    match answer {
        Ok(_) => {
            let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            measured.latencies_us.saturating_record(us);
            measured.by_kind[kind].saturating_record(us);
            measured.answered += 1;
        }
        Err(_) => measured.errors += 1,
    }
}

/// One charger: connect and boot, wait for every other charger, then run transactions for
/// `id_tag` (start, readings, stop) back to back until `end`.
async fn run_charger(
    protocol: Protocol,
    port: u16,
    index: usize,
    id_tag: String,
    ready: std::sync::Arc<tokio::sync::Barrier>,
    window: (Duration, Duration),
    meter_values: u64,
) -> anyhow::Result<Measured> {
    let mut cp = Charger::connect(port, &protocol.charger_id(index), protocol).await?;
    let boot = match protocol {
        Protocol::V16 => json!({ "chargePointVendor": "Bench", "chargePointModel": "B-16" }),
        Protocol::V201 => {
            json!({ "reason": "PowerUp", "chargingStation": { "vendorName": "Bench", "model": "B-201" } })
        }
    };
    cp.call("BootNotification", &boot.to_string())
        .await?
        .map_err(anyhow::Error::msg)?;
    ready.wait().await;
    let count_from = Instant::now() + window.0;
    let end = count_from + window.1;
    let mut measured = Measured::new()?;
    // charger time moves one second per message, so readings are never in the past
    let mut clock = Utc::now();
    let mut tick = || {
        clock += chrono::Duration::seconds(1);
        clock
    };
    let mut number = 0u64;
    while Instant::now() < end {
        number += 1;
        let reference = format!("BENCH-TX-{index}-{number}");
        let at = tick();
        let at_text = at.to_rfc3339();
        let (action, start) = match protocol {
            Protocol::V16 => (
                "StartTransaction",
                format!(
                    r#"{{"connectorId":1,"idTag":"{id_tag}","meterStart":0,"timestamp":"{at_text}"}}"#
                ),
            ),
            Protocol::V201 => (
                "TransactionEvent",
                format!(
                    r#"{{"eventType":"Started","timestamp":"{at_text}","triggerReason":"Authorized","seqNo":0,"transactionInfo":{{"transactionId":"{reference}"}},"evse":{{"id":1,"connectorId":1}},"idToken":{{"idToken":"{id_tag}","type":"ISO14443"}},"meterValue":{}}}"#,
                    energy_and_power(at, 0, true)
                ),
            ),
        };
        let sent = Instant::now();
        let answer = cp.call(action, &start).await?;
        count(&mut measured, START, sent, count_from, &answer);
        // the transaction as JSON: 1.6's transactionId as the server answered it, 2.0.1's own
        let transaction = match (protocol, &answer) {
            (Protocol::V16, Ok(frame)) => {
                serde_json::from_str::<Value>(frame)?[2]["transactionId"].to_string()
            }
            (Protocol::V201, Ok(_)) => format!("\"{reference}\""),
            (_, Err(code)) => bail!("the start was refused: {code}"),
        };
        for seq in 1..=meter_values {
            let wh = seq * 100;
            let (action, payload) = match protocol {
                Protocol::V16 => (
                    "MeterValues",
                    format!(
                        r#"{{"connectorId":1,"transactionId":{transaction},"meterValue":{}}}"#,
                        energy_and_power(tick(), wh, false)
                    ),
                ),
                Protocol::V201 => {
                    let at = tick();
                    (
                        "TransactionEvent",
                        format!(
                            r#"{{"eventType":"Updated","timestamp":"{}","triggerReason":"MeterValuePeriodic","seqNo":{seq},"transactionInfo":{{"transactionId":{transaction}}},"meterValue":{}}}"#,
                            at.to_rfc3339(),
                            energy_and_power(at, wh, true)
                        ),
                    )
                }
            };
            let sent = Instant::now();
            let answer = cp.call(action, &payload).await?;
            count(&mut measured, READING, sent, count_from, &answer);
        }
        let at = tick();
        let wh = (meter_values + 1) * 100;
        let (action, stop) = match protocol {
            Protocol::V16 => (
                "StopTransaction",
                format!(
                    r#"{{"transactionId":{transaction},"meterStop":{wh},"timestamp":"{}","reason":"EVDisconnected"}}"#,
                    at.to_rfc3339()
                ),
            ),
            Protocol::V201 => (
                "TransactionEvent",
                format!(
                    r#"{{"eventType":"Ended","timestamp":"{}","triggerReason":"EVDeparted","seqNo":{},"transactionInfo":{{"transactionId":{transaction},"stoppedReason":"EVDisconnected"}},"meterValue":{}}}"#,
                    at.to_rfc3339(),
                    meter_values + 1,
                    energy_and_power(at, wh, true)
                ),
            ),
        };
        let sent = Instant::now();
        let answer = cp.call(action, &stop).await?;
        count(&mut measured, STOP, sent, count_from, &answer);
        if sent >= count_from && answer.is_ok() {
            measured.transactions += 1;
        }
    }
    Ok(measured)
}

/// Drives every charger of `protocol` on a runtime of its own, off the server's threads.
fn load(
    protocol: Protocol,
    port: u16,
    tags: Vec<String>,
    args: Args,
) -> anyhow::Result<(Measured, Option<MachineCpu>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let window = (
            Duration::from_secs(args.warmup),
            Duration::from_secs(args.seconds),
        );
        // the chargers, and the reader of the machine's CPU over the same window
        let ready = std::sync::Arc::new(tokio::sync::Barrier::new(tags.len() + 1));
        let machine = {
            let ready = ready.clone();
            tokio::spawn(async move {
                // /proc is read off the chargers' one thread: they run on while it is read
                ready.wait().await;
                tokio::time::sleep(window.0).await;
                let from = Instant::now();
                let first = Reading::now_off_thread().await?;
                tokio::time::sleep(window.1).await;
                let last = Reading::now_off_thread().await?;
                Some(first.until(&last, from.elapsed().as_secs_f64()))
            })
        };
        let mut chargers = tokio::task::JoinSet::new();
        for (index, tag) in tags.into_iter().enumerate() {
            chargers.spawn(run_charger(
                protocol,
                port,
                index,
                tag,
                ready.clone(),
                window,
                args.meter_values,
            ));
        }
        let mut total = Measured::new()?;
        while let Some(result) = chargers.join_next().await {
            let one = result??;
            total.latencies_us.add(&one.latencies_us)?;
            for (all, one) in total.by_kind.iter_mut().zip(&one.by_kind) {
                all.add(one)?;
            }
            total.answered += one.answered;
            total.errors += one.errors;
            total.transactions += one.transactions;
        }
        Ok((total, machine.await?))
    })
}

/// Settings isolated to a fresh, migrated database (and own Redis prefix and RabbitMQ names).
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
    let suffix = uuid::Uuid::new_v4().simple().to_string();
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
    Ok((settings, admin_url, name))
}

/// One station, N funded drivers (their idTags returned) and N password-protected chargers
/// per protocol.
async fn seed(db: &PgPool, chargers: usize) -> anyhow::Result<Vec<String>> {
    let password_hash = chargegrid::auth::password::hash(PASSWORD.to_string()).await?;
    let station = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO stations (id, name, latitude, longitude) VALUES ($1, 'Bench', 52.5, 13.4)",
    )
    .bind(station)
    .execute(db)
    .await?;
    let name = PersonName::parse("Bench Driver")?;
    let mut tags = Vec::with_capacity(chargers);
    for index in 0..chargers {
        let email = Email::parse(&format!("bench-{index}@example.com"))?;
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
        for protocol in [Protocol::V16, Protocol::V201] {
            sqlx::query("INSERT INTO chargers (id, station_id, password_hash) VALUES ($1, $2, $3)")
                .bind(protocol.charger_id(index))
                .bind(station)
                .bind(&password_hash)
                .execute(db)
                .await?;
        }
    }
    Ok(tags)
}

/// A database in service before the load: `sessions` finished sessions of past drivers on
/// chargers of a station of their own, with their transactions, paid invoices, readings and
/// de-duplication rows (`loadtest/bench/history.sql`, shared with `scripts/bench.sh`), then
/// VACUUM ANALYZE. Why, in the file.
async fn seed_history(db: &PgPool, sessions: i64) -> anyhow::Result<()> {
    if sessions <= 0 {
        return Ok(());
    }
    let mut conn = db.acquire().await?;
    sqlx::query("CREATE TEMP TABLE bench_history (sessions int)")
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO bench_history VALUES ($1)")
        .bind(i32::try_from(sessions)?)
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql(include_str!("../loadtest/bench/history.sql"))
        .execute(&mut *conn)
        .await?;
    sqlx::query("DROP TABLE bench_history")
        .execute(&mut *conn)
        .await?;
    sqlx::query("VACUUM ANALYZE").execute(&mut *conn).await?;
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// (sessions completed, of them invoiced) in the benchmark database.
async fn invoicing(db: &PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT count(*), count(i.id) FROM sessions s LEFT JOIN invoices i ON i.session_id = s.id \
         WHERE s.status = 'COMPLETED' AND s.charger_id NOT LIKE 'HIST-%'",
    )
    .fetch_one(db)
    .await?)
}

async fn run(args: Args) -> anyhow::Result<()> {
    use chargegrid::workers::WorkerKind;
    let (mut settings, admin_url, name) = fresh_settings().await?;
    if args.writer_shards > 0 {
        settings.ocpp.transaction_writer_shards = args.writer_shards;
    }
    let shards = settings.ocpp.transaction_writer_shards;
    // as `chargegrid all`: billing and notifications in the same process
    let app = Application::build_with(settings, &[WorkerKind::Billing, WorkerKind::Notifications])
        .await?;
    let (port, handle, db) = (app.port(), app.handle(), app.context().db.clone());
    actix_rt::spawn(app.run_until_stopped());
    let tags = seed(&db, args.chargers).await?;
    seed_history(&db, args.history).await?;
    let durability: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&db)
        .await?;
    let mut rows = Vec::new();
    if let Some(only) = args
        .only
        .as_deref()
        .filter(|o| !["1.6", "2.0.1"].contains(o))
    {
        bail!("--only takes 1.6 or 2.0.1, not {only}");
    }
    let protocols = [Protocol::V16, Protocol::V201]
        .into_iter()
        .filter(|p| args.only.as_deref().is_none_or(|only| only == p.version()));
    for protocol in protocols {
        let (tags, args2) = (tags.clone(), args.clone());
        let measured =
            tokio::task::spawn_blocking(move || load(protocol, port, tags, args2)).await??;
        rows.push((protocol, measured));
    }
    // billing catches up: every completed session must get exactly one invoice
    let deadline = Instant::now() + Duration::from_secs(120);
    let caught_up = Instant::now();
    let (completed, invoiced) = loop {
        let (completed, invoiced) = invoicing(&db).await?;
        if completed == invoiced || Instant::now() > deadline {
            break (completed, invoiced);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let catch_up = caught_up.elapsed();
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT session_id FROM invoices GROUP BY session_id HAVING count(*) > 1) d",
    )
    .fetch_one(&db)
    .await?;
    handle.stop(true).await;
    PgConnection::connect(&admin_url)
        .await?
        .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
        .await?;

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "{} CPUs, PostgreSQL synchronous_commit={durability}, {} password-protected chargers per protocol, \
         transactions of 1 start + {} readings + 1 stop, {} s measured after {} s warm-up, {} finished sessions of history (VACUUM ANALYZE after seeding), billing and notifications in process, \
         transaction writer shards: {shards}",
        cpus, args.chargers, args.meter_values, args.seconds, args.warmup, args.history
    );
    println!();
    println!(
        "| messages | answered | errors | messages/s | transactions/s | p50 ms | p99 ms | max ms | machine busy |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (protocol, (m, machine)) in &rows {
        let h = &m.latencies_us;
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {} |",
            protocol.label(),
            m.answered,
            m.errors,
            m.answered as f64 / args.seconds as f64,
            m.transactions as f64 / args.seconds as f64,
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            machine
                .as_ref()
                .map_or("n/a".into(), |c| format!("{:.0} %", c.busy_share * 100.0)),
        );
    }
    println!();
    for (protocol, (m, _)) in &rows {
        let parts: Vec<String> = KINDS
            .iter()
            .zip(&m.by_kind)
            .map(|(kind, h)| {
                format!(
                    "{kind} {:.1} / {:.1} / {:.1}",
                    ms(h.value_at_quantile(0.50)),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.max())
                )
            })
            .collect();
        println!(
            "{}: p50 / p99 / max ms by part of the transaction: {}.",
            protocol.label(),
            parts.join("; ")
        );
    }
    println!();
    for (protocol, (_, machine)) in &rows {
        if let Some(machine) = machine {
            println!("{}: {}.", protocol.label(), machine.summary());
        }
    }
    println!();
    println!(
        "Sessions completed (whole run, warm-up included): {completed}; invoiced: {invoiced} \
         ({} s after the load stopped); sessions with more than one invoice: {duplicates}.",
        catch_up.as_secs()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.chargers == 0 || args.seconds == 0 {
        bail!("--chargers and --seconds must be at least 1");
    }
    actix_rt::System::new().block_on(run(args))
}
