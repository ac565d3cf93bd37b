//! `Application::build` wires settings into a running server: it connects to every backing
//! service, checks the schema is migrated, binds the listener (port 0 in tests) and builds the
//! GraphQL schema once. `run_until_stopped` serves until SIGTERM/SIGINT or `stop`.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use actix::Actor;

use crate::actors::messages::{InitRegistry, InitSessions};
use crate::actors::registry::NodeRequests;
use crate::actors::{Registry, SessionSupervisor, SiteSupervisor};
use crate::api;
use crate::auth::charger_auth::ChargerAuthCache;
use crate::auth::JwtKeys;
use crate::configuration::{Settings, SettingsError};
use crate::context::RateWindow;
use crate::context::{AppContext, CoreContext};
use crate::events::node_rpc::NodeRpc;
use crate::live::LiveBus;
use crate::metrics::Metrics;
use crate::ocm::search::StationIndexHandle;
use crate::store::amqp::Amqp;
use crate::store::charger_writer::ChargerWriter;
use crate::store::mongo::MongoSetupError;
use crate::store::postgres::{self, PostgresError};
use crate::store::redis::RedisSetupError;
use crate::store::transaction_writer::TransactionWriter;
use crate::workers::WorkerKind;
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;

/// Why the application could not start; each message is one human-readable line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
    #[error(transparent)]
    Mongo(#[from] MongoSetupError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("worker: {0}")]
    Worker(String),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    #[error("loading the station search index: {0}")]
    StationIndex(#[from] crate::store::StoreError),
}

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    ctx: AppContext,
    /// Cancels the background tasks (relay, fan-out, workers) once the server has stopped.
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// Reloads the station index when stations change; stopped with the server.
    index_refresher: JoinHandle<()>,
}

impl Application {
    /// Connects to Postgres (required, and migrated), prepares Redis, MongoDB and RabbitMQ (which
    /// may come up later: `/ready` reports them), and binds `settings.http.bind`.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, &[]).await
    }

    /// `build` plus the given workers in the same process (`chargegrid all`).
    pub async fn build_with(
        settings: Settings,
        workers: &[WorkerKind],
    ) -> Result<Self, StartupError> {
        let ctx = connect(settings).await?;
        warn_past_connection_limit(&ctx, !workers.is_empty()).await;
        // searches must not answer from an empty index while stations exist
        ctx.stations.reload(&ctx.db).await?;
        let index_refresher = ctx.stations.spawn_refresher(
            ctx.db.clone(),
            Duration::from_secs(ctx.settings.ocm.index_refresh_secs),
        );
        let listener =
            TcpListener::bind(&ctx.settings.http.bind).map_err(|e| StartupError::Bind {
                addr: ctx.settings.http.bind.clone(),
                reason: e.to_string(),
            })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let _ = ctx.http_port.set(port);
        // /metrics and /ready on a listener of their own, when configured
        let internal = match &ctx.settings.http.internal_bind {
            Some(bind) => {
                let internal = TcpListener::bind(bind).map_err(|e| StartupError::Bind {
                    addr: bind.clone(),
                    reason: e.to_string(),
                })?;
                let internal_port = internal.local_addr().map(|a| a.port()).unwrap_or_default();
                let _ = ctx.internal_port.set(internal_port);
                Some(internal)
            }
            None => None,
        };
        // the chargers' TLS listener (security profiles 2 and 3), when configured
        let tls = match (&ctx.settings.ocpp.tls_bind, &ctx.security.tls) {
            (Some(bind), Some(tls)) => {
                let listener = TcpListener::bind(bind).map_err(|e| StartupError::Bind {
                    addr: bind.clone(),
                    reason: e.to_string(),
                })?;
                let tls_port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
                let _ = ctx.tls_port.set(tls_port);
                let config = tls
                    .server_config()
                    .map_err(crate::security::SecurityError::from)?;
                Some((listener, config))
            }
            _ => None,
        };
        ctx.sessions.do_send(InitSessions { app: ctx.clone() });
        let server = serve(ctx.clone(), listener, internal, tls)?;
        let shutdown = ctx.shutdown.clone();
        let mut tasks = vec![
            tokio::spawn(crate::events::node_rpc::serve(
                ctx.amqp.clone(),
                ctx.topology(),
                ctx.settings.node_id.clone(),
                Arc::new(NodeRequests { app: ctx.clone() }),
                shutdown.clone(),
            )),
            crate::workers::spawn_relay(&ctx.core(), shutdown.clone()),
            tokio::spawn(retention(ctx.clone(), shutdown.clone())),
            tokio::spawn(crate::workers::reservation_expiry::run(
                ctx.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(crate::workers::firmware::run(ctx.clone(), shutdown.clone())),
            tokio::spawn(crate::security::renewals::run(
                ctx.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(crate::events::fanout::run(
                crate::events::fanout::FanoutConfig {
                    amqp: ctx.amqp.clone(),
                    topology: ctx.topology(),
                    node_id: ctx.settings.node_id.clone(),
                    own_source: ctx.event_source(),
                    live: ctx.live.clone(),
                    linger: Duration::from_secs(ctx.settings.events.fanout_linger_secs),
                    received: ctx.metrics.live_fanout_received_total.clone(),
                },
                shutdown.clone(),
            )),
        ];
        // in-process workers get a pool of their own: a flood of charger traffic waiting for
        // connections must not hold back billing and notifications (as separate `chargegrid
        // worker` processes, they have their own anyway)
        let worker_ctx = if workers.is_empty() {
            ctx.core()
        } else {
            let mut database = ctx.settings.database.clone();
            database.max_connections = (ctx.settings.worker.concurrency as u32 + 2)
                .min(ctx.settings.database.max_connections.max(4));
            CoreContext {
                db: workers_pool(&database).await?,
                // and a RabbitMQ connection of their own, as separate workers have: one
                // connection's I/O thread carried the relay's publishing, the live fan-out and
                // every worker's deliveries and acknowledgements
                amqp: Amqp::start(
                    &ctx.settings.amqp,
                    format!(
                        "{}/{}/workers",
                        ctx.settings.events.namespace, ctx.settings.node_id
                    ),
                ),
                ..ctx.core()
            }
        };
        if !workers.is_empty() {
            // closed with the server; `/ready` reports it
            let _ = ctx.worker_amqp.set(worker_ctx.amqp.clone());
        }
        for kind in workers {
            tasks.extend(
                crate::workers::spawn_worker(&worker_ctx, *kind, shutdown.clone())
                    .await
                    .map_err(|e| StartupError::Worker(e.to_string()))?,
            );
        }
        tasks.extend(ctx.security.spawn_tasks(
            ctx.db.clone(),
            Duration::from_secs(ctx.settings.ocpp.tls_reload_check_secs.max(1)),
            shutdown.clone(),
        ));
        tracing::info!(port, tls_port = ?ctx.tls_port.get(), node_id = %ctx.settings.node_id, "chargegrid listening");
        Ok(Self {
            port,
            server,
            ctx,
            shutdown,
            tasks,
            index_refresher,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The chargers' TLS listener's port, when one is configured.
    pub fn tls_port(&self) -> Option<u16> {
        self.ctx.tls_port.get().copied()
    }

    /// The internal listener's port (`/metrics`, `/ready`), when one is configured.
    pub fn internal_port(&self) -> Option<u16> {
        self.ctx.internal_port.get().copied()
    }

    pub fn context(&self) -> &AppContext {
        &self.ctx
    }

    /// A handle that stops the server gracefully (tests, signal handling).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Drains like SIGTERM does (for tests and embedding).
    pub async fn drain(&self) {
        crate::shutdown::drain(&self.ctx, &self.server.handle()).await;
    }

    /// Serves until stopped, then stops the background tasks (the relay flushes the outbox) and
    /// closes the backing connections.
    pub async fn run_until_stopped(self) -> Result<(), std::io::Error> {
        let (ctx, handle) = (self.ctx.clone(), self.server.handle());
        let on_signal = actix_rt::spawn(async move {
            crate::shutdown::shutdown_signal().await;
            tracing::info!("shutdown signal: draining");
            crate::shutdown::drain(&ctx, &handle).await;
        });
        let result = self.server.await;
        on_signal.abort();
        self.shutdown.cancel();
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::future::join_all(self.tasks),
        )
        .await;
        self.index_refresher.abort();
        if let Some(amqp) = self.ctx.worker_amqp.get() {
            amqp.close().await;
        }
        self.ctx.amqp.close().await;
        self.ctx.db.close().await;
        tracing::info!("chargegrid stopped");
        result
    }
}

/// Every hour (and once at start), deletes charger reports past their retention and beyond
/// each charger's cap, and outbox events published longer ago than theirs (every replica runs
/// it; the deletes are idempotent).
async fn retention(ctx: AppContext, shutdown: CancellationToken) {
    let ocpp = &ctx.settings.ocpp;
    let reports_age = Duration::from_secs(ocpp.report_retention_days.saturating_mul(86_400));
    let outbox_age = Duration::from_secs(
        ctx.settings
            .events
            .outbox_retention_hours
            .saturating_mul(3_600),
    );
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match crate::store::chargers::prune_reports(
            &ctx.db,
            reports_age,
            ocpp.reports_kept_per_charger,
        )
        .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "old charger reports deleted"),
            Err(e) => {
                tracing::warn!(error = %e, "charger report retention failed; retried in an hour")
            }
        }
        match crate::events::outbox::prune_published(&ctx.db, outbox_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "published outbox events deleted"),
            Err(e) => {
                tracing::warn!(error = %e, "outbox retention failed; retried in an hour")
            }
        }
    }
}

/// The most PostgreSQL connections this process opens: two pools of
/// `database.max_connections` (the chargers' side and the API's), the transaction writers', the
/// charger writers' three, the relay's three (its LISTEN, its reader holding the publishing lock
/// and its marks') and, with in-process workers, their pool.
pub fn connections_needed(settings: &Settings, with_workers: bool) -> u32 {
    let pool = settings.database.max_connections;
    let shards = u32::try_from(settings.ocpp.transaction_writer_shards.max(1)).unwrap_or(u32::MAX);
    let workers = if with_workers {
        u32::try_from(settings.worker.concurrency.saturating_add(2))
            .unwrap_or(u32::MAX)
            .min(pool.max(4))
    } else {
        0
    };
    pool.saturating_mul(2)
        .saturating_add(shards)
        .saturating_add(6)
        .saturating_add(workers)
}

/// Warns when this process alone may open more connections than PostgreSQL accepts: under load
/// the pools would then be refused ("too many clients already") and requests time out.
async fn warn_past_connection_limit(ctx: &AppContext, with_workers: bool) {
    let available: Result<i32, sqlx::Error> = sqlx::query_scalar(
        "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int",
    )
    .fetch_one(&ctx.db)
    .await;
    let needed = connections_needed(&ctx.settings, with_workers);
    if let Ok(available) = available {
        if i64::from(needed) > i64::from(available) {
            tracing::warn!(
                needed,
                available,
                "this process may open more PostgreSQL connections than the server accepts: lower database.max_connections (two pools of it per process) or raise PostgreSQL's max_connections"
            );
        }
    }
}

/// The workers' pool (`chargegrid worker`, the CLI, and the in-process workers of `chargegrid
/// all`): billing's and the notifications' statements are set-based batches and look-ups by key,
/// each planned once (ADR 024, amendment).
pub async fn workers_pool(
    database: &crate::configuration::DatabaseSettings,
) -> Result<sqlx::PgPool, StartupError> {
    Ok(postgres::connect_with_plans(database, postgres::Plans::Generic).await?)
}

/// What a worker or a CLI command needs: Postgres (migrated), RabbitMQ (connecting in the
/// background) and metrics; nothing of the connection server.
pub async fn connect_core(settings: Settings) -> Result<CoreContext, StartupError> {
    let db = workers_pool(&settings.database).await?;
    postgres::ensure_migrated(&db, &settings.database).await?;
    let amqp = Amqp::start(
        &settings.amqp,
        format!("{}/{}", settings.events.namespace, settings.node_id),
    );
    Ok(CoreContext {
        settings: Arc::new(settings),
        db,
        amqp,
        metrics: Arc::new(Metrics::new()?),
        outbox_wake: crate::events::wake::OutboxWake::new(),
    })
}

/// Connects to every backing service and builds the connection server's context.
pub async fn connect(settings: Settings) -> Result<AppContext, StartupError> {
    let jwt_secret = settings.jwt_secret()?;
    let jwt = JwtKeys::new(&jwt_secret, settings.auth.access_token_ttl_secs);
    // the charger side (OCPP handlers, session actors): look-ups by key and
    // set-based statements, each planned once (ADR 024)
    let db = postgres::connect_with_plans(&settings.database, postgres::Plans::Generic).await?;
    postgres::ensure_migrated(&db, &settings.database).await?;
    let redis = crate::store::redis::pool(&settings.redis)?;
    let mongo = crate::store::mongo::database(&settings).await?;
    let amqp = Amqp::start(
        &settings.amqp,
        format!("{}/{}", settings.events.namespace, settings.node_id),
    );
    let sessions = SessionSupervisor::default().start();
    let shutdown = CancellationToken::new();
    let topology = crate::context::topology_of(&settings);
    let rpc = NodeRpc::start(amqp.clone(), topology, &settings.node_id, shutdown.clone());
    let handshakes = Arc::new(Semaphore::new(
        settings.cluster.max_concurrent_handshakes.max(1),
    ));
    let boots = Arc::new(RateWindow::new(settings.cluster.max_boots_per_sec));
    let metrics = Arc::new(Metrics::new()?);
    // the writers' commits wake the relay themselves (their inserts do not notify)
    let outbox_wake = crate::events::wake::OutboxWake::new();
    // the connected chargers' own connections: their writes never queue behind API queries,
    // and a reconnect storm cannot take the pool the API needs (three batchers, one batch each)
    let charger_store = {
        let mut database = settings.database.clone();
        database.max_connections = 3;
        let observed = metrics.clone();
        ChargerWriter::start(
            crate::store::postgres::connect_writer_pool(&database).await?,
            outbox_wake.clone(),
            settings.node_id.clone(),
            format!("chargegrid-serve/{}", settings.node_id),
            Some(Arc::new(move |kind, n| {
                observed
                    .store_batch_size
                    .with_label_values(&[kind])
                    .observe(n as f64)
            })),
        )
    };
    // transaction messages commit in groups on connections of their own: one per shard (a
    // shard runs one batch at a time)
    let transactions = {
        let shards = settings.ocpp.transaction_writer_shards.max(1);
        let mut database = settings.database.clone();
        database.max_connections = u32::try_from(shards).unwrap_or(u32::MAX);
        let observed = metrics.clone();
        TransactionWriter::start(
            crate::store::postgres::connect_writer_pool(&database).await?,
            outbox_wake.clone(),
            shards,
            format!("chargegrid-serve/{}", settings.node_id),
            Some(Arc::new(move |n| {
                observed
                    .store_batch_size
                    .with_label_values(&["transactions"])
                    .observe(n as f64)
            })),
            Some(metrics.transaction_messages_stored_total.clone()),
        )
    };
    let charger_auth = Arc::new(
        ChargerAuthCache::new(
            jwt_secret.expose_secret().as_bytes(),
            Some((redis.clone(), settings.redis.key_prefix.clone())),
            Some(metrics.charger_auth_checks_total.clone()),
        )
        .with_limits(crate::auth::charger_auth::FailureLimits {
            per_charger: settings.ocpp.auth_failures_per_charger,
            per_address: settings.ocpp.auth_failures_per_address,
            window_secs: settings.ocpp.auth_failure_window_secs,
        }),
    );
    if settings.ocpp.auto_provision && settings.ocpp.auto_accept_provisioned {
        tracing::warn!(
            "ocpp.auto_accept_provisioned is on: ANY client that knows the URL becomes an accepted \
             charger without a credential. Development and load tests only"
        );
    }
    // the API's queries on a pool of their own (the charger side keeps `db`)
    let api_db = postgres::connect(&settings.database).await?;
    let api_requests = Arc::new(crate::api::graphql::limits::RequestLimiter::new(
        settings.graphql.requests_per_sec,
        settings.graphql.request_burst,
    ));
    let payments = Arc::new(crate::payments::Payments::from_settings(&settings));
    let security = Arc::new(
        crate::security::Security::load(
            &settings,
            &db,
            Some(metrics.tls_client_certificates_refused_total.clone()),
        )
        .await?,
    );
    let ctx = AppContext {
        settings: Arc::new(settings),
        db,
        api_db,
        api_requests,
        access: Arc::default(),
        internal_port: Arc::default(),
        tls_port: Arc::default(),
        sockets: Arc::default(),
        payments,
        redis,
        mongo,
        amqp,
        worker_amqp: Arc::default(),
        jwt: Arc::new(jwt),
        metrics,
        registry: Registry::default().start(),
        local_chargers: Arc::default(),
        local_sessions: Arc::default(),
        charger_auth,
        charger_store,
        transactions,
        outbox_wake,
        live: LiveBus::default(),
        sessions: sessions.clone(),
        site_supervisor: SiteSupervisor::default().start(),
        site_directory: Arc::default(),
        running_cost: Arc::default(),
        local_list_locks: Arc::default(),
        http_port: Arc::default(),
        rpc,
        handshakes,
        boots,
        shutdown,
        stations: StationIndexHandle::default(),
        security,
    };
    ctx.registry.do_send(InitRegistry { app: ctx.clone() });
    ctx.site_supervisor
        .do_send(crate::actors::site_supervisor::InitSites { app: ctx.clone() });
    // a reading the writer held back and flushed later reaches its session actor too (caps)
    let supervisor = sessions.clone();
    ctx.transactions.on_flush(Arc::new(move |record| {
        supervisor.do_send(crate::actors::messages::SessionChanged {
            session: Box::new(record),
        })
    }));
    Ok(ctx)
}

fn serve(
    ctx: AppContext,
    listener: TcpListener,
    internal: Option<TcpListener>,
    tls: Option<(TcpListener, rustls::ServerConfig)>,
) -> Result<Server, StartupError> {
    let schema = web::Data::new(api::graphql::build_schema(ctx.clone()));
    let data = web::Data::new(ctx.clone());
    let http = &ctx.settings.http;
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(api::observe))
            .app_data(data.clone())
            .app_data(schema.clone())
            .configure(api::configure)
    })
    .shutdown_timeout(http.shutdown_timeout_secs)
    // signals are ours: SIGTERM drains chargers before the server stops
    .disable_signals()
    .client_request_timeout(Duration::from_secs(10))
    // a connection of the TLS listener carries its peer (and verified client certificate) to
    // the OCPP handshake; must be set before the TLS listener is added
    .on_connect(|conn, extensions| {
        if let Some(peer) = crate::security::tls::peer_of(conn) {
            extensions.insert(peer);
        }
    });
    if http.workers > 0 {
        server = server.workers(http.workers);
    }
    let mut server = server.listen(listener).map_err(|e| StartupError::Bind {
        addr: http.bind.clone(),
        reason: e.to_string(),
    })?;
    if let Some(internal) = internal {
        server = server.listen(internal).map_err(|e| StartupError::Bind {
            addr: http.internal_bind.clone().unwrap_or_default(),
            reason: e.to_string(),
        })?;
    }
    if let Some((listener, config)) = tls {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        server = server
            .listen_rustls_0_23(listener, config)
            .map_err(|e| StartupError::Bind {
                addr,
                reason: e.to_string(),
            })?;
    }
    let server = server.run();
    Ok(server)
}

#[cfg(test)]
mod connection_budget {
    use super::*;

    #[test]
    fn two_pools_of_fifty_are_past_a_default_postgres_and_thirty_are_not() {
        // PostgreSQL's default: 100 connections, 3 reserved for superusers
        let available = 97;
        let mut settings = Settings::default();
        settings.database.max_connections = 50;
        assert!(connections_needed(&settings, false) > available);
        settings.database.max_connections = 31;
        assert!(connections_needed(&settings, true) > available);
        settings.database.max_connections = 30;
        assert!(connections_needed(&settings, true) <= available);
        settings.database.max_connections = 20;
        assert_eq!(connections_needed(&settings, false), 47);
        assert_eq!(connections_needed(&settings, true), 67);
        // each further shard is a connection of its own
        settings.ocpp.transaction_writer_shards = 2;
        assert_eq!(connections_needed(&settings, false), 48);
    }
}
