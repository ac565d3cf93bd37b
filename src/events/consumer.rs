//! The consumer loop shared by every worker: it declares its queue's topology, consumes with
//! bounded concurrency, and settles each message exactly one way: ack on success; on a
//! transient failure a republish to the next retry queue (exponential backoff, at most
//! `MAX_ATTEMPTS` attempts); malformed, unknown-version or permanently failing messages go to
//! the dead-letter queue at once with the reason in a header. A message is only acked after its
//! republish is confirmed, so nothing is lost if the worker dies in between.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::envelope::EVENT_VERSION;
use super::publish::publish_confirmed;
use super::topology::{self, ConsumerQueue, Topology, ATTEMPT_HEADER, MAX_ATTEMPTS, REASON_HEADER};
use crate::store::amqp::Amqp;

/// An event as a consumer receives it: the envelope, and the whole body for the handler.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub timestamp: DateTime<Utc>,
    pub source: String,
    pub body: serde_json::Value,
}

#[derive(Deserialize)]
struct EnvelopeHead {
    #[serde(rename = "eventId")]
    event_id: Uuid,
    #[serde(rename = "eventType")]
    event_type: String,
    version: u32,
    timestamp: DateTime<Utc>,
    source: String,
}

/// The replica that wrote the event of a message body, read without the rest of it (`None`
/// when the body has none): the live fan-out drops its own replica's events on that alone.
pub fn source_of(body: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Source<'a> {
        #[serde(borrow)]
        source: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Source<'_>>(body)
        .ok()
        .map(|s| s.source)
}

/// Reads the envelope of a message body; the error says why it is unusable.
pub fn parse(body: &[u8]) -> Result<ReceivedEvent, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    // read from the parsed value in place (a clone of every body cost as much as the parse)
    let head = EnvelopeHead::deserialize(&value).map_err(|e| format!("malformed envelope: {e}"))?;
    if head.version != EVENT_VERSION {
        return Err(format!("unsupported event version {}", head.version));
    }
    Ok(ReceivedEvent {
        event_id: head.event_id,
        event_type: head.event_type,
        timestamp: head.timestamp,
        source: head.source,
        body: value,
    })
}

/// How handling failed.
#[derive(Debug)]
pub enum HandleError {
    /// Worth another try later (a database or broker hiccup).
    Transient(String),
    /// Will never succeed: dead-letter at once.
    Permanent(String),
}

/// A worker's business logic for one event.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, event: ReceivedEvent) -> BoxFuture<'static, Result<(), HandleError>>;
}

/// Settings of one consumer.
#[derive(Clone)]
pub struct ConsumerOptions {
    pub queue: ConsumerQueue,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub topology: Topology,
    pub prefetch: u16,
    pub concurrency: usize,
}

fn attempt_of(delivery: &Delivery) -> u32 {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT_HEADER).cloned())
        .and_then(|v| match v {
            AMQPValue::LongUInt(n) => Some(n),
            AMQPValue::LongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
            _ => None,
        })
        .unwrap_or(1)
}

fn with_header(properties: &BasicProperties, key: &str, value: AMQPValue) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(ShortString::from(key), value);
    properties.clone().with_headers(headers)
}

/// Moves a message to `<queue>.dlq` with the reason in a header.
async fn dead_letter(
    channel: &Channel,
    topology: &Topology,
    queue: &str,
    delivery: &Delivery,
    reason: &str,
) -> Result<(), String> {
    tracing::warn!(queue, %reason, "dead-lettering a message");
    let properties = with_header(
        &delivery.properties,
        REASON_HEADER,
        AMQPValue::LongString(LongString::from(reason)),
    );
    publish_confirmed(
        channel,
        &topology.dead_letter_exchange(),
        queue,
        &delivery.data,
        properties,
    )
    .await
    .map_err(|e| e.to_string())
}

/// Schedules another attempt through the retry queue of this attempt.
async fn retry(
    channel: &Channel,
    queue: &str,
    delivery: &Delivery,
    attempt: u32,
) -> Result<(), String> {
    let properties = with_header(
        &delivery.properties,
        ATTEMPT_HEADER,
        AMQPValue::LongUInt(attempt + 1),
    );
    publish_confirmed(
        channel,
        "",
        &topology::retry_queue(queue, attempt),
        &delivery.data,
        properties,
    )
    .await
    .map_err(|e| e.to_string())
}

/// Handles a delivery and hands its settlement to the channel's acknowledger.
async fn settle(
    channel: &Channel,
    options: &ConsumerOptions,
    handler: &Arc<dyn EventHandler>,
    delivery: Delivery,
    acks: &mpsc::UnboundedSender<Settled>,
) {
    let queue_name = options.topology.queue(&options.queue);
    let queue = queue_name.as_str();
    let topology = &options.topology;
    let attempt = attempt_of(&delivery);
    let (label, outcome) = match parse(&delivery.data) {
        Err(reason) => (
            "dead",
            dead_letter(channel, topology, queue, &delivery, &reason).await,
        ),
        Ok(event) => match handler.handle(event).await {
            Ok(()) => ("ok", Ok(())),
            Err(HandleError::Permanent(reason)) => (
                "dead",
                dead_letter(channel, topology, queue, &delivery, &reason).await,
            ),
            Err(HandleError::Transient(reason)) if attempt >= MAX_ATTEMPTS => (
                "dead",
                dead_letter(
                    channel,
                    topology,
                    queue,
                    &delivery,
                    &format!("gave up after {attempt} attempts: {reason}"),
                )
                .await,
            ),
            Err(HandleError::Transient(reason)) => {
                tracing::warn!(queue, attempt, %reason, "handling failed; retrying later");
                ("retry", retry(channel, queue, &delivery, attempt).await)
            }
        },
    };
    options
        .metrics
        .events_consumed_total
        .with_label_values(&[
            options.queue.suffix,
            if outcome.is_ok() { label } else { "requeued" },
        ])
        .inc();
    let settled = match outcome {
        Ok(()) => Settled::Handled(delivery.delivery_tag),
        Err(e) => {
            tracing::warn!(queue, error = %e, "could not settle a message; it will be redelivered");
            Settled::Requeue(delivery.delivery_tag)
        }
    };
    // the acknowledger outlives every handler of its channel
    let _ = acks.send(settled);
}

/// What the acknowledger of a channel hears about a delivery.
enum Settled {
    /// Delivered (told in delivery order, before it is handled).
    Received(u64),
    /// Handled (acked, dead-lettered or sent to a retry queue): it may be acknowledged.
    Handled(u64),
    /// To be returned to the queue.
    Requeue(u64),
}

/// Acknowledges a channel's deliveries in groups. An ack of delivery tag `t` with `multiple`
/// acknowledges every unsettled delivery of the channel up to `t`, so when the oldest deliveries
/// in hand are all handled, one frame acknowledges them together. A delivery handled behind one
/// still in hand is acknowledged on its own (a multiple ack past the one in hand would
/// acknowledge it unhandled, and a worker that died then would lose it). At 500 session ends/s
/// the workers acked ~2,000 deliveries a second one frame each, every one a hand-over to lapin's
/// I/O thread and a frame for RabbitMQ. Acks and requeues go out from here alone, in the order
/// they are decided, so a multiple ack only covers deliveries still unsettled and ends at one
/// (RabbitMQ closes the channel on an ack of an unknown tag). Ends when every sender is gone.
async fn acknowledge(
    channel: Channel,
    mut settled: mpsc::UnboundedReceiver<Settled>,
    queue: String,
) {
    let mut book = AckBook::default();
    let mut failed = false;
    while let Some(first) = settled.recv().await {
        let mut frames = Vec::new();
        let mut next = Some(first);
        while let Some(news) = next.take() {
            book.hear(news, &mut frames);
            next = settled.try_recv().ok();
        }
        book.acks(&mut frames);
        for frame in frames {
            let sent = match frame {
                AckFrame::Nack(tag) => {
                    channel
                        .basic_nack(
                            tag,
                            BasicNackOptions {
                                requeue: true,
                                ..BasicNackOptions::default()
                            },
                        )
                        .await
                }
                AckFrame::Ack { tag, multiple } => {
                    channel.basic_ack(tag, BasicAckOptions { multiple }).await
                }
            };
            if let Err(e) = sent {
                if !std::mem::replace(&mut failed, true) {
                    tracing::warn!(%queue, error = %e, "ack or nack failed; the broker will redeliver");
                }
            }
        }
    }
}

/// A settlement frame, in the order it must go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckFrame {
    Nack(u64),
    Ack { tag: u64, multiple: bool },
}

/// The acknowledger's book: the deliveries not yet acknowledged or requeued, and those of them
/// already handled.
#[derive(Default)]
struct AckBook {
    open: std::collections::BTreeSet<u64>,
    handled: std::collections::BTreeSet<u64>,
}

impl AckBook {
    /// Takes in one piece of news; a requeue goes out at once (before any ack decided after it).
    fn hear(&mut self, news: Settled, frames: &mut Vec<AckFrame>) {
        match news {
            Settled::Received(tag) => {
                self.open.insert(tag);
            }
            Settled::Handled(tag) => {
                if self.open.contains(&tag) {
                    self.handled.insert(tag);
                }
            }
            Settled::Requeue(tag) => {
                if self.open.remove(&tag) {
                    frames.push(AckFrame::Nack(tag));
                }
            }
        }
    }

    /// The acks of everything handled so far: one multiple ack of the oldest deliveries while
    /// they are all handled, then one by one those handled behind a delivery still in hand.
    fn acks(&mut self, frames: &mut Vec<AckFrame>) {
        let mut up_to = None;
        while let Some(&oldest) = self.open.first() {
            if !self.handled.remove(&oldest) {
                break;
            }
            self.open.remove(&oldest);
            up_to = Some(oldest);
        }
        if let Some(tag) = up_to {
            frames.push(AckFrame::Ack {
                tag,
                multiple: true,
            });
        }
        for tag in std::mem::take(&mut self.handled) {
            self.open.remove(&tag);
            frames.push(AckFrame::Ack {
                tag,
                multiple: false,
            });
        }
    }
}

/// Consumes until `shutdown`, reconnecting with backoff when the broker goes away. The message
/// in hand is finished before returning.
pub async fn run(
    amqp: Amqp,
    options: ConsumerOptions,
    handler: Arc<dyn EventHandler>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match consume_once(&amqp, &options, &handler, &shutdown).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(queue = options.queue.suffix, error = %e, "consumer interrupted; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn consume_once(
    amqp: &Amqp,
    options: &ConsumerOptions,
    handler: &Arc<dyn EventHandler>,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let channel = amqp
        .channel_when_ready(Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    options
        .topology
        .declare_consumer(&channel, &options.queue)
        .await
        .map_err(|e| e.to_string())?;
    let queue = options.topology.queue(&options.queue);
    channel
        .basic_qos(options.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let tag = format!("{queue}-{}", Uuid::new_v4().simple());
    let consumer = channel
        .basic_consume(
            &queue,
            &tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(%queue, "consuming");
    let (acks, settled) = mpsc::unbounded_channel();
    let acknowledger = tokio::spawn(acknowledge(channel.clone(), settled, queue.clone()));
    let deliveries = consumer.take_until(shutdown.cancelled());
    deliveries
        .for_each_concurrent(options.concurrency.max(1), |delivery| {
            let (channel, handler, acks) = (channel.clone(), handler.clone(), acks.clone());
            // told here, in delivery order, before any later delivery can be handled
            if let Ok(delivery) = &delivery {
                let _ = acks.send(Settled::Received(delivery.delivery_tag));
            }
            async move {
                match delivery {
                    Ok(delivery) => settle(&channel, options, &handler, delivery, &acks).await,
                    Err(e) => tracing::warn!(error = %e, "delivery error"),
                }
            }
        })
        .await;
    // what was handled is acknowledged before the channel closes
    drop(acks);
    let _ = acknowledger.await;
    if shutdown.is_cancelled() {
        let _ = channel.close(200, "shutting down").await;
        return Ok(());
    }
    Err("the consumer stream ended (connection lost)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Envelope, Event};

    /// A body as the relay publishes it (the payload's fields beside the head's).
    fn body(source: &str) -> Vec<u8> {
        let event = Event::SessionUpdated {
            session_id: Uuid::nil(),
            user_id: Uuid::nil(),
            energy_kwh: 1.5,
            power_kw: Some(11.0),
            status: "IN_PROGRESS".into(),
        };
        Envelope::new(event, Utc::now(), source)
            .to_json()
            .unwrap_or_default()
            .into_bytes()
    }

    /// The frames of one round of news.
    fn round(book: &mut AckBook, news: Vec<Settled>) -> Vec<AckFrame> {
        let mut frames = Vec::new();
        for n in news {
            book.hear(n, &mut frames);
        }
        book.acks(&mut frames);
        frames
    }

    #[test]
    fn the_oldest_handled_deliveries_share_one_multiple_ack() {
        let mut book = AckBook::default();
        let news = (1..=5)
            .map(Settled::Received)
            .chain([3, 1, 2, 5, 4].map(Settled::Handled))
            .collect();
        assert_eq!(
            round(&mut book, news),
            vec![AckFrame::Ack {
                tag: 5,
                multiple: true
            }]
        );
        assert!(book.open.is_empty() && book.handled.is_empty());
    }

    #[test]
    fn nothing_is_acknowledged_past_a_delivery_in_hand() {
        let mut book = AckBook::default();
        let news = (1..=4)
            .map(Settled::Received)
            .chain([1, 3, 4].map(Settled::Handled))
            .collect();
        // 2 is in hand: 1 alone is covered by a multiple ack, 3 and 4 go one by one
        assert_eq!(
            round(&mut book, news),
            vec![
                AckFrame::Ack {
                    tag: 1,
                    multiple: true
                },
                AckFrame::Ack {
                    tag: 3,
                    multiple: false
                },
                AckFrame::Ack {
                    tag: 4,
                    multiple: false
                },
            ]
        );
        // when 2 is done, the multiple ack ends at 2 (3 and 4 are no longer the broker's)
        let news = vec![Settled::Received(5), Settled::Handled(2)];
        assert_eq!(
            round(&mut book, news),
            vec![AckFrame::Ack {
                tag: 2,
                multiple: true
            }]
        );
        assert_eq!(book.open.iter().copied().collect::<Vec<_>>(), vec![5]);
    }

    #[test]
    fn a_requeue_goes_out_before_the_acks_that_pass_it() {
        let mut book = AckBook::default();
        let news = (1..=3)
            .map(Settled::Received)
            .chain([
                Settled::Handled(1),
                Settled::Requeue(2),
                Settled::Handled(3),
            ])
            .collect();
        assert_eq!(
            round(&mut book, news),
            vec![
                AckFrame::Nack(2),
                AckFrame::Ack {
                    tag: 3,
                    multiple: true
                },
            ]
        );
        // news of a delivery already settled changes nothing
        let news = vec![Settled::Handled(2), Settled::Requeue(3)];
        assert_eq!(round(&mut book, news), vec![]);
    }

    #[test]
    fn the_source_is_read_without_the_rest_of_the_body() {
        assert_eq!(source_of(&body("serve-a")).as_deref(), Some("serve-a"));
        // escapes are decoded, so an escaped name is still recognised as the same replica
        assert_eq!(
            source_of(br#"{"source":"serve\u002da"}"#).as_deref(),
            Some("serve-a")
        );
        assert_eq!(source_of(br#"{"eventType":"X"}"#), None);
        assert_eq!(source_of(b"not json"), None);
    }

    #[test]
    fn an_envelope_is_read_with_its_body() {
        let read = parse(&body("serve-a")).map(|e| {
            let session = e.body.get("sessionId").cloned();
            (e.event_type, e.source, session)
        });
        assert_eq!(
            read,
            Ok((
                "SESSION_UPDATED".to_string(),
                "serve-a".to_string(),
                Some(serde_json::json!(Uuid::nil()))
            ))
        );
        assert!(parse(br#"{"eventType":"SESSION_ENDED"}"#).is_err());
    }
}
