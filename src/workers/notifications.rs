//! The notification worker: lifecycle events become user notifications published over MQTT
//! (QoS 1) on `chargegrid/users/{userId}/notifications`, de-duplicated by eventId. Critical
//! security events (`SECURITY_EVENT`) go to the operators, on `chargegrid/operators/security`.

use std::collections::HashSet;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::mqtt::MqttPublisher;
use crate::context::CoreContext;
use crate::events::consumer::{EventHandler, HandleError, ReceivedEvent};
use crate::store::batch::{BatchFuture, Batcher};

pub struct NotificationHandler {
    ctx: CoreContext,
    mqtt: MqttPublisher,
    dedup: Batcher<Dedup, Result<bool, String>>,
}

/// The most events one de-duplication statement covers.
const MAX_DEDUP_BATCH: usize = 1_000;

/// One de-duplication request: was this event notified already (answered: whether it was), or
/// record that it now is (answered: false).
#[derive(Debug, Clone, Copy)]
enum Dedup {
    Seen(Uuid),
    Done(Uuid),
}

impl NotificationHandler {
    /// Starts the de-duplication batcher (needs a runtime): the look-ups of the events in hand
    /// and the records of those already published share one statement (one commit).
    pub fn new(ctx: CoreContext, mqtt: MqttPublisher) -> Self {
        let pool = ctx.db.clone();
        let dedup = Batcher::start(MAX_DEDUP_BATCH, None, move |items: Vec<Dedup>| {
            let pool = pool.clone();
            Box::pin(async move { deduplicate(&pool, items).await }) as BatchFuture<_>
        });
        Self { ctx, mqtt, dedup }
    }
}

/// Records the `Done` events as notified and tells which `Seen` events were, in one statement.
/// The look-up does not see the records the same statement writes, so an event recorded in the
/// batch counts as notified as well (a duplicate looked up while its original is recorded).
async fn deduplicate(pool: &PgPool, items: Vec<Dedup>) -> Vec<Result<bool, String>> {
    let (mut seen, mut done) = (Vec::new(), Vec::new());
    for item in &items {
        match item {
            Dedup::Seen(id) => seen.push(*id),
            Dedup::Done(id) => done.push(*id),
        }
    }
    let found: Result<Vec<Uuid>, sqlx::Error> = sqlx::query_scalar(
        "WITH done AS (INSERT INTO processed_events (consumer, event_id) \
             SELECT 'notifications', e FROM unnest($2::uuid[]) AS e ON CONFLICT DO NOTHING) \
         SELECT event_id FROM processed_events \
         WHERE consumer = 'notifications' AND event_id = ANY($1)",
    )
    .bind(&seen)
    .bind(&done)
    .fetch_all(pool)
    .await;
    match found {
        Ok(found) => {
            // a record in this very statement counts too (its insert is not in the look-up's
            // snapshot): the event it records was published
            let found: HashSet<Uuid> = found.into_iter().chain(done).collect();
            items
                .iter()
                .map(|item| {
                    Ok(match item {
                        Dedup::Seen(id) => found.contains(id),
                        Dedup::Done(_) => false,
                    })
                })
                .collect()
        }
        Err(e) => items.iter().map(|_| Err(e.to_string())).collect(),
    }
}

fn text(body: &Value, field: &str) -> String {
    match body.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Where operators are told about critical security events.
pub const OPERATOR_SECURITY_TOPIC: &str = "chargegrid/operators/security";

/// The notification for an event, or `None` for events nobody is told about.
pub fn notification(event: &ReceivedEvent) -> Option<(String, Value)> {
    let b = &event.body;
    if event.event_type == "SECURITY_EVENT" {
        let charger = text(b, "chargerId");
        let tech_info = text(b, "techInfo");
        let message = json!({
            "eventId": event.event_id,
            "eventType": event.event_type,
            "title": format!("Security event: {}", text(b, "securityEventType")),
            "body": if tech_info.is_empty() {
                format!("Charger {charger} ({}).", text(b, "origin"))
            } else {
                format!("Charger {charger} ({}): {tech_info}", text(b, "origin"))
            },
            "chargerId": charger,
            "timestamp": event.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        return Some((OPERATOR_SECURITY_TOPIC.to_string(), message));
    }
    let (title, body) = match event.event_type.as_str() {
        "SESSION_STARTED" => (
            "Charging started".to_string(),
            format!(
                "Your session at charger {} has started.",
                text(b, "chargerId")
            ),
        ),
        "SESSION_ENDED" => (
            "Charging complete".to_string(),
            format!(
                "{} kWh delivered in {} min.",
                text(b, "energyKwh"),
                text(b, "durationMinutes")
            ),
        ),
        "INVOICE_GENERATED" => (
            "Invoice ready".to_string(),
            format!(
                "{} {} due by {}.",
                text(b, "amount"),
                text(b, "currency"),
                text(b, "dueDate")
            ),
        ),
        "PAYMENT_COMPLETED" => (
            "Payment received".to_string(),
            format!("{} {} paid.", text(b, "amount"), text(b, "currency")),
        ),
        "PAYMENT_FAILED" => (
            "Payment failed".to_string(),
            format!("Your payment failed: {}.", text(b, "reason")),
        ),
        _ => return None,
    };
    let user_id = b.get("userId").and_then(Value::as_str)?.to_string();
    let mut message = json!({
        "eventId": event.event_id,
        "eventType": event.event_type,
        "title": title,
        "body": body,
        "timestamp": event.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Some(session_id) = b.get("sessionId").and_then(Value::as_str) {
        message["sessionId"] = json!(session_id);
    }
    if let Some(invoice_id) = b.get("invoiceId").and_then(Value::as_str) {
        message["invoiceId"] = json!(invoice_id);
    }
    Some((format!("chargegrid/users/{user_id}/notifications"), message))
}

async fn notify(
    ctx: CoreContext,
    mqtt: MqttPublisher,
    dedup: Batcher<Dedup, Result<bool, String>>,
    event: ReceivedEvent,
) -> Result<(), HandleError> {
    let Some((topic, message)) = notification(&event) else {
        return Ok(());
    };
    let gone = || HandleError::Transient("the notification de-duplication batcher stopped".into());
    let notified = dedup
        .submit(Dedup::Seen(event.event_id))
        .await
        .ok_or_else(gone)?
        .map_err(HandleError::Transient)?;
    if notified {
        return Ok(());
    }
    mqtt.publish(topic, message.to_string().into_bytes())
        .await
        .map_err(HandleError::Transient)?;
    ctx.metrics.notifications_published_total.inc();
    dedup
        .submit(Dedup::Done(event.event_id))
        .await
        .ok_or_else(gone)?
        .map_err(HandleError::Transient)?;
    Ok(())
}

impl EventHandler for NotificationHandler {
    fn handle(&self, event: ReceivedEvent) -> BoxFuture<'static, Result<(), HandleError>> {
        Box::pin(notify(
            self.ctx.clone(),
            self.mqtt.clone(),
            self.dedup.clone(),
            event,
        ))
    }
}
