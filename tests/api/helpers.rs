//! Test harness: boots the real application on port 0 against the real services, with a fresh
//! Postgres database, Mongo database and Redis key prefix per test.

use std::time::{SystemTime, UNIX_EPOCH};

use chargegrid::configuration::Settings;
use chargegrid::context::AppContext;
use chargegrid::startup::Application;
use chargegrid::workers::WorkerKind;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, PgPool};

pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// A running application and what a test needs to drive and inspect it.
#[allow(dead_code)] // fields used by some test modules only
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db: PgPool,
    pub db_url: String,
    pub ctx: AppContext,
    pub http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
}

/// An HTTP client for a test's requests to a server it started. It forgets an idle connection
/// after one second: the server closes an idle keep-alive connection after five (actix-web's
/// default), and a request sent on a connection the server is closing at that moment fails with
/// `IncompleteMessage`, as a test that paused between two requests once did in CI.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(1))
        .build()
        .expect("HTTP client")
}

/// The password `register_charger` gives a charger that is registered without one.
pub const CHARGER_PASSWORD: &str = "test-charger-password-01";

/// The base URLs, from the environment when set (CI), else the local defaults.
pub fn base_settings() -> Settings {
    let mut settings = Settings::default();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(url) = env("DATABASE_URL") {
        settings.database.url = SecretString::from(url);
    }
    if let Some(url) = env("REDIS_URL") {
        settings.redis.url = SecretString::from(url);
    }
    if let Some(url) = env("AMQP_URL") {
        settings.amqp.url = SecretString::from(url);
    }
    if let Some(url) = env("MONGODB_URL") {
        settings.mongodb.url = SecretString::from(url);
    }
    if let Some(url) = env("MQTT_URL") {
        settings.mqtt.url = SecretString::from(url);
    }
    settings.http.bind = "127.0.0.1:0".into();
    settings.http.workers = 2;
    settings.http.shutdown_timeout_secs = 1;
    settings.auth.jwt_secret = Some(SecretString::from(TEST_JWT_SECRET));
    settings.node_id = "test-node".into();
    // tests poll the API quickly; the limiter has tests of its own
    settings.graphql.requests_per_sec = 100_000.0;
    settings.graphql.request_burst = 100_000;
    settings.sessions.max_starts_per_minute = 100_000;
    // the answers' running cost is asserted: a loaded test machine must not turn it into the
    // answer without it (which has a test of its own)
    settings.ocpp.running_cost_timeout_ms = 10_000;
    settings
}

fn unique_name(prefix: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("{prefix}_{secs}_{}", uuid::Uuid::new_v4().simple())
}

/// Replaces the database name in a Postgres URL.
pub fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("DATABASE_URL is a URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

/// Creates an empty database and returns its URL.
pub async fn create_empty_database(settings: &Settings) -> String {
    let admin_url = with_database(settings.database.url.expose_secret(), "postgres");
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("Postgres is reachable (run scripts/services.sh)");
    sweep_old_databases(&mut admin).await;
    let name = unique_name("cg_t");
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("create test database");
    with_database(settings.database.url.expose_secret(), &name)
}

/// Drops test databases left behind by runs more than two hours old.
async fn sweep_old_databases(admin: &mut PgConnection) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'cg\\_t\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let created: u64 = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > 7200 {
            let _ = admin
                .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                .await;
        }
    }
}

/// Isolates `settings` to a fresh, migrated database, Mongo database and Redis prefix.
pub async fn isolated_settings() -> Settings {
    let mut settings = base_settings();
    let db_url = create_empty_database(&settings).await;
    settings.database.url = SecretString::from(db_url.clone());
    let pool = PgPool::connect(&db_url)
        .await
        .expect("connect test database");
    chargegrid::store::postgres::MIGRATOR
        .run(&pool)
        .await
        .expect("migrations apply");
    pool.close().await;
    let mongo_name = unique_name("cg_t");
    let mut mongo_url = url::Url::parse(settings.mongodb.url.expose_secret()).expect("mongo url");
    mongo_url.set_path(&format!("/{mongo_name}"));
    settings.mongodb.url = SecretString::from(mongo_url.to_string());
    settings.redis.key_prefix = unique_name("cgt");
    // own RabbitMQ names, cleaned up by the broker once unused
    settings.events.namespace = unique_name("cgt");
    settings.events.ephemeral = true;
    settings.events.retry_base_ms = 50;
    settings.events.relay_poll_interval_ms = 200;
    // the tests read the events a change wrote from the outbox, so published events are kept
    // (production deletes each once confirmed; the relay's tests of that set 0 again)
    settings.events.outbox_retention_hours = 72;
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Boots the app with `customize` applied to isolated settings.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = isolated_settings().await;
    customize(&mut settings);
    spawn_with_settings(settings).await
}

/// Boots the app with the billing and notification workers in the same process (`all`).
pub async fn spawn_app_with_workers(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = isolated_settings().await;
    settings.worker.overdue_interval_secs = 1;
    customize(&mut settings);
    spawn_roles(settings, &[WorkerKind::Billing, WorkerKind::Notifications]).await
}

pub async fn spawn_with_settings(settings: Settings) -> TestApp {
    spawn_roles(settings, &[]).await
}

pub async fn spawn_roles(settings: Settings, workers: &[WorkerKind]) -> TestApp {
    let db_url = settings.database.url.expose_secret().to_string();
    let app = Application::build_with(settings, workers)
        .await
        .expect("application builds");
    let port = app.port();
    let ctx = app.context().clone();
    let handle = app.handle();
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db: ctx.db.clone(),
        db_url,
        ctx,
        http: http_client(),
        handle,
    }
}

impl TestApp {
    /// POSTs one GraphQL operation and returns the whole JSON response.
    pub async fn graphql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .expect("graphql request")
            .json()
            .await
            .expect("graphql response is JSON")
    }

    /// Registers a driver and returns (accessToken, refreshToken, userId).
    pub async fn register(&self, email: &str, password: &str) -> (String, String, String) {
        let response = self
            .graphql(
                "mutation($input: RegisterInput!) { register(input: $input) { accessToken refreshToken user { id } } }",
                json!({ "input": { "email": email, "name": "Test Driver", "password": password } }),
                None,
            )
            .await;
        let payload = &response["data"]["register"];
        assert!(payload.is_object(), "register failed: {response}");
        (
            payload["accessToken"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            payload["refreshToken"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            payload["user"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    /// Drains like SIGTERM: chargers are told to reconnect elsewhere, then the server stops.
    pub async fn drain(&self) {
        chargegrid::shutdown::drain(&self.ctx, &self.handle).await;
    }
}

/// The `extensions.code` of the first error, if any.
pub fn error_code(response: &Value) -> Option<String> {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .map(String::from)
}

impl TestApp {
    /// Registers a user and promotes them to `role`; returns a fresh access token carrying it.
    pub async fn staff_token(&self, role: &str) -> String {
        let email = format!(
            "{}-{}@example.com",
            role.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let (_, _, user_id) = self.register(&email, "operator password").await;
        sqlx::query("UPDATE users SET role = $2 WHERE id = $1::uuid")
            .bind(&user_id)
            .bind(role)
            .execute(&self.db)
            .await
            .expect("promote user");
        let login = self
            .graphql(
                "mutation($e: String!) { login(email: $e, password: \"operator password\") { accessToken } }",
                json!({ "e": email }),
                None,
            )
            .await;
        login["data"]["login"]["accessToken"]
            .as_str()
            .expect("operator login")
            .to_string()
    }

    /// Credits the signed-in driver's wallet as an administrator does (`creditWallet`: money
    /// never enters a wallet on the client's word); returns the user (id, idTag,
    /// walletBalance).
    pub async fn fund(&self, driver_token: &str, amount: &str) -> Value {
        let me = self
            .graphql("{ me { id } }", json!({}), Some(driver_token))
            .await;
        let user_id = me["data"]["me"]["id"]
            .as_str()
            .expect("the driver is signed in")
            .to_string();
        let admin = self.staff_token("ADMIN").await;
        let response = self
            .graphql(
                "mutation($u: ID!, $a: Decimal!, $k: String!) { creditWallet(userId: $u, amount: $a, reason: \"test funds\", idempotencyKey: $k) { id idTag walletBalance } }",
                json!({ "u": user_id, "a": amount, "k": uuid::Uuid::new_v4().to_string() }),
                Some(&admin),
            )
            .await;
        assert!(
            response["errors"].is_null(),
            "creditWallet failed: {response}"
        );
        response["data"]["creditWallet"].clone()
    }

    /// Registers a driver with 50.00 in their wallet; returns (access token, app idTag).
    pub async fn funded_driver(&self, email: &str) -> (String, String) {
        let (token, _, _) = self.register(email, "correct horse battery").await;
        let me = self.fund(&token, "50.00").await;
        let id_tag = me["idTag"]
            .as_str()
            .expect("the driver's idTag")
            .to_string();
        (token, id_tag)
    }

    /// Inserts a station (as the OCM sync would) and returns its id.
    pub async fn create_station(&self, name: &str) -> uuid::Uuid {
        let id = uuid::Uuid::new_v4();
        sqlx::query(
            "INSERT INTO stations (id, name, latitude, longitude) VALUES ($1, $2, 52.52, 13.405)",
        )
        .bind(id)
        .bind(name)
        .execute(&self.db)
        .await
        .expect("insert station");
        id
    }

    /// Registers a charger through the API, as an operator would; without a password of its
    /// own it gets `CHARGER_PASSWORD` (every charger needs a credential).
    pub async fn register_charger(
        &self,
        token: &str,
        charger_id: &str,
        station: uuid::Uuid,
        password: Option<&str>,
    ) -> Value {
        let password = password.unwrap_or(CHARGER_PASSWORD);
        let response = self
            .graphql(
                "mutation($i: RegisterChargerInput!) { registerCharger(input: $i) { id stationId online } }",
                json!({ "i": { "chargerId": charger_id, "stationId": station.to_string(), "password": password, "securityProfile": 1 } }),
                Some(token),
            )
            .await;
        assert!(
            response["errors"].is_null(),
            "registerCharger failed: {response}"
        );
        response["data"]["registerCharger"].clone()
    }

    /// Polls `check` until it returns true or `timeout` passes.
    pub async fn wait_until<F, Fut>(&self, timeout: std::time::Duration, mut check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if check().await {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }
}

/// `chargegrid_sessions_active` as the server at `base` (e.g. `http://127.0.0.1:8080`) reports
/// it on `/metrics`; -1 when the line is missing.
pub async fn sessions_active(base: &str) -> i64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("chargegrid_sessions_active "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}
