//! What every protocol adapter shares: the context a charger-initiated call is handled in, the
//! answer a handler gives, and the effects the charger actor applies once the answer is sent.
//! The actor knows these types only, never a version's payloads.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::error::CallFailure;
use crate::context::AppContext;
use crate::store::charger_writer::ChargerWrite;
use crate::store::chargers::StatusReport;
use crate::store::sessions::SessionRecord;

/// What a handler needs to know about the call it handles.
#[derive(Clone)]
pub struct CallContext {
    pub app: std::sync::Arc<AppContext>,
    /// The charger is quarantined: its BootNotification is answered Pending.
    pub quarantined: bool,
    pub charger_id: String,
    pub received_at: DateTime<Utc>,
}

impl CallContext {
    /// Stores a StatusNotification's report (batched, durable before the answer) and returns
    /// the effect the actor applies; both protocol versions end their handler with this.
    pub async fn store_status(&self, report: StatusReport) -> Result<Effect, CallFailure> {
        let effect = Effect::ConnectorStatus {
            connector_id: report.connector_id,
            status: report.status.clone(),
        };
        self.app
            .charger_store
            .write(ChargerWrite::Status {
                charger_id: self.charger_id.clone(),
                report,
            })
            .await
            .map_err(CallFailure::internal)?;
        Ok(effect)
    }
}

/// Changes the charger actor applies once the answer is on its way.
#[derive(Debug, Clone)]
pub enum Effect {
    /// BootNotification was accepted: CSMS-initiated calls may flow.
    Accepted,
    /// BootNotification was answered Pending: the CSMS may configure and query the charger
    /// (and trigger a new boot) before it is accepted, but starts nothing there.
    BootPending,
    /// A connector (1.6) or EVSE (2.0.1) reported a status.
    ConnectorStatus { connector_id: i32, status: String },
    /// A session changed (started, metered, completed): its state as committed.
    Session(Box<SessionRecord>),
    /// A call to send the charger once the answer is on its way (CertificateSigned after an
    /// accepted SignCertificate); `what` names it in the log with the charger's answer.
    Send {
        command: crate::ocpp::command::ChargerCommand,
        what: &'static str,
    },
}

/// A handler's answer: the CALLRESULT payload and the effects on the actor.
#[derive(Debug, Clone)]
pub struct Handled {
    pub response: Value,
    pub effects: Vec<Effect>,
}

impl Handled {
    /// Answers with `response` and no effects.
    pub fn reply<T: Serialize>(response: &T) -> Result<Self, CallFailure> {
        Ok(Self {
            response: serde_json::to_value(response).map_err(CallFailure::internal)?,
            effects: Vec::new(),
        })
    }

    /// Adds an effect.
    pub fn with(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }

    /// Adds the effect of a committed session change, if there is one.
    pub fn with_session(self, session: Option<SessionRecord>) -> Self {
        match session {
            Some(session) => self.with(Effect::Session(Box::new(session))),
            None => self,
        }
    }
}

/// The JSON spelling of a `rust-ocpp` enum value (`SuspendedEV`, `Accepted`, ...).
pub fn enum_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}
