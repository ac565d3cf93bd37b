//! The one cloneable context handed to every handler, resolver and actor: pools, settings,
//! keys and metrics. No globals.

use std::sync::Arc;

use crate::store::redis::Pool as RedisPool;
use mongodb::Database;
use sqlx::PgPool;

use actix::Addr;

use crate::actors::{Registry, SessionSupervisor, SiteSupervisor};
use crate::auth::charger_auth::ChargerAuthCache;
use crate::auth::JwtKeys;
use crate::configuration::Settings;
use crate::events::node_rpc::NodeRpc;
use crate::events::topology::Topology;
use crate::live::LiveBus;
use crate::metrics::Metrics;
use crate::ocm::search::StationIndexHandle;
use crate::store::amqp::Amqp;
use crate::store::charger_writer::ChargerWriter;
use crate::store::transaction_writer::TransactionWriter;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What every role shares, and all a worker or a CLI command gets: settings, the Postgres pool,
/// RabbitMQ and metrics. No registry, node queue, charger pools or MongoDB client: those belong
/// to the connection server (`AppContext`).
#[derive(Clone)]
pub struct CoreContext {
    pub settings: Arc<Settings>,
    pub db: PgPool,
    pub amqp: Amqp,
    pub metrics: Arc<Metrics>,
    /// Wakes the outbox relay after commits whose inserts did not notify (`events::wake`).
    pub outbox_wake: crate::events::wake::OutboxWake,
}

impl CoreContext {
    /// The RabbitMQ names of this deployment.
    pub fn topology(&self) -> Topology {
        topology_of(&self.settings)
    }
}

/// The connection server's context (`serve`, `all`).
#[derive(Clone)]
pub struct AppContext {
    pub settings: Arc<Settings>,
    /// The pool of chargers' reads and the session actors (GraphQL resolvers see `api_db` here).
    pub db: PgPool,
    /// The GraphQL API's own pool: API load cannot take the connections chargers need.
    pub api_db: PgPool,
    /// Per-client GraphQL request limits.
    pub api_requests: Arc<crate::api::graphql::limits::RequestLimiter>,
    /// The port of the internal listener (`http.internal_bind`), once bound: `/metrics` and
    /// `/ready` are served there only.
    pub internal_port: Arc<std::sync::OnceLock<u16>>,
    /// The port of the HTTP listener, once bound (what `http.bind` port 0 became).
    pub http_port: Arc<std::sync::OnceLock<u16>>,
    /// The port of the chargers' TLS listener (`OCPP_TLS_BIND`), once bound.
    pub tls_port: Arc<std::sync::OnceLock<u16>>,
    /// Open subscription sockets per address and per user.
    pub sockets: Arc<crate::api::graphql::limits::SocketCounts>,
    /// Whether signed-in users are still allowed (revocation, blocking, role changes).
    pub access: Arc<crate::auth::access::AccessCheck>,
    /// The payment provider that credits wallets.
    pub payments: Arc<crate::payments::Payments>,
    pub redis: RedisPool,
    pub mongo: Database,
    pub amqp: Amqp,
    /// The in-process workers' own RabbitMQ connection (`chargegrid all`), once they run:
    /// `/ready` wants it up too.
    pub worker_amqp: Arc<std::sync::OnceLock<Amqp>>,
    pub jwt: Arc<JwtKeys>,
    pub metrics: Arc<Metrics>,
    /// Routes commands to the charger actors of this replica.
    pub registry: Addr<Registry>,
    /// The registry's charger actors, readable from any thread.
    pub local_chargers: Arc<crate::actors::registry::LocalChargers>,
    /// Owns the session actors of this replica.
    pub sessions: Addr<SessionSupervisor>,
    /// The sessions whose actor runs here, readable from any thread.
    pub local_sessions: Arc<crate::actors::session_supervisor::LocalSessions>,
    /// Runs the controllers of the load-managed sites whose lease this replica holds.
    pub site_supervisor: Addr<SiteSupervisor>,
    /// Stations' tariffs and users' plans for the running cost in 2.0.1 answers.
    pub running_cost: Arc<crate::store::running_cost::TariffCache>,
    /// Which site each charger is attached to (every replica keeps it).
    pub site_directory: Arc<crate::smart::SiteDirectory>,
    /// One local-list push per charger at a time on this replica (versions are computed from
    /// what the charger holds).
    pub local_list_locks: Arc<crate::actors::local_lists::PushLocks>,
    pub charger_auth: Arc<ChargerAuthCache>,
    /// Batched writes of connected chargers (presence, boot, status) and the batched look-ups
    /// of connecting ones, on a pool of their own.
    pub charger_store: ChargerWriter,
    /// The durable path of transaction messages: group-committed batches on a pool of their
    /// own, answered after their commit.
    pub transactions: TransactionWriter,
    /// Wakes the outbox relay after the writers' commits, whose inserts do not notify
    /// (`events::wake`).
    pub outbox_wake: crate::events::wake::OutboxWake,
    /// Live changes for GraphQL subscriptions.
    pub live: LiveBus,
    /// Commands for chargers held by other replicas.
    pub rpc: NodeRpc,
    /// Admission control: handshakes in progress.
    pub handshakes: Arc<Semaphore>,
    /// Admission control: BootNotifications per second.
    pub boots: Arc<RateWindow>,
    /// Cancelled when the process shuts down; background tasks watch it.
    pub shutdown: CancellationToken,
    /// The in-memory station search index (loaded by `Application::build`, refreshed when
    /// stations change).
    pub stations: StationIndexHandle,
    /// The chargers' TLS listener material and the CSMS CA.
    pub security: Arc<crate::security::Security>,
}

impl AppContext {
    /// The part every role shares (for in-process workers).
    pub fn core(&self) -> CoreContext {
        CoreContext {
            settings: self.settings.clone(),
            db: self.db.clone(),
            amqp: self.amqp.clone(),
            metrics: self.metrics.clone(),
            outbox_wake: self.outbox_wake.clone(),
        }
    }

    /// The `source` field of events this process emits, e.g. `chargegrid-serve/chargegrid-0`.
    pub fn event_source(&self) -> String {
        format!("chargegrid-serve/{}", self.settings.node_id)
    }

    /// The RabbitMQ names of this deployment.
    pub fn topology(&self) -> Topology {
        topology_of(&self.settings)
    }

    /// Whether `req` may see internal endpoints (`/metrics`, `/ready`): always without an
    /// internal listener, else only on it.
    pub fn serves_internal(&self, req: &actix_web::HttpRequest) -> bool {
        match self.internal_port.get() {
            None => true,
            Some(port) => req.app_config().local_addr().port() == *port,
        }
    }

    /// A Redis key under this deployment's prefix.
    pub fn redis_key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.settings.redis.key_prefix)
    }
}

/// The RabbitMQ names configured in `settings`.
pub fn topology_of(settings: &Settings) -> Topology {
    Topology {
        namespace: settings.events.namespace.clone(),
        ephemeral: settings.events.ephemeral,
        retry_base_ms: settings.events.retry_base_ms,
    }
}

/// A fixed one-second window counter (admission control for BootNotification).
pub struct RateWindow {
    limit: u32,
    state: std::sync::Mutex<(std::time::Instant, u32)>,
}

impl RateWindow {
    /// The first window opens with the first event (not when the server starts).
    pub fn new(limit: u32) -> Self {
        let now = std::time::Instant::now();
        let opened = now
            .checked_sub(std::time::Duration::from_secs(1))
            .unwrap_or(now);
        Self {
            limit,
            state: std::sync::Mutex::new((opened, 0)),
        }
    }

    /// Counts one event; false when this second's budget is spent.
    pub fn admit(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        if state.0.elapsed() >= std::time::Duration::from_secs(1) {
            *state = (std::time::Instant::now(), 0);
        }
        state.1 += 1;
        state.1 <= self.limit
    }
}
