//! `chargegrid dlq replay <queue>` (and the ADMIN's `replayDeadLetters`): moves dead letters back
//! into their queue for another try, one confirmed publish per message before it is removed from
//! the dead-letter queue. `peek` shows what waits there without taking it.

use chrono::{DateTime, TimeZone, Utc};
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
    let waiting = depth(&channel, &dlq).await?;
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

/// One dead letter as an operator may see it: which event, why it died, never the rest of its
/// body (events carry personal data such as e-mail addresses).
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The envelope's `eventType` and `eventId`, when the body is JSON that has them.
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub reason: Option<String>,
    pub attempts: Option<u32>,
    pub message_id: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub bytes: usize,
}

/// A dead-letter queue: how many messages wait, and the first of them.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    /// The consumer queue the letters belong to (what `replay` takes).
    pub queue: String,
    pub depth: u32,
    pub first: Vec<DeadLetter>,
}

fn header_text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn header_number(headers: &FieldTable, name: &str) -> Option<u32> {
    match headers.inner().get(name)? {
        AMQPValue::LongUInt(n) => Some(*n),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some(u32::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(u32::from(*n)),
        _ => None,
    }
}

/// The dead-letter queues of this deployment's consumer queues, with up to `first` letters of
/// each. Letters are read without acknowledgement and go back, in order, when the channel
/// closes: peeking takes nothing away.
pub async fn peek(settings: &Settings, first: usize) -> anyhow::Result<Vec<DeadLetterQueue>> {
    let topology = topology_of(settings);
    let connection = Amqp::connect_once(&settings.amqp).await?;
    let mut queues = Vec::new();
    for known in CONSUMER_QUEUES {
        let queue = topology.queue(known);
        let dlq = topology::dead_letter_queue(&queue);
        // a passive declare of a missing queue closes its channel: one channel per queue
        let channel = connection.create_channel().await?;
        let depth = match depth(&channel, &dlq).await {
            Ok(count) => count,
            Err(_) => {
                queues.push(DeadLetterQueue {
                    queue,
                    depth: 0,
                    first: Vec::new(),
                });
                continue;
            }
        };
        let mut letters = Vec::new();
        while letters.len() < first.min(depth as usize) {
            let Some(message) = channel
                .basic_get(&dlq, BasicGetOptions { no_ack: false })
                .await?
            else {
                break;
            };
            let delivery = message.delivery;
            let headers = delivery.properties.headers().clone().unwrap_or_default();
            let envelope: Option<serde_json::Value> = serde_json::from_slice(&delivery.data).ok();
            let field = |name: &str| {
                envelope
                    .as_ref()
                    .and_then(|e| e.get(name))
                    .and_then(|v| v.as_str())
                    .map(String::from)
            };
            letters.push(DeadLetter {
                event_type: field("eventType"),
                event_id: field("eventId"),
                reason: header_text(&headers, REASON_HEADER),
                attempts: header_number(&headers, ATTEMPT_HEADER),
                message_id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.to_string()),
                published_at: delivery
                    .properties
                    .timestamp()
                    .and_then(|t| i64::try_from(t).ok())
                    .and_then(|t| Utc.timestamp_opt(t, 0).single()),
                bytes: delivery.data.len(),
            });
        }
        // unacknowledged letters return to the queue, in their order
        let _ = channel.close(200, "peeked").await;
        queues.push(DeadLetterQueue {
            queue,
            depth,
            first: letters,
        });
    }
    let _ = connection.close(200, "done").await;
    Ok(queues)
}

/// How many messages `queue` holds now (a passive declare: a missing queue is an error, and
/// closes the channel).
async fn depth(channel: &lapin::Channel, queue: &str) -> Result<u32, lapin::Error> {
    Ok(channel
        .queue_declare(
            queue,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?
        .message_count())
}
