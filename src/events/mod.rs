//! Domain events: the envelope of the events contract, the transactional outbox, the relay that
//! publishes it to RabbitMQ, the topology, the consumer loop the workers share, dead-letter
//! replay, and the per-replica fan-out that feeds GraphQL subscriptions.

pub mod consumer;
pub mod dlq;
pub mod envelope;
pub mod fanout;
pub mod node_rpc;
pub mod outbox;
pub mod outbox_cursor;
pub mod publish;
pub mod relay;
pub mod topology;
pub mod wake;

pub use envelope::{Envelope, Event, EventType};
