//! The end-of-run report: a JSON document (`--report path.json`) and the human summary printed
//! to stdout. Both come from the same [`Report`], built from a stats snapshot.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::app::AppReport;
use crate::stats::{Counter, Family, Snapshot};

/// Latency percentiles of one action, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// Round trips measured.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// Seconds since the start.
    pub t: f64,
    /// Open connections.
    pub open: i64,
    /// Round trips completed in that second.
    pub round_trips: u64,
    /// Their median latency (ms).
    pub p50_ms: f64,
    /// Their 99th percentile (ms).
    pub p99_ms: f64,
}

/// Connection figures.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Connections {
    /// Attempts (first connections and reconnects).
    pub attempted: u64,
    /// Handshakes completed.
    pub established: u64,
    /// Failed attempts by reason.
    pub failed: BTreeMap<String, u64>,
    /// Established connections the server closed or that broke.
    pub closed_by_server: u64,
    /// Dropped on purpose by the fault injector.
    pub dropped_by_fault: u64,
    /// Reconnection attempts.
    pub reconnects: u64,
    /// Most connections open at once.
    pub peak_open: i64,
    /// Chargers whose BootNotification was accepted.
    pub boots_accepted: u64,
    /// Boots answered Pending/Rejected.
    pub boots_not_accepted: u64,
    /// When each reconnect was established (ms since the Unix epoch), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reconnected_at_unix_ms: Vec<u64>,
}

/// Session figures seen from the chargers.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Sessions {
    /// Local (RFID) sessions planned.
    pub planned_local: u64,
    /// Transactions started (local and remote).
    pub started: u64,
    /// Transactions stopped with the stop answered.
    pub completed: u64,
    /// Sessions that did not complete.
    pub failed: u64,
    /// Local sessions never attempted because their charger could not connect at all (an OCPP
    /// version the server does not speak).
    pub skipped: u64,
    /// ... by reason.
    pub failure_reasons: BTreeMap<String, u64>,
    /// The app side (GraphQL).
    pub app: AppReport,
}

/// Protocol errors: anything a conforming CSMS should never cause.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ProtocolErrors {
    /// CALLERRORs plus unexpected frames.
    pub total: u64,
    /// CALLERRORs to our well-formed calls, by `action: code`.
    pub call_errors: BTreeMap<String, u64>,
    /// Frames we could not parse, or answers to nothing we sent.
    pub unexpected_frames: u64,
}

/// Fault injection figures.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Faults {
    /// Malformed frames sent.
    pub malformed_sent: u64,
    /// ... answered with a CALLERROR.
    pub malformed_answered: u64,
    /// CSMS calls answered late on purpose.
    pub slow_answers: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// Wall time of the run (s).
    pub elapsed_secs: f64,
    /// Chargers simulated.
    pub chargers: u32,
    /// Chargers per OCPP version.
    pub versions: BTreeMap<String, u32>,
    /// Connections.
    pub connections: Connections,
    /// Calls sent by action.
    pub sent: BTreeMap<String, u64>,
    /// CSMS calls received by action.
    pub csms_calls: BTreeMap<String, u64>,
    /// Length of the measurement window (after ramp-up and warm-up).
    pub measured_secs: f64,
    /// Round trips completed in the measurement window.
    pub round_trips: u64,
    /// ... per second.
    pub round_trips_per_sec: f64,
    /// Latency per action over the measurement window.
    pub latency_ms: BTreeMap<String, Latency>,
    /// Sessions.
    pub sessions: Sessions,
    /// Protocol errors.
    pub protocol_errors: ProtocolErrors,
    /// Calls that got no answer in time.
    pub call_timeouts: u64,
    /// Fault injection.
    pub faults: Faults,
    /// Every error message, with counts.
    pub errors: BTreeMap<String, u64>,
    /// CPU seconds (user + system) the simulator process used, where /proc tells (Linux): the
    /// load generator shares the machine, and this says how much of it it took.
    pub simulator_cpu_secs: Option<f64>,
    /// The machine's CPU over the measurement window (up to the scenario's deadline), by kind and
    /// by process name, where /proc tells (Linux).
    pub machine: Option<crate::machine::MachineCpu>,
    /// Per-second throughput and latency.
    pub timeline: Vec<Point>,
}

/// User + system CPU seconds of this process so far, from /proc/self/stat (Linux only).
pub fn own_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, ticks, _) = crate::machine::parse_pid_stat(&stat)?;
    // USER_HZ is 100 on every Linux platform Rust supports
    Some((ticks as f64 / 100.0 * 100.0).round() / 100.0)
}

fn ms(micros: u64) -> f64 {
    (micros as f64 / 10.0).round() / 100.0
}

/// Percentiles of a µs histogram, in ms.
pub fn latency(h: &hdrhistogram::Histogram<u64>) -> Latency {
    Latency {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: (h.mean() / 10.0).round() / 100.0,
    }
}

impl Report {
    /// Fills the measured parts from a snapshot.
    pub fn absorb(&mut self, snap: &Snapshot) {
        self.connections = Connections {
            attempted: snap.get(Counter::ConnAttempted),
            established: snap.get(Counter::ConnEstablished),
            failed: snap.family(Family::ConnFailures),
            closed_by_server: snap.get(Counter::ConnClosedByServer),
            dropped_by_fault: snap.get(Counter::ConnDroppedByFault),
            reconnects: snap.get(Counter::Reconnects),
            peak_open: snap.peak_connected,
            boots_accepted: snap.get(Counter::BootAccepted),
            boots_not_accepted: snap.get(Counter::BootNotAccepted),
            reconnected_at_unix_ms: snap.reconnected_at.clone(),
        };
        self.sent = snap.family(Family::Sent);
        self.csms_calls = snap.family(Family::CsmsCalls);
        self.measured_secs = (snap.measured_for.as_secs_f64() * 100.0).round() / 100.0;
        self.round_trips = snap.measured_round_trips;
        self.round_trips_per_sec = if self.measured_secs > 0.0 {
            (snap.measured_round_trips as f64 / snap.measured_for.as_secs_f64()).round()
        } else {
            0.0
        };
        self.latency_ms = snap
            .latency
            .iter()
            .map(|(a, h)| (a.clone(), latency(h)))
            .collect();
        self.sessions.started = snap.get(Counter::SessionsStarted);
        self.sessions.completed = snap.get(Counter::SessionsCompleted);
        self.sessions.failed = snap.get(Counter::SessionsFailed);
        self.sessions.skipped = snap.get(Counter::SessionsSkipped);
        self.sessions.failure_reasons = snap.family(Family::SessionFailures);
        let call_errors = snap.family(Family::CallErrors);
        let unexpected = snap.get(Counter::UnexpectedFrames);
        self.protocol_errors = ProtocolErrors {
            total: call_errors.values().sum::<u64>() + unexpected,
            call_errors,
            unexpected_frames: unexpected,
        };
        self.call_timeouts = snap.get(Counter::CallTimeouts);
        self.faults = Faults {
            malformed_sent: snap.get(Counter::MalformedSent),
            malformed_answered: snap.get(Counter::MalformedAnswered),
            slow_answers: snap.get(Counter::SlowAnswers),
        };
        self.errors = snap.family(Family::Errors);
    }

    /// Connection attempts that failed.
    pub fn failed_connections(&self) -> u64 {
        self.connections.failed.values().sum()
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let c = &self.connections;
        let _ = writeln!(
            out,
            "scenario {} · {} chargers {:?} · {:.1} s",
            self.scenario, self.chargers, self.versions, self.elapsed_secs
        );
        let _ = writeln!(
            out,
            "connections: {} attempted, {} established, {} failed {:?}, peak open {}, closed by server {}, dropped by fault {}, reconnects {}",
            c.attempted, c.established, self.failed_connections(), c.failed, c.peak_open, c.closed_by_server, c.dropped_by_fault, c.reconnects
        );
        let _ = writeln!(
            out,
            "boots: {} accepted, {} not accepted",
            c.boots_accepted, c.boots_not_accepted
        );
        let _ = writeln!(
            out,
            "throughput: {} round trips in {:.1} s = {:.0}/s",
            self.round_trips, self.measured_secs, self.round_trips_per_sec
        );
        if !self.latency_ms.is_empty() {
            let _ = writeln!(
                out,
                "{:<28} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
            );
            for (action, l) in &self.latency_ms {
                let _ = writeln!(
                    out,
                    "{action:<28} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                    l.count, l.p50, l.p90, l.p99, l.p999, l.max
                );
            }
        }
        let s = &self.sessions;
        let _ = writeln!(
            out,
            "sessions: {} local planned, {} started, {} completed, {} failed {:?}, {} skipped",
            s.planned_local, s.started, s.completed, s.failed, s.failure_reasons, s.skipped
        );
        let a = &s.app;
        match a.status.as_str() {
            "skipped" => {
                let _ = writeln!(
                    out,
                    "app sessions: SKIPPED ({} planned): {}",
                    a.sessions_planned,
                    a.reason.as_deref().unwrap_or_default()
                );
            }
            "ran" => {
                let _ = writeln!(out, "app sessions: {} planned, {} requested, {} in progress, {} completed, {} not started (run over), failures {:?}", a.sessions_planned, a.sessions_requested, a.sessions_in_progress, a.sessions_completed, a.sessions_not_started, a.failures);
            }
            _ => {}
        }
        if a.users_registered > 0 {
            let _ = writeln!(out, "drivers registered: {}", a.users_registered);
        }
        let p = &self.protocol_errors;
        let _ = writeln!(
            out,
            "protocol errors: {} (CALLERRORs {:?}, unexpected frames {}), call timeouts {}",
            p.total, p.call_errors, p.unexpected_frames, self.call_timeouts
        );
        let f = &self.faults;
        if f.malformed_sent + f.slow_answers + c.dropped_by_fault > 0 {
            let _ = writeln!(
                out,
                "faults: {} malformed sent ({} answered with CALLERROR), {} slow answers",
                f.malformed_sent, f.malformed_answered, f.slow_answers
            );
        }
        if let Some(cpu) = self.simulator_cpu_secs {
            let _ = writeln!(out, "simulator CPU: {cpu:.1} s");
        }
        if let Some(machine) = &self.machine {
            let _ = writeln!(out, "{}", machine.summary());
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "errors:");
            let mut errors: Vec<_> = self.errors.iter().collect();
            errors.sort_by(|a, b| b.1.cmp(a.1));
            for (message, n) in errors.into_iter().take(15) {
                let _ = writeln!(out, "  {n:>8} × {message}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use std::time::Duration;

    #[test]
    fn own_cpu_time_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = x.wrapping_add(i * i);
            }
            assert!(x > 0);
            assert!(own_cpu_secs().is_some_and(|s| s >= 0.0));
        }
    }

    #[test]
    fn a_snapshot_becomes_a_report_with_protocol_errors_summed() {
        let stats = Stats::new();
        stats.incr(0, Counter::ConnAttempted);
        stats.incr(0, Counter::ConnEstablished);
        stats.incr_label(0, Family::CallErrors, "Heartbeat: InternalError");
        stats.incr(1, Counter::UnexpectedFrames);
        stats.incr_label(2, Family::ConnFailures, "http_401");
        stats.round_trip(3, "Heartbeat", Duration::from_micros(1500));
        let mut report = Report::default();
        report.absorb(&stats.snapshot());
        assert_eq!(report.protocol_errors.total, 2);
        assert_eq!(report.failed_connections(), 1);
        assert_eq!(report.latency_ms["Heartbeat"].count, 1);
        assert!((report.latency_ms["Heartbeat"].p50 - 1.5).abs() < 0.05);
        let text = report.summary();
        assert!(text.contains("protocol errors: 2"), "{text}");
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["connections"]["failed"]["http_401"], 1);
    }
}
