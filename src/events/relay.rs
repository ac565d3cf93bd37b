//! The outbox relay, run by every process that writes events; one publishes at a time (a
//! PostgreSQL session advisory lock held on a connection of its own), the others stand by. It
//! takes the oldest unpublished events in id order, publishes them to `chargegrid.events` with
//! publisher confirms and persistent delivery, and marks a batch published (deletes its rows, or
//! sets `published_at` when published events are kept: ADR 016, fourth amendment) only once every
//! message of it is confirmed, so the events of one aggregate leave in order. Reading does not
//! wait for confirms (ADR 016, second amendment): a reader publishes at commits (2 ms after the
//! one that woke it, so that the commits of those 2 ms share its read: seventh amendment) while
//! a marker awaits the confirms of the batches handed to it (up to `IN_FLIGHT` wait for it) and
//! marks them in the order they were published, at most every 20 ms. The reader reads
//! after a cursor rather than the whole pending prefix (third amendment, `outbox_cursor`). It
//! survives RabbitMQ and Postgres outages: nothing is marked published that was not confirmed,
//! and what was published but not marked is published again (delivery is at least once); a failed
//! round (a nack included) waits 0.1 s, doubling to 10 s, before the next (eighth amendment).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::Channel;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use super::outbox_cursor::{self, Check, Cursor, Horizon};
use super::publish::event_properties;

/// The advisory lock of the publishing relay ("cgrelay" in ASCII); one database, one outbox.
const RELAY_LOCK: i64 = 0x0063_6772_656c_6179;
/// Batches published and not yet confirmed and marked, at most.
const IN_FLIGHT: usize = 64;
/// Confirmed events are marked at most this often (their batches gather until then).
const MARK_EVERY: Duration = Duration::from_millis(20);
/// How long a relay woken by a commit waits for the commits that follow before it reads.
const READ_LINGER: Duration = Duration::from_millis(2);
use super::topology::Topology;
use crate::metrics::Metrics;
use crate::store::amqp::Amqp;

use super::wake::{OutboxWake, NOTIFY_CHANNEL};
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A round that failed waits before the next: from `FIRST_SETBACK`, doubling up to
/// `MAX_BACKOFF` while failures follow each other, back to the first after `QUIET` without one.
const FIRST_SETBACK: Duration = Duration::from_millis(100);
const QUIET: Duration = Duration::from_secs(30);
/// How long a relay waits after its notification listener failed before it reads again.
const LISTENER_PAUSE: Duration = Duration::from_millis(250);

/// What the relay needs.
#[derive(Clone)]
pub struct Relay {
    pub db: PgPool,
    pub amqp: Amqp,
    pub metrics: Arc<Metrics>,
    pub batch_size: i64,
    pub poll_interval: Duration,
    pub topology: Topology,
    /// Confirmed events are marked published and kept (`events.outbox_retention_hours` > 0,
    /// the retention job deletes them later) rather than deleted at once.
    pub keep_published: bool,
    /// The wake-up this process's committers share: the relay reads at their commits while it
    /// publishes (`wake`).
    pub wake: OutboxWake,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ refused an event (nack)")]
    Nacked,
    #[error("RabbitMQ is not connected")]
    NotConnected,
    /// Marking confirmed events failed, or the marks' connection could not be opened: the lock's
    /// own connection is fine and is kept (what was not marked goes out again), so a database
    /// short of connections does not hand the outbox to another replica that would republish
    /// everything in flight.
    #[error("marking published events: {0}")]
    Mark(sqlx::Error),
}

impl RelayError {
    /// The `reason` label of `chargegrid_outbox_relay_failures_total`.
    fn reason(&self) -> &'static str {
        match self {
            RelayError::Database(_) => "database",
            RelayError::Amqp(_) | RelayError::NotConnected => "broker",
            RelayError::Nacked => "nack",
            RelayError::Mark(_) => "mark",
        }
    }
}

/// How long a failed round waits before the next. Without it a failure that repeats at once
/// (RabbitMQ refusing every publish of a full queue with `reject-publish`, a database that
/// refuses connections) made the relay a loop of reads and publishes as fast as it could fail.
struct Setback {
    next: Duration,
    last: Option<Instant>,
}

impl Setback {
    fn new() -> Self {
        Self {
            next: FIRST_SETBACK,
            last: None,
        }
    }

    /// The wait after a failure now: doubled since the last one, unless it was `QUIET` ago.
    fn after_failure(&mut self) -> Duration {
        if self.last.is_some_and(|at| at.elapsed() >= QUIET) {
            self.next = FIRST_SETBACK;
        }
        let wait = self.next;
        self.next = (wait * 2).min(MAX_BACKOFF);
        self.last = Some(Instant::now());
        wait
    }
}

/// Waits `wait`, or until `shutdown`.
async fn pause(wait: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// How the reader finds what to publish next (`outbox_cursor`).
enum Position {
    /// The oldest pending events not on their way, the whole pending prefix at each read; with
    /// the horizon after which it may move to a cursor (none: it sweeps to the end).
    Sweep(Option<Horizon>),
    /// What follows the cursor, and the gaps behind it.
    Cursor(Cursor),
}

/// A published batch awaiting its confirms.
struct InFlight {
    ids: Vec<i64>,
    types: Vec<String>,
    confirms: Vec<PublisherConfirm>,
}

/// The relay's own connection, and whether it holds the publishing lock.
struct Leader {
    conn: PgConnection,
    /// The marks' own connection (`mark`), opened before the leader publishes anything: a round
    /// that could not mark what it published would publish it again. Dropped after a failed
    /// mark, and opened anew by the next round.
    marks: Option<PgConnection>,
    leading: bool,
}

#[derive(sqlx::FromRow)]
pub struct Pending {
    pub id: i64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub routing_key: String,
    pub body: String,
}

/// The publishing relay's own connection, for its reads and their bookkeeping.
///
/// The pending events are read in id order from the partial index of unpublished ids. A
/// published event leaves its entry in that index until vacuum; a plain index scan marks such
/// entries dead as it passes (and skips them from then on), a bitmap scan does not. With
/// statistics that took the backlog for small, the planner chose bitmap scans, which read 4,400
/// dead entries and 300 pages to find nothing (8 ms a read under load).
///
/// The reads are prepared once and run with one generic plan (ADR 024, second amendment):
/// planned at each run, they cost more to plan than to execute (2.2 s of planning against 0.5 s
/// executing in a 31 s run at 500 session ends/s). A generic plan is made from the statistics of
/// its moment, and one made while the outbox was small could scan the whole table once it had
/// grown (a cached plan did that once, and the relay fell to ~700 events/s), so this connection
/// plans no sequential scans either: every read follows an index in id order, whatever the
/// table's size. It runs nothing but the relay's statements, so the settings touch nothing else.
pub async fn reader_connection(db: &PgPool) -> Result<PgConnection, sqlx::Error> {
    let mut conn = PgConnection::connect_with(&db.connect_options()).await?;
    for setting in [
        "SET enable_bitmapscan = off",
        "SET enable_seqscan = off",
        "SET plan_cache_mode = force_generic_plan",
    ] {
        sqlx::query(setting).execute(&mut conn).await?;
    }
    Ok(conn)
}

/// The oldest `limit` pending events in id order that are not on their way (`sent`): a prefix
/// of what is owed, so every older event of an aggregate was published before them.
pub async fn read_sweep(
    conn: &mut PgConnection,
    limit: i64,
    sent: &[i64],
) -> Result<Vec<Pending>, sqlx::Error> {
    sqlx::query_as::<_, Pending>(
        "SELECT id, event_id, event_type, routing_key, body FROM outbox \
         WHERE published_at IS NULL AND id <> ALL($2) ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .bind(sent)
    .fetch_all(conn)
    .await
}

/// The `gaps` that have committed since, and up to `limit` pending events after the cursor
/// (`at`), in id order.
pub async fn read_after(
    conn: &mut PgConnection,
    gaps: &[i64],
    at: i64,
    limit: i64,
) -> Result<Vec<Pending>, sqlx::Error> {
    sqlx::query_as::<_, Pending>(
        "SELECT id, event_id, event_type, routing_key, body FROM outbox \
         WHERE published_at IS NULL AND id = ANY($1) \
         UNION ALL \
         (SELECT id, event_id, event_type, routing_key, body FROM outbox \
          WHERE published_at IS NULL AND id > $2 ORDER BY id LIMIT $3) \
         ORDER BY id",
    )
    .bind(gaps)
    .bind(at)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Publishes `rows` on `channel`, in their order, and returns their confirms in the same order.
///
/// lapin's `basic_publish` registers the confirm and queues the message's frames when it is
/// first polled, and then waits until its I/O thread has written them. Awaited one after the
/// other, every event cost a hand-over to that thread and back (a wake-up of each), and on a
/// busy machine the relay spent its time waiting to be scheduled: at 500 session ends/s
/// (~3,000 events/s) on 2 vCPUs, events waited 1-3 s to be confirmed and the outbox held up to
/// 20,000 of them. So each publish is polled once, in order, which queues the whole batch in
/// order, and then the writes are awaited together.
pub async fn publish_in_order(
    channel: &Channel,
    exchange: &str,
    rows: &[Pending],
) -> Result<Vec<PublisherConfirm>, lapin::Error> {
    type Publish<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = lapin::Result<PublisherConfirm>> + Send + 'a>,
    >;
    enum Queued<'a> {
        Written(PublisherConfirm),
        Writing(Publish<'a>),
    }
    let mut queued: Vec<Queued<'_>> = Vec::with_capacity(rows.len());
    for row in rows {
        let properties = event_properties(&row.event_id.to_string(), &row.event_type, None);
        let mut publish: Publish<'_> = Box::pin(channel.basic_publish(
            exchange,
            &row.routing_key,
            BasicPublishOptions::default(),
            row.body.as_bytes(),
            properties,
        ));
        // the first poll queues the frames (in this loop's order); only the write is awaited
        let first = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(publish.as_mut(), cx))
        })
        .await;
        queued.push(match first {
            std::task::Poll::Ready(confirm) => Queued::Written(confirm?),
            std::task::Poll::Pending => Queued::Writing(publish),
        });
    }
    let mut confirms = Vec::with_capacity(queued.len());
    for publish in queued {
        confirms.push(match publish {
            Queued::Written(confirm) => confirm,
            Queued::Writing(publish) => publish.await?,
        });
    }
    Ok(confirms)
}

/// What wakes a leading relay to read again: a commit's notification, the poll interval, or
/// shutdown; the outbox lag is recorded on its own tick in between.
struct Wake<'a> {
    listener: Option<&'a mut PgListener>,
    poll: Duration,
    lag_tick: &'a mut tokio::time::Interval,
    shutdown: &'a CancellationToken,
}

impl Wake<'_> {
    /// Waits for the next reason to read; true when it is shutdown.
    async fn wait(&mut self, relay: &Relay) -> bool {
        let listener = &mut self.listener;
        let notified = async {
            match listener.as_mut() {
                Some(l) => {
                    if let Err(e) = l.try_recv().await {
                        // a listener that fails at once (its connection refused, the pool
                        // closed) must not turn this wait into a loop of reads
                        tracing::debug!(error = %e, "outbox listener failed; reading after a pause");
                        tokio::time::sleep(LISTENER_PAUSE).await;
                    }
                    // one look covers every commit notified so far: a burst of commits must
                    // not become a burst of reads
                    while l.next_buffered().is_some() {}
                }
                None => std::future::pending::<()>().await,
            }
        };
        // a standby leaves this process's commits to the notifier: only the publishing relay reads
        // at them
        let committed = async {
            if relay.wake.is_leading() {
                relay.wake.local_commit().await
            } else {
                std::future::pending::<()>().await
            }
        };
        let woken = tokio::select! {
            _ = notified => true,
            _ = committed => true,
            _ = tokio::time::sleep(self.poll) => false,
            _ = self.lag_tick.tick() => {
                relay.record_lag().await;
                false
            }
            _ = self.shutdown.cancelled() => return true,
        };
        if woken && relay.wake.is_leading() {
            // A read per commit was ~2 reads a session at 200 startSession/s: the commits of the
            // next moment share this one's read. Their wake-ups are taken here, so they do not
            // send the reader round again for what it is about to read.
            relay.wake.settle(READ_LINGER).await;
            if let Some(l) = self.listener.as_mut() {
                while l.next_buffered().is_some() {}
            }
        }
        self.shutdown.is_cancelled()
    }
}

impl Relay {
    /// Relays until `shutdown`, then flushes what is left (bounded by `flush_within`).
    pub async fn run(self, shutdown: CancellationToken, flush_within: Duration) {
        let mut backoff = Duration::from_millis(100);
        let mut setback = Setback::new();
        // kept across reconnections to RabbitMQ: the publishing lock goes only with it
        let mut leader: Option<Leader> = None;
        loop {
            if shutdown.is_cancelled() {
                self.flush(leader.take(), flush_within).await;
                // the lock went with the flush's connection: later commits tell the next relay
                self.wake.set_leading(false);
                return;
            }
            let channel = match self.open_channel().await {
                Ok(channel) => channel,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay waiting for RabbitMQ");
                    self.metrics
                        .outbox_relay_failures_total
                        .with_label_values(&["broker"])
                        .inc();
                    pause(backoff, &shutdown).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            let mut listener = PgListener::connect_with(&self.db).await.ok();
            if let Some(l) = listener.as_mut() {
                if l.listen(NOTIFY_CHANNEL).await.is_err() {
                    listener = None;
                }
            }
            let mut lag_tick = tokio::time::interval(Duration::from_secs(5));
            let mut wake = Wake {
                listener: listener.as_mut(),
                poll: self.poll_interval,
                lag_tick: &mut lag_tick,
                shutdown: &shutdown,
            };
            loop {
                if shutdown.is_cancelled() {
                    break;
                }
                // the leader follows the outbox in there until shutdown or a failure; a standby
                // comes back at once and waits here before it tries the lock again
                if let Err(e) = self
                    .publish_as_leader(&channel, &mut leader, Some(&mut wake))
                    .await
                {
                    let wait = setback.after_failure();
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis(), "outbox relay batch failed; reconnecting");
                    self.metrics
                        .outbox_relay_failures_total
                        .with_label_values(&[e.reason()])
                        .inc();
                    // a failed read on the lock's connection takes the lock with it; a failed
                    // mark (on the marks' connection, opened anew next round) or a broker error
                    // keeps it, and what was published but not marked goes out again
                    match e {
                        RelayError::Database(_) => leader = None,
                        RelayError::Mark(_) => {
                            if let Some(held) = leader.as_mut() {
                                held.marks = None;
                            }
                        }
                        _ => {}
                    }
                    // until a round publishes again (RabbitMQ back, or the lock taken anew,
                    // perhaps by another process), this process's commits notify whoever does;
                    // at once, not after the wait: a lost lock may already have a new holder
                    self.wake.set_leading(false);
                    // the database refused a connection or failed a statement, RabbitMQ refused
                    // an event: give it a moment rather than a loop of attempts
                    pause(wait, &shutdown).await;
                    break;
                }
                wake.wait(&self).await;
            }
        }
    }

    async fn open_channel(&self) -> Result<Channel, RelayError> {
        let channel = self
            .amqp
            .channel_when_ready(Duration::from_secs(2))
            .await
            .map_err(|_| RelayError::NotConnected)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.topology.declare_exchanges(&channel).await?;
        Ok(channel)
    }

    /// Publishes everything pending, for shutdown. When another process's relay holds the
    /// publishing lock the outbox is in its hands and this returns at once.
    async fn flush(&self, leader: Option<Leader>, within: Duration) {
        let Ok(channel) = self.open_channel().await else {
            tracing::warn!("outbox not flushed: RabbitMQ unavailable (events stay in the outbox)");
            return;
        };
        let mut leader = leader;
        match tokio::time::timeout(within, self.publish_as_leader(&channel, &mut leader, None))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "outbox flush interrupted (events stay in the outbox)")
            }
            Err(_) => tracing::warn!("outbox flush timed out (events stay in the outbox)"),
        }
    }

    /// Publishes pending events when this process holds (or takes) the publishing lock; returns
    /// how many it published (0 at once when another process's relay is publishing: one relay
    /// works at a time, the others stand by and take over when its connection ends). With
    /// `follow` the leader keeps following the outbox until shutdown; without, it returns once
    /// it has caught up and every event it published is confirmed and marked.
    async fn publish_as_leader(
        &self,
        channel: &Channel,
        leader: &mut Option<Leader>,
        follow: Option<&mut Wake<'_>>,
    ) -> Result<usize, RelayError> {
        if leader.is_none() {
            let conn = reader_connection(&self.db).await?;
            *leader = Some(Leader {
                conn,
                marks: None,
                leading: false,
            });
        }
        let Some(held) = leader.as_mut() else {
            return Ok(0);
        };
        if !held.leading {
            // Relays competing for rows with SKIP LOCKED each stepped over the rows the others
            // held (a reconnect storm's 20,000 events made that the database's main work). One
            // holder of this lock publishes; if it dies, the lock goes with its connection.
            held.leading = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(RELAY_LOCK)
                .fetch_one(&mut held.conn)
                .await?;
        }
        if !held.leading {
            return Ok(0);
        }
        let marks = match held.marks.as_mut() {
            Some(marks) => marks,
            None => {
                // bounded like a pool's acquire: a database that drops packets does not hold
                // the round
                let connect = tokio::time::timeout(
                    self.db.options().get_acquire_timeout(),
                    reader_connection(&self.db),
                );
                let marks = connect
                    .await
                    .map_err(|_| RelayError::Mark(sqlx::Error::PoolTimedOut))?
                    .map_err(RelayError::Mark)?;
                held.marks.insert(marks)
            }
        };
        if !self.wake.is_leading() {
            self.wake.set_leading(true);
        }
        self.publish_pending(channel, &mut held.conn, marks, follow)
            .await
    }

    /// Reads and publishes the pending events in id order as they are committed, while a
    /// second task of the same round awaits their confirms and marks them published in the
    /// order they were published (ADR 016, second amendment): a commit's events go out on its
    /// notification, not after the confirms of the batch before. Up to `IN_FLIGHT` batches wait
    /// for the marker (besides the up to `IN_FLIGHT` it has taken); the reader waits for room
    /// beyond that. A read returns, in id order, the pending events after the reader's cursor
    /// and those behind it that were missing when it passed (a round sweeps the whole pending
    /// prefix until it knows where to put the cursor; `outbox_cursor`), so a transaction that
    /// commits after a newer one still leaves before what its aggregate commits next. The caller
    /// holds the publishing lock on `conn`.
    async fn publish_pending(
        &self,
        channel: &Channel,
        conn: &mut PgConnection,
        marks: &mut PgConnection,
        mut follow: Option<&mut Wake<'_>>,
    ) -> Result<usize, RelayError> {
        let (to_confirm, confirming) = tokio::sync::mpsc::channel::<InFlight>(IN_FLIGHT);
        let (marked_tx, mut marked) = tokio::sync::mpsc::unbounded_channel::<Vec<i64>>();
        let exchange = self.topology.events_exchange();
        let following = follow.is_some();
        let metrics = self.metrics.clone();
        let reads = metrics
            .outbox_relay_statements_total
            .with_label_values(&["read"]);
        let reader = async move {
            // published and not yet marked: a sweep must not return them again
            let mut sent: HashSet<i64> = HashSet::new();
            // A round begins sweeping; one that follows the outbox takes a horizon and moves to
            // a cursor once the transactions that were writing then have ended (ADR 016, third
            // amendment). A flush only sweeps.
            let mut position = Position::Sweep(None);
            let mut horizon_due = following.then(Instant::now);
            let batch_size = usize::try_from(self.batch_size).unwrap_or(usize::MAX);
            loop {
                while let Ok(ids) = marked.try_recv() {
                    for id in ids {
                        sent.remove(&id);
                    }
                }
                if let Position::Sweep(horizon @ None) = &mut position {
                    if horizon_due.is_some_and(|due| due <= Instant::now()) {
                        horizon_due = None;
                        match Horizon::take(&mut *conn).await {
                            Ok(Some(taken)) => *horizon = Some(taken),
                            Ok(None) => {
                                tracing::warn!(
                                    "outbox relay: the outbox's sequence does not hand ids out in \
                                     order (a cache above 1?); sweeping"
                                );
                                horizon_due = Some(Instant::now() + outbox_cursor::HORIZON_RENEWAL);
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "outbox relay: no horizon; sweeping");
                                horizon_due = Some(Instant::now() + outbox_cursor::HORIZON_RENEWAL);
                            }
                        }
                    }
                }
                // the bookkeeping's own failures only send the reader back to sweeping; a failed
                // read ends the round
                let mut sweep_again = false;
                let mut to_cursor = None;
                let (rows, full) = match &mut position {
                    Position::Sweep(horizon) => {
                        // the writers are looked at before the read, so a read after they
                        // ended sees everything they committed
                        let ended = match horizon.as_mut() {
                            Some(h) => h.writers.gone(&mut *conn).await.unwrap_or_else(|e| {
                                tracing::debug!(error = %e, "outbox relay: writers not looked at");
                                sweep_again = true;
                                false
                            }),
                            None => false,
                        };
                        // The oldest pending events in id order that are not on their way: a
                        // prefix of what is owed, so every older event of an aggregate was
                        // published before them on this one channel.
                        let on_their_way: Vec<i64> = sent.iter().copied().collect();
                        let rows = read_sweep(&mut *conn, self.batch_size, &on_their_way).await?;
                        reads.inc();
                        let full = rows.len() >= batch_size;
                        if let Some(h) = horizon.as_mut() {
                            h.read(rows.iter().map(|r| r.id));
                            if ended && !full {
                                // everything pending was read after the writers ended
                                match h.cursor() {
                                    Some(cursor) => to_cursor = Some(cursor),
                                    None => sweep_again = true,
                                }
                            } else if (!ended
                                && h.taken.elapsed() >= outbox_cursor::HORIZON_RENEWAL)
                                || h.crowded()
                            {
                                // a long transaction holds this horizon, or a long catch-up
                                // filled it: a newer one keeps what is remembered small
                                sweep_again = true;
                            }
                        }
                        (rows, full)
                    }
                    Position::Cursor(cursor) => {
                        let check = cursor.before_read(&mut *conn).await.unwrap_or_else(|e| {
                            tracing::debug!(error = %e, "outbox relay: cursor not checked");
                            Check::Sweep
                        });
                        if check == Check::Sweep {
                            sweep_again = true;
                            tracing::info!(
                                gaps = cursor.gap_count(),
                                "outbox relay: the outbox's sequence no longer fits the cursor; \
                                 sweeping"
                            );
                            (Vec::new(), true)
                        } else {
                            // the gaps that have committed since, and what follows the cursor,
                            // in id order
                            let rows = read_after(
                                &mut *conn,
                                &cursor.gaps(),
                                cursor.at(),
                                self.batch_size,
                            )
                            .await?;
                            reads.inc();
                            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                            let taken = cursor.take(&ids);
                            if check == Check::ReadThenSettle {
                                cursor.settle();
                            }
                            metrics
                                .outbox_relay_gaps
                                .set(i64::try_from(cursor.gap_count()).unwrap_or(i64::MAX));
                            if cursor.overflowing() {
                                tracing::warn!(
                                    gaps = cursor.gap_count(),
                                    "outbox relay: too many ids missing behind its cursor; \
                                     sweeping"
                                );
                                sweep_again = true;
                            }
                            (rows, taken.after >= batch_size)
                        }
                    }
                };
                if sweep_again {
                    position = Position::Sweep(None);
                    horizon_due = following.then(Instant::now);
                    metrics.outbox_relay_cursor.set(0);
                    metrics.outbox_relay_gaps.set(0);
                } else if let Some(cursor) = to_cursor {
                    position = Position::Cursor(cursor);
                    metrics.outbox_relay_cursor.set(1);
                }
                if !rows.is_empty() {
                    let confirms = publish_in_order(channel, &exchange, &rows).await?;
                    let mut batch = InFlight {
                        ids: Vec::with_capacity(rows.len()),
                        types: Vec::with_capacity(rows.len()),
                        confirms,
                    };
                    for row in rows {
                        sent.insert(row.id);
                        batch.ids.push(row.id);
                        batch.types.push(row.event_type);
                    }
                    // the marker has ended only if it failed, and then so has this round
                    if to_confirm.send(batch).await.is_err() {
                        return Ok(());
                    }
                }
                if full {
                    continue;
                }
                match follow.as_mut() {
                    // caught up: the marker finishes what is in flight
                    None => return Ok::<(), RelayError>(()),
                    Some(wake) => {
                        if wake.wait(self).await {
                            return Ok(());
                        }
                    }
                }
            }
        };
        let round = tokio::try_join!(reader, self.mark(marks, confirming, marked_tx));
        // the next round begins sweeping
        self.metrics.outbox_relay_cursor.set(0);
        self.metrics.outbox_relay_gaps.set(0);
        let ((), published) = round?;
        Ok(published)
    }

    /// Awaits the confirms of each published batch, in the order they were published, and
    /// marks them published (the batches confirmed by then in one statement); returns how many
    /// events it marked. A nack ends the round: nothing unconfirmed is marked.
    async fn mark(
        &self,
        conn: &mut PgConnection,
        mut confirming: tokio::sync::mpsc::Receiver<InFlight>,
        marked: tokio::sync::mpsc::UnboundedSender<Vec<i64>>,
    ) -> Result<usize, RelayError> {
        let mut published = 0;
        let marks = self
            .metrics
            .outbox_relay_statements_total
            .with_label_values(&["mark"]);
        // when the last mark ran: the next one gathers what is confirmed until MARK_EVERY later
        let mut last_mark: Option<Instant> = None;
        let mut open = true;
        while open {
            let Some(first) = confirming.recv().await else {
                break;
            };
            let mut ids = Vec::new();
            let mut types = Vec::new();
            let mut next = Some(first);
            let mut batches = 0;
            let due = last_mark.map(|at| at + MARK_EVERY);
            // a nack or a failed confirm ends the round, once the batches confirmed before it
            // are marked (they would otherwise go out again)
            let mut failed: Option<RelayError> = None;
            'gather: loop {
                while let Some(batch) = next.take() {
                    batches += 1;
                    for confirm in batch.confirms {
                        match confirm.await {
                            Ok(Confirmation::Nack(_)) => failed = Some(RelayError::Nacked),
                            Ok(_) => continue,
                            Err(e) => failed = Some(e.into()),
                        }
                        break 'gather;
                    }
                    ids.extend(batch.ids);
                    types.extend(batch.types);
                    // marks wait for no more than a few batches' confirms
                    if batches < IN_FLIGHT {
                        next = confirming.try_recv().ok();
                    }
                }
                // Each mark is a commit: one per published batch was ~1.4 commits a session
                // at 200 startSession/s. Until the mark is due, the confirmed batches that
                // arrive meanwhile join it (a crash republishes at most that much more).
                let Some(due) = due.filter(|due| *due > Instant::now() && batches < IN_FLIGHT)
                else {
                    break;
                };
                tokio::select! {
                    batch = confirming.recv() => match batch {
                        Some(batch) => next = Some(batch),
                        None => {
                            open = false;
                            break;
                        }
                    },
                    _ = tokio::time::sleep_until(due.into()) => break,
                }
            }
            if ids.is_empty() {
                match failed {
                    Some(failed) => return Err(failed),
                    None => continue,
                }
            }
            // Deleting a confirmed event writes no new row version: a mark wrote the whole event
            // again (its body included) with two index entries, 37 us an event, the largest
            // statement after the status batch at 500 session ends/s (ADR 016, fourth
            // amendment).
            let statement = if self.keep_published {
                "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)"
            } else {
                "DELETE FROM outbox WHERE id = ANY($1)"
            };
            // on the marks' own connection, planned as the reader's: prepared once, with one
            // generic plan that follows the primary key (an unnamed statement on the pool spent
            // more planning than deleting: 0.52 s against 0.34 s in a 30 s run at 100 session
            // ends/s), and apart from the leader's lock, which a failed mark leaves alone
            sqlx::query(statement)
                .bind(&ids)
                .execute(&mut *conn)
                .await
                .map_err(RelayError::Mark)?;
            marks.inc();
            published += ids.len();
            for event_type in &types {
                self.metrics
                    .outbox_published_total
                    .with_label_values(&[event_type.as_str()])
                    .inc();
            }
            last_mark = Some(Instant::now());
            // the reader may drop it first, once it has caught up or failed
            let _ = marked.send(ids);
            if let Some(failed) = failed {
                return Err(failed);
            }
        }
        Ok(published)
    }

    async fn record_lag(&self) {
        // the oldest pending event is the first in id order (the pending index), no scan
        let lag: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM now() - created_at)::float8 FROM outbox \
             WHERE published_at IS NULL ORDER BY id LIMIT 1",
        )
        .fetch_one(&self.db)
        .await
        .ok()
        .flatten();
        self.metrics
            .outbox_lag_seconds
            .set(lag.unwrap_or(0.0) as i64);
    }
}
