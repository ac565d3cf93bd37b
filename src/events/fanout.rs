//! Subscription fan-out: each serve replica consumes session and charger events through its own
//! exclusive queue and republishes them on its live bus, so a subscriber connected to any
//! replica sees changes made on any other.
//!
//! The queue is bound to the events exchange only while someone on this replica listens
//! (`LiveBus::wanted`), and `events.fanout_linger_secs` after the last one left: a replica
//! nobody watches through pays nothing for the cluster's traffic, and subscriptions that come
//! and go do not bind and unbind each time. A new subscriber wakes the fan-out and waits for
//! its binding (`LiveBus::listening`).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio_util::sync::CancellationToken;

use super::consumer::{parse, source_of};
use super::topology::Topology;
use crate::live::{Fanout, FanoutHandle, LiveBus, LiveEvent};
use crate::store::amqp::Amqp;

const ROUTING_KEYS: &[&str] = &["session.#", "charger.#", "connector.#"];

/// How often a bound fan-out looks whether anyone still listens.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The fan-out of one replica.
pub struct FanoutConfig {
    pub amqp: Amqp,
    pub topology: Topology,
    pub node_id: String,
    /// This replica's event source (its own events are already on the bus).
    pub own_source: String,
    pub live: LiveBus,
    /// How long the queue stays bound after the last listener left.
    pub linger: Duration,
    /// Deliveries taken from the queue.
    pub received: prometheus::IntCounter,
}

/// Runs until `shutdown`.
pub async fn run(config: FanoutConfig, shutdown: CancellationToken) {
    let queue = format!("{}.live.{}", config.topology.namespace, config.node_id);
    let fanout = config.live.fanout();
    while !shutdown.is_cancelled() {
        // a new connection's exclusive queue starts without bindings
        fanout.set(Fanout::Unbound);
        let consumed = consume(&config, &fanout, &queue, &shutdown).await;
        // the queue may be gone with the connection: no subscriber may count on it meanwhile
        fanout.set(Fanout::Unbound);
        if let Err(e) = consumed {
            tracing::warn!(error = %e, "live fan-out interrupted; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}

async fn bindings(
    channel: &Channel,
    topology: &Topology,
    queue: &str,
    bind: bool,
) -> Result<(), lapin::Error> {
    let exchange = topology.events_exchange();
    if bind {
        // an ephemeral (test) exchange auto-deletes with its last binding: declared again
        topology.declare_exchanges(channel).await?;
    }
    for key in ROUTING_KEYS {
        if bind {
            channel
                .queue_bind(
                    queue,
                    &exchange,
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        } else {
            channel
                .queue_unbind(queue, &exchange, key, FieldTable::default())
                .await?;
        }
    }
    Ok(())
}

async fn consume(
    config: &FanoutConfig,
    fanout: &FanoutHandle,
    queue: &str,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let (topology, own_source, live) = (&config.topology, config.own_source.as_str(), &config.live);
    let channel = config
        .amqp
        .channel_when_ready(Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    topology
        .declare_exchanges(&channel)
        .await
        .map_err(|e| e.to_string())?;
    channel
        .queue_declare(
            queue,
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    // Unacknowledged (no_ack): live updates are best effort by design (a subscriber that falls
    // behind reads its state again), and the queue is this replica's alone and goes with its
    // connection. An ack per delivery was a frame and a wake-up of the AMQP client's I/O thread
    // for every session and charger event, most of them this replica's own.
    let mut consumer = channel
        .basic_consume(
            queue,
            queue,
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    // the queue lives as long as the connection: it may keep the bindings of a channel that
    // failed (unbinding what is not bound is no error)
    bindings(&channel, topology, queue, false)
        .await
        .map_err(|e| e.to_string())?;
    let mut bound = false;
    let mut idle_since: Option<Instant> = None;
    let mut idle_check = tokio::time::interval(IDLE_CHECK);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !bound && fanout.wanted() {
            bindings(&channel, topology, queue, true)
                .await
                .map_err(|e| e.to_string())?;
            bound = true;
            idle_since = None;
            fanout.set(Fanout::Bound);
            tracing::debug!(queue, "live fan-out bound: a subscriber listens");
        }
        let delivery = tokio::select! {
            d = consumer.next() => d,
            _ = shutdown.cancelled() => return Ok(()),
            _ = fanout.woken(), if !bound => continue,
            _ = idle_check.tick() => {
                if bound && !fanout.wanted() {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    // marked unbound first, under the bus's lock: a subscriber that looks
                    // meanwhile waits for the next binding
                    if since.elapsed() >= config.linger && fanout.unbind_unless_wanted() {
                        bound = false;
                        idle_since = None;
                        bindings(&channel, topology, queue, false)
                            .await
                            .map_err(|e| e.to_string())?;
                        fanout.set(Fanout::Unbound);
                        tracing::debug!(queue, "live fan-out unbound: nobody listens");
                    }
                } else {
                    idle_since = None;
                }
                continue;
            }
        };
        let Some(delivery) = delivery else {
            return Err("the fan-out stream ended".into());
        };
        let delivery = delivery.map_err(|e| e.to_string())?;
        config.received.inc();
        // this replica's own events are on its bus already: only the others' are read whole
        if source_of(&delivery.data).is_some_and(|source| source != own_source) {
            if let Ok(event) = parse(&delivery.data) {
                let field = |name: &str| {
                    event
                        .body
                        .get(name)
                        .and_then(|v| v.as_str())
                        .map(String::from)
                };
                if let Some(id) = field("sessionId").and_then(|s| s.parse().ok()) {
                    live.publish(LiveEvent::session(id));
                } else if let Some(charger) = field("chargerId") {
                    live.publish(LiveEvent::Charger(charger));
                }
            }
        }
    }
}
