//! `POST /webhooks/payments`: the payment provider's events. An event whose `Stripe-Signature`
//! does not verify (missing, wrong secret, altered body, older than the tolerance) is refused
//! with 400 and changes nothing; a verified one is applied once, whatever the retries.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::context::AppContext;
use crate::payments::stripe::Event;
use crate::payments::Payments;
use crate::store::top_ups::{self, Outcome, Settled};

/// Largest webhook body accepted.
const MAX_BODY: usize = 256 * 1024;

pub async fn webhook(
    req: HttpRequest,
    body: web::Bytes,
    ctx: web::Data<AppContext>,
) -> HttpResponse {
    let Payments::Stripe(stripe) = &*ctx.payments else {
        return HttpResponse::NotFound()
            .json(json!({ "error": "no payment provider takes webhooks here" }));
    };
    if body.len() > MAX_BODY {
        return HttpResponse::PayloadTooLarge().json(json!({ "error": "body too large" }));
    }
    let signature = req
        .headers()
        .get("Stripe-Signature")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = stripe.verify(signature, &body, chrono::Utc::now().timestamp()) {
        tracing::warn!(reason = %e, "payment webhook refused");
        ctx.metrics
            .payment_webhooks_total
            .with_label_values(&["bad_signature"])
            .inc();
        return HttpResponse::BadRequest().json(json!({ "error": e.to_string() }));
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => {
            ctx.metrics
                .payment_webhooks_total
                .with_label_values(&["unreadable"])
                .inc();
            return HttpResponse::BadRequest()
                .json(json!({ "error": format!("not a payment event: {e}") }));
        }
    };
    let outcome = match event.kind.as_str() {
        "payment_intent.succeeded" => Some(Outcome::Succeeded),
        "payment_intent.payment_failed" => Some(Outcome::Failed),
        "payment_intent.canceled" => Some(Outcome::Cancelled),
        _ => None,
    };
    let intent = &event.data.object;
    let paid = intent
        .amount_received
        .or(intent.amount)
        .zip(intent.currency.clone());
    match top_ups::apply_event(
        &ctx.db,
        "stripe",
        &event.id,
        &event.kind,
        &intent.id,
        paid,
        outcome,
    )
    .await
    {
        Ok(settled) => {
            let result = match &settled {
                Settled::Duplicate => "duplicate",
                Settled::Ignored => "ignored",
                Settled::Mismatch => {
                    tracing::error!(event_id = %event.id, intent = %intent.id, "payment amount or currency differs from the top-up: not credited");
                    "mismatch"
                }
                Settled::Applied(record) => {
                    tracing::info!(top_up = %record.id, status = %record.status, "top-up settled");
                    "applied"
                }
            };
            ctx.metrics
                .payment_webhooks_total
                .with_label_values(&[result])
                .inc();
            HttpResponse::Ok().json(json!({ "received": true, "result": result }))
        }
        // the provider retries a 5xx: nothing was committed
        Err(e) => {
            tracing::error!(error = %e, event_id = %event.id, "payment webhook not applied");
            HttpResponse::ServiceUnavailable().json(json!({ "error": "try again later" }))
        }
    }
}
