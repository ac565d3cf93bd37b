//! Benchmark: transaction messages per second, OCPP 1.6 `MeterValues` next to OCPP 2.0.1
//! `TransactionEvent(Updated)`, each one durably stored (its meter values, the session's new
//! reading and its SESSION_UPDATED outbox row committed) before it is answered.
//!
//! It starts the application in-process against a fresh database, as the tests do, registers
//! one station with N chargers per protocol and N drivers, and connects the chargers over real
//! WebSockets. Each charger boots, starts a transaction for its driver, then sends its next
//! message as soon as the previous one is answered (OCPP allows one call in flight). Messages
//! sent during the warm-up are not counted. The load runs on its own thread and runtime.
//!
//! ```sh
//! cargo run --release --example bench_transaction_events -- --chargers 20 --seconds 20
//! ```

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chargegrid::configuration::Settings;
use chargegrid::domain::{Email, PersonName, Role};
use chargegrid::startup::Application;
use chargegrid::store::{postgres::MIGRATOR, users};
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

#[derive(Parser, Clone)]
struct Args {
    /// Chargers per protocol, each with one transaction and one message in flight.
    #[arg(long, default_value_t = 20)]
    chargers: usize,
    /// Measured seconds per protocol.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Unmeasured seconds before that.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
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

    fn label(self) -> &'static str {
        match self {
            Protocol::V16 => "OCPP 1.6 MeterValues",
            Protocol::V201 => "OCPP 2.0.1 TransactionEvent(Updated)",
        }
    }
}

/// What one charger measured.
struct Measured {
    latencies_us: Histogram<u64>,
    answered: u64,
    errors: u64,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 120_000_000, 3)?)
}

/// A charger's connection and its side of the RPC.
struct Charger {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Charger {
    async fn connect(port: u16, id: &str, protocol: Protocol) -> anyhow::Result<Self> {
        let mut request = format!("ws://127.0.0.1:{port}/ocpp/{id}").into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol.subprotocol()),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { ws, next_id: 1 })
    }

    /// Sends a CALL and waits for its answer: `Ok(Ok(payload))` for a CALLRESULT,
    /// `Ok(Err(code))` for a CALLERROR.
    async fn call(
        &mut self,
        action: &str,
        payload: Value,
    ) -> anyhow::Result<Result<Value, String>> {
        let id = self.next_id.to_string();
        self.next_id += 1;
        let frame = json!([2, id, action, payload]).to_string();
        self.ws.send(Message::Text(frame)).await?;
        while let Some(message) = self.ws.next().await {
            let Message::Text(text) = message? else {
                continue;
            };
            let frame: Value = serde_json::from_str(&text)?;
            if frame[1] != id.as_str() {
                continue;
            }
            return Ok(match frame[0].as_u64() {
                Some(3) => Ok(frame[2].clone()),
                _ => Err(frame[2].as_str().unwrap_or("?").to_string()),
            });
        }
        bail!("the server closed the connection")
    }
}

fn energy_and_power(at: DateTime<Utc>, wh: u64, v201: bool) -> Value {
    let (energy, power) = if v201 {
        (
            json!({ "value": wh, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": { "unit": "Wh" } }),
            json!({ "value": 11000, "measurand": "Power.Active.Import", "unitOfMeasure": { "unit": "W" } }),
        )
    } else {
        (
            json!({ "value": wh.to_string(), "measurand": "Energy.Active.Import.Register", "unit": "Wh" }),
            json!({ "value": "11000", "measurand": "Power.Active.Import", "unit": "W" }),
        )
    };
    json!([{ "timestamp": at.to_rfc3339(), "sampledValue": [energy, power] }])
}

/// One charger: boot, start a transaction for `id_tag`, then report readings until `end`.
async fn run_charger(
    protocol: Protocol,
    port: u16,
    index: usize,
    id_tag: String,
    count_from: Instant,
    end: Instant,
) -> anyhow::Result<Measured> {
    let mut cp = Charger::connect(port, &protocol.charger_id(index), protocol).await?;
    let start_at = Utc::now();
    let transaction = match protocol {
        Protocol::V16 => {
            let boot = json!({ "chargePointVendor": "Bench", "chargePointModel": "B-16" });
            cp.call("BootNotification", boot)
                .await?
                .map_err(anyhow::Error::msg)?;
            let start = json!({ "connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": start_at.to_rfc3339() });
            let started = cp
                .call("StartTransaction", start)
                .await?
                .map_err(anyhow::Error::msg)?;
            started["transactionId"].clone()
        }
        Protocol::V201 => {
            let boot = json!({ "reason": "PowerUp", "chargingStation": { "vendorName": "Bench", "model": "B-201" } });
            cp.call("BootNotification", boot)
                .await?
                .map_err(anyhow::Error::msg)?;
            let reference = json!(format!("BENCH-TX-{index}"));
            let start = json!({ "eventType": "Started", "timestamp": start_at.to_rfc3339(), "triggerReason": "Authorized",
                "seqNo": 0, "transactionInfo": { "transactionId": reference }, "evse": { "id": 1, "connectorId": 1 },
                "idToken": { "idToken": id_tag, "type": "ISO14443" }, "meterValue": energy_and_power(start_at, 0, true) });
            cp.call("TransactionEvent", start)
                .await?
                .map_err(anyhow::Error::msg)?;
            reference
        }
    };
    let mut measured = Measured {
        latencies_us: histogram()?,
        answered: 0,
        errors: 0,
    };
    let mut seq: u64 = 1;
    while Instant::now() < end {
        let at = start_at + chrono::Duration::seconds(seq as i64);
        let wh = seq * 10;
        let (action, payload) = match protocol {
            Protocol::V16 => (
                "MeterValues",
                json!({ "connectorId": 1, "transactionId": transaction, "meterValue": energy_and_power(at, wh, false) }),
            ),
            Protocol::V201 => (
                "TransactionEvent",
                json!({ "eventType": "Updated", "timestamp": at.to_rfc3339(),
                "triggerReason": "MeterValuePeriodic", "seqNo": seq, "transactionInfo": { "transactionId": transaction },
                "meterValue": energy_and_power(at, wh, true) }),
            ),
        };
        let sent = Instant::now();
        let answer = cp.call(action, payload).await?;
        if sent >= count_from {
            match answer {
                Ok(_) => {
                    let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    measured.latencies_us.saturating_record(us);
                    measured.answered += 1;
                }
                Err(_) => measured.errors += 1,
            }
        }
        seq += 1;
    }
    Ok(measured)
}

/// Drives every charger of `protocol` on a runtime of its own, off the server's threads.
fn load(protocol: Protocol, port: u16, tags: Vec<String>, args: Args) -> anyhow::Result<Measured> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let count_from = Instant::now() + Duration::from_secs(args.warmup);
        let end = count_from + Duration::from_secs(args.seconds);
        let mut chargers = tokio::task::JoinSet::new();
        for (index, tag) in tags.into_iter().enumerate() {
            chargers.spawn(run_charger(protocol, port, index, tag, count_from, end));
        }
        let mut total = Measured {
            latencies_us: histogram()?,
            answered: 0,
            errors: 0,
        };
        while let Some(result) = chargers.join_next().await {
            let one = result??;
            total.latencies_us.add(&one.latencies_us)?;
            total.answered += one.answered;
            total.errors += one.errors;
        }
        Ok(total)
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

/// One station, N drivers (their idTags returned) and N chargers per protocol.
async fn seed(db: &PgPool, chargers: usize) -> anyhow::Result<Vec<String>> {
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
        tags.push(users::app_id_tag(db, user.id).await?);
        for protocol in [Protocol::V16, Protocol::V201] {
            sqlx::query("INSERT INTO chargers (id, station_id) VALUES ($1, $2)")
                .bind(protocol.charger_id(index))
                .bind(station)
                .execute(db)
                .await?;
        }
    }
    Ok(tags)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (settings, admin_url, name) = fresh_settings().await?;
    let app = Application::build(settings).await?;
    let (port, handle, db) = (app.port(), app.handle(), app.context().db.clone());
    actix_rt::spawn(app.run_until_stopped());
    let tags = seed(&db, args.chargers).await?;
    let durability: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&db)
        .await?;
    let mut rows = Vec::new();
    for protocol in [Protocol::V16, Protocol::V201] {
        let (tags, args2) = (tags.clone(), args.clone());
        let measured =
            tokio::task::spawn_blocking(move || load(protocol, port, tags, args2)).await??;
        rows.push((protocol, measured));
    }
    handle.stop(true).await;
    PgConnection::connect(&admin_url)
        .await?
        .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
        .await?;

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("{} CPUs, PostgreSQL synchronous_commit={durability}, {} chargers per protocol, {} s measured after {} s warm-up", cpus, args.chargers, args.seconds, args.warmup);
    println!();
    println!("| messages | answered | errors | messages/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (protocol, m) in rows {
        let h = &m.latencies_us;
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |",
            protocol.label(),
            m.answered,
            m.errors,
            m.answered as f64 / args.seconds as f64,
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.chargers == 0 || args.seconds == 0 {
        bail!("--chargers and --seconds must be at least 1");
    }
    actix_rt::System::new().block_on(run(args))
}
