//! Benchmark: chargers over TLS next to plain WebSocket, per OCPP security profile.
//!
//! For each of profile 1 (Basic over plain WebSocket), 2 (Basic over TLS) and 3 (TLS with a
//! client certificate) it starts a fresh `chargegrid serve` process (the release binary) on a
//! fresh database and measures:
//! - **RSS per idle connection**: the server's VmRSS before and after `--idle` chargers have
//!   connected (distinct ids; each sends a BootNotification so its actor is fully set up);
//! - **handshakes per second**: `--workers` clients connect, complete the WebSocket upgrade
//!   and close, in closed loop for `--seconds`; every TLS handshake is a full one (no session
//!   resumption), so this is what a reconnect storm of new TLS sessions costs. Basic
//!   passwords are verified with argon2 once per charger and remembered after (ADR 008), as in
//!   production.
//!
//! The clients run in this process, on the same two cores as the server.
//!
//! ```sh
//! cargo build --release --features bench --bin chargegrid --example bench_tls
//! target/release/examples/bench_tls --idle 5000 --workers 32 --seconds 10
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Clone)]
struct Args {
    /// Idle connections held for the memory figure, per profile.
    #[arg(long, default_value_t = 5000)]
    idle: usize,
    /// Concurrent clients of the handshake-rate figure.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Measured seconds of the handshake-rate figure, per profile.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The `chargegrid` binary (default: next to this example's directory).
    #[arg(long)]
    chargegrid: Option<PathBuf>,
}

const PASSWORD: &str = "bench-tls-password-0001";

#[derive(Clone, Copy, PartialEq)]
enum Profile {
    Plain,
    Tls,
    Mutual,
}

impl Profile {
    fn number(self) -> i16 {
        match self {
            Profile::Plain => 1,
            Profile::Tls => 2,
            Profile::Mutual => 3,
        }
    }
    fn label(self) -> &'static str {
        match self {
            Profile::Plain => "1: Basic over plain WebSocket",
            Profile::Tls => "2: Basic over TLS",
            Profile::Mutual => "3: TLS with a client certificate",
        }
    }
    fn id(self, i: usize) -> String {
        format!("BTLS{}-{i}", self.number())
    }
}

/// The TLS material of a run: the server's CA and certificate, the CSMS CA, and per charger of
/// profile 3 its certificate and key.
struct Material {
    dir: PathBuf,
    server_ca: CertificateDer<'static>,
    csms_ca: (rcgen::Certificate, KeyPair),
}

impl Material {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("chargegrid-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name = rcgen::DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::CommonName, "Bench server CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let mut server = CertificateParams::default();
        server.distinguished_name = rcgen::DistinguishedName::new();
        server
            .distinguished_name
            .push(DnType::CommonName, "bench.csms");
        server.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse()?)];
        let server_cert = server.signed_by(&key, &ca_cert, &ca_key)?;
        std::fs::write(dir.join("server.pem"), server_cert.pem())?;
        std::fs::write(dir.join("server.key"), key.serialize_pem())?;
        let (csms_pem, csms_key_pem) = chargegrid::security::ca::CsmsCa::generate("Bench CPO")?;
        std::fs::write(dir.join("csms-ca.pem"), &csms_pem)?;
        std::fs::write(dir.join("csms-ca.key"), &csms_key_pem)?;
        let csms_key = KeyPair::from_pem(&csms_key_pem)?;
        let csms_cert = CertificateParams::from_ca_cert_pem(&csms_pem)?.self_signed(&csms_key)?;
        Ok(Self {
            dir,
            server_ca: ca_cert.der().clone(),
            csms_ca: (csms_cert, csms_key),
        })
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A client configuration: trusts the server's CA, without session resumption, with a
    /// client certificate for `charger_id` when asked.
    fn client(&self, charger_id: Option<&str>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server_ca.clone())?;
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
        let mut config = match charger_id {
            Some(id) => {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::default();
                params.distinguished_name = rcgen::DistinguishedName::new();
                params.distinguished_name.push(DnType::CommonName, id);
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                let cert = params.signed_by(&key, &self.csms_ca.0, &self.csms_ca.1)?;
                builder.with_client_auth_cert(
                    vec![cert.der().clone(), self.csms_ca.0.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )?
            }
            None => builder.with_no_client_auth(),
        };
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }
}

impl Drop for Material {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh, migrated database; its URL and the admin URL to drop it.
async fn fresh_database() -> anyhow::Result<(String, String, String)> {
    let base = std::env::var("DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/chargegrid".into());
    let name = format!("cg_bench_tls_{}", uuid::Uuid::new_v4().simple());
    let mut url = url::Url::parse(&base)?;
    url.set_path("/postgres");
    let admin = url.to_string();
    PgConnection::connect(&admin)
        .await
        .context("Postgres is not reachable (run scripts/services.sh)")?
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await?;
    url.set_path(&format!("/{name}"));
    let pool = PgPool::connect(url.as_str()).await?;
    chargegrid::store::postgres::MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok((url.to_string(), admin, name))
}

/// Chargers of `profile`: `count` ids, with the bench password below profile 3.
async fn seed(db: &PgPool, profile: Profile, count: usize) -> anyhow::Result<()> {
    let hash = chargegrid::auth::password::hash(PASSWORD.to_string()).await?;
    let ids: Vec<String> = (0..count).map(|i| profile.id(i)).collect();
    sqlx::query(
        "INSERT INTO chargers (id, password_hash, security_profile) \
         SELECT id, $2, $3 FROM unnest($1::text[]) AS id",
    )
    .bind(&ids)
    .bind((profile != Profile::Mutual).then_some(hash))
    .bind(profile.number())
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Clone, Copy)]
struct Ports {
    http: u16,
    tls: u16,
}

struct Server {
    child: Child,
    ports: Ports,
}

impl Server {
    fn start(
        binary: &Path,
        database_url: &str,
        material: &Material,
        n: usize,
    ) -> anyhow::Result<Self> {
        let free = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (http, tls) = (free()?, free()?);
        let suffix = format!("{}x{n}", std::process::id());
        let child = Command::new(binary)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("HTTP_BIND", format!("127.0.0.1:{http}"))
            .env("OCPP_TLS_BIND", format!("127.0.0.1:{tls}"))
            .env("OCPP_TLS_CERT", material.path("server.pem"))
            .env("OCPP_TLS_KEY", material.path("server.key"))
            .env("OCPP_CA_CERT", material.path("csms-ca.pem"))
            .env("OCPP_CA_KEY", material.path("csms-ca.key"))
            .env(
                "JWT_SECRET",
                format!("bench-tls-secret-{suffix}-0123456789abcdef"),
            )
            .env("NODE_ID", format!("bench-tls-{n}"))
            .env("CHARGEGRID__REDIS__KEY_PREFIX", format!("cgbtls{suffix}"))
            .env("CHARGEGRID__EVENTS__NAMESPACE", format!("cgbtls{suffix}"))
            .env("CHARGEGRID__EVENTS__EPHEMERAL", "true")
            .env("CHARGEGRID__CLUSTER__MAX_CONCURRENT_HANDSHAKES", "4096")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            // its log goes to a file of the run (RUST_LOG=warn)
            .stderr(Stdio::from(std::fs::File::create(
                material.dir.join(format!("serve-{n}.log")),
            )?))
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child,
            ports: Ports { http, tls },
        })
    }

    async fn ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("chargegrid serve exited: {status}");
            }
            let ok = reqwest::get(format!("http://127.0.0.1:{}/healthz", self.ports.http))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok
                && tokio::net::TcpStream::connect(("127.0.0.1", self.ports.tls))
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("chargegrid serve did not become healthy")
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    server: &Ports,
    profile: Profile,
    id: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Ws> {
    let url = match profile {
        Profile::Plain => format!("ws://127.0.0.1:{}/ocpp/{id}", server.http),
        _ => format!("wss://127.0.0.1:{}/ocpp/{id}", server.tls),
    };
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("ocpp1.6"),
    );
    if profile != Profile::Mutual {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{PASSWORD}"));
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Basic {token}"))?,
        );
    }
    let connector = tls.map(tokio_tungstenite::Connector::Rustls);
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await?;
    Ok(ws)
}

async fn boot(ws: &mut Ws) -> anyhow::Result<()> {
    let frame = json!([2, "1", "BootNotification", { "chargePointVendor": "Bench", "chargePointModel": "TLS" }]);
    ws.send(Message::Text(frame.to_string())).await?;
    while let Some(message) = ws.next().await {
        if let Message::Text(text) = message? {
            if text.starts_with("[3,\"1\"") {
                return Ok(());
            }
            bail!("unexpected answer to BootNotification: {text}");
        }
    }
    bail!("closed before the BootNotification answer")
}

/// A clean close: ours, then the server's Close frame (the TCP connection itself lingers for
/// actix's client-disconnect timeout, which a charger does not wait for either).
async fn close(mut ws: Ws) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(message)) = ws.next().await {
            if message.is_close() {
                return;
            }
        }
    })
    .await;
}

struct Measured {
    idle: usize,
    rss_before: u64,
    rss_after: u64,
    handshakes: u64,
    failures: u64,
    seconds: f64,
    latency: Histogram<u64>,
}

async fn measure(
    args: &Args,
    binary: &Path,
    material: Arc<Material>,
    profile: Profile,
) -> anyhow::Result<Measured> {
    let (database_url, admin, name) = fresh_database().await?;
    let db = PgPool::connect(&database_url).await?;
    seed(&db, profile, args.idle.max(args.workers)).await?;
    let mut server = Server::start(binary, &database_url, &material, profile.number() as usize)?;
    server.ready().await?;
    // the client configurations of profile 3 carry each charger's own certificate
    let configs: Vec<Option<Arc<rustls::ClientConfig>>> = (0..args.idle.max(args.workers))
        .map(|i| match profile {
            Profile::Plain => Ok(None),
            Profile::Tls => material.client(None).map(Some),
            Profile::Mutual => material.client(Some(&profile.id(i))).map(Some),
        })
        .collect::<anyhow::Result<_>>()?;
    let ports = server.ports;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = server.rss_kib()?;

    // idle connections, 64 at a time
    let held = Arc::new(Mutex::new(Vec::with_capacity(args.idle)));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (held, next, configs) = (held.clone(), next.clone(), configs.clone());
        let idle = args.idle;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                if i >= idle {
                    return anyhow::Ok(());
                }
                let id = profile.id(i);
                let mut ws = connect(&ports, profile, &id, configs[i].clone()).await?;
                boot(&mut ws).await?;
                held.lock().await.push(ws);
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = server.rss_kib()?;
    let idle = held.lock().await.len();
    for ws in held.lock().await.drain(..) {
        close(ws).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // handshake rate: workers reconnect in closed loop, each with its own charger id
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (w, config) in configs.iter().take(args.workers).enumerate() {
        let (stop, config) = (stop.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"))?;
            let (mut ok, mut failed) = (0u64, 0u64);
            let id = profile.id(w);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match connect(&ports, profile, &id, config.clone()).await {
                    Ok(ws) => {
                        let _ = latency.record(started.elapsed().as_micros() as u64);
                        ok += 1;
                        close(ws).await;
                    }
                    Err(_) => failed += 1,
                }
            }
            anyhow::Ok((ok, failed, latency))
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut handshakes, mut failures) = (0, 0);
    for task in tasks {
        let (ok, failed, h) = task.await??;
        handshakes += ok;
        failures += failed;
        latency.add(h).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(server);
    db.close().await;
    PgConnection::connect(&admin)
        .await?
        .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
        .await?;
    Ok(Measured {
        idle,
        rss_before,
        rss_after,
        handshakes,
        failures,
        seconds,
        latency,
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let binary = match &args.chargegrid {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("chargegrid"))
            .context("cannot locate the chargegrid binary")?,
    };
    if !binary.exists() {
        bail!(
            "{} not found: build it with --release --bin chargegrid",
            binary.display()
        );
    }
    let material = Arc::new(Material::new()?);
    println!(
        "| security profile | idle connections | server RSS before -> holding | RSS per connection | handshakes/s ({} clients, closed loop, no resumption) | p50 ms | p99 ms | failed |",
        args.workers
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    for profile in [Profile::Plain, Profile::Tls, Profile::Mutual] {
        let m = measure(&args, &binary, material.clone(), profile).await?;
        let per = (m.rss_after.saturating_sub(m.rss_before)) as f64 / m.idle.max(1) as f64;
        println!(
            "| {} | {} | {} MiB -> {} MiB | {:.1} KiB | {:.0} | {:.2} | {:.2} | {} |",
            profile.label(),
            m.idle,
            m.rss_before / 1024,
            m.rss_after / 1024,
            per,
            m.handshakes as f64 / m.seconds,
            m.latency.value_at_quantile(0.5) as f64 / 1000.0,
            m.latency.value_at_quantile(0.99) as f64 / 1000.0,
            m.failures
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}
