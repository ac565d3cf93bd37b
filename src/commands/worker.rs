//! `chargegrid worker billing|notifications`: one worker role in its own process.

use tokio_util::sync::CancellationToken;

use crate::configuration::Settings;
use crate::shutdown::shutdown_signal;
use crate::startup;
use crate::store::amqp::Amqp;
use crate::workers::{self, WorkerKind};

pub async fn run(settings: Settings, kind: WorkerKind) -> anyhow::Result<()> {
    // a worker can do nothing without RabbitMQ: refuse to start rather than idle
    let probe = Amqp::connect_once(&settings.amqp).await?;
    let _ = probe.close(200, "probe").await;
    let ctx = startup::connect_core(settings).await?;
    let shutdown = CancellationToken::new();
    let mut tasks = vec![workers::spawn_relay(&ctx, shutdown.clone())];
    tasks.extend(workers::spawn_worker(&ctx, kind, shutdown.clone()).await?);
    let (server, port) = workers::http::server(&ctx)?;
    let handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(worker = ?kind, port, "worker running");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing the messages in hand");
    shutdown.cancel();
    handle.stop(true).await;
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        futures_util::future::join_all(tasks),
    )
    .await;
    ctx.amqp.close().await;
    ctx.db.close().await;
    Ok(())
}
