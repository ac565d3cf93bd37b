//! A charger's charging sessions: starting local (RFID) sessions on schedule, starting and
//! stopping transactions for local and remote requests, connector status changes, and the
//! follow-ups of CSMS calls (remote start/stop, triggered messages, reboot).

use std::time::Duration;

use tokio::time::Instant;

use super::link::{Charger, Purpose};
use super::protocol::{Followup, StopReason, Trigger};
use super::state::{Status, Transaction};
use crate::connect::OcppVersion;
use crate::stats::{Counter, Family};

impl Charger {
    pub(super) fn start_local_session(&mut self, now: Instant) {
        if !self.booted || self.sessions_left == 0 || self.draining_until.is_some() {
            return;
        }
        let connectors = self.state.connectors.len();
        let preferred = (self.sessions_begun as usize % connectors) + 1;
        let connector = if self.state.connectors[preferred - 1].is_free() {
            Some(preferred)
        } else {
            self.state.first_free()
        };
        let Some(connector) = connector else {
            // busy with a remote session: try again later
            self.next_session_at = Some(now + Duration::from_secs(5));
            return;
        };
        let tags = &self.env.id_tags;
        let id_tag = if tags.is_empty() {
            format!("SIMTAG{:06}", self.plan.index)
        } else {
            tags[(self.plan.index as usize + self.sessions_begun as usize) % tags.len()].clone()
        };
        self.sessions_left -= 1;
        self.sessions_begun += 1;
        let length = Duration::from_secs_f64(self.env.scenario.sessions.length_secs);
        self.begin_tx(connector, id_tag, (false, None), Some(now + length), now);
    }

    pub(super) fn begin_tx(
        &mut self,
        connector: usize,
        id_tag: String,
        (remote, remote_start_id): (bool, Option<i64>),
        stop_at: Option<Instant>,
        now: Instant,
    ) {
        let version = self.plan.version;
        let period = self.state.meter_period();
        let c = &mut self.state.connectors[connector - 1];
        c.advance(now, 0.0);
        c.tx = Some(Transaction {
            id: (version == OcppVersion::V201).then(|| uuid::Uuid::new_v4().to_string()),
            id_tag,
            remote,
            remote_start_id,
            refused: false,
            meter_start_wh: c.energy_wh,
            started: now,
            stop_at,
            meter_due: now + period,
            stopping: false,
            seq_no: 0,
        });
        c.metered_at = now;
        c.status = Status::Preparing;
        let (action, payload) = self.proto.status(connector, Status::Preparing);
        self.enqueue(Purpose::Other, action, payload);
        let (action, payload) = self.proto.start(&mut self.state, connector);
        self.enqueue(Purpose::Start(connector), action, payload);
    }

    pub(super) fn stop_tx(&mut self, connector: usize, reason: StopReason, now: Instant) {
        let version = self.plan.version;
        let Some(c) = self.state.connectors.get_mut(connector.wrapping_sub(1)) else {
            return;
        };
        let Some(tx) = c.tx.as_mut() else {
            return;
        };
        if tx.stopping {
            return;
        }
        if tx.id.is_none() && version == OcppVersion::V16 {
            // not answered yet: stop as soon as the CSMS names the transaction
            tx.stop_at = Some(now);
            return;
        }
        tx.stopping = true;
        let nominal = self.state.nominal_w;
        self.state.connectors[connector - 1].advance(now, nominal);
        let (action, payload) = self.proto.stop(&mut self.state, connector, reason);
        self.enqueue(Purpose::Stop(connector), action, payload);
    }

    pub(super) fn set_status(&mut self, connector: usize, status: Status) {
        if let Some(c) = self.state.connectors.get_mut(connector.wrapping_sub(1)) {
            c.status = status;
            let (action, payload) = self.proto.status(connector, status);
            self.enqueue(Purpose::Other, action, payload);
        }
    }

    pub(super) fn session_ended(
        &mut self,
        connector: usize,
        now: Instant,
        failure: Option<String>,
    ) {
        let Some(c) = self.state.connectors.get_mut(connector.wrapping_sub(1)) else {
            return;
        };
        let Some(tx) = c.tx.take() else {
            return;
        };
        // a TxProfile lives as long as its transaction
        c.limit_w = None;
        match failure {
            Some(reason) => {
                self.env.stats.incr(self.shard, Counter::SessionsFailed);
                self.env
                    .stats
                    .incr_label(self.shard, Family::SessionFailures, &reason);
            }
            None => self.env.stats.incr(self.shard, Counter::SessionsCompleted),
        }
        let _ = tx;
        if self.plan.version == OcppVersion::V16 {
            self.set_status(connector, Status::Finishing);
        }
        let available = if self.state.connectors[connector - 1].inoperative {
            Status::Unavailable
        } else {
            Status::Available
        };
        self.set_status(connector, available);
        if self.sessions_left > 0 && self.draining_until.is_none() {
            self.next_session_at = Some(self.next_session_after(now));
        }
    }

    /// When the next local session starts, a session having ended at `now`: `gap_secs` later,
    /// or on the cadence of `every_secs` (at once when the cadence is behind).
    pub(super) fn next_session_after(&self, now: Instant) -> Instant {
        let sessions = &self.env.scenario.sessions;
        match (sessions.every_secs, self.last_session_due) {
            (Some(every), Some(due)) => (due + Duration::from_secs_f64(every)).max(now),
            _ => now + Duration::from_secs_f64(sessions.gap_secs),
        }
    }

    pub(super) fn follow(&mut self, followup: Followup, now: Instant) {
        match followup {
            Followup::Start {
                connector,
                id_tag,
                remote_start_id,
            } => {
                if self
                    .state
                    .connectors
                    .get(connector.wrapping_sub(1))
                    .is_some_and(|c| c.is_free())
                {
                    // remote sessions last until the CSMS stops them (or the run ends)
                    self.begin_tx(connector, id_tag, (true, remote_start_id), None, now);
                }
            }
            Followup::Stop { connector, reason } => self.stop_tx(connector, reason, now),
            Followup::Status(connector) => {
                if let Some(c) = self.state.connectors.get(connector.wrapping_sub(1)) {
                    let status = c.status;
                    self.set_status(connector, status);
                }
            }
            Followup::Trigger(trigger) => self.trigger(trigger, now),
            Followup::Reboot => self.link.reboot_requested = true,
        }
    }

    pub(super) fn trigger(&mut self, trigger: Trigger, now: Instant) {
        let all: Vec<usize> = (1..=self.state.connectors.len()).collect();
        match trigger {
            Trigger::Boot => self.enqueue(
                Purpose::Boot,
                "BootNotification",
                self.proto.boot(&self.plan),
            ),
            Trigger::Heartbeat => self.enqueue(Purpose::Other, "Heartbeat", serde_json::json!({})),
            Trigger::Status(one) => {
                for connector in one.map(|c| vec![c]).unwrap_or(all) {
                    if let Some(c) = self.state.connectors.get(connector.wrapping_sub(1)) {
                        let status = c.status;
                        self.set_status(connector, status);
                    }
                }
            }
            Trigger::Meter(one) => {
                for connector in one.map(|c| vec![c]).unwrap_or(all) {
                    if connector >= 1 && connector <= self.state.connectors.len() {
                        let nominal = self.state.nominal_w;
                        self.state.connectors[connector - 1].advance(now, nominal);
                        let (action, payload) = self.proto.meter(&mut self.state, connector);
                        self.enqueue(Purpose::Other, action, payload);
                    }
                }
            }
            Trigger::Notification(action, status) => self.enqueue(
                Purpose::Other,
                action,
                serde_json::json!({ "status": status }),
            ),
        }
    }
}
