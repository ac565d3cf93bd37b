//! The durable path of transaction messages (1.6 StartTransaction, MeterValues and
//! StopTransaction, 2.0.1 TransactionEvent and MeterValues): every write a charger's
//! transaction message makes goes through batching writers that share one commit per batch
//! (group commit). A message is answered only after the batch holding it committed, so
//! store-before-ack holds while PostgreSQL pays one commit for many messages.
//!
//! Two kinds of item share a batch:
//! - `MeterWrite` (most of the traffic) runs set-based: the 1.6 transaction look-ups, every
//!   sample of every message, the sessions' new readings and their SESSION_UPDATED events are
//!   one statement each, whatever the batch size.
//! - A job (Start/Stop/TransactionEvent, whose logic branches on what is stored) runs its own
//!   statements inside the batch's transaction.
//!
//! Order: items are sharded by charger (one shard's batches run one at a time), and a charger
//! sends its next call only after this one was answered, so a charger's messages are applied in
//! the order it sent them. A session appearing twice in one batch takes its merged reading once.
//!
//! Failure: when anything in a batch fails (a job's error, a set-based statement), the batch is
//! rolled back and every item runs again alone, in a transaction of its own, so only the
//! culprit fails (jobs are re-runnable for that). No savepoints: they cost a round trip each,
//! and more than 64 subtransactions in one transaction overflow PostgreSQL's per-backend cache.
//! A failed commit fails the whole batch: nothing of it was answered, so the chargers send
//! their messages again.
//!
//! The session row is a projection of the stored samples, refreshed at most once per session
//! per `UPDATE_EVENT_INTERVAL` (ADR 013): every sample is stored before its message is
//! answered, but a reading that arrives within a second of the row's last refresh is held in
//! the shard's memory, merged with later ones, and written with the session's next due reading
//! or by the shard's flush tick (so the row is never more than about a second behind). The
//! SESSION_UPDATED event goes with each refresh; status changes always emit their own events.
//! A held reading is not lost on a crash: its samples are in `meter_values`, the next reading
//! refreshes the row, and an `Ended` without a final register takes the held reading
//! (`pending_energy`).

use std::any::Any;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use super::batch::{BatchFuture, BatchObserver, Batcher};
use super::sessions::{self, SessionRecord};
use super::starts_and_stops::{self, StartOutcome, StartV16, StopV16};
use super::transaction_events::{self, EventEnded, EventStarted};
use super::transactions::{self, SampleOwner};
use super::{StoreError, Tx};
use crate::events::wake::OutboxWake;
use crate::events::Event;
use crate::ocpp::meter::{Reading, Sample};

/// The most items one batch takes (bounds statement size and transaction length).
const MAX_BATCH: usize = 2_000;
/// A session row takes a reading (and emits SESSION_UPDATED) at most this often; status
/// changes are not held back.
pub const UPDATE_EVENT_INTERVAL: Duration = Duration::from_secs(1);
/// How often a shard looks for held readings that are due.
const FLUSH_TICK: Duration = Duration::from_millis(250);

/// Whose transaction a meter message belongs to.
#[derive(Debug, Clone)]
pub enum MeterOwner {
    /// 1.6: our integer transactionId as the charger sent it; looked up in the batch.
    V16TransactionId(i32),
    /// Already known (2.0.1: the transaction running on the EVSE).
    Known {
        transaction_pk: i64,
        session_id: Option<Uuid>,
    },
    /// No transaction: the samples are stored on the charger alone.
    None,
}

/// A MeterValues message: its samples and the reading they give.
#[derive(Debug, Clone)]
pub struct MeterWrite {
    pub charger_id: String,
    pub connector_id: i32,
    pub owner: MeterOwner,
    pub samples: Vec<Sample>,
    pub reading: Reading,
}

type JobOutput = Box<dyn Any + Send>;
type JobFn = Box<
    dyn for<'a> Fn(&'a mut Tx<'static>) -> BoxFuture<'a, Result<JobOutput, StoreError>>
        + Send
        + Sync,
>;

enum Item {
    Meter(MeterWrite),
    /// A job of the named charger.
    Job(String, JobFn),
    /// A 1.6 StartTransaction: set-based with the batch's other starts, else (a charger with
    /// several items in the batch, or a case the set-based statements leave) its job.
    StartV16(Box<StartV16>, JobFn),
    /// A 1.6 StopTransaction, as a start.
    StopV16(Box<StopV16>, JobFn),
    /// A 2.0.1 TransactionEvent(Updated): set-based when it is the transaction's next seqNo,
    /// else its job (the general path) runs.
    Update(EventUpdate, JobFn),
    /// A 2.0.1 TransactionEvent(Started), with its samples and reading: set-based with the
    /// batch's other starts when it creates its transaction, else its job.
    Started(Box<(EventStarted, EventReading)>, JobFn),
    /// A 2.0.1 TransactionEvent(Ended): set-based when it is its running transaction's next
    /// seqNo, else its job.
    Ended(Box<EventEnded>, JobFn),
    /// Writes the held readings that are due, of sessions no message of the batch names.
    Flush,
}

/// A 2.0.1 TransactionEvent(Updated) without an idToken, flagged online: the common message
/// of a running transaction.
#[derive(Debug, Clone)]
pub struct EventUpdate {
    pub charger_id: String,
    pub transaction_ref: String,
    pub seq_no: i32,
    pub samples: Vec<Sample>,
    pub reading: Reading,
}

/// The set-based form of a 2.0.1 TransactionEvent (`TransactionWriter::event`).
pub enum EventWrite {
    /// An Updated without an idToken, not flagged offline.
    Updated(EventUpdate),
    /// A Started not flagged offline, with its samples and reading.
    Started(Box<(EventStarted, EventReading)>),
    /// An Ended with a final energy register, no idToken, not flagged offline.
    Ended(Box<EventEnded>),
}

/// The samples and reading of a 2.0.1 event.
#[derive(Debug, Clone)]
pub struct EventReading {
    pub samples: Vec<Sample>,
    pub reading: Reading,
}

enum Outcome {
    /// The session snapshot when the reading changed it.
    Meter(Option<Box<SessionRecord>>),
    Job(JobOutput),
    /// The sessions a flush refreshed.
    Flushed(Vec<SessionRecord>),
}

type Shard = Batcher<Item, Result<Outcome, StoreError>>;

/// Receives the sessions a flush tick refreshed (their session actors re-check caps).
pub type FlushSink = Arc<dyn Fn(SessionRecord) + Send + Sync>;

/// The submitting side: cheap to clone.
#[derive(Clone)]
pub struct TransactionWriter {
    shards: Arc<Vec<(Shard, Arc<Mutex<Readings>>)>>,
    sink: Arc<std::sync::OnceLock<FlushSink>>,
    /// Ends the flush ticks (which hold their shard open) when the last clone is dropped.
    _ticks: Arc<tokio_util::sync::DropGuard>,
}

impl TransactionWriter {
    /// Starts `shards` writers (each one batch at a time) on `pool`; events name `source`.
    /// Each shard flushes its held readings every `FLUSH_TICK`.
    pub fn start(
        pool: PgPool,
        wake: OutboxWake,
        shards: usize,
        source: String,
        observe: Option<BatchObserver>,
        paths: Option<prometheus::IntCounterVec>,
    ) -> Self {
        let sink: Arc<std::sync::OnceLock<FlushSink>> = Arc::default();
        let ticks = tokio_util::sync::CancellationToken::new();
        let shards: Vec<(Shard, Arc<Mutex<Readings>>)> = (0..shards.max(1))
            .map(|_| {
                let readings = Arc::new(Mutex::new(Readings::default()));
                let (pool, source, state) = (pool.clone(), source.clone(), readings.clone());
                let (paths, wake) = (paths.clone(), wake.clone());
                let shard = Batcher::start(MAX_BATCH, observe.clone(), move |items| {
                    let (pool, source, state) = (pool.clone(), source.clone(), state.clone());
                    let (paths, wake) = (paths.clone(), wake.clone());
                    Box::pin(async move {
                        let mut tally = Tally::default();
                        let results = run_batch(&pool, &source, &state, items, &mut tally).await;
                        tally.count(paths.as_ref());
                        // the pool's outbox inserts do not notify: what committed wakes the
                        // relay here
                        if results.iter().any(Result::is_ok) {
                            wake.committed();
                        }
                        results
                    }) as BatchFuture<_>
                });
                tokio::spawn(flush_ticks(
                    shard.clone(),
                    readings.clone(),
                    sink.clone(),
                    ticks.clone(),
                ));
                (shard, readings)
            })
            .collect();
        Self {
            shards: Arc::new(shards),
            sink,
            _ticks: Arc::new(ticks.drop_guard()),
        }
    }

    /// Where the sessions refreshed by a flush tick go (set once, when the actors run).
    pub fn on_flush(&self, sink: FlushSink) {
        let _ = self.sink.set(sink);
    }

    fn shard(&self, charger_id: &str) -> &Shard {
        &self.shard_of(charger_id).0
    }

    fn shard_of(&self, charger_id: &str) -> &(Shard, Arc<Mutex<Readings>>) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        charger_id.hash(&mut hasher);
        let n = self.shards.len().max(1) as u64;
        // `n` is at least 1 and the index is below it
        &self.shards[usize::try_from(hasher.finish() % n).unwrap_or_default()]
    }

    /// The energy register of a reading of `session_id` (on `charger_id`) that its row has not
    /// taken yet: an `Ended` without a final register ends on it.
    pub fn pending_energy(&self, charger_id: &str, session_id: Uuid) -> Option<Decimal> {
        let (_, readings) = self.shard_of(charger_id);
        readings
            .lock()
            .ok()?
            .pending
            .get(&session_id)
            .and_then(|p| p.meter_wh)
    }

    /// Stores a meter message; resolves to the session as its reading left it, when it
    /// changed. Queued at once, so messages keep the order of the calls.
    pub fn meter(
        &self,
        write: MeterWrite,
    ) -> impl std::future::Future<Output = Result<Option<SessionRecord>, StoreError>> + Send + 'static
    {
        let submitted = self.shard(&write.charger_id).submit(Item::Meter(write));
        async move { answer(submitted.await, |session| Some(session.map(|s| *s))) }
    }

    /// Stores a 2.0.1 TransactionEvent of `charger_id` in the next batch of its shard. When
    /// `write` gives its set-based form and the batch's statements can settle it (an Updated or
    /// Ended carrying its running transaction's next seqNo, a Started creating its transaction),
    /// it is stored with the batch's other events of its kind (an Updated's and a Started's
    /// readings with the batch's meter messages); otherwise `general` runs, as for any event.
    /// Resolves to what `general` resolves to: `None` for a repeat, else the session snapshot.
    pub fn event<F>(
        &self,
        charger_id: &str,
        write: Option<EventWrite>,
        general: F,
    ) -> impl std::future::Future<Output = Result<Option<Option<SessionRecord>>, StoreError>>
           + Send
           + 'static
    where
        F: for<'a> Fn(
                &'a mut Tx<'static>,
            )
                -> BoxFuture<'a, Result<Option<Option<SessionRecord>>, StoreError>>
            + Send
            + Sync
            + 'static,
    {
        let general = boxed(general);
        let item = match write {
            Some(EventWrite::Updated(update)) => Item::Update(update, general),
            Some(EventWrite::Started(start)) => Item::Started(start, general),
            Some(EventWrite::Ended(end)) => Item::Ended(end, general),
            None => Item::Job(charger_id.to_string(), general),
        };
        let submitted = self.shard(charger_id).submit(item);
        // only an in-sequence Updated is answered with a meter outcome
        async move { answer(submitted.await, |session| Some(Some(session.map(|s| *s)))) }
    }

    /// Runs `job` in the next batch of `charger_id`'s shard; resolves to its result once the
    /// batch committed. Queued at once. The job may run twice (again alone when something else
    /// in its batch failed): it must derive everything from its captures and `tx`.
    pub fn run<T, F>(
        &self,
        charger_id: &str,
        job: F,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: for<'a> Fn(&'a mut Tx<'static>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + Sync
            + 'static,
    {
        let submitted = self
            .shard(charger_id)
            .submit(Item::Job(charger_id.to_string(), boxed(job)));
        async move { answer(submitted.await, |_| None) }
    }

    /// Stores a 1.6 StartTransaction in the next batch of its charger's shard, set-based with
    /// the batch's other starts; `general` (the one-by-one path, run in the same transaction)
    /// settles what the set-based statements leave. Resolves once the batch committed.
    pub fn start_v16<F>(
        &self,
        start: StartV16,
        general: F,
    ) -> impl std::future::Future<Output = Result<StartOutcome, StoreError>> + Send + 'static
    where
        F: for<'a> Fn(&'a mut Tx<'static>) -> BoxFuture<'a, Result<StartOutcome, StoreError>>
            + Send
            + Sync
            + 'static,
    {
        let submitted = self
            .shard(&start.charger_id)
            .submit(Item::StartV16(Box::new(start), boxed(general)));
        async move { answer(submitted.await, |_| None) }
    }

    /// Stores a 1.6 StopTransaction, as `start_v16` does a start; resolves to the session it
    /// completed.
    pub fn stop_v16<F>(
        &self,
        stop: StopV16,
        general: F,
    ) -> impl std::future::Future<Output = Result<Option<SessionRecord>, StoreError>> + Send + 'static
    where
        F: for<'a> Fn(
                &'a mut Tx<'static>,
            ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>>
            + Send
            + Sync
            + 'static,
    {
        let submitted = self
            .shard(&stop.charger_id)
            .submit(Item::StopV16(Box::new(stop), boxed(general)));
        async move { answer(submitted.await, |_| None) }
    }
}

/// A typed job as the batch runs it (its output boxed).
fn boxed<T, F>(job: F) -> JobFn
where
    T: Send + 'static,
    F: for<'a> Fn(&'a mut Tx<'static>) -> BoxFuture<'a, Result<T, StoreError>>
        + Send
        + Sync
        + 'static,
{
    Box::new(move |tx| {
        let fut = job(tx);
        Box::pin(async move { fut.await.map(|t| Box::new(t) as JobOutput) })
    })
}

/// The caller's answer from what its batch returned: a job's output as `T`, or the set-based
/// meter outcome through `from_meter` (`None` where the caller expects no meter outcome).
fn answer<T: 'static>(
    returned: Option<Result<Outcome, StoreError>>,
    from_meter: impl FnOnce(Option<Box<SessionRecord>>) -> Option<T>,
) -> Result<T, StoreError> {
    match returned {
        Some(Ok(Outcome::Job(output))) => output
            .downcast::<T>()
            .map(|t| *t)
            .map_err(|_| StoreError::Unavailable("mismatched job output".into())),
        Some(Ok(Outcome::Meter(session))) => {
            from_meter(session).ok_or_else(|| StoreError::Unavailable("mismatched outcome".into()))
        }
        Some(Ok(Outcome::Flushed(_))) => Err(StoreError::Unavailable("mismatched outcome".into())),
        Some(Err(e)) => Err(e),
        None => Err(StoreError::Unavailable(
            "the transaction writer stopped".into(),
        )),
    }
}

/// A reading held back from its session row, merged with the ones after it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Held {
    meter_wh: Option<Decimal>,
    power_w: Option<Decimal>,
    sampled_at: DateTime<Utc>,
}

impl Held {
    /// `self` followed by `later`: the register only moves forward, the newest power wins.
    fn then(self, later: Held) -> Held {
        Held {
            meter_wh: match (self.meter_wh, later.meter_wh) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => b.or(a),
            },
            power_w: later.power_w.or(self.power_w),
            sampled_at: self.sampled_at.max(later.sampled_at),
        }
    }
}

/// A 1.6 transaction as its charger names it, and its row and session. The pair never
/// changes once its start committed (`session_id` is set in the start's transaction and never
/// again), so the writer can remember it instead of looking it up for every MeterValues.
type TransactionKey = (String, i32);
type TransactionRow = (i64, Option<Uuid>);

/// How many 1.6 transactions a shard remembers; past this it forgets them all and looks them
/// up again (a stop the general path stored is not seen here, so entries can outlive their
/// transaction).
const REMEMBERED_TRANSACTIONS: usize = 100_000;

/// A shard's readings: when each session row last took one, and the ones held back; and the
/// 1.6 transactions it has seen start or looked up.
#[derive(Default)]
struct Readings {
    written: HashMap<Uuid, Instant>,
    pending: HashMap<Uuid, Held>,
    transactions: HashMap<TransactionKey, TransactionRow>,
    events: HashMap<EventKey, EventRow>,
}

/// A 2.0.1 transaction as its charger names it (charger, transactionId).
type EventKey = (String, String);

/// What a shard remembers of a running 2.0.1 transaction: its row, session and EVSE, and the
/// last seqNo it committed for it. The seqNo is checked where it is written (the batch's last
/// statement moves it on only from the one before): a transaction another writer moved on
/// (another replica, or this shard's general path) fails that statement, and the batch runs
/// again item by item with the shard's memory of 2.0.1 transactions cleared.
#[derive(Debug, Clone, Copy)]
struct EventRow {
    pk: i64,
    session: Option<Uuid>,
    connector: i32,
    last_seq: i32,
}

impl Readings {
    /// Whether `session_id`'s row may take a reading at `now`.
    fn due(&self, session_id: Uuid, now: Instant) -> bool {
        !matches!(self.written.get(&session_id), Some(at) if now.duration_since(*at) < UPDATE_EVENT_INTERVAL)
    }

    /// Records what a committed batch did: rows refreshed, readings held.
    fn committed(&mut self, written: &[Uuid], held: Vec<(Uuid, Held)>, now: Instant) {
        if self.written.len() > 100_000 {
            self.written
                .retain(|_, at| now.duration_since(*at) < UPDATE_EVENT_INTERVAL);
        }
        for id in written {
            self.written.insert(*id, now);
            self.pending.remove(id);
        }
        self.pending.extend(held);
    }

    /// Remembers committed transactions and forgets stopped ones.
    fn transactions_committed(
        &mut self,
        known: impl IntoIterator<Item = (TransactionKey, TransactionRow)>,
        stopped: impl IntoIterator<Item = TransactionKey>,
    ) {
        for key in stopped {
            self.transactions.remove(&key);
        }
        if self.transactions.len() > REMEMBERED_TRANSACTIONS {
            self.transactions.clear();
        }
        self.transactions.extend(known);
    }

    /// Remembers 2.0.1 transactions as a committed batch left them, and forgets the ones a
    /// general path wrote (started, ended, an update out of sequence).
    fn events_committed(&mut self, known: Vec<(EventKey, EventRow)>, forgotten: Vec<EventKey>) {
        if self.events.len() > REMEMBERED_TRANSACTIONS {
            self.events.clear();
        }
        self.events.extend(known);
        for key in forgotten {
            self.events.remove(&key);
        }
    }

    /// Whether a held reading is due.
    fn anything_due(&self, now: Instant) -> bool {
        self.pending.keys().any(|id| self.due(*id, now))
    }
}

/// Submits a flush whenever a held reading of the shard is due, and hands the refreshed
/// sessions to the sink. Ends with the writer.
async fn flush_ticks(
    shard: Shard,
    readings: Arc<Mutex<Readings>>,
    sink: Arc<std::sync::OnceLock<FlushSink>>,
    writer_gone: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(FLUSH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = writer_gone.cancelled() => return,
        }
        let due = readings
            .lock()
            .map(|r| r.anything_due(Instant::now()))
            .unwrap_or(false);
        if !due {
            continue;
        }
        match shard.submit(Item::Flush).await {
            Some(Ok(Outcome::Flushed(sessions))) => {
                if let Some(sink) = sink.get() {
                    sessions.into_iter().for_each(|s| sink(s));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "held readings not written; retrying"),
            None => return,
        }
    }
}

/// How many messages of each kind each path stored in a batch (counted once it committed).
#[derive(Default)]
struct Tally(HashMap<(&'static str, &'static str), u64>);

impl Tally {
    fn add(&mut self, kind: &'static str, path: &'static str) {
        self.add_n(kind, path, 1);
    }

    fn add_n(&mut self, kind: &'static str, path: &'static str, n: usize) {
        *self.0.entry((kind, path)).or_default() += n as u64;
    }

    fn count(self, counter: Option<&prometheus::IntCounterVec>) {
        if let Some(counter) = counter {
            for ((kind, path), n) in self.0 {
                counter.with_label_values(&[kind, path]).inc_by(n);
            }
        }
    }
}

/// The kind of message an item is, as `chargegrid_transaction_messages_stored_total` names it.
fn kind_of(item: &Item) -> &'static str {
    match item {
        Item::Meter(_) => "meter_values",
        Item::Job(_, _) => "other",
        Item::StartV16(_, _) => "start_transaction",
        Item::StopV16(_, _) => "stop_transaction",
        Item::Update(_, _) => "transaction_event_updated",
        Item::Started(_, _) => "transaction_event_started",
        Item::Ended(_, _) => "transaction_event_ended",
        Item::Flush => "flush",
    }
}

async fn run_batch(
    pool: &PgPool,
    source: &str,
    state: &Mutex<Readings>,
    items: Vec<Item>,
    tally: &mut Tally,
) -> Vec<Result<Outcome, StoreError>> {
    let n = items.len();
    let mut together = Tally::default();
    match run_together(pool, source, state, &items, &mut together).await {
        Together::Committed(results) => {
            *tally = together;
            results.into_iter().map(Ok).collect()
        }
        Together::CommitFailed(e) => {
            tracing::error!(error = %e, items = n, "transaction batch did not commit: none of it is answered");
            (0..n)
                .map(|_| Err(StoreError::Unavailable(e.clone())))
                .collect()
        }
        Together::ItemFailed(e) if e.is_unreachable() => {
            tracing::error!(error = %e, items = n, "the database is unreachable: none of the batch is answered");
            let reason = e.to_string();
            (0..n)
                .map(|_| Err(StoreError::Unavailable(reason.clone())))
                .collect()
        }
        Together::ItemFailed(e) => {
            if n > 1 {
                tracing::warn!(error = %e, items = n, "a transaction batch failed: running its items one by one");
            }
            let mut results = Vec::with_capacity(n);
            let mut gone: Option<String> = None;
            for item in &items {
                // once the database is unreachable, the rest fail at once instead of each
                // waiting for its own timeout
                if let Some(reason) = &gone {
                    results.push(Err(StoreError::Unavailable(reason.clone())));
                    continue;
                }
                let result = run_alone(pool, source, state, item).await;
                match &result {
                    // alone, a meter message is still stored by the set-based statements
                    Ok(Outcome::Meter(_) | Outcome::Flushed(_)) => tally.add(kind_of(item), "set"),
                    Ok(Outcome::Job(_)) => tally.add(kind_of(item), "job"),
                    Err(e) if e.is_unreachable() => gone = Some(e.to_string()),
                    Err(_) => {}
                }
                results.push(result);
            }
            results
        }
    }
}

enum Together {
    Committed(Vec<Outcome>),
    /// Something in the batch failed: nothing was written, each item runs again alone.
    ItemFailed(StoreError),
    /// The commit itself failed (or no transaction could start): the database is in trouble.
    CommitFailed(String),
}

/// The charger an item is of (a flush is of none).
fn charger_of(item: &Item) -> Option<&str> {
    match item {
        Item::Meter(m) => Some(&m.charger_id),
        Item::Job(charger_id, _) => Some(charger_id),
        Item::StartV16(s, _) => Some(&s.charger_id),
        Item::StopV16(s, _) => Some(&s.charger_id),
        Item::Update(u, _) => Some(&u.charger_id),
        Item::Started(s, _) => Some(&s.0.charger_id),
        Item::Ended(e, _) => Some(&e.charger_id),
        Item::Flush => None,
    }
}

/// Every item in one transaction: jobs first, in submission order (a Start in this batch
/// precedes the readings of its transaction, which can only be sent once it was answered, in a
/// later batch), then set-based: the 1.6 starts, the 1.6 stops, the 2.0.1 Started and Ended
/// events, the in-sequence 2.0.1 Updated events, and last the meter messages (with the Started
/// and Updated events' readings). An item a set-based statement leaves runs its general job
/// right after that statement, in the same transaction. A start or end joins the set-based
/// statements only when it is its charger's one item in the batch (OCPP allows one call in
/// flight, so that is every well-behaved charger); a charger with several has them all run as
/// jobs, in the order it sent them, so the order between items matters only across chargers,
/// where nothing depends on it.
async fn run_together(
    pool: &PgPool,
    source: &str,
    state: &Mutex<Readings>,
    items: &[Item],
    tally: &mut Tally,
) -> Together {
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return Together::CommitFailed(e.to_string()),
    };
    let mut items_of: HashMap<&str, usize> = HashMap::new();
    for charger_id in items.iter().filter_map(charger_of) {
        *items_of.entry(charger_id).or_default() += 1;
    }
    let alone = |charger_id: &str| items_of.get(charger_id).copied() == Some(1);
    let mut results: Vec<Option<Outcome>> = (0..items.len()).map(|_| None).collect();
    // the set-based statements' events, written together just before the commit: one round
    // trip instead of one per kind of item. A session's events keep their order: its general
    // jobs write theirs as they run, and a session has more than one set-based item in a batch
    // only as readings, which the meter statement merges.
    let mut tail = transactions::Tail::default();
    let mut meters: Vec<(usize, &MeterWrite)> = Vec::new();
    let mut updates: Vec<(usize, &EventUpdate, &JobFn)> = Vec::new();
    let mut starts: Vec<(usize, &StartV16, &JobFn)> = Vec::new();
    let mut stops: Vec<(usize, &StopV16, &JobFn)> = Vec::new();
    let mut started: Vec<(usize, &EventStarted, &EventReading, &JobFn)> = Vec::new();
    let mut ended: Vec<(usize, &EventEnded, &JobFn)> = Vec::new();
    let mut flushes: Vec<usize> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let job = match item {
            Item::Job(_, job) => job,
            Item::StartV16(s, general) if !alone(&s.charger_id) => general,
            Item::StopV16(s, general) if !alone(&s.charger_id) => general,
            Item::Started(s, general) if !alone(&s.0.charger_id) => general,
            Item::Ended(e, general) if !alone(&e.charger_id) => general,
            Item::Started(s, general) => {
                started.push((i, &s.0, &s.1, general));
                continue;
            }
            Item::Ended(e, general) => {
                ended.push((i, e, general));
                continue;
            }
            Item::StartV16(s, general) => {
                starts.push((i, s, general));
                continue;
            }
            Item::StopV16(s, general) => {
                stops.push((i, s, general));
                continue;
            }
            Item::Meter(m) => {
                meters.push((i, m));
                continue;
            }
            Item::Update(u, general) => {
                updates.push((i, u, general));
                continue;
            }
            Item::Flush => {
                flushes.push(i);
                continue;
            }
        };
        tally.add(kind_of(item), "job");
        match job(&mut tx).await {
            Ok(output) => results[i] = Some(Outcome::Job(output)),
            Err(e) => return Together::ItemFailed(e),
        }
    }
    let given: Vec<&StartV16> = starts.iter().map(|(_, s, _)| *s).collect();
    let settled = starts_and_stops::start_v16_many(&mut tx, &given, source, &mut tail.events).await;
    // new transactions, remembered once committed (a repeated start's row is looked up)
    let opened: Vec<(TransactionKey, TransactionRow)> = match &settled {
        Ok(outcomes) => given
            .iter()
            .zip(outcomes)
            .filter_map(|(s, outcome)| {
                let (started, session) = outcome.as_ref()?;
                (!started.duplicate).then(|| {
                    (
                        (s.charger_id.clone(), started.transaction_id),
                        (started.pk, session.as_ref().map(|r| r.id)),
                    )
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let kind = "start_transaction";
    if let Err(e) = settle(&mut tx, &starts, settled, &mut results, (kind, tally)).await {
        return Together::ItemFailed(e);
    }
    let given: Vec<&StopV16> = stops.iter().map(|(_, s, _)| *s).collect();
    let stopped: Vec<TransactionKey> = given
        .iter()
        .map(|s| (s.charger_id.clone(), s.transaction_id))
        .collect();
    let settled = starts_and_stops::stop_v16_many(&mut tx, &given, &mut tail).await;
    let kind = "stop_transaction";
    if let Err(e) = settle(&mut tx, &stops, settled, &mut results, (kind, tally)).await {
        return Together::ItemFailed(e);
    }
    // 2.0.1 starts that created their transaction: their readings join the meter messages
    let mut owned: Vec<(usize, MeterWrite)> = Vec::new();
    let mut linked: HashMap<usize, Option<SessionRecord>> = HashMap::new();
    let given: Vec<&EventStarted> = started.iter().map(|(_, s, _, _)| *s).collect();
    let created =
        match transaction_events::started_many(&mut tx, &given, source, &mut tail.events).await {
            Ok(created) => created,
            Err(e) => return Together::ItemFailed(e),
        };
    for ((i, start, read, general), created) in started.iter().zip(created) {
        let kind = "transaction_event_started";
        let Some((transaction_pk, session)) = created else {
            tally.add(kind, "job");
            match general(&mut tx).await {
                Ok(output) => results[*i] = Some(Outcome::Job(output)),
                Err(e) => return Together::ItemFailed(e),
            }
            continue;
        };
        tally.add(kind, "set");
        owned.push((
            *i,
            MeterWrite {
                charger_id: start.charger_id.clone(),
                connector_id: start.connector_id,
                owner: MeterOwner::Known {
                    transaction_pk,
                    session_id: session.as_ref().map(|s| s.id),
                },
                samples: read.samples.clone(),
                reading: read.reading,
            },
        ));
        linked.insert(*i, session);
    }
    let given: Vec<&EventEnded> = ended.iter().map(|(_, e, _)| *e).collect();
    let settled = transaction_events::ended_many(&mut tx, &given, &mut tail)
        .await
        .map(|all| all.into_iter().map(|e| e.map(Some)).collect());
    let kind = "transaction_event_ended";
    if let Err(e) = settle(&mut tx, &ended, settled, &mut results, (kind, tally)).await {
        return Together::ItemFailed(e);
    }
    // updates of transactions the shard remembers, each its transaction's next seqNo and its
    // charger's one item in the batch: their seqNo moves in the batch's last statement, which
    // checks it; the others are looked up (and moved on) by `in_sequence`
    let mut claimed: Vec<(EventKey, EventRow)> = Vec::new();
    // 2.0.1 transactions a general path wrote in this batch: forgotten once it commits (their
    // seqNo or session may have moved without the shard seeing it)
    let mut forgotten: Vec<EventKey> = Vec::new();
    for item in items {
        match item {
            Item::Started(s, _) => {
                forgotten.push((s.0.charger_id.clone(), s.0.transaction_ref.clone()))
            }
            Item::Ended(e, _) => forgotten.push((e.charger_id.clone(), e.transaction_ref.clone())),
            _ => {}
        }
    }
    let mut looked_up: Vec<(usize, &EventUpdate, &JobFn)> = Vec::new();
    {
        let remembered = match state.lock() {
            Ok(readings) => updates
                .iter()
                .map(|(_, u, _)| {
                    readings
                        .events
                        .get(&(u.charger_id.clone(), u.transaction_ref.clone()))
                        .copied()
                })
                .collect::<Vec<_>>(),
            Err(_) => vec![None; updates.len()],
        };
        for ((i, u, general), row) in updates.iter().zip(remembered) {
            match row {
                Some(row)
                    if alone(&u.charger_id) && row.last_seq.checked_add(1) == Some(u.seq_no) =>
                {
                    tally.add("transaction_event_updated", "set");
                    tail.claims.push(row.pk, u.seq_no, row.session);
                    owned.push((
                        *i,
                        MeterWrite {
                            charger_id: u.charger_id.clone(),
                            connector_id: row.connector,
                            owner: MeterOwner::Known {
                                transaction_pk: row.pk,
                                session_id: row.session,
                            },
                            samples: u.samples.clone(),
                            reading: u.reading,
                        },
                    ));
                    claimed.push((
                        (u.charger_id.clone(), u.transaction_ref.clone()),
                        EventRow {
                            last_seq: u.seq_no,
                            ..row
                        },
                    ));
                }
                _ => looked_up.push((*i, u, general)),
            }
        }
    }
    // in-sequence updates join the meter messages; the others take the general path
    let mut as_meters = match in_sequence(&mut tx, &looked_up).await {
        Ok(found) => found,
        Err(e) => return Together::ItemFailed(e),
    };
    for (i, u, general) in &looked_up {
        let kind = "transaction_event_updated";
        match as_meters.remove(i) {
            Some(write) => {
                tally.add(kind, "set");
                if let MeterOwner::Known {
                    transaction_pk,
                    session_id,
                } = write.owner
                {
                    claimed.push((
                        (u.charger_id.clone(), u.transaction_ref.clone()),
                        EventRow {
                            pk: transaction_pk,
                            session: session_id,
                            connector: write.connector_id,
                            last_seq: u.seq_no,
                        },
                    ));
                }
                owned.push((*i, write))
            }
            None => {
                tally.add(kind, "job");
                forgotten.push((u.charger_id.clone(), u.transaction_ref.clone()));
                match general(&mut tx).await {
                    Ok(output) => results[*i] = Some(Outcome::Job(output)),
                    Err(e) => return Together::ItemFailed(e),
                }
            }
        }
    }
    tally.add_n("meter_values", "set", meters.len());
    meters.extend(owned.iter().map(|(i, m)| (*i, m)));
    let mut done = None;
    if !meters.is_empty() || !flushes.is_empty() {
        match meters_set_based(&mut tx, state, &meters, !flushes.is_empty(), &mut tail).await {
            Ok(mut stored) => {
                let per_message = std::mem::take(&mut stored.per_message);
                for ((i, _), session) in meters.iter().zip(per_message) {
                    results[*i] = Some(Outcome::Meter(session.map(Box::new)));
                }
                // a start's reading does not hold back the session's next one (as the general
                // path, which records it outside the shard's readings): the first reading of
                // the transaction reaches the row and the running cost at once
                let fresh: std::collections::HashSet<Uuid> =
                    linked.values().flatten().map(|s| s.id).collect();
                stored.written.retain(|id| !fresh.contains(id));
                done = Some(stored);
            }
            Err(e) => return Together::ItemFailed(e),
        }
    }
    // a 2.0.1 start answers the session as its reading left it, else as it started
    for (i, session) in linked {
        let read = match results[i].take() {
            Some(Outcome::Meter(read)) => read.map(|s| *s),
            _ => None,
        };
        let answer: Option<Option<SessionRecord>> = Some(read.or(session));
        results[i] = Some(Outcome::Job(Box::new(answer)));
    }
    // the seqNo claims, samples and events of every set-based statement: the batch's last
    // statement
    let claims = tail.claims.len();
    match tail.write(&mut tx, source).await {
        Ok(held) if held == claims => {}
        Ok(held) => {
            // a remembered transaction moved on elsewhere: forget them all, look them up again
            if let Ok(mut readings) = state.lock() {
                readings.events.clear();
            }
            return Together::ItemFailed(StoreError::Conflict(format!(
                "{} of {claims} remembered 2.0.1 transactions moved on elsewhere",
                claims.saturating_sub(held)
            )));
        }
        Err(e) => return Together::ItemFailed(e),
    }
    if let Err(e) = tx.commit().await {
        return Together::CommitFailed(e.to_string());
    }
    if let Ok(mut readings) = state.lock() {
        readings.transactions_committed(opened, stopped);
        readings.events_committed(claimed, forgotten);
    }
    if let Some(mut stored) = done {
        // every flush of the batch shares the refreshed sessions; the first one reports them
        if let Some(first) = flushes.first() {
            results[*first] = Some(Outcome::Flushed(std::mem::take(&mut stored.flushed)));
        }
        stored.commit_to(state);
    }
    Together::Committed(
        results
            .into_iter()
            .map(|r| r.unwrap_or(Outcome::Meter(None)))
            .collect(),
    )
}

/// Answers set-based items from what their statements settled (one outcome per item, in
/// order); an item they left (`None`) runs its general job in the same transaction.
async fn settle<I, T: Send + 'static>(
    tx: &mut Tx<'static>,
    items: &[(usize, &I, &JobFn)],
    settled: Result<Vec<Option<T>>, StoreError>,
    results: &mut [Option<Outcome>],
    (kind, tally): (&'static str, &mut Tally),
) -> Result<(), StoreError> {
    for ((i, _, general), outcome) in items.iter().zip(settled?) {
        let output = match outcome {
            Some(outcome) => {
                tally.add(kind, "set");
                Box::new(outcome) as JobOutput
            }
            None => {
                tally.add(kind, "job");
                general(tx).await?
            }
        };
        results[*i] = Some(Outcome::Job(output));
    }
    Ok(())
}

/// One item in a transaction of its own (after its batch failed).
async fn run_alone(
    pool: &PgPool,
    source: &str,
    state: &Mutex<Readings>,
    item: &Item,
) -> Result<Outcome, StoreError> {
    let mut tx = pool.begin().await?;
    let outcome = match item {
        Item::Job(_, job)
        | Item::StartV16(_, job)
        | Item::StopV16(_, job)
        | Item::Started(_, job)
        | Item::Ended(_, job) => Outcome::Job(job(&mut tx).await?),
        Item::Update(update, general) => {
            let found = in_sequence(&mut tx, &[(0, update, general)]).await?;
            match found.get(&0) {
                None => Outcome::Job(general(&mut tx).await?),
                Some(write) => return meter_alone(tx, source, state, Some(write)).await,
            }
        }
        Item::Meter(m) => return meter_alone(tx, source, state, Some(m)).await,
        Item::Flush => return meter_alone(tx, source, state, None).await,
    };
    tx.commit().await?;
    Ok(outcome)
}

/// One meter message (or a flush) in `tx`, committed; the shard's readings record it once it
/// committed.
async fn meter_alone(
    mut tx: Tx<'static>,
    source: &str,
    state: &Mutex<Readings>,
    write: Option<&MeterWrite>,
) -> Result<Outcome, StoreError> {
    let meters: Vec<(usize, &MeterWrite)> = write.into_iter().map(|w| (0, w)).collect();
    let mut tail = transactions::Tail::default();
    let mut stored = meters_set_based(&mut tx, state, &meters, write.is_none(), &mut tail).await?;
    tail.write(&mut tx, source).await?;
    tx.commit().await?;
    let outcome = match write {
        Some(_) => Outcome::Meter(stored.per_message.pop().flatten().map(Box::new)),
        None => Outcome::Flushed(std::mem::take(&mut stored.flushed)),
    };
    stored.commit_to(state);
    Ok(outcome)
}

/// Advances the seqNo of every update that is its transaction's next one, in one statement,
/// and returns those as meter messages of their (known) transaction, by item index. The others
/// are left untouched for their general path.
async fn in_sequence(
    tx: &mut Tx<'static>,
    updates: &[(usize, &EventUpdate, &JobFn)],
) -> Result<HashMap<usize, MeterWrite>, StoreError> {
    if updates.is_empty() {
        return Ok(HashMap::new());
    }
    let chargers: Vec<&str> = updates
        .iter()
        .map(|(_, u, _)| u.charger_id.as_str())
        .collect();
    let refs: Vec<&str> = updates
        .iter()
        .map(|(_, u, _)| u.transaction_ref.as_str())
        .collect();
    let seqs: Vec<i32> = updates.iter().map(|(_, u, _)| u.seq_no).collect();
    let items: Vec<i32> = (0..updates.len())
        .map(|k| i32::try_from(k).unwrap_or(i32::MAX))
        .collect();
    let rows: Vec<(i32, i64, Option<Uuid>, i32)> = sqlx::query_as(
        "UPDATE charger_transactions t SET last_seq_no = k.seq_no, updated_at = now() \
         FROM unnest($1::text[], $2::text[], $3::int4[], $4::int4[]) AS k(charger_id, transaction_ref, seq_no, item) \
         WHERE t.charger_id = k.charger_id AND t.transaction_ref = k.transaction_ref \
             AND t.first_seq_no IS NOT NULL AND t.last_seq_no::int8 + 1 = k.seq_no::int8 \
         RETURNING k.item, t.id, t.session_id, t.connector_id",
    )
    .bind(&chargers)
    .bind(&refs)
    .bind(&seqs)
    .bind(&items)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(item, pk, session_id, connector_id)| {
            let (i, update, _) = updates.get(usize::try_from(item).ok()?)?;
            Some((
                *i,
                MeterWrite {
                    charger_id: update.charger_id.clone(),
                    connector_id,
                    owner: MeterOwner::Known {
                        transaction_pk: pk,
                        session_id,
                    },
                    samples: update.samples.clone(),
                    reading: update.reading,
                },
            ))
        })
        .collect())
}

/// What the meter messages of a batch did, applied to the shard's readings once committed.
struct Stored {
    /// Per message: the session as its reading left it, when its row took the reading.
    per_message: Vec<Option<SessionRecord>>,
    /// Sessions refreshed from held readings alone (by a flush).
    flushed: Vec<SessionRecord>,
    /// Session rows that took a reading.
    written: Vec<Uuid>,
    /// Readings held back, merged with what was held before.
    held: Vec<(Uuid, Held)>,
    /// 1.6 transactions looked up in Postgres.
    looked_up: Vec<(TransactionKey, TransactionRow)>,
}

impl Stored {
    fn commit_to(self, state: &Mutex<Readings>) {
        if let Ok(mut readings) = state.lock() {
            readings.committed(&self.written, self.held, Instant::now());
            readings.transactions_committed(self.looked_up, []);
        }
    }
}

/// Stores `meters` with at most two statements: the look-up of 1.6 transactions the shard does
/// not remember, and the update of the session rows that are due a reading (each at most once).
/// Their samples and the rows' events go to `tail`. A session whose row took a reading less
/// than `UPDATE_EVENT_INTERVAL` ago has its reading held; with `flush`, held readings that are
/// due are written too.
async fn meters_set_based(
    tx: &mut Tx<'static>,
    state: &Mutex<Readings>,
    meters: &[(usize, &MeterWrite)],
    flush: bool,
    tail: &mut transactions::Tail,
) -> Result<Stored, StoreError> {
    let mut found: HashMap<TransactionKey, TransactionRow> = HashMap::new();
    let mut lookups: Vec<TransactionKey> = Vec::new();
    {
        let readings = state
            .lock()
            .map_err(|_| StoreError::Unavailable("the shard's readings are poisoned".into()))?;
        for (_, m) in meters {
            if let MeterOwner::V16TransactionId(t) = m.owner {
                let key = (m.charger_id.clone(), t);
                match readings.transactions.get(&key) {
                    Some(row) => {
                        found.insert(key, *row);
                    }
                    None => lookups.push(key),
                }
            }
        }
    }
    let looked_up: Vec<(TransactionKey, TransactionRow)> =
        transactions::find_v16_many(tx, &lookups)
            .await?
            .into_iter()
            .collect();
    found.extend(looked_up.iter().cloned());
    let owners: Vec<(Option<i64>, Option<Uuid>)> = meters
        .iter()
        .map(|(_, m)| match &m.owner {
            MeterOwner::V16TransactionId(t) => found
                .get(&(m.charger_id.clone(), *t))
                .map(|(pk, session)| (Some(*pk), *session))
                .unwrap_or((None, None)),
            MeterOwner::Known {
                transaction_pk,
                session_id,
            } => (Some(*transaction_pk), *session_id),
            MeterOwner::None => (None, None),
        })
        .collect();
    for ((_, m), (pk, session)) in meters.iter().zip(&owners) {
        let owner = SampleOwner {
            charger_id: &m.charger_id,
            connector_id: m.connector_id,
            transaction_pk: *pk,
            session_id: *session,
        };
        for sample in &m.samples {
            tail.samples.push(owner, sample);
        }
    }

    // each session's readings of this batch, merged in message order, with its last message
    let mut batch: Vec<(Uuid, Held, usize)> = Vec::new();
    let mut position: HashMap<Uuid, usize> = HashMap::new();
    for (k, ((_, m), (_, session))) in meters.iter().zip(&owners).enumerate() {
        let Some(session_id) = session else { continue };
        if m.reading.energy_wh.is_none() && m.reading.power_w.is_none() {
            continue;
        }
        let held = Held {
            meter_wh: m.reading.energy_wh,
            power_w: m.reading.power_w,
            sampled_at: latest(&m.samples).unwrap_or_else(Utc::now),
        };
        match position.get(session_id) {
            Some(&p) => {
                let (_, merged, last) = &mut batch[p];
                *merged = merged.then(held);
                *last = k;
            }
            None => {
                position.insert(*session_id, batch.len());
                batch.push((*session_id, held, k));
            }
        }
    }
    // which rows take a reading now (with what was held before), which readings are held
    let now = Instant::now();
    let mut due: Vec<(Uuid, Held, Option<usize>)> = Vec::new();
    let mut held: Vec<(Uuid, Held)> = Vec::new();
    {
        let readings = state
            .lock()
            .map_err(|_| StoreError::Unavailable("the shard's readings are poisoned".into()))?;
        for (session_id, reading, last) in batch {
            let merged = match readings.pending.get(&session_id) {
                Some(before) => before.then(reading),
                None => reading,
            };
            if readings.due(session_id, now) {
                due.push((session_id, merged, Some(last)));
            } else {
                held.push((session_id, merged));
            }
        }
        if flush {
            for (session_id, reading) in &readings.pending {
                if !position.contains_key(session_id) && readings.due(*session_id, now) {
                    due.push((*session_id, *reading, None));
                }
            }
        }
    }
    let written: Vec<Uuid> = due.iter().map(|(id, _, _)| *id).collect();
    let readings: Vec<sessions::Reading> = due
        .iter()
        .map(|(id, r, _)| sessions::Reading {
            session_id: *id,
            meter_wh: r.meter_wh,
            power_w: r.power_w,
        })
        .collect();
    let updated = sessions::record_readings(tx, &readings).await?;
    let mut by_id: HashMap<Uuid, SessionRecord> = updated.into_iter().map(|r| (r.id, r)).collect();
    let mut per_message: Vec<Option<SessionRecord>> = vec![None; meters.len()];
    let mut flushed = Vec::new();
    for (session_id, reading, last) in &due {
        let Some(record) = by_id.remove(session_id) else {
            continue;
        };
        tail.events.push((
            Event::SessionUpdated {
                session_id: record.id,
                user_id: record.user_id,
                energy_kwh: record.energy_kwh_f64(),
                power_kw: record.power_kw,
                status: record.status.clone(),
            },
            reading.sampled_at,
        ));
        match last {
            Some(k) => per_message[*k] = Some(record),
            None => flushed.push(record),
        }
    }
    Ok(Stored {
        per_message,
        flushed,
        written,
        held,
        looked_up,
    })
}

fn latest(samples: &[Sample]) -> Option<DateTime<Utc>> {
    samples.iter().map(|s| s.sampled_at).max()
}
