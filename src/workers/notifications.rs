//! The notification worker: lifecycle events become user notifications published over MQTT
//! (QoS 1) on `chargegrid/users/{userId}/notifications`, de-duplicated by eventId. Critical
//! security events (`SECURITY_EVENT`) go to the operators, on `chargegrid/operators/security`.

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::mqtt::MqttPublisher;
use crate::context::CoreContext;
use crate::events::consumer::{EventHandler, HandleError, ReceivedEvent};

pub struct NotificationHandler {
    ctx: CoreContext,
    mqtt: MqttPublisher,
}

impl NotificationHandler {
    pub fn new(ctx: CoreContext, mqtt: MqttPublisher) -> Self {
        Self { ctx, mqtt }
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
    event: ReceivedEvent,
) -> Result<(), HandleError> {
    let Some((topic, message)) = notification(&event) else {
        return Ok(());
    };
    let seen: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM processed_events WHERE consumer = 'notifications' AND event_id = $1)",
    )
    .bind(event.event_id)
    .fetch_one(&ctx.db)
    .await
    .map_err(|e| HandleError::Transient(e.to_string()))?;
    if seen {
        return Ok(());
    }
    mqtt.publish(topic, message.to_string().into_bytes())
        .await
        .map_err(HandleError::Transient)?;
    ctx.metrics.notifications_published_total.inc();
    sqlx::query("INSERT INTO processed_events (consumer, event_id) VALUES ('notifications', $1) ON CONFLICT DO NOTHING")
        .bind(event.event_id)
        .execute(&ctx.db)
        .await
        .map_err(|e| HandleError::Transient(e.to_string()))?;
    Ok(())
}

impl EventHandler for NotificationHandler {
    fn handle(&self, event: ReceivedEvent) -> BoxFuture<'static, Result<(), HandleError>> {
        Box::pin(notify(self.ctx.clone(), self.mqtt.clone(), event))
    }
}
