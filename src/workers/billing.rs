//! The billing worker: SESSION_ENDED -> one invoice per session, paid from the wallet when it
//! covers the amount, plus a periodic pass marking unpaid invoices past due OVERDUE.

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::context::CoreContext;
use crate::domain::tariff::Tariff;
use crate::events::consumer::{EventHandler, HandleError, ReceivedEvent};
use crate::store::batch::{BatchFuture, Batcher};
use crate::store::billing::{self, BillingOutcome, BillingPolicy, ToBill};
use crate::store::StoreError;

pub struct BillingHandler {
    /// Invoices commit in groups: the events in hand (up to `worker.billing_batch`) are billed
    /// set-based in one transaction; when one fails, the batch runs again event by event (it
    /// fails alone).
    batcher: BillingBatcher,
}

type BillingBatcher = Batcher<ToBill, Result<BillingOutcome, StoreError>>;

impl BillingHandler {
    /// Starts the group-committing batcher on the worker's pool (needs a runtime).
    pub fn new(ctx: CoreContext) -> Self {
        let observed = ctx.metrics.clone();
        let batcher = Batcher::start(
            ctx.settings.worker.billing_batch.max(1),
            Some(std::sync::Arc::new(move |n| {
                observed
                    .store_batch_size
                    .with_label_values(&["billing"])
                    .observe(n as f64)
            })),
            move |items: Vec<ToBill>| {
                let ctx = ctx.clone();
                Box::pin(async move { bill_batch(&ctx, items).await }) as BatchFuture<_>
            },
        );
        Self { batcher }
    }
}

/// Bills `items` in one transaction (set-based); when that fails, each alone in its own, so
/// only the culprit fails. A failed commit fails them all: none was acknowledged, RabbitMQ
/// delivers them again.
async fn bill_batch(
    ctx: &CoreContext,
    items: Vec<ToBill>,
) -> Vec<Result<BillingOutcome, StoreError>> {
    let currency = ctx.settings.billing.currency.clone();
    let source = format!("chargegrid-billing/{}", ctx.settings.node_id);
    let fallback = fallback_tariff(&currency);
    let policy = BillingPolicy {
        currency: &currency,
        payment_due_days: ctx.settings.billing.payment_due_days,
        fallback: &fallback,
        source: &source,
    };
    let together = async {
        let mut tx = ctx.db.begin().await?;
        let outcomes = billing::bill_sessions_in(&mut tx, &items, &policy).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(outcomes)
    }
    .await;
    match together {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(e) if items.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = %e, items = items.len(), "a billing batch failed: billing its events one by one");
            let mut results = Vec::with_capacity(items.len());
            for item in &items {
                results.push(
                    billing::bill_session(&ctx.db, item.event_id, item.session_id, &policy).await,
                );
            }
            results
        }
    }
}

/// The price list used when neither the station nor the tariffs table have one.
pub fn fallback_tariff(currency: &str) -> Tariff {
    Tariff::fallback(currency)
}

async fn bill(batcher: BillingBatcher, event: ReceivedEvent) -> Result<(), HandleError> {
    if event.event_type != "SESSION_ENDED" {
        return Ok(()); // not ours: nothing to do
    }
    let session_id = event
        .body
        .get("sessionId")
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| HandleError::Permanent("SESSION_ENDED without a valid sessionId".into()))?;
    let billed = batcher
        .submit(ToBill {
            event_id: event.event_id,
            session_id,
        })
        .await
        .unwrap_or_else(|| {
            Err(StoreError::Unavailable(
                "the billing batcher stopped".into(),
            ))
        });
    match billed {
        Ok(BillingOutcome::Duplicate) => {
            tracing::info!(%session_id, event_id = %event.event_id, "duplicate SESSION_ENDED ignored");
            Ok(())
        }
        Ok(BillingOutcome::Invoiced { invoice_id, status }) => {
            tracing::info!(%session_id, %invoice_id, %status, "session billed");
            Ok(())
        }
        // not visible (yet): a lagging read replica, or a message ahead of its data; retried,
        // then dead-lettered for an operator to look at and replay
        Err(StoreError::NotFound) => Err(HandleError::Transient(format!(
            "session {session_id} not found"
        ))),
        Err(StoreError::Conflict(reason)) => Err(HandleError::Permanent(reason)),
        Err(e) => Err(HandleError::Transient(e.to_string())),
    }
}

impl EventHandler for BillingHandler {
    fn handle(&self, event: ReceivedEvent) -> BoxFuture<'static, Result<(), HandleError>> {
        Box::pin(bill(self.batcher.clone(), event))
    }
}

/// Marks unpaid invoices past due OVERDUE every `worker.overdue_interval_secs`.
pub async fn overdue_pass(ctx: CoreContext, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(
        ctx.settings.worker.overdue_interval_secs.max(1),
    ));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match billing::mark_overdue(&ctx.db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(invoices = n, "invoices marked OVERDUE"),
            Err(e) => tracing::warn!(error = %e, "overdue pass failed"),
        }
    }
}
