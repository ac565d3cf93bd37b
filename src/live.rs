//! The in-process bus of live changes that GraphQL subscriptions listen to. Changes made on
//! this replica are published directly; changes made on other replicas arrive through each
//! replica's own RabbitMQ fan-out queue and are republished here.
//!
//! Every charger and every session is a topic of its own: a subscription is woken only by the
//! changes of what it watches, never by the rest of the cluster's traffic, and a change nobody
//! watches costs one map look-up.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::store::sessions::SessionRecord;

/// Changes a subscriber may fall behind by on one topic before it loses the oldest (and
/// re-reads state).
const CAPACITY: usize = 64;

/// Something changed. Charger changes are re-read from Postgres by subscribers; session
/// changes carry the committed snapshot when the publisher has it (so no intermediate status is
/// lost to a late read), else subscribers re-read.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Charger(String),
    /// A site's allocation changed (subscribers re-read its load).
    Site(Uuid),
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

    fn topic(&self) -> Topic {
        match self {
            LiveEvent::Charger(id) => Topic::Charger(id.clone()),
            LiveEvent::Site(id) => Topic::Site(*id),
            LiveEvent::Session { id, .. } => Topic::Session(*id),
        }
    }
}

/// What a subscriber watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    Charger(String),
    Site(Uuid),
    Session(Uuid),
}

type Topics = DashMap<Topic, broadcast::Sender<LiveEvent>>;

/// Events the observer of every change (load management) may fall behind by before it loses
/// the oldest and re-reads everything it governs.
const FIREHOSE_CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct LiveBus {
    topics: Arc<Topics>,
    /// Every change, for the one in-process observer that needs them all (load management
    /// filters by charger); only fed while `all_wanted` is set (this replica runs a site's
    /// controller), so a replica without sites pays nothing for it on its hot path.
    all: broadcast::Sender<LiveEvent>,
    all_wanted: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for LiveBus {
    fn default() -> Self {
        Self {
            topics: Arc::default(),
            all: broadcast::channel(FIREHOSE_CAPACITY).0,
            all_wanted: Arc::default(),
        }
    }
}

impl LiveBus {
    /// Delivers `event` to the subscribers of its topic, if any.
    pub fn publish(&self, event: LiveEvent) {
        if self.all_wanted.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = self.all.send(event.clone());
        }
        if let Some(tx) = self.topics.get(&event.topic()) {
            // no receiver left: the last one is being dropped and removes the topic
            let _ = tx.send(event);
        }
    }

    /// Listens to one charger's or one session's changes.
    pub fn subscribe(&self, topic: Topic) -> LiveReceiver {
        let rx = self
            .topics
            .entry(topic.clone())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe();
        LiveReceiver {
            rx,
            topic,
            topics: self.topics.clone(),
        }
    }

    /// Listens to every change of every topic (delivered while `want_all(true)`).
    pub fn subscribe_all(&self) -> broadcast::Receiver<LiveEvent> {
        self.all.subscribe()
    }

    /// Turns the feed of `subscribe_all` on or off.
    pub fn want_all(&self, wanted: bool) {
        self.all_wanted
            .store(wanted, std::sync::atomic::Ordering::Relaxed);
    }

    /// Topics with at least one subscriber.
    pub fn topics(&self) -> usize {
        self.topics.len()
    }
}

/// A subscription to one topic; the topic is forgotten when its last receiver goes.
pub struct LiveReceiver {
    rx: broadcast::Receiver<LiveEvent>,
    topic: Topic,
    topics: Arc<Topics>,
}

impl LiveReceiver {
    pub async fn recv(&mut self) -> Result<LiveEvent, broadcast::error::RecvError> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Result<LiveEvent, broadcast::error::TryRecvError> {
        self.rx.try_recv()
    }
}

impl Drop for LiveReceiver {
    fn drop(&mut self) {
        // under the map's shard lock: a concurrent subscribe either ran before (and keeps the
        // topic) or runs after (and creates it again)
        self.topics
            .remove_if(&self.topic, |_, tx| tx.receiver_count() <= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_hears_only_its_own_topic_and_the_topic_goes_with_it() {
        let bus = LiveBus::default();
        let session = Uuid::new_v4();
        let mut mine = bus.subscribe(Topic::Session(session));
        let mut charger = bus.subscribe(Topic::Charger("CP-1".into()));
        bus.publish(LiveEvent::session(Uuid::new_v4()));
        bus.publish(LiveEvent::Charger("CP-2".into()));
        assert!(mine.try_recv().is_err(), "woken by another session");
        assert!(charger.try_recv().is_err(), "woken by another charger");
        bus.publish(LiveEvent::session(session));
        assert!(matches!(mine.try_recv(), Ok(LiveEvent::Session { id, .. }) if id == session));
        assert!(charger.try_recv().is_err());
        bus.publish(LiveEvent::Charger("CP-1".into()));
        assert!(matches!(charger.try_recv(), Ok(LiveEvent::Charger(id)) if id == "CP-1"));

        let second = bus.subscribe(Topic::Session(session));
        drop(mine);
        assert_eq!(bus.topics(), 2, "a topic stays while someone listens");
        drop(second);
        drop(charger);
        assert_eq!(bus.topics(), 0);
        // nobody listens: publishing is a no-op
        bus.publish(LiveEvent::session(session));
        assert_eq!(bus.topics(), 0);
    }
}
