//! The in-process bus of live changes that GraphQL subscriptions listen to. Changes made on
//! this replica are published directly; changes made on other replicas arrive through each
//! replica's own RabbitMQ fan-out queue and are republished here.
//!
//! Every charger and every session is a topic of its own: a subscription is woken only by the
//! changes of what it watches, never by the rest of the cluster's traffic, and a change nobody
//! watches costs one map look-up.
//!
//! The fan-out queue is bound only while someone on this replica listens (a charger or session
//! topic has a subscriber, or load management wants every change): a replica nobody watches
//! through receives none of the cluster's events (at 500 session ends/s they were ~3,000
//! deliveries a second, every one of them dropped). A new subscriber waits for the binding
//! (`listening`) before it reads the state it starts from, so no other replica's change falls
//! between that read and its first update.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{broadcast, watch, Notify};
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

/// Where the fan-out's bindings stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// No fan-out runs (a role without one, a test): nothing to wait for.
    Absent,
    /// The fan-out's queue receives no other replica's events.
    Unbound,
    /// The fan-out is removing its bindings (some events may still arrive).
    Unbinding,
    /// The fan-out's queue is bound: other replicas' changes arrive.
    Bound,
}

/// How long a new subscriber waits for the fan-out's binding before it goes on without it.
const BINDING_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct LiveBus {
    topics: Arc<Topics>,
    /// Every change, for the one in-process observer that needs them all (load management
    /// filters by charger); only fed while `all_wanted` is set (this replica runs a site's
    /// controller), so a replica without sites pays nothing for it on its hot path.
    all: broadcast::Sender<LiveEvent>,
    all_wanted: Arc<std::sync::atomic::AtomicBool>,
    /// Set by the fan-out task only. Its lock orders a subscriber's look (`listening`) against
    /// the task's decision to unbind (`Fanout::unbind_unless_wanted`).
    fanout: Arc<watch::Sender<Fanout>>,
    /// Wakes the fan-out task when someone starts listening.
    fanout_wanted: Arc<Notify>,
}

impl Default for LiveBus {
    fn default() -> Self {
        Self {
            topics: Arc::default(),
            all: broadcast::channel(FIREHOSE_CAPACITY).0,
            all_wanted: Arc::default(),
            fanout: Arc::new(watch::channel(Fanout::Absent).0),
            fanout_wanted: Arc::default(),
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
        if wanted {
            self.fanout_wanted.notify_one();
        }
    }

    /// Whether anyone on this replica listens to changes other replicas make: a subscriber of a
    /// charger or a session, or load management. (A site's load is re-read by polling.)
    pub fn wanted(&self) -> bool {
        self.all_wanted.load(std::sync::atomic::Ordering::Relaxed)
            || self.topics.iter().any(|entry| {
                // a topic whose last receivers went at once may linger without any
                !matches!(entry.key(), Topic::Site(_)) && entry.value().receiver_count() > 0
            })
    }

    /// Waits, up to two seconds, until other replicas' changes reach this one (the fan-out's
    /// queue is bound), waking the fan-out if it is not. Call it after `subscribe` and before
    /// reading the state the subscription starts from. Returns at once without a fan-out.
    pub async fn listening(&self) {
        let bound = |s: &Fanout| matches!(s, Fanout::Absent | Fanout::Bound);
        let mut state = self.fanout.subscribe();
        if bound(&state.borrow_and_update()) {
            return;
        }
        self.fanout_wanted.notify_one();
        if tokio::time::timeout(BINDING_WAIT, state.wait_for(bound))
            .await
            .is_err()
        {
            tracing::warn!("the live fan-out did not bind within 2 s: other replicas' changes may be missed until it does");
        }
    }

    /// The fan-out's side of the bus.
    pub fn fanout(&self) -> FanoutHandle {
        FanoutHandle { bus: self.clone() }
    }

    /// Topics with at least one subscriber.
    pub fn topics(&self) -> usize {
        self.topics.len()
    }
}

/// What the fan-out task uses to follow and announce its bindings.
pub struct FanoutHandle {
    bus: LiveBus,
}

impl FanoutHandle {
    pub fn wanted(&self) -> bool {
        self.bus.wanted()
    }

    /// Resolves when someone may have started listening.
    pub async fn woken(&self) {
        self.bus.fanout_wanted.notified().await
    }

    pub fn set(&self, state: Fanout) {
        self.bus.fanout.send_replace(state);
    }

    pub fn state(&self) -> Fanout {
        *self.bus.fanout.borrow()
    }

    /// Marks the fan-out as unbinding, before its bindings go, unless someone listens: then it
    /// stays bound and this answers false. Under the state's lock, so a subscriber that looked
    /// before saw `Bound` with its topic already in the map (and it is seen here), and one
    /// that looks after waits for the next binding. The fan-out sets `Unbound` once its
    /// bindings are gone.
    pub fn unbind_unless_wanted(&self) -> bool {
        let bus = &self.bus;
        bus.fanout.send_if_modified(|state| {
            if bus.wanted() {
                return false;
            }
            *state = Fanout::Unbinding;
            true
        })
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

    #[tokio::test]
    async fn a_subscriber_waits_for_the_fanouts_binding_and_wakes_it() {
        use futures_util::FutureExt;
        let bus = LiveBus::default();
        // no fan-out runs: nothing to wait for
        assert!(bus.listening().now_or_never().is_some());
        let fanout = bus.fanout();
        fanout.set(Fanout::Unbound);
        assert!(!fanout.wanted(), "nobody listens yet");
        let _site = bus.subscribe(Topic::Site(Uuid::new_v4()));
        assert!(!fanout.wanted(), "a site's load is polled, not fanned out");
        let _session = bus.subscribe(Topic::Session(Uuid::new_v4()));
        assert!(fanout.wanted());
        let waiting = tokio::spawn({
            let bus = bus.clone();
            async move { bus.listening().await }
        });
        // the subscriber woke the fan-out and waits for it
        assert!(
            tokio::time::timeout(Duration::from_secs(1), fanout.woken())
                .await
                .is_ok(),
            "the fan-out was not woken"
        );
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "went on before the binding");
        fanout.set(Fanout::Bound);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), waiting)
                .await
                .is_ok(),
            "still waiting once bound"
        );
        assert!(bus.listening().now_or_never().is_some());
    }

    #[test]
    fn the_fanout_unbinds_only_when_nobody_listens() {
        let bus = LiveBus::default();
        let fanout = bus.fanout();
        fanout.set(Fanout::Bound);
        let charger = bus.subscribe(Topic::Charger("CP-1".into()));
        assert!(!fanout.unbind_unless_wanted(), "unbound under a subscriber");
        assert_eq!(fanout.state(), Fanout::Bound);
        drop(charger);
        bus.want_all(true);
        assert!(
            !fanout.unbind_unless_wanted(),
            "unbound under load management"
        );
        bus.want_all(false);
        assert!(fanout.unbind_unless_wanted());
        assert_eq!(fanout.state(), Fanout::Unbinding);
    }
}
