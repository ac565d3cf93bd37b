//! The charger's connection loop: the outbound call queue (one call in flight, each with a
//! timeout), the timers (heartbeat, meter values, session start and stop, faults, the end of the
//! run), and what happens when answers and CSMS calls arrive. Version-specific payloads come from
//! the [`Protocol`] of the charger's OCPP version.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub use super::protocol::Outcome;
use super::protocol::{Followup, Protocol, StopReason};
use super::state::{ChargerState, Status};
use super::{v16, v201, Env, HeartbeatPlan, Plan, MIN_BOOT_RETRY};
use crate::connect::{OcppVersion, Ws};
use crate::frame::{self, Incoming};
use crate::stats::{Counter, Family};

/// What one of our calls was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Boot,
    Heartbeat,
    Start(usize),
    Stop(usize),
    Other,
}

impl Purpose {
    /// Start and Stop: messages a charger must deliver, across connections if need be.
    fn is_transaction(self) -> bool {
        matches!(self, Purpose::Start(_) | Purpose::Stop(_))
    }
}

pub(super) struct Outgoing {
    action: &'static str,
    payload: Value,
    purpose: Purpose,
    /// Earlier attempts of this message that got no answer in time.
    attempts: u32,
}

/// How often a transaction message is sent before the charger gives up on it (OCPP's
/// `TransactionMessageAttempts`).
const TRANSACTION_MESSAGE_ATTEMPTS: u32 = 3;

pub(super) struct InFlight {
    id: String,
    action: &'static str,
    purpose: Purpose,
    sent: Instant,
    deadline: Instant,
    /// Kept for transaction messages only: re-sent on the next connection if unanswered.
    payload: Option<Value>,
    attempts: u32,
}

/// Per-connection state, fresh for every connection.
#[derive(Default)]
pub(super) struct Link {
    pub(super) queue: VecDeque<Outgoing>,
    pub(super) in_flight: Option<InFlight>,
    pub(super) delayed: Vec<(Instant, String, Vec<Followup>)>,
    pub(super) heartbeat_due: Option<Instant>,
    pub(super) boot_due: Option<Instant>,
    pub(super) malformed_ids: Vec<String>,
    pub(super) reboot_requested: bool,
}

impl Link {
    /// Start/Stop messages in flight or queued when the connection ended, in order: OCPP
    /// requires a charger to deliver them, so they go out again on the next connection.
    fn unanswered_transaction_messages(&mut self) -> VecDeque<Outgoing> {
        let mut carried = VecDeque::new();
        if let Some(InFlight {
            action,
            purpose,
            payload: Some(payload),
            attempts,
            ..
        }) = self.in_flight.take()
        {
            carried.push_back(Outgoing {
                action,
                payload,
                purpose,
                attempts,
            });
        }
        carried.extend(self.queue.drain(..).filter(|o| o.purpose.is_transaction()));
        carried
    }
}

/// A simulated charger: the plan, the persistent state and the current connection.
pub struct Charger {
    pub(super) plan: Plan,
    pub(super) env: Env,
    pub(super) shard: usize,
    pub(super) proto: &'static dyn Protocol,
    pub(super) state: ChargerState,
    pub(super) rng: StdRng,
    pub(super) booted: bool,
    pub(super) heartbeat_period: Option<Duration>,
    pub(super) sessions_left: u32,
    pub(super) sessions_begun: u32,
    pub(super) next_session_at: Option<Instant>,
    /// When the last local session was due (the cadence of `sessions.every_secs` counts from it).
    pub(super) last_session_due: Option<Instant>,
    pub(super) next_drop_at: Option<Instant>,
    pub(super) next_malformed_at: Option<Instant>,
    pub(super) storms_seen: usize,
    pub(super) draining_until: Option<Instant>,
    pub(super) next_id: u64,
    pub(super) link: Link,
}

fn exp_delay(rng: &mut StdRng, per_sec: f64) -> Option<Duration> {
    (per_sec > 0.0).then(|| {
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        Duration::from_secs_f64((-u.ln() / per_sec).min(1e6))
    })
}

impl Charger {
    /// A charger that has not connected yet.
    pub fn new(plan: Plan, env: Env, seed_rng: &mut StdRng) -> Self {
        let scenario = env.scenario.clone();
        let mut rng = StdRng::seed_from_u64(seed_rng.gen());
        let chargers = f64::from(scenario.chargers);
        let now = Instant::now();
        let next_drop_at =
            exp_delay(&mut rng, scenario.faults.drops_per_sec / chargers).map(|d| now + d);
        let next_malformed_at =
            exp_delay(&mut rng, scenario.faults.malformed_per_sec / chargers).map(|d| now + d);
        let seed_wh = f64::from(plan.index % 1000) * 1000.0;
        Self {
            shard: plan.index as usize,
            proto: match plan.version {
                OcppVersion::V16 => &v16::V16,
                OcppVersion::V201 => &v201::V201,
            },
            state: ChargerState::new(
                scenario.connectors,
                scenario.sessions.power_kw * 1000.0,
                scenario.meter_interval_secs,
                seed_wh,
            ),
            rng,
            booted: false,
            heartbeat_period: None,
            sessions_left: plan.local_sessions,
            sessions_begun: 0,
            next_session_at: None,
            last_session_due: None,
            next_drop_at,
            next_malformed_at,
            storms_seen: 0,
            draining_until: None,
            next_id: 1,
            link: Link::default(),
            plan,
            env,
        }
    }

    /// Counts sessions still open when the charger gives up for good as failed.
    pub fn abandon_open_sessions(&mut self) {
        for c in &mut self.state.connectors {
            if c.tx.take().is_some() {
                self.env.stats.incr(self.shard, Counter::SessionsFailed);
                self.env.stats.incr_label(
                    self.shard,
                    Family::SessionFailures,
                    "still open at the end",
                );
            }
        }
    }

    /// Drives one connection until it ends.
    pub async fn run_connection(&mut self, ws: &mut Ws) -> Outcome {
        let carried = self.link.unanswered_transaction_messages();
        self.link = Link::default();
        let now = Instant::now();
        self.storms_seen = self.storms_passed(now);
        if self.booted {
            self.schedule_heartbeat(now, true);
        } else {
            self.enqueue(
                Purpose::Boot,
                "BootNotification",
                self.proto.boot(&self.plan),
            );
        }
        // like a real charger, deliver the transaction messages the last connection lost
        self.link.queue.extend(carried);
        let mut shutdown = self.env.shutdown.clone();
        loop {
            if let Err(outcome) = self.pump(ws).await {
                return outcome;
            }
            if let Some(outcome) = self.finished(Instant::now()) {
                // like a charger going away on purpose: close handshake, not a dropped socket
                close_cleanly(ws).await;
                return outcome;
            }
            let wake = self.next_wake();
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        self.start_draining(Instant::now());
                    }
                }
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(outcome) = self.on_frame(ws, &text).await {
                            return outcome;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame.map(|f| format!("close {} {}", u16::from(f.code), f.reason)).unwrap_or_else(|| "close frame".into());
                        return Outcome::ClosedByServer(reason);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Outcome::ClosedByServer(e.to_string()),
                    None => return Outcome::ClosedByServer("end of stream".into()),
                },
                _ = tokio::time::sleep_until(wake) => {
                    if let Err(outcome) = self.on_tick(ws, Instant::now()).await {
                        return outcome;
                    }
                }
            }
        }
    }

    // ---- timers ----------------------------------------------------------------------------

    fn storms_passed(&self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.env.start).as_secs_f64();
        self.env
            .scenario
            .faults
            .storms_at_secs
            .iter()
            .filter(|t| **t <= elapsed)
            .count()
    }

    fn next_storm(&self) -> Option<Instant> {
        // storms are sorted once by the scenario's validation
        self.env
            .scenario
            .faults
            .storms_at_secs
            .get(self.storms_seen)
            .map(|t| self.env.start + Duration::from_secs_f64(*t))
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self.draining_until.unwrap_or(self.env.deadline);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                wake = wake.min(t);
            }
        };
        consider(self.link.in_flight.as_ref().map(|f| f.deadline));
        consider(self.link.delayed.iter().map(|d| d.0).min());
        if self.draining_until.is_none() {
            consider(self.link.heartbeat_due);
            consider(self.link.boot_due);
            consider(self.next_session_at);
            consider(self.next_drop_at);
            consider(self.next_storm());
            if self.link.in_flight.is_none() {
                consider(self.next_malformed_at);
            }
        }
        for c in &self.state.connectors {
            if let Some(tx) = &c.tx {
                if !tx.stopping {
                    consider(Some(tx.meter_due));
                    consider(tx.stop_at);
                }
            }
        }
        wake
    }

    fn schedule_heartbeat(&mut self, now: Instant, first: bool) {
        let now = if first && self.env.scenario.heartbeat.after_ramp {
            now.max(self.env.ramp_end)
        } else {
            now
        };
        self.link.heartbeat_due = match (self.plan.heartbeat, self.heartbeat_period) {
            (HeartbeatPlan::Off, _) => None,
            (HeartbeatPlan::Max, _) => Some(now),
            (HeartbeatPlan::Every { offset, .. }, _) if first => Some(now + offset),
            (HeartbeatPlan::Every { period, .. }, _) => Some(now + period),
            (HeartbeatPlan::Server, Some(period)) => Some(now + period),
            (HeartbeatPlan::Server, None) => None,
        };
    }

    fn start_draining(&mut self, now: Instant) {
        if self.draining_until.is_some() {
            return;
        }
        let drain = Duration::from_secs_f64(self.env.scenario.drain_secs.max(0.0));
        self.draining_until = Some(now + drain);
        self.sessions_left = 0;
        self.next_session_at = None;
        self.link.heartbeat_due = None;
        // sessions in progress end as planned, by the middle of the drain at the latest: a
        // local one at its planned stop (ending them all now was a burst of simultaneous stops
        // that no cadence offered, and it made up the tail of the end -> invoice latency), an
        // app-driven one when the app ends it with endSession, or the charger stops it itself
        // (with no drain at all, the run ends with them open, as it always did)
        let until = now + drain / 2;
        for connector in 1..=self.state.connectors.len() {
            match self.state.connectors[connector - 1].tx.as_mut() {
                Some(tx) if !tx.stopping => {
                    tx.stop_at = Some(tx.stop_at.map_or(until, |t| t.min(until)));
                }
                _ => {}
            }
        }
    }

    fn finished(&self, now: Instant) -> Option<Outcome> {
        let idle = self.link.in_flight.is_none() && self.link.queue.is_empty();
        if self.link.reboot_requested && idle && self.link.delayed.is_empty() {
            return Some(Outcome::Reboot);
        }
        let until = self.draining_until?;
        let open = self.state.connectors.iter().any(|c| c.tx.is_some());
        (now >= until || (idle && !open && self.link.delayed.is_empty()))
            .then_some(Outcome::Finished)
    }

    async fn on_tick(&mut self, ws: &mut Ws, now: Instant) -> Result<(), Outcome> {
        if now >= self.env.deadline {
            self.start_draining(now);
        }
        if let Some(storm) = self.next_storm() {
            if now >= storm && self.draining_until.is_none() {
                self.storms_seen += 1;
                return Err(Outcome::Dropped);
            }
        }
        if self.next_drop_at.is_some_and(|t| now >= t) && self.draining_until.is_none() {
            let rate =
                self.env.scenario.faults.drops_per_sec / f64::from(self.env.scenario.chargers);
            self.next_drop_at = exp_delay(&mut self.rng, rate).map(|d| now + d);
            return Err(Outcome::Dropped);
        }
        self.expire_in_flight(now);
        let due: Vec<(String, Vec<Followup>)> = {
            let (ready, later): (Vec<_>, Vec<_>) =
                self.link.delayed.drain(..).partition(|d| d.0 <= now);
            self.link.delayed = later;
            ready
                .into_iter()
                .map(|(_, text, then)| (text, then))
                .collect()
        };
        for (text, then) in due {
            send(ws, text).await?;
            for f in then {
                self.follow(f, now);
            }
        }
        if self.link.boot_due.is_some_and(|t| now >= t) {
            self.link.boot_due = None;
            self.enqueue(
                Purpose::Boot,
                "BootNotification",
                self.proto.boot(&self.plan),
            );
        }
        if self.link.heartbeat_due.is_some_and(|t| now >= t) {
            self.heartbeat_tick(now);
        }
        if let Some(due) = self.next_session_at.filter(|t| now >= *t) {
            self.next_session_at = None;
            self.last_session_due = Some(due);
            self.start_local_session(now);
        }
        for connector in 1..=self.state.connectors.len() {
            self.connector_tick(connector, now);
        }
        if self.next_malformed_at.is_some_and(|t| now >= t) && self.link.in_flight.is_none() {
            let rate =
                self.env.scenario.faults.malformed_per_sec / f64::from(self.env.scenario.chargers);
            self.next_malformed_at = exp_delay(&mut self.rng, rate).map(|d| now + d);
            let id = format!("bad-{}", self.next_id);
            self.next_id += 1;
            let (text, answerable) =
                frame::malformed(self.rng.gen_range(0..frame::MALFORMED_KINDS), &id);
            if answerable {
                self.link.malformed_ids.push(id);
            }
            self.env.stats.incr(self.shard, Counter::MalformedSent);
            send(ws, text).await?;
        }
        Ok(())
    }

    fn heartbeat_tick(&mut self, now: Instant) {
        let pending = self
            .link
            .queue
            .iter()
            .any(|o| o.purpose == Purpose::Heartbeat)
            || self
                .link
                .in_flight
                .as_ref()
                .is_some_and(|f| f.purpose == Purpose::Heartbeat);
        if !pending {
            self.enqueue(Purpose::Heartbeat, "Heartbeat", serde_json::json!({}));
        }
        self.link.heartbeat_due = match (self.plan.heartbeat, self.heartbeat_period) {
            // the next one leaves when this one is answered
            (HeartbeatPlan::Max, _) => None,
            (HeartbeatPlan::Every { period, .. }, _) => {
                let next = self.link.heartbeat_due.map_or(now, |d| d + period);
                Some(if next < now { now + period } else { next })
            }
            (_, Some(period)) => Some(now + period),
            _ => None,
        };
    }

    fn connector_tick(&mut self, connector: usize, now: Instant) {
        let period = self.state.meter_period();
        let Some(tx) = self.state.connectors[connector - 1].tx.as_mut() else {
            return;
        };
        if tx.stopping || (tx.id.is_none() && self.plan.version == OcppVersion::V16) {
            return;
        }
        if tx.stop_at.is_some_and(|t| now >= t) {
            self.stop_tx(connector, StopReason::Local, now);
            return;
        }
        if now >= tx.meter_due {
            tx.meter_due = now + period;
            let nominal = self.state.nominal_w;
            self.state.connectors[connector - 1].advance(now, nominal);
            let (action, payload) = self.proto.meter(&mut self.state, connector);
            self.enqueue(Purpose::Other, action, payload);
        }
    }

    // ---- frames ----------------------------------------------------------------------------

    pub(super) fn enqueue(&mut self, purpose: Purpose, action: &'static str, payload: Value) {
        self.link.queue.push_back(Outgoing {
            action,
            payload,
            purpose,
            attempts: 0,
        });
    }

    /// Sends the next queued call when none is in flight.
    async fn pump(&mut self, ws: &mut Ws) -> Result<(), Outcome> {
        if self.link.in_flight.is_some() {
            return Ok(());
        }
        let Some(out) = self.link.queue.pop_front() else {
            return Ok(());
        };
        let id = self.next_id.to_string();
        self.next_id += 1;
        let text = frame::call(&id, out.action, &out.payload);
        self.env
            .stats
            .incr_label(self.shard, Family::Sent, out.action);
        let sent = Instant::now();
        self.link.in_flight = Some(InFlight {
            id,
            action: out.action,
            purpose: out.purpose,
            sent,
            deadline: sent + Duration::from_secs_f64(self.env.scenario.call_timeout_secs),
            payload: out.purpose.is_transaction().then_some(out.payload),
            attempts: out.attempts,
        });
        send(ws, text).await
    }

    async fn on_frame(&mut self, ws: &mut Ws, text: &str) -> Result<(), Outcome> {
        let now = Instant::now();
        let stats = self.env.stats.clone();
        match frame::parse(text) {
            Ok(Incoming::Call {
                id,
                action,
                payload,
            }) => {
                stats.incr(self.shard, Counter::CsmsCalls);
                stats.incr_label(self.shard, Family::CsmsCalls, &action);
                let answer = self.proto.handle_call(&mut self.state, &action, payload);
                let text = match &answer.reply {
                    Ok(payload) => frame::result(&id, payload),
                    Err((code, description)) => frame::error(&id, code, description),
                };
                let faults = &self.env.scenario.faults;
                if faults.slow_response_share > 0.0 && self.rng.gen_bool(faults.slow_response_share)
                {
                    stats.incr(self.shard, Counter::SlowAnswers);
                    let due = now + Duration::from_millis(faults.slow_response_ms);
                    self.link.delayed.push((due, text, answer.then));
                } else {
                    send(ws, text).await?;
                    for f in answer.then {
                        self.follow(f, now);
                    }
                }
            }
            Ok(Incoming::Result { id, payload }) => match self.take_in_flight(&id) {
                Some(f) => {
                    stats.round_trip(self.shard, f.action, now.saturating_duration_since(f.sent));
                    self.on_result(f.purpose, &payload, now);
                }
                None => self.unexpected(&format!("CALLRESULT for unknown message id {id:?}")),
            },
            Ok(Incoming::Error {
                id,
                code,
                description,
            }) => match self.take_in_flight(&id) {
                Some(f) => {
                    stats.round_trip(self.shard, f.action, now.saturating_duration_since(f.sent));
                    stats.incr_label(
                        self.shard,
                        Family::CallErrors,
                        &format!("{}: {code}", f.action),
                    );
                    stats.incr_label(
                        self.shard,
                        Family::Errors,
                        &format!("CALLERROR {code} for {}: {description}", f.action),
                    );
                    self.on_call_failed(f.purpose, &code, now);
                }
                None => {
                    if let Some(pos) = self.link.malformed_ids.iter().position(|m| *m == id) {
                        self.link.malformed_ids.swap_remove(pos);
                        stats.incr(self.shard, Counter::MalformedAnswered);
                    } else {
                        self.unexpected(&format!("CALLERROR {code} for unknown message id {id:?}"));
                    }
                }
            },
            Err(why) => self.unexpected(&format!("unreadable frame from the CSMS: {why}")),
        }
        Ok(())
    }

    fn unexpected(&self, what: &str) {
        self.env.stats.incr(self.shard, Counter::UnexpectedFrames);
        self.env.stats.incr_label(self.shard, Family::Errors, what);
    }

    fn take_in_flight(&mut self, id: &str) -> Option<InFlight> {
        if self.link.in_flight.as_ref().is_some_and(|f| f.id == id) {
            self.link.in_flight.take()
        } else {
            None
        }
    }

    fn on_result(&mut self, purpose: Purpose, payload: &Value, now: Instant) {
        match purpose {
            Purpose::Boot => {
                let (accepted, interval) = self.proto.boot_result(payload);
                if accepted {
                    self.env.stats.incr(self.shard, Counter::BootAccepted);
                    self.booted = true;
                    if self.heartbeat_period.is_none() {
                        self.heartbeat_period = self
                            .state
                            .config
                            .heartbeat_secs
                            .or(interval)
                            .filter(|s| *s > 0.0)
                            .map(Duration::from_secs_f64);
                    }
                    for connector in 1..=self.state.connectors.len() {
                        let status = self.state.connectors[connector - 1].status;
                        self.set_status(connector, status);
                    }
                    self.schedule_heartbeat(now, true);
                    if self.sessions_left > 0 && self.next_session_at.is_none() {
                        self.next_session_at = Some(now + self.plan.first_session_after);
                    }
                } else {
                    self.env.stats.incr(self.shard, Counter::BootNotAccepted);
                    let retry = interval
                        .map(Duration::from_secs_f64)
                        .unwrap_or(MIN_BOOT_RETRY)
                        .max(MIN_BOOT_RETRY);
                    self.link.boot_due = Some(now + retry);
                }
            }
            Purpose::Heartbeat => {
                if self.plan.heartbeat == HeartbeatPlan::Max && self.draining_until.is_none() {
                    self.enqueue(Purpose::Heartbeat, "Heartbeat", serde_json::json!({}));
                }
            }
            Purpose::Start(connector) => match self.proto.start_result(payload) {
                Ok(id) => {
                    let Some(tx) = self.state.connectors[connector - 1].tx.as_mut() else {
                        return;
                    };
                    if id.is_some() {
                        tx.id = id;
                    }
                    self.env.stats.incr(self.shard, Counter::SessionsStarted);
                    self.set_status(connector, Status::Charging);
                }
                Err(status) => {
                    // like real hardware: a refused tag ends the transaction at once
                    let failure = format!("idTag refused by the CSMS ({status})");
                    if let Some(tx) = self.state.connectors[connector - 1].tx.as_mut() {
                        if let Some(id) = payload.get("transactionId").and_then(Value::as_i64) {
                            tx.id = Some(id.to_string());
                        }
                    }
                    self.stop_tx(connector, StopReason::DeAuthorized, now);
                    self.env.stats.incr(self.shard, Counter::SessionsFailed);
                    self.env
                        .stats
                        .incr_label(self.shard, Family::SessionFailures, &failure);
                    if let Some(tx) = self.state.connectors[connector - 1].tx.as_mut() {
                        // counted already: the stop only tidies up
                        tx.refused = true;
                    }
                }
            },
            Purpose::Stop(connector) => {
                let counted = self.state.connectors[connector - 1]
                    .tx
                    .as_ref()
                    .is_some_and(|t| t.refused);
                if counted {
                    self.state.connectors[connector - 1].tx = None;
                    self.set_status(connector, Status::Available);
                    if self.sessions_left > 0 && self.draining_until.is_none() {
                        self.next_session_at = Some(self.next_session_after(now));
                    }
                } else {
                    self.session_ended(connector, now, None);
                }
            }
            Purpose::Other => {}
        }
    }

    /// The call in flight got no answer by its deadline: a transaction message goes out again,
    /// first, up to [`TRANSACTION_MESSAGE_ATTEMPTS`]; anything else has failed.
    fn expire_in_flight(&mut self, now: Instant) {
        if self
            .link
            .in_flight
            .as_ref()
            .is_none_or(|f| now < f.deadline)
        {
            return;
        }
        let Some(f) = self.link.in_flight.take() else {
            return;
        };
        self.env.stats.incr(self.shard, Counter::CallTimeouts);
        self.env.stats.incr_label(
            self.shard,
            Family::Errors,
            &format!("no answer to {} in time", f.action),
        );
        match f.payload {
            Some(payload) if f.attempts + 1 < TRANSACTION_MESSAGE_ATTEMPTS => {
                self.link.queue.push_front(Outgoing {
                    action: f.action,
                    payload,
                    purpose: f.purpose,
                    attempts: f.attempts + 1,
                })
            }
            _ => self.on_call_failed(f.purpose, "timeout", now),
        }
    }

    fn on_call_failed(&mut self, purpose: Purpose, code: &str, now: Instant) {
        match purpose {
            Purpose::Boot => self.link.boot_due = Some(now + MIN_BOOT_RETRY),
            Purpose::Start(connector) => {
                self.session_ended(connector, now, Some(format!("start failed: {code}")))
            }
            Purpose::Stop(connector) => {
                self.session_ended(connector, now, Some(format!("stop failed: {code}")))
            }
            Purpose::Heartbeat => {
                if self.plan.heartbeat == HeartbeatPlan::Max && self.draining_until.is_none() {
                    self.link.heartbeat_due = Some(now + Duration::from_secs(1));
                }
            }
            Purpose::Other => {}
        }
    }
}

/// How long a closing charger waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Sends a normal close frame and waits (briefly) for the server's answer.
async fn close_cleanly(ws: &mut Ws) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "simulated charger going away".into(),
    };
    if ws.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let deadline = Instant::now() + CLOSE_WAIT;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if matches!(message, Message::Close(_)) {
            break;
        }
    }
}

async fn send(ws: &mut Ws, text: String) -> Result<(), Outcome> {
    ws.send(Message::Text(text))
        .await
        .map_err(|e| Outcome::ClosedByServer(format!("send failed: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;

    use super::*;
    use crate::scenario::Scenario;
    use crate::stats::Stats;

    fn charger(scenario: Scenario) -> Charger {
        let now = Instant::now();
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let plan = Plan::for_charger(&scenario, 0);
        let env = Env {
            scenario: Arc::new(scenario),
            stats: Arc::new(Stats::new()),
            id_tags: Arc::new(Vec::new()),
            start: now,
            ramp_end: now,
            deadline: now,
            shutdown,
        };
        Charger::new(plan, env, &mut StdRng::seed_from_u64(1))
    }

    /// A charger with `connectors` whose runs drain for 10 s.
    fn draining_charger(connectors: u32) -> Charger {
        charger(Scenario {
            chargers: 1,
            connectors,
            drain_secs: 10.0,
            ..Scenario::default()
        })
    }

    #[test]
    fn draining_lets_sessions_end_as_planned_by_the_middle_of_the_drain_at_the_latest() {
        let mut c = draining_charger(3);
        let now = Instant::now();
        let soon = now + Duration::from_secs(2);
        c.begin_tx(1, "APP".into(), (true, None), None, now);
        c.begin_tx(
            2,
            "RFID".into(),
            (false, None),
            Some(now + Duration::from_secs(60)),
            now,
        );
        c.begin_tx(3, "RFID".into(), (false, None), Some(soon), now);
        for (connector, id) in c.state.connectors.iter_mut().zip(["7", "8", "9"]) {
            if let Some(tx) = connector.tx.as_mut() {
                tx.id = Some(id.into());
            }
        }
        c.link.queue.clear();

        c.start_draining(now);

        let plan = |n: usize| {
            c.state.connectors[n]
                .tx
                .as_ref()
                .map(|t| (t.stopping, t.stop_at))
        };
        let middle = Some(now + Duration::from_secs(5));
        assert_eq!(
            plan(0),
            Some((false, middle)),
            "the app's session is left to the app for half the drain"
        );
        assert_eq!(
            plan(1),
            Some((false, middle)),
            "a long local session ends by the middle of the drain"
        );
        assert_eq!(
            plan(2),
            Some((false, Some(soon))),
            "a local session due to end before that ends as planned"
        );
        assert!(c.link.queue.is_empty(), "nothing stops at once");

        // each stop goes out when its time comes
        let stops = |c: &Charger| -> Vec<Purpose> {
            c.link
                .queue
                .iter()
                .filter(|o| o.action == "StopTransaction")
                .map(|o| o.purpose)
                .collect()
        };
        for connector in 1..=3 {
            c.connector_tick(connector, now + Duration::from_secs(1));
        }
        assert!(stops(&c).is_empty(), "no session is due a second in");
        for connector in 1..=3 {
            c.connector_tick(connector, soon);
        }
        assert_eq!(
            stops(&c),
            vec![Purpose::Stop(3)],
            "the short one at its plan"
        );
        for connector in 1..=3 {
            c.connector_tick(connector, now + Duration::from_secs(5));
        }
        assert_eq!(
            stops(&c),
            vec![Purpose::Stop(3), Purpose::Stop(1), Purpose::Stop(2)],
            "the others at the middle of the drain"
        );
    }

    #[test]
    fn a_16_start_not_yet_answered_at_the_deadline_is_stopped_once_the_csms_names_it() {
        let mut c = draining_charger(1);
        let now = Instant::now();
        c.begin_tx(
            1,
            "RFID".into(),
            (false, None),
            Some(now + Duration::from_secs(60)),
            now,
        );
        c.link.queue.clear();
        c.start_draining(now);
        let middle = now + Duration::from_secs(5);
        c.connector_tick(1, middle);
        assert!(
            c.link.queue.is_empty(),
            "no stop before the transaction has an id"
        );
        if let Some(tx) = c.state.connectors[0].tx.as_mut() {
            tx.id = Some("7".into());
        }
        c.connector_tick(1, middle);
        let queued: Vec<_> = c.link.queue.iter().map(|o| (o.action, o.purpose)).collect();
        assert_eq!(queued, vec![("StopTransaction", Purpose::Stop(1))]);
    }

    #[test]
    fn a_timed_out_transaction_message_is_sent_again_until_its_attempts_run_out() {
        let mut c = charger(Scenario {
            chargers: 1,
            ..Scenario::default()
        });
        let now = Instant::now();
        let stop_in_flight = |attempts| InFlight {
            id: "1".into(),
            action: "StopTransaction",
            purpose: Purpose::Stop(1),
            sent: now,
            deadline: now,
            payload: Some(serde_json::json!({ "transactionId": 7 })),
            attempts,
        };
        c.link.queue.clear();
        c.link.in_flight = Some(stop_in_flight(0));
        c.expire_in_flight(now);
        let queued: Vec<_> = c
            .link
            .queue
            .iter()
            .map(|o| (o.action, o.purpose, o.attempts))
            .collect();
        assert_eq!(queued, vec![("StopTransaction", Purpose::Stop(1), 1)]);
        // the last attempt is not sent again
        c.link.queue.clear();
        c.link.in_flight = Some(stop_in_flight(TRANSACTION_MESSAGE_ATTEMPTS - 1));
        c.expire_in_flight(now);
        assert!(c.link.queue.iter().all(|o| o.purpose != Purpose::Stop(1)));
        // a call still within its deadline is left alone
        c.link.in_flight = Some(InFlight {
            deadline: now + Duration::from_secs(5),
            ..stop_in_flight(0)
        });
        c.expire_in_flight(now);
        assert!(c.link.in_flight.is_some());
    }

    #[test]
    fn unanswered_transaction_messages_go_out_again_in_order_and_nothing_else_does() {
        let mut link = Link::default();
        let now = Instant::now();
        link.in_flight = Some(InFlight {
            id: "9".into(),
            action: "StopTransaction",
            purpose: Purpose::Stop(1),
            sent: now,
            deadline: now,
            payload: Some(serde_json::json!({ "transactionId": 7 })),
            attempts: 0,
        });
        for (action, purpose) in [
            ("Heartbeat", Purpose::Heartbeat),
            ("StartTransaction", Purpose::Start(2)),
            ("MeterValues", Purpose::Other),
            ("StopTransaction", Purpose::Stop(2)),
        ] {
            link.queue.push_back(Outgoing {
                action,
                payload: serde_json::json!({}),
                purpose,
                attempts: 0,
            });
        }
        let carried: Vec<_> = link
            .unanswered_transaction_messages()
            .into_iter()
            .map(|o| (o.action, o.purpose))
            .collect();
        assert_eq!(
            carried,
            vec![
                ("StopTransaction", Purpose::Stop(1)),
                ("StartTransaction", Purpose::Start(2)),
                ("StopTransaction", Purpose::Stop(2)),
            ]
        );
        // a heartbeat in flight is not carried over
        link.in_flight = Some(InFlight {
            id: "10".into(),
            action: "Heartbeat",
            purpose: Purpose::Heartbeat,
            sent: now,
            deadline: now,
            payload: None,
            attempts: 0,
        });
        assert!(link.unanswered_transaction_messages().is_empty());
    }
}
