//! The in-process bus of live changes that GraphQL subscriptions listen to. Changes made on
//! this replica are published directly; changes made on other replicas arrive through each
//! replica's own RabbitMQ fan-out queue and are republished here.

use std::sync::Arc;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::store::sessions::SessionRecord;

/// Subscribers that fall further behind than this lose the oldest changes (and re-read state).
const CAPACITY: usize = 4096;

/// Something changed. Charger changes are re-read from Postgres by subscribers; session
/// changes carry the committed snapshot when the publisher has it (so no intermediate status is
/// lost to a late read), else subscribers re-read.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Charger(String),
    Session {
        id: Uuid,
        snapshot: Option<Arc<SessionRecord>>,
    },
}

impl LiveEvent {
    /// A session change known only by id.
    pub fn session(id: Uuid) -> Self {
        LiveEvent::Session { id, snapshot: None }
    }
}

#[derive(Clone)]
pub struct LiveBus {
    tx: broadcast::Sender<LiveEvent>,
}

impl Default for LiveBus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx }
    }
}

impl LiveBus {
    pub fn publish(&self, event: LiveEvent) {
        // no subscribers is fine
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }
}
