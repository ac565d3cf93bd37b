//! Waking the outbox relay after a commit, from outside the committing transaction (ADR 016,
//! fifth amendment).
//!
//! The outbox's insert trigger sends a NOTIFY with every transaction that writes events, and
//! PostgreSQL (15) serializes the commits of notifying transactions: each takes one lock for the
//! whole cluster in its pre-commit and holds it until its commit record is flushed. Every
//! transaction that wrote an event then committed, and flushed the WAL, one after another,
//! without group commit: at 500 session ends/s the writers' commits waited on that lock for
//! 0.57 backends on average, beside 0.54 in the flush itself.
//!
//! The writers' own pools (transactions and chargers: the durable path's batches) therefore
//! open their connections with `chargegrid.outbox_notify = off`, which the trigger honours, and
//! call [`OutboxWake::committed`] once a batch has committed:
//! - the relay of this process wakes at once when it is the publishing one (the common case of
//!   one replica, and the leader among several): no round trip at all;
//! - otherwise a notifier task sends one `pg_notify` in a transaction of its own, which holds the
//!   lock only for a commit that waits for no flush (a transaction that only notifies writes no
//!   WAL before its commit record; `synchronous_commit` is off for it besides). Wakes that arrive
//!   while it is sending are covered by the next one it sends.
//!
//! A lost wake costs latency, never an event: the relay also reads every
//! `events.relay_poll_interval_ms` and at its lag tick. Commits after the process's relay and
//! notifier stopped (shutdown) wait for another replica's poll.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The channel the outbox trigger and the notifier notify, and the relay listens on.
pub const NOTIFY_CHANNEL: &str = "chargegrid_outbox";

/// The connection setting with which a transaction's outbox inserts send no NOTIFY (the
/// committer wakes the relay itself).
pub const NOTIFY_SETTING: &str = "chargegrid.outbox_notify";

/// How long the notifier waits after a failed `pg_notify` before it tries again.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// The wake-up of the outbox relay that committers share in one process; cheap to clone.
#[derive(Clone, Default)]
pub struct OutboxWake {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The relay of this process, when it publishes.
    local: Notify,
    /// Whether the relay of this process holds the publishing lock.
    leading: AtomicBool,
    /// The notifier, when another process's relay publishes.
    remote: Notify,
    /// Commits told so far.
    told: AtomicU64,
}

impl OutboxWake {
    pub fn new() -> Self {
        Self::default()
    }

    /// A transaction that may have written events committed (on a connection whose inserts
    /// do not notify): the publishing relay reads the outbox.
    pub fn committed(&self) {
        self.inner.told.fetch_add(1, Ordering::Relaxed);
        if self.is_leading() {
            self.inner.local.notify_one();
        } else {
            self.inner.remote.notify_one();
        }
    }

    /// How many commits were told (the relay's wake-ups asked for) since the process started.
    pub fn commits_told(&self) -> u64 {
        self.inner.told.load(Ordering::Relaxed)
    }

    /// Whether this process's relay holds the publishing lock.
    pub fn is_leading(&self) -> bool {
        self.inner.leading.load(Ordering::Acquire)
    }

    /// The relay of this process took (true) or lost (false) the publishing lock.
    pub(crate) fn set_leading(&self, leading: bool) {
        self.inner.leading.store(leading, Ordering::Release);
        if leading {
            // a commit that told the notifier just before is read by this relay's first round
            // anyway; one that comes next wakes it here
            return;
        }
        // commits told to the local relay just before it lost the lock go to the new one
        self.inner.remote.notify_one();
    }

    /// Resolves at the next commit told to this process's relay (one for every commit told
    /// since the last time: wakes that arrive while the relay reads are one more read).
    pub(crate) async fn local_commit(&self) {
        self.inner.local.notified().await
    }

    /// Lets the commits of the next `linger` join the one that woke the leading relay: waits,
    /// then takes the wake-up they left, so that one read covers them all rather than sending
    /// the relay round again at once for what it is about to read.
    pub(crate) async fn settle(&self, linger: Duration) {
        tokio::time::sleep(linger).await;
        if self.is_leading() {
            let _ = futures_util::FutureExt::now_or_never(self.local_commit());
        }
    }

    /// Starts the task that tells the publishing relay of another process about this process's
    /// commits, until `stop` (cancel it after this process's relay has stopped: the commits told
    /// to it until then, and its giving up the lock, are sent first).
    pub fn spawn_notifier(&self, db: PgPool, stop: CancellationToken) -> JoinHandle<()> {
        let wake = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = wake.inner.remote.notified() => {}
                    _ = stop.cancelled() => return,
                }
                if wake.is_leading() {
                    // the lock came here meanwhile: the local relay reads what was committed
                    wake.inner.local.notify_one();
                    continue;
                }
                // a notification needs no durability: its commit does not wait for the flush
                let sent = sqlx::query(
                    "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')",
                )
                .bind(NOTIFY_CHANNEL)
                .execute(&db)
                .await;
                if let Err(e) = sent {
                    tracing::debug!(error = %e, "outbox relay not notified; the poll reads it");
                    wake.inner.remote.notify_one();
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_PAUSE) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_during_the_linger_share_the_read_of_the_one_that_woke_the_relay() {
        let wake = OutboxWake::new();
        wake.set_leading(true);
        wake.committed();
        wake.local_commit().await;
        let settling = tokio::spawn({
            let wake = wake.clone();
            async move { wake.settle(Duration::from_millis(200)).await }
        });
        // the settling task starts its linger (one thread: it runs while this one yields)
        tokio::task::yield_now().await;
        wake.committed();
        wake.committed();
        assert!(settling.await.is_ok(), "the settling task failed");
        let again = futures_util::FutureExt::now_or_never(wake.local_commit());
        assert!(
            again.is_none(),
            "the commits of the linger would send the relay round again"
        );
        // a commit after it wakes the relay as before
        wake.committed();
        assert!(futures_util::FutureExt::now_or_never(wake.local_commit()).is_some());
    }

    #[tokio::test]
    async fn a_commit_wakes_the_local_relay_only_while_it_leads() {
        let wake = OutboxWake::new();
        wake.committed();
        // not leading: the commit went to the notifier, not to the local relay
        let woken = tokio::time::timeout(Duration::ZERO, wake.local_commit()).await;
        assert!(woken.is_err(), "a standby relay was woken");
        wake.set_leading(true);
        wake.committed();
        let woken = tokio::time::timeout(Duration::from_secs(5), wake.local_commit()).await;
        assert!(woken.is_ok(), "the leading relay was not woken");
    }
}
