//! Counters and latency histograms shared by thousands of charger tasks. They are split into
//! shards (a charger always writes to the same one) so two cores never queue on one lock, and
//! merged when the progress line, the timeline or the final report asks.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Number of shards; chargers pick `index % SHARDS`.
pub const SHARDS: usize = 16;
/// Distinct error messages kept (each with a count); more are folded into one line.
const MAX_DISTINCT_ERRORS: usize = 200;

/// Plain event counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// A TCP connect + WebSocket handshake was started.
    ConnAttempted,
    /// The handshake completed with the expected subprotocol.
    ConnEstablished,
    /// The CSMS closed an established connection (close frame or EOF).
    ConnClosedByServer,
    /// The fault injector dropped a connection on purpose.
    ConnDroppedByFault,
    /// Connections opened again after a close or a drop.
    Reconnects,
    /// BootNotification answered Accepted.
    BootAccepted,
    /// BootNotification answered Pending or Rejected.
    BootNotAccepted,
    /// A transaction was started (StartTransaction / TransactionEvent Started answered).
    SessionsStarted,
    /// A transaction was stopped and the stop answered.
    SessionsCompleted,
    /// A session that did not complete (refused tag, lost connection, app flow failure).
    SessionsFailed,
    /// Local sessions of chargers that could never connect (e.g. a refused subprotocol).
    SessionsSkipped,
    /// A frame the charger could not parse or did not expect.
    UnexpectedFrames,
    /// One of our calls got no answer in time.
    CallTimeouts,
    /// Malformed frames sent by the fault injector.
    MalformedSent,
    /// ... of which the CSMS answered with a CALLERROR, as it should.
    MalformedAnswered,
    /// CSMS-initiated calls received.
    CsmsCalls,
    /// CSMS calls answered late on purpose.
    SlowAnswers,
}

impl Counter {
    const ALL: [Counter; 17] = [
        Counter::ConnAttempted,
        Counter::ConnEstablished,
        Counter::ConnClosedByServer,
        Counter::ConnDroppedByFault,
        Counter::Reconnects,
        Counter::BootAccepted,
        Counter::BootNotAccepted,
        Counter::SessionsStarted,
        Counter::SessionsCompleted,
        Counter::SessionsFailed,
        Counter::SessionsSkipped,
        Counter::UnexpectedFrames,
        Counter::CallTimeouts,
        Counter::MalformedSent,
        Counter::MalformedAnswered,
        Counter::CsmsCalls,
        Counter::SlowAnswers,
    ];
}

/// Counters with a label (an action, a reason, an error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Connection failures by reason.
    ConnFailures,
    /// Charger-initiated calls sent, by action.
    Sent,
    /// CSMS-initiated calls received, by action.
    CsmsCalls,
    /// CALLERRORs received for our (well-formed) calls, by `action: code`.
    CallErrors,
    /// Sessions that failed, by reason.
    SessionFailures,
    /// Anything else that went wrong, by message.
    Errors,
}

/// Reconnect times kept per shard.
const MAX_RECONNECT_TIMES: usize = 100_000;

/// One shard's data.
struct Shard {
    counters: [u64; Counter::ALL.len()],
    labeled: HashMap<Family, HashMap<String, u64>>,
    /// Round-trip latency per action (µs) since measurement started.
    latency: HashMap<String, Histogram<u64>>,
    /// Round trips since measurement started.
    measured: u64,
    /// All round trips since the last timeline tick (µs).
    window: Histogram<u64>,
    /// When each reconnect (a connection after an earlier one of the same charger) was
    /// established, in ms since the Unix epoch: the storm benchmark's recovery curve.
    reconnected_at: Vec<u64>,
}

/// A histogram of µs values from 1 µs to one hour (longer values saturate). Two significant
/// figures: 1 % resolution is plenty for percentiles and keeps each one at ~25 KiB.
#[allow(clippy::expect_used)] // an invariant: these bounds and precision are valid
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

impl Shard {
    fn new() -> Self {
        Self {
            counters: [0; Counter::ALL.len()],
            labeled: HashMap::new(),
            latency: HashMap::new(),
            measured: 0,
            window: histogram(),
            reconnected_at: Vec::new(),
        }
    }
}

/// Everything measured by this process.
pub struct Stats {
    started: Instant,
    shards: Vec<Mutex<Shard>>,
    connected: AtomicI64,
    peak_connected: AtomicI64,
    measure_started: Mutex<Instant>,
}

/// A merged view of all shards.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Plain counters.
    pub counters: BTreeMap<&'static str, u64>,
    /// Labelled counters.
    pub labeled: BTreeMap<Family, BTreeMap<String, u64>>,
    /// Latency per action, in µs.
    pub latency: BTreeMap<String, Histogram<u64>>,
    /// Round trips in the measurement window.
    pub measured_round_trips: u64,
    /// Length of the measurement window.
    pub measured_for: Duration,
    /// Open connections now.
    pub connected: i64,
    /// Most connections open at once.
    pub peak_connected: i64,
    /// When each reconnect was established (ms since the Unix epoch), in order.
    pub reconnected_at: Vec<u64>,
}

impl Snapshot {
    /// A plain counter by its report name.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters
            .get(counter_name(counter))
            .copied()
            .unwrap_or_default()
    }

    /// The labelled counters of one family.
    pub fn family(&self, family: Family) -> BTreeMap<String, u64> {
        self.labeled.get(&family).cloned().unwrap_or_default()
    }
}

/// The report name of a counter.
pub fn counter_name(counter: Counter) -> &'static str {
    match counter {
        Counter::ConnAttempted => "connections_attempted",
        Counter::ConnEstablished => "connections_established",
        Counter::ConnClosedByServer => "connections_closed_by_server",
        Counter::ConnDroppedByFault => "connections_dropped_by_fault",
        Counter::Reconnects => "reconnects",
        Counter::BootAccepted => "boot_accepted",
        Counter::BootNotAccepted => "boot_not_accepted",
        Counter::SessionsStarted => "sessions_started",
        Counter::SessionsCompleted => "sessions_completed",
        Counter::SessionsFailed => "sessions_failed",
        Counter::SessionsSkipped => "sessions_skipped",
        Counter::UnexpectedFrames => "unexpected_frames",
        Counter::CallTimeouts => "call_timeouts",
        Counter::MalformedSent => "malformed_sent",
        Counter::MalformedAnswered => "malformed_answered",
        Counter::CsmsCalls => "csms_calls",
        Counter::SlowAnswers => "slow_answers",
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty statistics; the clock starts now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            connected: AtomicI64::new(0),
            peak_connected: AtomicI64::new(0),
            measure_started: Mutex::new(Instant::now()),
        }
    }

    /// When the run started.
    pub fn started(&self) -> Instant {
        self.started
    }

    fn shard(&self, shard: usize) -> MutexGuard<'_, Shard> {
        let lock = &self.shards[shard % SHARDS];
        // a panicking charger task cannot leave a counter half-written: keep counting
        lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one event.
    pub fn incr(&self, shard: usize, counter: Counter) {
        let index = Counter::ALL
            .iter()
            .position(|c| *c == counter)
            .unwrap_or_default();
        self.shard(shard).counters[index] += 1;
    }

    /// Counts one labelled event (no allocation once the label has been seen).
    pub fn incr_label(&self, shard: usize, family: Family, label: &str) {
        let mut s = self.shard(shard);
        let labels = s.labeled.entry(family).or_default();
        if let Some(n) = labels.get_mut(label) {
            *n += 1;
        } else if family == Family::Errors && labels.len() >= MAX_DISTINCT_ERRORS {
            *labels
                .entry("(more distinct errors omitted)".into())
                .or_default() += 1;
        } else {
            labels.insert(label.to_string(), 1);
        }
    }

    /// Records a completed round trip of `action`.
    pub fn round_trip(&self, shard: usize, action: &str, elapsed: Duration) {
        self.record(shard, action, elapsed, true);
    }

    /// Records how long `what` took without counting it as a round trip (the throughput and
    /// the per-second window stay OCPP messages only): e.g. the WebSocket handshake.
    pub fn latency(&self, shard: usize, what: &str, elapsed: Duration) {
        self.record(shard, what, elapsed, false);
    }

    fn record(&self, shard: usize, action: &str, elapsed: Duration, round_trip: bool) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut s = self.shard(shard);
        if round_trip {
            s.measured += 1;
            s.window.saturating_record(micros);
        }
        match s.latency.get_mut(action) {
            Some(h) => h.saturating_record(micros),
            None => {
                let mut h = histogram();
                h.saturating_record(micros);
                s.latency.insert(action.to_string(), h);
            }
        }
    }

    /// A connection opened.
    pub fn connection_opened(&self) {
        let now = self.connected.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_connected.fetch_max(now, Ordering::Relaxed);
    }

    /// A charger connected again after an earlier connection of its own.
    pub fn reconnected(&self, shard: usize) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let mut s = self.shard(shard);
        // bounded: a run that reconnects more than this is not a storm measurement
        if s.reconnected_at.len() < MAX_RECONNECT_TIMES {
            s.reconnected_at.push(now);
        }
    }

    /// A connection closed.
    pub fn connection_closed(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }

    /// Open connections now.
    pub fn connected(&self) -> i64 {
        self.connected.load(Ordering::Relaxed)
    }

    /// Starts the measurement window afresh: latency and throughput cover what follows.
    pub fn reset_measurements(&self) {
        for i in 0..SHARDS {
            let mut s = self.shard(i);
            s.latency.clear();
            s.measured = 0;
        }
        *self
            .measure_started
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Round trips and their latency histogram since the previous call (for the timeline).
    pub fn take_window(&self) -> (u64, Histogram<u64>) {
        let mut merged = histogram();
        for i in 0..SHARDS {
            let mut s = self.shard(i);
            let _ = merged.add(&s.window);
            s.window.reset();
        }
        (merged.len(), merged)
    }

    /// Merges all shards.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            connected: self.connected(),
            peak_connected: self.peak_connected.load(Ordering::Relaxed),
            measured_for: self
                .measure_started
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed(),
            ..Snapshot::default()
        };
        for counter in Counter::ALL {
            snap.counters.insert(counter_name(counter), 0);
        }
        for i in 0..SHARDS {
            let s = self.shard(i);
            for (index, counter) in Counter::ALL.iter().enumerate() {
                *snap.counters.entry(counter_name(*counter)).or_default() += s.counters[index];
            }
            for (family, labels) in &s.labeled {
                let merged = snap.labeled.entry(*family).or_default();
                for (label, n) in labels {
                    *merged.entry(label.clone()).or_default() += n;
                }
            }
            for (action, h) in &s.latency {
                let merged = snap.latency.entry(action.clone()).or_insert_with(histogram);
                let _ = merged.add(h);
            }
            snap.measured_round_trips += s.measured;
            snap.reconnected_at.extend_from_slice(&s.reconnected_at);
        }
        snap.reconnected_at.sort_unstable();
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merge_into_one_view() {
        let stats = Stats::new();
        stats.incr(0, Counter::ConnAttempted);
        stats.incr(5, Counter::ConnAttempted);
        stats.incr_label(1, Family::Sent, "Heartbeat");
        stats.incr_label(2, Family::Sent, "Heartbeat");
        stats.round_trip(3, "Heartbeat", Duration::from_millis(2));
        stats.round_trip(4, "Heartbeat", Duration::from_millis(4));
        stats.reconnected(6);
        stats.reconnected(1);
        let snap = stats.snapshot();
        assert_eq!(snap.get(Counter::ConnAttempted), 2);
        assert_eq!(snap.reconnected_at.len(), 2);
        assert!(snap.reconnected_at[0] <= snap.reconnected_at[1]);
        assert_eq!(snap.family(Family::Sent).get("Heartbeat"), Some(&2));
        let h = &snap.latency["Heartbeat"];
        assert_eq!(h.len(), 2);
        assert!(h.value_at_quantile(0.99) >= 3900);
        assert_eq!(snap.measured_round_trips, 2);
    }

    #[test]
    fn a_plain_latency_is_kept_apart_from_round_trips() {
        let stats = Stats::new();
        stats.round_trip(0, "Heartbeat", Duration::from_millis(1));
        stats.latency(1, "handshake", Duration::from_millis(7));
        let snap = stats.snapshot();
        assert_eq!(snap.measured_round_trips, 1);
        assert_eq!(snap.latency["handshake"].len(), 1);
        assert!(snap.latency["handshake"].value_at_quantile(0.5) >= 6900);
        let (n, _) = stats.take_window();
        assert_eq!(n, 1, "the per-second window counts OCPP round trips only");
    }

    #[test]
    fn reset_starts_a_new_measurement_window() {
        let stats = Stats::new();
        stats.round_trip(0, "Heartbeat", Duration::from_millis(1));
        stats.reset_measurements();
        let snap = stats.snapshot();
        assert_eq!(snap.measured_round_trips, 0);
        assert!(snap.latency.is_empty());
        let (n, _) = stats.take_window();
        assert_eq!(
            n, 1,
            "the timeline window is independent of measurement resets"
        );
    }

    #[test]
    fn connection_gauge_tracks_its_peak() {
        let stats = Stats::new();
        stats.connection_opened();
        stats.connection_opened();
        stats.connection_closed();
        let snap = stats.snapshot();
        assert_eq!((snap.connected, snap.peak_connected), (1, 2));
    }
}
