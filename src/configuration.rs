//! Typed, layered settings: built-in defaults, then an optional config file (`--config`), then
//! `CHARGEGRID__SECTION__KEY` environment variables, then the fixed variables of the runtime
//! contract (`DATABASE_URL`, `JWT_SECRET`, ...). Secrets are `SecretString`s and never printed.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Everything a chargegrid process can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// This replica's identity (the StatefulSet pod name).
    pub node_id: String,
    /// Development mode: allows running without `JWT_SECRET` (a fixed, insecure key is used).
    pub dev: bool,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub mongodb: MongoSettings,
    pub redis: RedisSettings,
    pub amqp: AmqpSettings,
    pub mqtt: MqttSettings,
    pub auth: AuthSettings,
    pub graphql: GraphqlSettings,
    pub ocpp: OcppSettings,
    pub ocm: OcmSettings,
    pub billing: BillingSettings,
    pub payments: PaymentSettings,
    pub pnc: PncSettings,
    pub sessions: SessionSettings,
    pub events: EventSettings,
    pub worker: WorkerSettings,
    pub cluster: ClusterSettings,
    pub smart_charging: SmartChargingSettings,
    pub reservations: ReservationSettings,
    pub firmware: FirmwareSettings,
}

/// Load management (docs/smart-charging.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SmartChargingSettings {
    /// Changes that arrive within this window are allocated together.
    pub debounce_ms: u64,
    /// Every site is re-allocated at least this often (changes on other replicas, cars whose
    /// draw changed, a lost trigger).
    pub reconcile_secs: u64,
    /// A site's controller runs on the replica holding its lease in Redis; renewed every
    /// third of it, taken over by another replica after it lapses.
    pub lease_ms: u64,
    /// A share of the capacity between allocations is only pushed to a charger when it moved
    /// by at least this much (ampere), so a site is not flooded with profiles for noise.
    pub min_change_amps: f64,
    /// A live non-charger load reported through the API counts for this long; after it, the
    /// site's fixed `otherLoadAmps` counts again.
    pub reported_load_ttl_secs: u64,
    /// Share and priority by the driver's plan: FLAT_RATE subscribers first.
    pub flat_rate_priority: i32,
    pub flat_rate_weight: f64,
    /// Verify a charger's composite schedule after pushing its profiles (GetCompositeSchedule).
    pub verify_schedules: bool,
    /// Keep each free connector's default (the minimum) unallocated, so a car that plugs in
    /// and draws it before the next allocation reaches it never takes the site past its
    /// limit. Off: the safety margin must cover those moments (docs/smart-charging.md).
    pub reserve_for_new_sessions: bool,
}

impl Default for SmartChargingSettings {
    fn default() -> Self {
        Self {
            debounce_ms: 100,
            reconcile_secs: 5,
            lease_ms: 15_000,
            min_change_amps: 0.5,
            reported_load_ttl_secs: 300,
            flat_rate_priority: 1,
            flat_rate_weight: 2.0,
            verify_schedules: true,
            reserve_for_new_sessions: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClusterSettings {
    /// Charger ownership lease in Redis; renewed every third of it. A crashed replica's chargers
    /// are free for others after at most this long.
    pub lease_ms: u64,
    /// WebSocket handshakes in progress at once (look-ups, password checks); more wait for a
    /// turn up to `handshake_wait_ms`, then get 503 with Retry-After.
    pub max_concurrent_handshakes: usize,
    /// How long a handshake waits for its turn before it is refused with 503. A waiting
    /// handshake costs an idle socket; a refused one costs the charger a whole new attempt
    /// after its backoff, so a storm recovers faster when chargers queue than when they retry.
    pub handshake_wait_ms: u64,
    /// BootNotifications accepted per second; beyond it chargers get `Pending` with a retry
    /// interval, which spreads a reconnect storm out.
    pub max_boots_per_sec: u32,
    /// On SIGTERM: how long to wait for charger sockets to close after asking them to.
    pub drain_wait_secs: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            lease_ms: 15_000,
            max_concurrent_handshakes: 512,
            handshake_wait_ms: 5_000,
            max_boots_per_sec: 5_000,
            drain_wait_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EventSettings {
    /// Outbox events published per relay batch.
    pub relay_batch_size: i64,
    /// How often the relay looks for events when no notification woke it.
    pub relay_poll_interval_ms: u64,
    /// Backoff of the first retry; each further retry doubles it.
    pub retry_base_ms: u64,
    /// Prefix of every exchange and queue name (`chargegrid` -> `chargegrid.events`).
    pub namespace: String,
    /// Auto-deleting exchanges and self-expiring queues (isolated test runs).
    pub ephemeral: bool,
    /// Published outbox events are kept this many hours after publication (marked published,
    /// deleted hourly); 0, the default, deletes each event once RabbitMQ confirmed it. An
    /// unpublished event is kept until it is published, whatever this says.
    pub outbox_retention_hours: u64,
    /// The live fan-out's queue is bound while someone on the replica listens to other
    /// replicas' changes, and this many seconds after the last one left.
    pub fanout_linger_secs: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            relay_batch_size: 500,
            relay_poll_interval_ms: 1000,
            retry_base_ms: 1000,
            namespace: "chargegrid".into(),
            ephemeral: false,
            outbox_retention_hours: 0,
            fanout_linger_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WorkerSettings {
    /// Health and metrics listener of `chargegrid worker ...`.
    pub http_bind: String,
    /// Messages a notification worker handles at once. Its handlers hold no connection: they
    /// wait for the shared de-duplication batches and the MQTT broker's acknowledgement, so
    /// this is what keeps those batches full and the broker's window busy (16 in hand kept
    /// the worker at ~1,600 events/s, behind the 2,000/s of 500 session ends/s).
    pub concurrency: usize,
    pub prefetch: u16,
    /// The most SESSION_ENDED events billed in one transaction. The billing consumer keeps this
    /// many in hand (its handlers only wait for their batch, they hold no connection), so a
    /// busy billing worker bills in batches of up to this size rather than of `concurrency`.
    pub billing_batch: usize,
    /// How often the billing worker marks unpaid invoices past due OVERDUE.
    pub overdue_interval_secs: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            http_bind: "0.0.0.0:9090".into(),
            concurrency: 512,
            prefetch: 64,
            billing_batch: 500,
            overdue_interval_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SessionSettings {
    /// A PENDING session its charger has not started by then becomes FAILED.
    pub pending_timeout_secs: u64,
    /// startSession calls a driver may make per minute (each asks a charger to start).
    pub max_starts_per_minute: u32,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            pending_timeout_secs: 120,
            max_starts_per_minute: 10,
        }
    }
}

/// Firmware campaigns (docs/firmware.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FirmwareSettings {
    /// How often each replica hands the next chargers their firmware and checks on the others.
    pub tick_ms: u64,
    /// A failed attempt is retried after this long (while attempts are left).
    pub retry_secs: u64,
    /// A charger that reports nothing for this long after it was sent the firmware has failed
    /// the attempt.
    pub stale_secs: u64,
}

impl Default for FirmwareSettings {
    fn default() -> Self {
        Self {
            tick_ms: 1000,
            retry_secs: 60,
            stale_secs: 3600,
        }
    }
}

/// Reservations (docs/reservations.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReservationSettings {
    /// How long a reservation holds its connector when the driver does not say.
    pub default_minutes: u32,
    /// The longest a driver may hold a connector.
    pub max_minutes: u32,
    /// Live reservations one driver may hold at once.
    pub max_per_user: u32,
    /// How often each replica ends reservations whose time is up (also for offline chargers).
    pub sweep_secs: u64,
}

impl Default for ReservationSettings {
    fn default() -> Self {
        Self {
            default_minutes: 15,
            max_minutes: 60,
            max_per_user: 1,
            sweep_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Address of the one HTTP listener (OCPP, GraphQL, health, metrics).
    pub bind: String,
    /// actix worker threads; 0 means one per core.
    pub workers: usize,
    /// Seconds the server waits for in-flight requests on shutdown.
    pub shutdown_timeout_secs: u64,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Proxies (IP or CIDR) whose `X-Forwarded-For` is believed: the client is the right-most
    /// address that is not one of them. Without any, the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// A listener for `/metrics` and `/ready` only (e.g. `0.0.0.0:9091`); when set, the public
    /// listener does not serve them.
    pub internal_bind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MongoSettings {
    pub url: SecretString,
    /// Database name used when the URL names none.
    pub default_database: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    pub url: SecretString,
    pub pool_size: usize,
    /// Prefix of every key this deployment writes, so several deployments can share a Redis.
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AmqpSettings {
    pub url: SecretString,
    /// Upper bound of the reconnect backoff.
    pub max_reconnect_delay_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MqttSettings {
    pub url: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// HMAC key for access tokens; required outside `--dev`.
    pub jwt_secret: Option<SecretString>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// Failed logins allowed per email within `login_window_secs`.
    pub login_max_per_email: u32,
    /// Login attempts allowed per client address within `login_window_secs`.
    pub login_max_per_client: u32,
    pub login_window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GraphqlSettings {
    pub max_depth: usize,
    pub max_complexity: usize,
    /// Largest accepted request body (query + variables), in bytes.
    pub max_body_bytes: usize,
    pub introspection: bool,
    /// Requests per second a client (a signed-in user, else an address) may sustain; a
    /// fraction is a slower rate (0.5: one every two seconds).
    pub requests_per_sec: f64,
    /// Requests a client may send at once before `requests_per_sec` applies.
    pub request_burst: u32,
    /// A query running longer than this is cancelled (mutations are bounded by their own waits).
    pub request_timeout_ms: u64,
    /// Open subscription sockets per client address (many drivers may share a carrier's).
    pub max_sockets_per_address: usize,
    /// Open subscription sockets per signed-in user.
    pub max_sockets_per_user: usize,
    /// Active subscriptions on one socket.
    pub max_subscriptions_per_socket: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OcppSettings {
    /// Register unknown chargers on first connect, quarantined (Boot answered Pending) until an
    /// operator adopts them.
    pub auto_provision: bool,
    /// Accept auto-provisioned chargers at once instead of quarantining them. Development and
    /// load tests only: anyone who knows the URL gets a charger (logged loudly at start).
    pub auto_accept_provisioned: bool,
    /// Failed logins (wrong Basic password) allowed per charger id within
    /// `auth_failure_window_secs`; then the handshake is refused with 429 without a check.
    pub auth_failures_per_charger: u32,
    /// Failed charger logins allowed per client address within the window.
    pub auth_failures_per_address: u32,
    /// The failure window; it doubles (up to an hour) each time a limit is reached again.
    pub auth_failure_window_secs: u64,
    /// Charger reports (DataTransfer, firmware/diagnostics status, unknown transactions) are
    /// deleted after this many days...
    pub report_retention_days: u64,
    /// ...and beyond the newest this many per charger.
    pub reports_kept_per_charger: i64,
    /// Interval handed to chargers in the BootNotification answer.
    pub heartbeat_interval_secs: u32,
    /// Largest accepted OCPP-J frame.
    pub max_frame_bytes: usize,
    /// How long a CSMS-initiated call waits for the charger's answer.
    pub call_timeout_secs: u64,
    /// How long a 2.0.1 TransactionEvent answer waits for its running cost (`totalCost`, a
    /// display figure); the event is stored either way, and answered without it when late.
    pub running_cost_timeout_ms: u64,
    /// A charger silent for longer than this is considered gone.
    pub offline_grace_secs: u64,
    /// Interval of WebSocket pings to the charger.
    pub ping_interval_secs: u64,
    /// Writers that group-commit transaction messages, each one batch at a time on its own
    /// connection; a charger always uses the same one (its messages stay in order). One by
    /// default: on the two-core reference machine one writer carried more messages than two
    /// (ADR 009, amendment of 2026-12-07).
    pub transaction_writer_shards: usize,
    /// The chargers' TLS listener (`OCPP_TLS_BIND`, e.g. `0.0.0.0:8443`): security profiles 2
    /// and 3, beside the plain listener. Needs `tls_cert` and `tls_key`.
    pub tls_bind: Option<String>,
    /// PEM certificate chain of the TLS listener (`OCPP_TLS_CERT`), reloaded when it changes.
    pub tls_cert: Option<String>,
    /// PEM private key of the TLS listener (`OCPP_TLS_KEY`).
    pub tls_key: Option<String>,
    /// PEM CA certificates that issue chargers' client certificates (`OCPP_CLIENT_CA`):
    /// enables security profile 3. Certificates the CSMS CA signs are trusted as well.
    pub client_ca: Option<String>,
    /// The CSMS CA that signs chargers' certificates (SignCertificate): PEM certificate and
    /// key (`OCPP_CA_CERT`, `OCPP_CA_KEY`). Unset, `--dev` generates one on first start (kept
    /// in Postgres, shared by every replica); outside `--dev` CSRs are then rejected.
    pub ca_cert: Option<String>,
    pub ca_key: Option<String>,
    /// The V2G CA that signs stations' ISO 15118 certificates (SignCertificate with
    /// `V2GCertificate`): PEM certificate and key (`OCPP_V2G_CA_CERT`, `OCPP_V2G_CA_KEY`).
    /// Unset, such requests are rejected.
    pub v2g_ca_cert: Option<String>,
    pub v2g_ca_key: Option<String>,
    /// How often the TLS files are checked for changes (SIGHUP reloads at once).
    pub tls_reload_check_secs: u64,
    /// Validity of the certificates the CSMS CA signs for chargers.
    pub certificate_validity_days: u32,
    /// The server asks a charger to renew its certificate this long before it expires.
    pub certificate_renew_before_days: u32,
    /// Bearer token of `POST /api/octt/{version}/{chargerId}/{action}`, the trigger external
    /// OCPP test tools use to make the CSMS send a call. Unset (the default): the endpoint
    /// answers 404. For test systems only.
    pub octt_trigger_token: Option<SecretString>,
    /// Where chargers upload logs and diagnostics: this server's address as chargers reach it,
    /// e.g. `https://csms.example.com` (`/uploads/logs/<secret>` is appended). Unset: `http://`
    /// and the HTTP listener's address (with 127.0.0.1 for 0.0.0.0), fine on one machine only.
    pub upload_base_url: Option<String>,
    /// The largest log upload kept.
    pub max_log_upload_bytes: usize,
}

/// The OpenChargeMap mirror sync and the station search built on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OcmSettings {
    /// API base, e.g. `https://api.openchargemap.io/v3` (`/poi` is appended).
    pub base_url: String,
    /// Sent as the `X-API-Key` header; required for API syncs, not for `--from-file`.
    pub api_key: Option<SecretString>,
    /// Pause between two scheduled syncs (counted from the end of the last successful one).
    pub sync_interval_secs: u64,
    /// POIs per API page (`maxresults`).
    pub batch_size: u32,
    /// Minimum time between two API requests, retries included (OCM fair-use rules).
    pub request_interval_ms: u64,
    /// Whole-request timeout, body included (a 10,000-POI page is about 10 MB).
    pub request_timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// Retries of one request after a 429, a 5xx or a transport error.
    pub max_retries: u32,
    /// First retry delay; doubled on every further attempt.
    pub retry_base_delay_ms: u64,
    /// Upper bound of the backoff, and the longest `Retry-After` honoured before giving up.
    pub retry_max_delay_secs: u64,
    /// Our User-Agent (OCM asks API users to identify themselves).
    pub user_agent: String,
    /// The `client` query parameter (OCM's app identifier).
    pub client_id: String,
    /// Ask for openly licensed POIs only (`opendata=true`): we redistribute what we mirror.
    pub open_data_only: bool,
    /// A full ID scan (from ID 0) at most this often; it marks POIs OCM no longer returns as
    /// not live. In between, syncs page new IDs and modified POIs only.
    pub full_rescan_interval_secs: u64,
    /// When the first incremental pass follows an ID scan, start this long before the scan
    /// began, so POIs modified during the scan are not missed.
    pub modified_overlap_secs: u64,
    /// TTL of the Redis lock that lets one replica sync at a time (renewed while running).
    pub lock_ttl_secs: u64,
    /// Largest `radiusKm` a station search accepts.
    pub search_max_radius_km: f64,
    /// Largest `first` a station search accepts.
    pub search_max_results: u32,
    /// How often a serving replica checks whether stations changed and reloads its index.
    pub index_refresh_secs: u64,
    /// TTL of the Redis copy of `station(id)`.
    pub station_cache_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BillingSettings {
    /// Currency of wallets, tariffs and invoices when nothing else says.
    pub currency: String,
    /// Largest single wallet top-up.
    pub max_top_up: rust_decimal::Decimal,
    /// Days until a PENDING invoice is due.
    pub payment_due_days: i64,
    /// Wallet balance a pay-as-you-go user needs to start a session.
    pub min_wallet_balance: rust_decimal::Decimal,
    /// Unpaid invoices (PENDING or OVERDUE) a driver may owe and still start charging, app or
    /// RFID; above it, startSession is INSUFFICIENT_FUNDS and the charger is told Blocked (1.6)
    /// or NoCredit (2.0.1).
    pub max_unpaid: rust_decimal::Decimal,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            node_id: std::env::var("HOSTNAME").unwrap_or_else(|_| "chargegrid-local".into()),
            dev: false,
            http: HttpSettings::default(),
            database: DatabaseSettings::default(),
            mongodb: MongoSettings::default(),
            redis: RedisSettings::default(),
            amqp: AmqpSettings::default(),
            mqtt: MqttSettings::default(),
            auth: AuthSettings::default(),
            graphql: GraphqlSettings::default(),
            ocpp: OcppSettings::default(),
            ocm: OcmSettings::default(),
            billing: BillingSettings::default(),
            payments: PaymentSettings::default(),
            pnc: PncSettings::default(),
            sessions: SessionSettings::default(),
            events: EventSettings::default(),
            worker: WorkerSettings::default(),
            cluster: ClusterSettings::default(),
            smart_charging: SmartChargingSettings::default(),
            reservations: ReservationSettings::default(),
            firmware: FirmwareSettings::default(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0:8080".into(),
            workers: 0,
            shutdown_timeout_secs: 25,
            trust_forwarded_for: false,
            trusted_proxies: Vec::new(),
            internal_bind: None,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/chargegrid".into(),
            max_connections: 20,
            connect_timeout_secs: 5,
        }
    }
}

impl Default for MongoSettings {
    fn default() -> Self {
        Self {
            url: "mongodb://127.0.0.1:27017/chargegrid".into(),
            default_database: "chargegrid".into(),
        }
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            pool_size: 32,
            key_prefix: "cg".into(),
        }
    }
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            max_reconnect_delay_secs: 30,
        }
    }
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            login_max_per_email: 5,
            login_max_per_client: 50,
            login_window_secs: 15 * 60,
        }
    }
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        Self {
            max_depth: 10,
            max_complexity: 2000,
            max_body_bytes: 32 * 1024,
            introspection: true,
            requests_per_sec: 20.0,
            request_burst: 60,
            request_timeout_ms: 10_000,
            max_sockets_per_address: 200,
            max_sockets_per_user: 10,
            max_subscriptions_per_socket: 20,
        }
    }
}

impl Default for OcppSettings {
    fn default() -> Self {
        Self {
            auto_provision: false,
            auto_accept_provisioned: false,
            auth_failures_per_charger: 10,
            auth_failures_per_address: 50,
            auth_failure_window_secs: 300,
            report_retention_days: 90,
            reports_kept_per_charger: 10_000,
            heartbeat_interval_secs: 300,
            max_frame_bytes: 64 * 1024,
            call_timeout_secs: 30,
            running_cost_timeout_ms: 250,
            offline_grace_secs: 600,
            ping_interval_secs: 60,
            transaction_writer_shards: 1,
            tls_bind: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            ca_cert: None,
            ca_key: None,
            v2g_ca_cert: None,
            v2g_ca_key: None,
            tls_reload_check_secs: 10,
            certificate_validity_days: 365,
            certificate_renew_before_days: 30,
            octt_trigger_token: None,
            upload_base_url: None,
            max_log_upload_bytes: 50 * 1024 * 1024,
        }
    }
}

impl Default for OcmSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.openchargemap.io/v3".into(),
            api_key: None,
            sync_interval_secs: 6 * 3600,
            batch_size: 5000,
            request_interval_ms: 1000,
            request_timeout_secs: 120,
            connect_timeout_secs: 10,
            max_retries: 5,
            retry_base_delay_ms: 1000,
            retry_max_delay_secs: 300,
            user_agent: format!(
                "chargegrid/{} (EV charging backend; OCM mirror sync)",
                env!("CARGO_PKG_VERSION")
            ),
            client_id: "chargegrid".into(),
            open_data_only: true,
            full_rescan_interval_secs: 7 * 24 * 3600,
            modified_overlap_secs: 600,
            lock_ttl_secs: 60,
            search_max_radius_km: 500.0,
            search_max_results: 100,
            index_refresh_secs: 60,
            station_cache_ttl_secs: 300,
        }
    }
}

impl Default for BillingSettings {
    fn default() -> Self {
        Self {
            currency: "EUR".into(),
            max_top_up: rust_decimal::Decimal::new(1000, 0),
            payment_due_days: 14,
            min_wallet_balance: rust_decimal::Decimal::new(500, 2),
            max_unpaid: rust_decimal::Decimal::ZERO,
        }
    }
}

/// Which payment provider credits wallets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentProviderKind {
    /// Top-ups succeed at once; only with `--dev`.
    Dev,
    /// Stripe (or a server speaking its API at `stripe_api_base`).
    Stripe,
}

/// Plug & Charge certificate services (ISO 15118 through OCPP 2.0.1): see
/// `security::pnc`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PncSettings {
    /// The contract-certificate provider (`PNC_CONTRACT_PROVIDER_URL`); unset,
    /// Get15118EVCertificate is answered Failed.
    pub contract_provider_url: Option<String>,
    /// Its bearer token (`PNC_CONTRACT_PROVIDER_TOKEN`).
    pub contract_provider_token: Option<SecretString>,
    /// URL prefixes of the OCSP responders the CSMS may call for a station
    /// (GetCertificateStatus); a station's responder URL outside them is not called.
    pub ocsp_responders: Vec<String>,
    /// PEM file of the V2G and MO root certificates that contract certificates chain to
    /// (`PNC_CONTRACT_ROOTS`): Authorize with a contract certificate is checked against them.
    pub contract_roots: Option<String>,
    /// Timeout of one call to either provider [5].
    pub timeout_secs: u64,
}

impl Default for PncSettings {
    fn default() -> Self {
        Self {
            contract_provider_url: None,
            contract_provider_token: None,
            ocsp_responders: Vec::new(),
            contract_roots: None,
            timeout_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PaymentSettings {
    /// `PAYMENT_PROVIDER`; unset: `dev` with `--dev`, else `stripe`.
    pub provider: Option<PaymentProviderKind>,
    /// `STRIPE_API_KEY` (secret key, `sk_…`).
    pub stripe_api_key: Option<SecretString>,
    /// `STRIPE_WEBHOOK_SECRET` (the endpoint's signing secret, `whsec_…`).
    pub stripe_webhook_secret: Option<SecretString>,
    /// `STRIPE_API_BASE`: the API's address (a local fake in tests).
    pub stripe_api_base: String,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            provider: None,
            stripe_api_key: None,
            stripe_webhook_secret: None,
            stripe_api_base: "https://api.stripe.com".into(),
        }
    }
}

/// The fixed environment variables of the runtime contract and the setting each one sets.
const CONTRACT_ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("MONGODB_URL", "mongodb.url"),
    ("REDIS_URL", "redis.url"),
    ("AMQP_URL", "amqp.url"),
    ("MQTT_URL", "mqtt.url"),
    ("HTTP_BIND", "http.bind"),
    ("WORKER_HTTP_BIND", "worker.http_bind"),
    ("NODE_ID", "node_id"),
    ("JWT_SECRET", "auth.jwt_secret"),
    ("OCM_BASE_URL", "ocm.base_url"),
    ("OCM_API_KEY", "ocm.api_key"),
    ("PAYMENT_PROVIDER", "payments.provider"),
    ("STRIPE_API_KEY", "payments.stripe_api_key"),
    ("STRIPE_WEBHOOK_SECRET", "payments.stripe_webhook_secret"),
    ("STRIPE_API_BASE", "payments.stripe_api_base"),
    ("OCPP_TLS_BIND", "ocpp.tls_bind"),
    ("OCPP_TLS_CERT", "ocpp.tls_cert"),
    ("OCPP_TLS_KEY", "ocpp.tls_key"),
    ("OCPP_CLIENT_CA", "ocpp.client_ca"),
    ("OCPP_CA_CERT", "ocpp.ca_cert"),
    ("OCPP_CA_KEY", "ocpp.ca_key"),
    ("OCPP_V2G_CA_CERT", "ocpp.v2g_ca_cert"),
    ("OCPP_V2G_CA_KEY", "ocpp.v2g_ca_key"),
    ("PNC_CONTRACT_PROVIDER_URL", "pnc.contract_provider_url"),
    ("PNC_CONTRACT_PROVIDER_TOKEN", "pnc.contract_provider_token"),
    ("PNC_CONTRACT_ROOTS", "pnc.contract_roots"),
];

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>, dev: bool) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(SettingsError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("CHARGEGRID")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        for (var, key) in CONTRACT_ENV {
            if let Ok(value) = std::env::var(var) {
                if !value.is_empty() {
                    builder = builder.set_override(*key, value)?;
                }
            }
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.dev |= dev;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.node_id.is_empty() || self.node_id.len() > 63 {
            return Err(SettingsError::Invalid(
                "NODE_ID must be 1 to 63 characters".into(),
            ));
        }
        if let Some(secret) = &self.auth.jwt_secret {
            if secret.expose_secret().len() < 32 {
                return Err(SettingsError::Invalid(
                    "JWT_SECRET must be at least 32 bytes".into(),
                ));
            }
        }
        if !(self.graphql.requests_per_sec.is_finite() && self.graphql.requests_per_sec > 0.0) {
            return Err(SettingsError::Invalid(
                "graphql.requests_per_sec must be a number above 0".into(),
            ));
        }
        if self.ocpp.max_frame_bytes < 1024 {
            return Err(SettingsError::Invalid(
                "ocpp.max_frame_bytes must be at least 1024".into(),
            ));
        }
        self.ocm.validate()?;
        if self.ocpp.tls_bind.is_some()
            && (self.ocpp.tls_cert.is_none() || self.ocpp.tls_key.is_none())
        {
            return Err(SettingsError::Invalid(
                "OCPP_TLS_BIND needs OCPP_TLS_CERT and OCPP_TLS_KEY".into(),
            ));
        }
        if self.ocpp.v2g_ca_cert.is_some() != self.ocpp.v2g_ca_key.is_some() {
            return Err(SettingsError::Invalid(
                "OCPP_V2G_CA_CERT and OCPP_V2G_CA_KEY go together".into(),
            ));
        }
        if self.ocpp.ca_cert.is_some() != self.ocpp.ca_key.is_some() {
            return Err(SettingsError::Invalid(
                "OCPP_CA_CERT and OCPP_CA_KEY go together".into(),
            ));
        }
        if self.ocpp.certificate_validity_days == 0
            || self.ocpp.certificate_renew_before_days >= self.ocpp.certificate_validity_days
        {
            return Err(SettingsError::Invalid(
                "ocpp.certificate_validity_days must be above ocpp.certificate_renew_before_days"
                    .into(),
            ));
        }
        if let Some(bad) = self
            .http
            .trusted_proxies
            .iter()
            .find(|p| parse_net(p).is_none())
        {
            return Err(SettingsError::Invalid(format!(
                "http.trusted_proxies: {bad} is not an IP address or CIDR network"
            )));
        }
        // the example secrets' placeholders must never reach a server that is not --dev
        let secrets = [
            ("JWT_SECRET", self.auth.jwt_secret.as_ref()),
            ("STRIPE_API_KEY", self.payments.stripe_api_key.as_ref()),
            (
                "STRIPE_WEBHOOK_SECRET",
                self.payments.stripe_webhook_secret.as_ref(),
            ),
            ("OCM_API_KEY", self.ocm.api_key.as_ref()),
        ];
        for (name, secret) in secrets {
            if secret.is_some_and(|s| is_placeholder(s.expose_secret())) && !self.dev {
                return Err(SettingsError::Invalid(format!(
                    "{name} is still the example's placeholder: set a real secret"
                )));
            }
        }
        if self.payments.provider == Some(PaymentProviderKind::Dev) && !self.dev {
            return Err(SettingsError::Invalid(
                "PAYMENT_PROVIDER=dev credits wallets without payment: only with --dev".into(),
            ));
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.access_token_ttl_secs > 3600 {
            return Err(SettingsError::Invalid(
                "auth.access_token_ttl_secs must be between 1 and 3600 (access tokens are short-lived)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The payment provider in use: the configured one, else `dev` in `--dev` and `stripe`
    /// otherwise.
    pub fn payment_provider(&self) -> PaymentProviderKind {
        self.payments.provider.unwrap_or(if self.dev {
            PaymentProviderKind::Dev
        } else {
            PaymentProviderKind::Stripe
        })
    }

    /// The access-token key: `JWT_SECRET`, or in `--dev` a fixed development key.
    pub fn jwt_secret(&self) -> Result<SecretString, SettingsError> {
        match (&self.auth.jwt_secret, self.dev) {
            (Some(secret), _) => Ok(secret.clone()),
            (None, true) => Ok(SecretString::from(DEV_JWT_SECRET)),
            (None, false) => Err(SettingsError::Invalid(
                "JWT_SECRET is not set (required unless --dev)".into(),
            )),
        }
    }

    /// The Mongo database named in the URL path, or the configured default.
    pub fn mongo_database(&self) -> String {
        url::Url::parse(self.mongodb.url.expose_secret())
            .ok()
            .map(|u| u.path().trim_start_matches('/').to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| self.mongodb.default_database.clone())
    }
}

impl OcmSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |m: &str| Err(SettingsError::Invalid(m.into()));
        if url::Url::parse(&self.base_url).is_err() {
            return invalid("ocm.base_url (OCM_BASE_URL) must be an absolute URL");
        }
        if !(1..=100_000).contains(&self.batch_size) {
            return invalid("ocm.batch_size must be between 1 and 100000");
        }
        // half the Earth's circumference: every point is closer than that
        if !(self.search_max_radius_km > 0.0 && self.search_max_radius_km <= 20_016.0) {
            return invalid("ocm.search_max_radius_km must be above 0 and at most 20016");
        }
        if !(1..=1000).contains(&self.search_max_results) {
            return invalid("ocm.search_max_results must be between 1 and 1000");
        }
        if self.lock_ttl_secs < 3 {
            return invalid("ocm.lock_ttl_secs must be at least 3");
        }
        if self.sync_interval_secs == 0 || self.index_refresh_secs == 0 {
            return invalid("ocm.sync_interval_secs and ocm.index_refresh_secs must be positive");
        }
        if self.user_agent.trim().is_empty() {
            return invalid("ocm.user_agent must not be empty");
        }
        Ok(())
    }
}

/// Used only with `--dev`; never valid for production because `--dev` is refused in k8s manifests.
const DEV_JWT_SECRET: &str = "chargegrid-development-only-insecure-jwt-key";

/// A URL with its password (and a userinfo-only token) replaced by `***`, for messages and logs.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "<unparseable url>".into(),
    }
}

/// An IP network from `a.b.c.d/n`, `x::/n` or a single address.
pub fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// Values from examples and templates that must never be used as secrets.
fn is_placeholder(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    [
        "change_me",
        "changeme",
        "change-me",
        "replace_me",
        "your-secret",
        "example",
    ]
    .iter()
    .any(|p| lower.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_placeholder_secrets_are_refused_outside_dev() {
        let mut settings = Settings::default();
        settings.auth.jwt_secret =
            Some(SecretString::from("CHANGE_ME_to_at_least_32_random_bytes"));
        assert!(settings.validate().is_err());
        settings.dev = true;
        assert!(settings.validate().is_ok());
        let mut settings = Settings::default();
        settings.payments.stripe_webhook_secret = Some(SecretString::from("CHANGE_ME"));
        assert!(settings.validate().is_err());
        let mut settings = Settings::default();
        settings.auth.jwt_secret = Some(SecretString::from(
            "k3Qx9v0S1u2Lr7p8a5ZcYbWdEf6GhJiKlMnOpQrStUvW",
        ));
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn defaults_load_and_validate() {
        let settings = Settings::default();
        assert!(settings.validate().is_ok());
        assert_eq!(settings.http.bind, "0.0.0.0:8080");
        assert_eq!(settings.ocpp.max_frame_bytes, 65536);
        assert_eq!(settings.mongo_database(), "chargegrid");
        assert_eq!(settings.ocm.sync_interval_secs, 6 * 3600);
        assert_eq!(settings.ocm.search_max_radius_km, 500.0);
        assert!(settings.ocm.user_agent.starts_with("chargegrid/"));
    }

    #[test]
    fn a_request_rate_must_be_above_zero_and_may_be_a_fraction() {
        let mut settings = Settings::default();
        settings.graphql.requests_per_sec = 0.5;
        assert!(settings.validate().is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            settings.graphql.requests_per_sec = bad;
            assert!(settings.validate().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn ocm_limits_are_checked() {
        let mut settings = Settings::default();
        settings.ocm.batch_size = 0;
        assert!(settings.validate().is_err());
        let mut settings = Settings::default();
        settings.ocm.search_max_radius_km = f64::NAN;
        assert!(settings.validate().is_err());
        let mut settings = Settings::default();
        settings.ocm.base_url = "not a url".into();
        assert!(settings.validate().is_err());
    }

    #[test]
    fn jwt_secret_is_required_outside_dev() {
        let mut settings = Settings::default();
        assert!(settings.jwt_secret().is_err());
        settings.dev = true;
        assert!(settings.jwt_secret().is_ok());
    }

    #[test]
    fn short_jwt_secret_is_rejected() {
        let mut settings = Settings::default();
        settings.auth.jwt_secret = Some(SecretString::from("short"));
        assert!(settings.validate().is_err());
    }

    #[test]
    fn mask_url_hides_passwords() {
        assert_eq!(
            mask_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            mask_url("postgres://postgres@127.0.0.1:5432/x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
    }

    #[test]
    fn debug_output_does_not_contain_secrets() {
        let mut settings = Settings::default();
        settings.auth.jwt_secret = Some(SecretString::from(
            "super-secret-value-that-is-long-enough-1234",
        ));
        let printed = format!("{settings:?}");
        assert!(!printed.contains("super-secret-value"));
    }
}
