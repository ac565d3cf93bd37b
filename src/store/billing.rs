//! Billing a finished session, exactly once in effect: the consumer's de-duplication row, the
//! invoice (unique per session), the wallet debit and the resulting events commit together.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{wallet, StoreError, Tx};
use crate::domain::tariff::{parse_usage_cost, Tariff};
use crate::events::{outbox, Event};

/// What billing needs besides the session.
pub struct BillingPolicy<'a> {
    pub currency: &'a str,
    pub payment_due_days: i64,
    /// Used when neither the station nor the tariffs table say anything.
    pub fallback: &'a Tariff,
    pub source: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillingOutcome {
    /// This event (or another one for the same session) was billed already.
    Duplicate,
    Invoiced {
        invoice_id: Uuid,
        status: String,
    },
}

#[derive(sqlx::FromRow)]
struct SessionToBill {
    user_id: Uuid,
    station_id: Uuid,
    status: String,
    energy_kwh: Decimal,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct TariffRow {
    id: Uuid,
    currency: String,
    price_per_kwh: Decimal,
    price_per_minute: Decimal,
    grace_minutes: i32,
    session_fee: Decimal,
}

impl From<&TariffRow> for Tariff {
    fn from(row: &TariffRow) -> Self {
        Tariff {
            currency: row.currency.clone(),
            price_per_kwh: row.price_per_kwh,
            price_per_minute: row.price_per_minute,
            grace_minutes: i64::from(row.grace_minutes),
            session_fee: row.session_fee,
        }
    }
}

const TARIFF_COLUMNS: &str =
    "id, currency::text AS currency, price_per_kwh, price_per_minute, grace_minutes, session_fee";

/// The tariff of a station: its own tariff, else a clear per-kWh price in its OCM `UsageCost`
/// (in the billing currency), else the default tariff, else `policy.fallback`.
async fn tariff_for(
    tx: &mut Tx<'_>,
    station_id: Uuid,
    policy: &BillingPolicy<'_>,
) -> Result<(Tariff, Option<Uuid>, &'static str), StoreError> {
    let station: Option<(Option<Uuid>, Option<String>)> =
        sqlx::query_as("SELECT tariff_id, usage_cost FROM stations WHERE id = $1")
            .bind(station_id)
            .fetch_optional(&mut **tx)
            .await?;
    let (tariff_id, usage_cost) = station.unwrap_or((None, None));
    if let Some(id) = tariff_id {
        if let Some(row) = sqlx::query_as::<_, TariffRow>(&format!(
            "SELECT {TARIFF_COLUMNS} FROM tariffs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        {
            return Ok(((&row).into(), Some(row.id), "station tariff"));
        }
    }
    if let Some((price, currency)) = usage_cost.as_deref().and_then(parse_usage_cost) {
        if currency.is_empty() || currency == policy.currency {
            return Ok((
                Tariff {
                    currency: policy.currency.to_string(),
                    price_per_kwh: price,
                    price_per_minute: Decimal::ZERO,
                    grace_minutes: 0,
                    session_fee: Decimal::ZERO,
                },
                None,
                "OCM usage cost",
            ));
        }
    }
    if let Some(row) = sqlx::query_as::<_, TariffRow>(&format!(
        "SELECT {TARIFF_COLUMNS} FROM tariffs WHERE is_default"
    ))
    .fetch_optional(&mut **tx)
    .await?
    {
        return Ok(((&row).into(), Some(row.id), "default tariff"));
    }
    Ok((policy.fallback.clone(), None, "built-in tariff"))
}

/// Bills `session_id` for SESSION_ENDED `event_id`, in a transaction of its own.
pub async fn bill_session(
    pool: &PgPool,
    event_id: Uuid,
    session_id: Uuid,
    policy: &BillingPolicy<'_>,
) -> Result<BillingOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let outcome = bill_session_in(&mut tx, event_id, session_id, policy).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Bills `session_id` for SESSION_ENDED `event_id` within `tx` (the billing worker's group
/// commit): exactly one invoice and one debit per session, whatever the deliveries.
#[tracing::instrument(skip_all, fields(session_id = %session_id))]
pub async fn bill_session_in(
    tx: &mut Tx<'_>,
    event_id: Uuid,
    session_id: Uuid,
    policy: &BillingPolicy<'_>,
) -> Result<BillingOutcome, StoreError> {
    let first = sqlx::query("INSERT INTO processed_events (consumer, event_id) VALUES ('billing', $1) ON CONFLICT DO NOTHING")
        .bind(event_id)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        == 1;
    let already: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM invoices WHERE session_id = $1)")
            .bind(session_id)
            .fetch_one(&mut **tx)
            .await?;
    if !first || already {
        return Ok(BillingOutcome::Duplicate);
    }
    let session = sqlx::query_as::<_, SessionToBill>(
        "SELECT user_id, station_id, status, energy_kwh, start_time, end_time FROM sessions WHERE id = $1 FOR UPDATE",
    )
    .bind(session_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    if session.status != "COMPLETED" {
        return Err(StoreError::Conflict(format!(
            "session is {}, not COMPLETED",
            session.status
        )));
    }
    let duration_minutes = match (session.start_time, session.end_time) {
        (Some(start), Some(end)) => ((end - start).num_seconds().max(0) + 59) / 60,
        _ => 0,
    };
    let (tariff, tariff_id, tariff_source) = tariff_for(tx, session.station_id, policy).await?;
    let charge = tariff.charge(session.energy_kwh, duration_minutes);
    let (plan,): (String,) = sqlx::query_as("SELECT plan FROM users WHERE id = $1")
        .bind(session.user_id)
        .fetch_one(&mut **tx)
        .await?;
    let covered = plan == "FLAT_RATE";
    let amount = if covered { Decimal::ZERO } else { charge.total };
    let invoice_id = Uuid::now_v7();
    let now = Utc::now();
    let due = now + Duration::days(policy.payment_due_days);

    // pay from the wallet when it covers the amount; otherwise the invoice waits
    let paid = if amount.is_zero() {
        true
    } else {
        match wallet::apply_in(
            tx,
            session.user_id,
            -amount,
            Some(&tariff.currency),
            "INVOICE_PAYMENT",
            &format!("invoice:{invoice_id}"),
            Some(invoice_id),
        )
        .await
        {
            Ok(_) => true,
            Err(StoreError::InsufficientFunds) => false,
            // never 1:1 across currencies: the invoice stays PENDING for another way to pay
            Err(StoreError::CurrencyMismatch { amount, wallet }) => {
                tracing::warn!(%invoice_id, %amount, %wallet, "invoice and wallet currencies differ: not debited");
                false
            }
            Err(e) => return Err(e),
        }
    };
    let status = if paid { "PAID" } else { "PENDING" };
    let breakdown = json!({
        "tariffSource": tariff_source,
        "pricePerKwh": tariff.price_per_kwh.to_string(),
        "pricePerMinute": tariff.price_per_minute.to_string(),
        "graceMinutes": tariff.grace_minutes,
        "energy": charge.energy.to_string(),
        "time": charge.time.to_string(),
        "sessionFee": charge.fee.to_string(),
    });
    sqlx::query(
        "INSERT INTO invoices (id, session_id, user_id, amount, cost_amount, currency, energy_kwh, duration_minutes, \
             tariff_id, breakdown, covered_by_plan, status, due_date, paid_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(invoice_id)
    .bind(session_id)
    .bind(session.user_id)
    .bind(amount)
    .bind(charge.total)
    .bind(&tariff.currency)
    .bind(session.energy_kwh)
    .bind(duration_minutes as i32)
    .bind(tariff_id)
    .bind(&breakdown)
    .bind(covered)
    .bind(status)
    .bind(due)
    .bind(paid.then_some(now))
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE sessions SET cost = $2, currency = $3, updated_at = now() WHERE id = $1")
        .bind(session_id)
        .bind(charge.total)
        .bind(&tariff.currency)
        .execute(&mut **tx)
        .await?;
    let event = if paid {
        Event::PaymentCompleted {
            invoice_id,
            user_id: session.user_id,
            amount,
            currency: tariff.currency.clone(),
            paid_at: Some(now),
        }
    } else {
        Event::InvoiceGenerated {
            invoice_id,
            session_id,
            user_id: session.user_id,
            amount,
            currency: tariff.currency.clone(),
            due_date: due,
        }
    };
    outbox::enqueue(tx, event, now, policy.source).await?;
    tracing::debug!(%invoice_id, status, covered, "session billed (committed with its batch)");
    Ok(BillingOutcome::Invoiced {
        invoice_id,
        status: status.to_string(),
    })
}

/// Why an invoice could not be paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayError {
    NotFound,
    NotYours,
    Void,
    InsufficientFunds,
    /// The invoice is in another currency than the wallet.
    Currency {
        invoice: String,
        wallet: String,
    },
}

/// Pays a PENDING (or OVERDUE) invoice from the wallet, once per invoice whatever the retries.
pub async fn pay_invoice(
    pool: &PgPool,
    invoice_id: Uuid,
    user_id: Uuid,
    idempotency_key: &str,
    source: &str,
) -> Result<Result<(), PayError>, StoreError> {
    let mut tx = pool.begin().await?;
    let row: Option<(Uuid, String, Decimal, String)> = sqlx::query_as(
        "SELECT user_id, status, amount, currency::text FROM invoices WHERE id = $1 FOR UPDATE",
    )
    .bind(invoice_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((owner, status, amount, currency)) = row else {
        return Ok(Err(PayError::NotFound));
    };
    if owner != user_id {
        return Ok(Err(PayError::NotYours));
    }
    match status.as_str() {
        "PAID" => return Ok(Ok(())),
        "VOID" => return Ok(Err(PayError::Void)),
        _ => {}
    }
    // one debit per invoice, whichever path pays it (the automatic debit uses the same key)
    tracing::debug!(%invoice_id, key_len = idempotency_key.len(), "paying invoice");
    match wallet::apply_in(
        &mut tx,
        user_id,
        -amount,
        Some(&currency),
        "INVOICE_PAYMENT",
        &format!("invoice:{invoice_id}"),
        Some(invoice_id),
    )
    .await
    {
        Ok(_) => {}
        Err(StoreError::CurrencyMismatch { wallet, .. }) => {
            return Ok(Err(PayError::Currency {
                invoice: currency,
                wallet,
            }))
        }
        Err(StoreError::InsufficientFunds) => {
            drop(tx);
            let mut failed = pool.begin().await?;
            outbox::enqueue(
                &mut failed,
                Event::PaymentFailed {
                    invoice_id,
                    user_id,
                    reason: "insufficient funds".into(),
                },
                Utc::now(),
                source,
            )
            .await?;
            failed.commit().await?;
            return Ok(Err(PayError::InsufficientFunds));
        }
        Err(e) => return Err(e),
    }
    let now = Utc::now();
    sqlx::query(
        "UPDATE invoices SET status = 'PAID', paid_at = $2, updated_at = now() WHERE id = $1",
    )
    .bind(invoice_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    outbox::enqueue(
        &mut tx,
        Event::PaymentCompleted {
            invoice_id,
            user_id,
            amount,
            currency,
            paid_at: Some(now),
        },
        now,
        source,
    )
    .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Marks unpaid invoices past their due date OVERDUE; returns how many.
pub async fn mark_overdue(pool: &PgPool) -> Result<u64, StoreError> {
    Ok(sqlx::query("UPDATE invoices SET status = 'OVERDUE', updated_at = now() WHERE status = 'PENDING' AND due_date < now()")
        .execute(pool)
        .await?
        .rows_affected())
}
