//! Subscription fan-out: each serve replica consumes session and charger events through its own
//! exclusive queue and republishes them on its live bus, so a subscriber connected to any
//! replica sees changes made on any other.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use super::consumer::{parse, source_of};
use super::topology::Topology;
use crate::live::{LiveBus, LiveEvent};
use crate::store::amqp::Amqp;

const ROUTING_KEYS: &[&str] = &["session.#", "charger.#", "connector.#"];

/// Runs until `shutdown`; `own_source` is this replica's event source (its own events are
/// already on the bus).
pub async fn run(
    amqp: Amqp,
    topology: Topology,
    node_id: String,
    own_source: String,
    live: LiveBus,
    shutdown: CancellationToken,
) {
    let queue = format!("{}.live.{node_id}", topology.namespace);
    while !shutdown.is_cancelled() {
        if let Err(e) = consume(&amqp, &topology, &queue, &own_source, &live, &shutdown).await {
            tracing::warn!(error = %e, "live fan-out interrupted; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}

async fn consume(
    amqp: &Amqp,
    topology: &Topology,
    queue: &str,
    own_source: &str,
    live: &LiveBus,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let channel = amqp
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
    for key in ROUTING_KEYS {
        channel
            .queue_bind(
                queue,
                &topology.events_exchange(),
                key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
    }
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
    loop {
        let delivery = tokio::select! {
            d = consumer.next() => d,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let Some(delivery) = delivery else {
            return Err("the fan-out stream ended".into());
        };
        let delivery = delivery.map_err(|e| e.to_string())?;
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
