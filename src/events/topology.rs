//! The RabbitMQ topology, declared idempotently by every process at (re)connect. Names live in
//! a namespace (`chargegrid` in production, so the exchange is `chargegrid.events`; tests use
//! their own namespace with self-expiring queues):
//!
//! - `<ns>.events`: durable topic exchange all events are published to;
//! - one durable queue per consumer (`<ns>.billing`, `<ns>.notifications`), bound to the
//!   routing keys it handles;
//! - retry queues `<queue>.retry.<n>` (n = 1..4) with a per-queue TTL of `base * 2^(n-1)`
//!   that dead-letter back into `<queue>` when the TTL expires (exponential backoff without
//!   plugins);
//! - `<ns>.dlx`: direct exchange routing dead letters into `<queue>.dlq` by queue name.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// Delivery attempts before a message is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 5;
/// Header carrying the attempt number of a redelivered message.
pub const ATTEMPT_HEADER: &str = "x-chargegrid-attempt";
/// Header carrying why a message was dead-lettered.
pub const REASON_HEADER: &str = "x-chargegrid-dead-reason";

/// A durable consumer queue (`<ns>.<suffix>`) and the routing keys it is bound to.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerQueue {
    pub suffix: &'static str,
    pub routing_keys: &'static [&'static str],
}

pub const BILLING: ConsumerQueue = ConsumerQueue {
    suffix: "billing",
    routing_keys: &["session.ended"],
};

pub const NOTIFICATIONS: ConsumerQueue = ConsumerQueue {
    suffix: "notifications",
    routing_keys: &[
        "session.started",
        "session.ended",
        "invoice.generated",
        "payment.completed",
        "payment.failed",
        "security.event",
    ],
};

/// Every durable consumer queue this build knows (for `dlq replay` validation).
pub const CONSUMER_QUEUES: &[ConsumerQueue] = &[BILLING, NOTIFICATIONS];

/// The name of retry queue `n` (1-based) of `queue`.
pub fn retry_queue(queue: &str, n: u32) -> String {
    format!("{queue}.retry.{n}")
}

pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// The names and options of one deployment's topology.
#[derive(Debug, Clone)]
pub struct Topology {
    pub namespace: String,
    /// Exchanges auto-delete and queues expire when unused (test runs).
    pub ephemeral: bool,
    pub retry_base_ms: u64,
}

/// How long an unused queue of an ephemeral topology lives.
const EPHEMERAL_QUEUE_EXPIRES_MS: i64 = 10 * 60 * 1000;

impl Topology {
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.namespace)
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.namespace)
    }

    pub fn queue(&self, queue: &ConsumerQueue) -> String {
        format!("{}.{}", self.namespace, queue.suffix)
    }

    /// The consumer queue called `name`, if this topology has one.
    pub fn find(&self, name: &str) -> Option<ConsumerQueue> {
        CONSUMER_QUEUES
            .iter()
            .copied()
            .find(|q| self.queue(q) == name)
    }

    fn queue_options(&self) -> (QueueDeclareOptions, FieldTable) {
        let mut args = FieldTable::default();
        if self.ephemeral {
            args.insert(
                ShortString::from("x-expires"),
                AMQPValue::LongLongInt(EPHEMERAL_QUEUE_EXPIRES_MS),
            );
        }
        (
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
    }

    /// Declares the exchanges.
    pub async fn declare_exchanges(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for (name, kind) in [
            (self.events_exchange(), ExchangeKind::Topic),
            (self.dead_letter_exchange(), ExchangeKind::Direct),
        ] {
            channel
                .exchange_declare(
                    &name,
                    kind,
                    ExchangeDeclareOptions {
                        durable: true,
                        auto_delete: self.ephemeral,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Declares `queue` with its bindings, retry queues and dead-letter queue.
    pub async fn declare_consumer(
        &self,
        channel: &Channel,
        queue: &ConsumerQueue,
    ) -> Result<(), lapin::Error> {
        self.declare_exchanges(channel).await?;
        let name = self.queue(queue);
        let (options, args) = self.queue_options();
        channel.queue_declare(&name, options, args.clone()).await?;
        for key in queue.routing_keys {
            channel
                .queue_bind(
                    &name,
                    &self.events_exchange(),
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        for n in 1..MAX_ATTEMPTS {
            let mut retry_args = args.clone();
            let ttl = self.retry_base_ms.saturating_mul(1 << (n - 1));
            retry_args.insert(
                ShortString::from("x-message-ttl"),
                AMQPValue::LongLongInt(ttl as i64),
            );
            retry_args.insert(
                ShortString::from("x-dead-letter-exchange"),
                AMQPValue::LongString(LongString::from("")),
            );
            retry_args.insert(
                ShortString::from("x-dead-letter-routing-key"),
                AMQPValue::LongString(LongString::from(name.as_str())),
            );
            channel
                .queue_declare(&retry_queue(&name, n), options, retry_args)
                .await?;
        }
        let dlq = dead_letter_queue(&name);
        channel.queue_declare(&dlq, options, args).await?;
        channel
            .queue_bind(
                &dlq,
                &self.dead_letter_exchange(),
                &name,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let topology = Topology {
            namespace: "chargegrid".into(),
            ephemeral: false,
            retry_base_ms: 1000,
        };
        assert_eq!(topology.events_exchange(), "chargegrid.events");
        assert_eq!(topology.dead_letter_exchange(), "chargegrid.dlx");
        let billing = topology.queue(&BILLING);
        assert_eq!(billing, "chargegrid.billing");
        assert_eq!(dead_letter_queue(&billing), "chargegrid.billing.dlq");
        assert_eq!(retry_queue(&billing, 2), "chargegrid.billing.retry.2");
        assert!(topology.find("chargegrid.notifications").is_some());
        assert!(topology.find("chargegrid.nope").is_none());
    }
}
