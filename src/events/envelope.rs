//! The event envelope of `contracts/events.md`: `eventId, eventType, version, timestamp, source`
//! first, then the event's own fields, serialised in that order.

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

/// Payload schema version of every event this build emits.
pub const EVENT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    UserRegistered,
    ChargerConnected,
    ChargerDisconnected,
    ConnectorStatusChanged,
    SessionStarted,
    SessionUpdated,
    SessionEnded,
    InvoiceGenerated,
    PaymentCompleted,
    PaymentFailed,
    OcmSyncCompleted,
    SecurityEvent,
}

impl EventType {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::UserRegistered => "USER_REGISTERED",
            EventType::ChargerConnected => "CHARGER_CONNECTED",
            EventType::ChargerDisconnected => "CHARGER_DISCONNECTED",
            EventType::ConnectorStatusChanged => "CONNECTOR_STATUS_CHANGED",
            EventType::SessionStarted => "SESSION_STARTED",
            EventType::SessionUpdated => "SESSION_UPDATED",
            EventType::SessionEnded => "SESSION_ENDED",
            EventType::InvoiceGenerated => "INVOICE_GENERATED",
            EventType::PaymentCompleted => "PAYMENT_COMPLETED",
            EventType::PaymentFailed => "PAYMENT_FAILED",
            EventType::OcmSyncCompleted => "OCM_SYNC_COMPLETED",
            EventType::SecurityEvent => "SECURITY_EVENT",
        }
    }

    /// The AMQP routing key: lower case, `_` turned into `.` (`SESSION_ENDED` -> `session.ended`).
    pub fn routing_key(&self) -> String {
        self.as_str().to_ascii_lowercase().replace('_', ".")
    }
}

fn rfc3339<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn rfc3339_opt<S: Serializer>(ts: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => rfc3339(ts, s),
        None => s.serialize_none(),
    }
}

/// The event-specific fields, in the order the contract lists them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Event {
    UserRegistered {
        #[serde(rename = "userId")]
        user_id: Uuid,
        email: String,
    },
    ChargerConnected {
        #[serde(rename = "chargerId")]
        charger_id: String,
        protocol: String,
        #[serde(rename = "nodeId")]
        node_id: String,
    },
    ChargerDisconnected {
        #[serde(rename = "chargerId")]
        charger_id: String,
        #[serde(rename = "nodeId")]
        node_id: String,
    },
    ConnectorStatusChanged {
        #[serde(rename = "chargerId")]
        charger_id: String,
        #[serde(rename = "connectorId")]
        connector_id: i32,
        status: String,
    },
    SessionStarted {
        #[serde(rename = "sessionId")]
        session_id: Uuid,
        #[serde(rename = "userId")]
        user_id: Uuid,
        #[serde(rename = "stationId")]
        station_id: Uuid,
        #[serde(rename = "chargerId")]
        charger_id: String,
        #[serde(rename = "connectorId")]
        connector_id: Option<i32>,
        #[serde(rename = "startedAt", serialize_with = "rfc3339")]
        started_at: DateTime<Utc>,
    },
    SessionUpdated {
        #[serde(rename = "sessionId")]
        session_id: Uuid,
        #[serde(rename = "userId")]
        user_id: Uuid,
        #[serde(rename = "energyKwh")]
        energy_kwh: f64,
        #[serde(rename = "powerKw")]
        power_kw: Option<f64>,
        status: String,
    },
    SessionEnded {
        #[serde(rename = "sessionId")]
        session_id: Uuid,
        #[serde(rename = "userId")]
        user_id: Uuid,
        #[serde(rename = "stationId")]
        station_id: Uuid,
        #[serde(rename = "chargerId")]
        charger_id: String,
        #[serde(rename = "energyKwh")]
        energy_kwh: f64,
        #[serde(rename = "durationMinutes")]
        duration_minutes: i64,
        #[serde(rename = "endedAt", serialize_with = "rfc3339")]
        ended_at: DateTime<Utc>,
        #[serde(rename = "stopReason")]
        stop_reason: String,
    },
    InvoiceGenerated {
        #[serde(rename = "invoiceId")]
        invoice_id: Uuid,
        #[serde(rename = "sessionId")]
        session_id: Uuid,
        #[serde(rename = "userId")]
        user_id: Uuid,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        currency: String,
        #[serde(rename = "dueDate", serialize_with = "rfc3339")]
        due_date: DateTime<Utc>,
    },
    PaymentCompleted {
        #[serde(rename = "invoiceId")]
        invoice_id: Uuid,
        #[serde(rename = "userId")]
        user_id: Uuid,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        currency: String,
        #[serde(rename = "paidAt", serialize_with = "rfc3339_opt")]
        paid_at: Option<DateTime<Utc>>,
    },
    PaymentFailed {
        #[serde(rename = "invoiceId")]
        invoice_id: Uuid,
        #[serde(rename = "userId")]
        user_id: Uuid,
        reason: String,
    },
    OcmSyncCompleted {
        /// The OCM source (API base URL or dump file name); the envelope's `source` names the emitter.
        #[serde(rename = "ocmSource")]
        ocm_source: String,
        #[serde(rename = "startedAt", serialize_with = "rfc3339")]
        started_at: DateTime<Utc>,
        #[serde(rename = "finishedAt", serialize_with = "rfc3339")]
        finished_at: DateTime<Utc>,
        processed: u64,
        updated: u64,
        failed: u64,
    },
    /// A critical security event, reported by a charger or observed by the server (extension).
    SecurityEvent {
        #[serde(rename = "chargerId")]
        charger_id: Option<String>,
        #[serde(rename = "securityEventType")]
        security_event_type: String,
        #[serde(rename = "techInfo")]
        tech_info: Option<String>,
        /// `charger` or `server`
        origin: String,
    },
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::UserRegistered { .. } => EventType::UserRegistered,
            Event::ChargerConnected { .. } => EventType::ChargerConnected,
            Event::ChargerDisconnected { .. } => EventType::ChargerDisconnected,
            Event::ConnectorStatusChanged { .. } => EventType::ConnectorStatusChanged,
            Event::SessionStarted { .. } => EventType::SessionStarted,
            Event::SessionUpdated { .. } => EventType::SessionUpdated,
            Event::SessionEnded { .. } => EventType::SessionEnded,
            Event::InvoiceGenerated { .. } => EventType::InvoiceGenerated,
            Event::PaymentCompleted { .. } => EventType::PaymentCompleted,
            Event::PaymentFailed { .. } => EventType::PaymentFailed,
            Event::OcmSyncCompleted { .. } => EventType::OcmSyncCompleted,
            Event::SecurityEvent { .. } => EventType::SecurityEvent,
        }
    }

    /// The entity the event is about; the relay keeps order per aggregate.
    pub fn aggregate_id(&self) -> String {
        match self {
            Event::UserRegistered { user_id, .. } => user_id.to_string(),
            Event::ChargerConnected { charger_id, .. }
            | Event::ChargerDisconnected { charger_id, .. }
            | Event::ConnectorStatusChanged { charger_id, .. } => format!("charger:{charger_id}"),
            Event::SessionStarted { session_id, .. }
            | Event::SessionUpdated { session_id, .. }
            | Event::SessionEnded { session_id, .. } => session_id.to_string(),
            Event::InvoiceGenerated { invoice_id, .. }
            | Event::PaymentCompleted { invoice_id, .. }
            | Event::PaymentFailed { invoice_id, .. } => invoice_id.to_string(),
            Event::OcmSyncCompleted { .. } => "ocm-sync".into(),
            Event::SecurityEvent { charger_id, .. } => {
                format!("security:{}", charger_id.as_deref().unwrap_or("server"))
            }
        }
    }
}

/// One message on the `chargegrid.events` exchange.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    #[serde(rename = "eventId")]
    pub event_id: Uuid,
    #[serde(rename = "eventType")]
    pub event_type: EventType,
    pub version: u32,
    #[serde(serialize_with = "rfc3339")]
    pub timestamp: DateTime<Utc>,
    pub source: String,
    #[serde(flatten)]
    pub event: Event,
}

impl Envelope {
    /// Wraps `event`, which happened at `timestamp`, emitted by `source`. The id is a UUIDv7:
    /// ordered by time, so the unique indexes that hold event ids (the outbox's and the
    /// consumers' de-duplication rows) grow at their right edge instead of at a random leaf
    /// for every event (ADR 016, fourth amendment).
    pub fn new(event: Event, timestamp: DateTime<Utc>, source: impl Into<String>) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event.event_type(),
            version: EVENT_VERSION,
            timestamp,
            source: source.into(),
            event,
        }
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_uuid_v7_in_the_order_they_were_made() {
        let made = |n: u32| {
            let event = Event::UserRegistered {
                user_id: Uuid::nil(),
                email: format!("driver{n}@example.com"),
            };
            Envelope::new(event, Utc::now(), "test").event_id
        };
        let ids: Vec<Uuid> = (0..100).map(made).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7), "{ids:?}");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }

    #[test]
    fn envelope_fields_come_first_in_contract_order() {
        let ts = DateTime::parse_from_rfc3339("2026-02-21T14:31:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let env = Envelope::new(
            Event::SessionEnded {
                session_id: Uuid::nil(),
                user_id: Uuid::nil(),
                station_id: Uuid::nil(),
                charger_id: "CP-0001".into(),
                energy_kwh: 22.4,
                duration_minutes: 58,
                ended_at: ts,
                stop_reason: "Remote".into(),
            },
            ts,
            "chargegrid-serve/chargegrid-0",
        );
        let json = env.to_json().unwrap_or_default();
        let keys: Vec<&str> = [
            "eventId",
            "eventType",
            "version",
            "timestamp",
            "source",
            "sessionId",
            "userId",
            "stationId",
            "chargerId",
            "energyKwh",
            "durationMinutes",
            "endedAt",
            "stopReason",
        ]
        .to_vec();
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| json.find(&format!("\"{k}\"")).unwrap_or(usize::MAX))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert!(json.contains("\"eventType\":\"SESSION_ENDED\""));
        assert!(json.contains("\"endedAt\":\"2026-02-21T14:31:00Z\""));
    }

    #[test]
    fn routing_keys_follow_the_contract() {
        assert_eq!(EventType::SessionEnded.routing_key(), "session.ended");
        assert_eq!(
            EventType::OcmSyncCompleted.routing_key(),
            "ocm.sync.completed"
        );
    }
}
