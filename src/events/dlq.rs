//! `chargegrid dlq replay <queue>`: moves dead letters back into their queue for another try,
//! one confirmed publish per message before it is removed from the dead-letter queue.

use lapin::options::{BasicAckOptions, BasicGetOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::AMQPValue;
use lapin::types::FieldTable;

use super::publish::publish_confirmed;
use super::topology::{self, ATTEMPT_HEADER, CONSUMER_QUEUES, REASON_HEADER};
use crate::configuration::Settings;
use crate::context::topology_of;
use crate::store::amqp::Amqp;

/// Replays every message of `<queue>.dlq`; returns how many were moved.
pub async fn replay(settings: &Settings, queue: &str) -> anyhow::Result<u64> {
    let topology = topology_of(settings);
    let known = topology.find(queue).ok_or_else(|| {
        let names: Vec<String> = CONSUMER_QUEUES.iter().map(|q| topology.queue(q)).collect();
        anyhow::anyhow!(
            "unknown queue {queue:?}; known queues: {}",
            names.join(", ")
        )
    })?;
    let connection = Amqp::connect_once(&settings.amqp).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    topology.declare_consumer(&channel, &known).await?;
    let dlq = topology::dead_letter_queue(queue);
    // only what is there now: a replayed message that fails again must not loop back in
    let waiting = channel
        .queue_declare(
            &dlq,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?
        .message_count();
    let mut moved = 0;
    while moved < u64::from(waiting) {
        let Some(message) = channel
            .basic_get(&dlq, BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(1));
        let mut inner = headers.inner().clone();
        inner.remove(REASON_HEADER);
        let properties = delivery.properties.clone().with_headers(inner.into());
        publish_confirmed(&channel, "", queue, &delivery.data, properties).await?;
        delivery.ack(BasicAckOptions::default()).await?;
        moved += 1;
    }
    let _ = channel.close(200, "done").await;
    let _ = connection.close(200, "done").await;
    Ok(moved)
}
