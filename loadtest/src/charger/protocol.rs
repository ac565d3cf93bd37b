//! The contract between the version-independent charger loop and the OCPP version modules:
//! what a CSMS call's answer looks like, what must happen after it, and the payloads each
//! version builds for the charger's own calls.

use serde_json::Value;

use super::state::{ChargerState, Status};
use super::Plan;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The run is over; the socket was closed cleanly.
    Finished,
    /// The CSMS asked for a reset: reconnect after the reboot delay and boot again.
    Reboot,
    /// The fault injector dropped the connection.
    Dropped,
    /// The CSMS closed the connection, or it broke.
    ClosedByServer(String),
}

/// Why a transaction stops, mapped to each version's reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The driver ended it at the charger (or the session length elapsed).
    Local,
    /// RemoteStopTransaction / RequestStopTransaction.
    Remote,
    /// The CSMS refused the idTag.
    DeAuthorized,
    /// Reset by the CSMS.
    Reset,
    /// UnlockConnector while charging.
    Unlock,
}

/// Something to do after answering a CSMS call.
#[derive(Debug, Clone, PartialEq)]
pub enum Followup {
    /// Start a transaction (remote start).
    Start {
        /// 1-based connector / EVSE.
        connector: usize,
        /// Tag to present.
        id_tag: String,
        /// 2.0.1 remoteStartId.
        remote_start_id: Option<i64>,
    },
    /// Stop the transaction on a connector.
    Stop {
        /// 1-based connector / EVSE.
        connector: usize,
        /// Why.
        reason: StopReason,
    },
    /// Report a connector's status.
    Status(usize),
    /// Send these (TriggerMessage).
    Trigger(Trigger),
    /// Close the socket and boot again after a pause.
    Reboot,
}

/// Messages a CSMS can trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// BootNotification.
    Boot,
    /// Heartbeat.
    Heartbeat,
    /// StatusNotification of one connector or all.
    Status(Option<usize>),
    /// MeterValues of one connector or all.
    Meter(Option<usize>),
    /// A firmware/diagnostics/log status notification: (action, payload).
    Notification(&'static str, &'static str),
}

/// The answer to a CSMS call: the CALLRESULT payload or a CALLERROR, then follow-ups.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// `Ok(payload)` or `Err((code, description))`.
    pub reply: Result<Value, (&'static str, String)>,
    /// Done once the reply is on the wire.
    pub then: Vec<Followup>,
}

impl Answer {
    /// A CALLRESULT without follow-ups.
    pub fn ok(payload: Value) -> Self {
        Self {
            reply: Ok(payload),
            then: Vec::new(),
        }
    }

    /// A CALLRESULT with follow-ups.
    pub fn then(payload: Value, then: Vec<Followup>) -> Self {
        Self {
            reply: Ok(payload),
            then,
        }
    }

    /// A CALLERROR.
    pub fn error(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            reply: Err((code, description.into())),
            then: Vec::new(),
        }
    }
}

/// The version-specific half of a charger.
pub trait Protocol: Sync {
    /// BootNotification payload.
    fn boot(&self, plan: &Plan) -> Value;
    /// (accepted, interval in seconds) from the BootNotification answer.
    fn boot_result(&self, payload: &Value) -> (bool, Option<f64>);
    /// StatusNotification for a connector.
    fn status(&self, connector: usize, status: Status) -> (&'static str, Value);
    /// The call that starts the transaction on `connector`.
    fn start(&self, state: &mut ChargerState, connector: usize) -> (&'static str, Value);
    /// The transaction id (1.6) or `None` when the start was accepted, the refusing status if not.
    fn start_result(&self, payload: &Value) -> Result<Option<String>, String>;
    /// A periodic meter reading for the transaction on `connector`.
    fn meter(&self, state: &mut ChargerState, connector: usize) -> (&'static str, Value);
    /// The call that ends the transaction on `connector`.
    fn stop(
        &self,
        state: &mut ChargerState,
        connector: usize,
        reason: StopReason,
    ) -> (&'static str, Value);
    /// Answers a CSMS-initiated call.
    fn handle_call(&self, state: &mut ChargerState, action: &str, payload: Value) -> Answer;
}
