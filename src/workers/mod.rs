//! The workers built from the same crate: billing and notifications (and the reservation expiry
//! sweep that every serving replica runs). Each consumes its own
//! durable queue through the shared consumer loop (retries, dead letters), runs an outbox relay
//! for the events it writes, and serves `/healthz` and `/metrics` on its own port.

pub mod billing;
pub mod firmware;
pub mod http;
pub mod mqtt;
pub mod notifications;
pub mod reservation_expiry;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::context::CoreContext;
use crate::events::consumer::{self, ConsumerOptions, EventHandler};
use crate::events::relay::Relay;
use crate::events::topology::ConsumerQueue;

/// Which workers a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    Billing,
    Notifications,
}

/// Starts the outbox relay of this process.
pub fn spawn_relay(ctx: &CoreContext, shutdown: CancellationToken) -> JoinHandle<()> {
    let relay = Relay {
        db: ctx.db.clone(),
        amqp: ctx.amqp.clone(),
        metrics: ctx.metrics.clone(),
        batch_size: ctx.settings.events.relay_batch_size,
        poll_interval: Duration::from_millis(ctx.settings.events.relay_poll_interval_ms),
        topology: ctx.topology(),
        keep_published: ctx.settings.events.outbox_retention_hours > 0,
        wake: ctx.outbox_wake.clone(),
    };
    // commits on connections that do not notify reach another process's publishing relay
    // through this one's notifier, which stops after the relay (whose giving up the lock at
    // shutdown is the notifier's last message)
    let notifier_stop = CancellationToken::new();
    ctx.outbox_wake
        .spawn_notifier(ctx.db.clone(), notifier_stop.clone());
    tokio::spawn(async move {
        relay.run(shutdown, Duration::from_secs(5)).await;
        notifier_stop.cancel();
    })
}

/// Starts `queue`'s consumer with up to `concurrency` messages in hand.
fn spawn_consumer(
    ctx: &CoreContext,
    queue: ConsumerQueue,
    handler: Arc<dyn EventHandler>,
    concurrency: usize,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let concurrency = concurrency.max(1);
    // RabbitMQ must deliver at least what the handlers can take
    let wanted = u16::try_from(concurrency).unwrap_or(u16::MAX);
    let options = ConsumerOptions {
        queue,
        metrics: ctx.metrics.clone(),
        topology: ctx.topology(),
        prefetch: ctx.settings.worker.prefetch.max(wanted),
        concurrency,
    };
    tokio::spawn(consumer::run(ctx.amqp.clone(), options, handler, shutdown))
}

/// Starts a worker's consumer (and its periodic jobs); they stop when `shutdown` is cancelled.
pub async fn spawn_worker(
    ctx: &CoreContext,
    kind: WorkerKind,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    Ok(match kind {
        WorkerKind::Billing => {
            let handler = Arc::new(billing::BillingHandler::new(ctx.clone()));
            vec![
                // billing's handlers only wait for their batch: a batch's worth in hand
                spawn_consumer(
                    ctx,
                    crate::events::topology::BILLING,
                    handler,
                    ctx.settings.worker.billing_batch,
                    shutdown.clone(),
                ),
                tokio::spawn(billing::overdue_pass(ctx.clone(), shutdown)),
            ]
        }
        WorkerKind::Notifications => {
            let publisher = mqtt::MqttPublisher::start(&ctx.settings, shutdown.clone())?;
            let handler = Arc::new(notifications::NotificationHandler::new(
                ctx.clone(),
                publisher,
            ));
            vec![spawn_consumer(
                ctx,
                crate::events::topology::NOTIFICATIONS,
                handler,
                ctx.settings.worker.concurrency,
                shutdown,
            )]
        }
    })
}
