//! Wallet top-ups paid through the payment provider, the provider events already processed, and
//! the audit log of manual credits and operator actions.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::{wallet, StoreError};
use crate::domain::Money;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TopUpRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub amount: Decimal,
    pub currency: String,
    pub status: String,
    pub provider: String,
    pub provider_ref: Option<String>,
    pub client_secret: Option<String>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, user_id, amount, currency::text AS currency, status, provider, \
                       provider_ref, client_secret, created_at";

/// The user's top-up for `idempotency_key`, created PENDING in the wallet's currency if it does
/// not exist yet. A key reused with another amount is a conflict.
pub async fn create(
    pool: &PgPool,
    user_id: Uuid,
    amount: Money,
    provider: &str,
    idempotency_key: &str,
) -> Result<TopUpRecord, StoreError> {
    let record = sqlx::query_as::<_, TopUpRecord>(&format!(
        "WITH created AS ( \
             INSERT INTO top_ups (id, user_id, amount, currency, provider, idempotency_key) \
             SELECT $1, u.id, $3, u.wallet_currency, $4, $5 FROM users u WHERE u.id = $2 \
             ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING {COLUMNS}) \
         SELECT * FROM created UNION ALL \
         SELECT {COLUMNS} FROM top_ups WHERE user_id = $2 AND idempotency_key = $5 \
             AND NOT EXISTS (SELECT 1 FROM created)"
    ))
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(amount.amount())
    .bind(provider)
    .bind(idempotency_key)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    if record.amount != amount.amount() {
        return Err(StoreError::Conflict(
            "idempotency key was already used for a different amount".into(),
        ));
    }
    Ok(record)
}

/// Remembers the provider's payment for a top-up.
pub async fn set_intent(
    pool: &PgPool,
    id: Uuid,
    provider_ref: &str,
    client_secret: Option<&str>,
) -> Result<TopUpRecord, StoreError> {
    Ok(sqlx::query_as::<_, TopUpRecord>(&format!(
        "UPDATE top_ups SET provider_ref = $2, client_secret = $3, updated_at = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(provider_ref)
    .bind(client_secret)
    .fetch_one(pool)
    .await?)
}

/// Marks a top-up that could not be started with the provider.
pub async fn fail(pool: &PgPool, id: Uuid) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE top_ups SET status = 'FAILED', updated_at = now() WHERE id = $1 AND status = 'PENDING'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The user's top-ups, newest first.
pub async fn list_for_user(
    pool: &PgPool,
    user_id: Uuid,
    first: i64,
) -> Result<Vec<TopUpRecord>, StoreError> {
    Ok(sqlx::query_as::<_, TopUpRecord>(&format!(
        "SELECT {COLUMNS} FROM top_ups WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2"
    ))
    .bind(user_id)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// Credits a top-up at once (the development provider).
pub async fn succeed_now(pool: &PgPool, id: Uuid) -> Result<TopUpRecord, StoreError> {
    let mut tx = pool.begin().await?;
    let record = sqlx::query_as::<_, TopUpRecord>(&format!(
        "SELECT {COLUMNS} FROM top_ups WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let record = settle(&mut tx, record, Outcome::Succeeded).await?;
    tx.commit().await?;
    Ok(record)
}

/// What the provider says happened to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

/// What a provider event did.
#[derive(Debug, Clone)]
pub enum Settled {
    /// The event was processed before: nothing changed.
    Duplicate,
    /// No top-up has this payment (another integration's, or an event type we do not use).
    Ignored,
    /// The payment's amount or currency is not the top-up's: nothing credited.
    Mismatch,
    Applied(Box<TopUpRecord>),
}

/// Processes one provider event in one transaction: recorded once per (provider, event id), and
/// the top-up moved from PENDING to its outcome (a success credits the wallet, once per top-up).
pub async fn apply_event(
    pool: &PgPool,
    provider: &str,
    event_id: &str,
    event_type: &str,
    provider_ref: &str,
    paid: Option<(i64, String)>,
    outcome: Option<Outcome>,
) -> Result<Settled, StoreError> {
    let mut tx = pool.begin().await?;
    let first_time = sqlx::query(
        "INSERT INTO payment_events (provider, event_id, event_type) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(provider)
    .bind(event_id)
    .bind(event_type)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !first_time {
        return Ok(Settled::Duplicate);
    }
    let Some(outcome) = outcome else {
        tx.commit().await?;
        return Ok(Settled::Ignored);
    };
    let record = sqlx::query_as::<_, TopUpRecord>(&format!(
        "SELECT {COLUMNS} FROM top_ups WHERE provider = $1 AND provider_ref = $2 FOR UPDATE"
    ))
    .bind(provider)
    .bind(provider_ref)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(record) = record else {
        tx.commit().await?;
        return Ok(Settled::Ignored);
    };
    if outcome == Outcome::Succeeded {
        let expected = crate::payments::minor_units(record.amount, &record.currency);
        let matches = paid.as_ref().is_some_and(|(amount, currency)| {
            Some(*amount) == expected && currency.eq_ignore_ascii_case(&record.currency)
        });
        if !matches {
            tx.commit().await?;
            return Ok(Settled::Mismatch);
        }
    }
    let record = settle(&mut tx, record, outcome).await?;
    tx.commit().await?;
    Ok(Settled::Applied(Box::new(record)))
}

async fn settle(
    tx: &mut super::Tx<'_>,
    record: TopUpRecord,
    outcome: Outcome,
) -> Result<TopUpRecord, StoreError> {
    // SUCCEEDED and CANCELLED are final (a late failure never takes back a success); a failed
    // attempt is not: the driver may pay the same intent again, and its success is credited
    let movable = match outcome {
        Outcome::Succeeded | Outcome::Cancelled => {
            matches!(record.status.as_str(), "PENDING" | "FAILED")
        }
        Outcome::Failed => record.status == "PENDING",
    };
    if !movable {
        return Ok(record);
    }
    let status = match outcome {
        Outcome::Succeeded => "SUCCEEDED",
        Outcome::Failed => "FAILED",
        Outcome::Cancelled => "CANCELLED",
    };
    if outcome == Outcome::Succeeded {
        wallet::apply(
            tx,
            record.user_id,
            record.amount,
            "TOP_UP",
            &format!("topup:{}", record.id),
            Some(record.id),
        )
        .await?;
    }
    Ok(sqlx::query_as::<_, TopUpRecord>(&format!(
        "UPDATE top_ups SET status = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(record.id)
    .bind(status)
    .fetch_one(&mut **tx)
    .await?)
}

/// Appends to the audit log.
pub async fn audit<'e>(
    executor: impl PgExecutor<'e>,
    actor: Option<Uuid>,
    action: &str,
    target: Option<&str>,
    details: serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (actor_id, action, target, details) VALUES ($1, $2, $3, $4)",
    )
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(details)
    .execute(executor)
    .await?;
    Ok(())
}

/// A manual credit by an administrator (support, refunds): once per idempotency key, recorded in
/// the audit log in the same transaction.
pub async fn credit(
    pool: &PgPool,
    admin: Uuid,
    user_id: Uuid,
    amount: Money,
    reason: &str,
    idempotency_key: &str,
) -> Result<wallet::Applied, StoreError> {
    let mut tx = pool.begin().await?;
    let applied = wallet::apply(
        &mut tx,
        user_id,
        amount.amount(),
        "ADJUSTMENT",
        &format!("credit:{idempotency_key}"),
        None,
    )
    .await?;
    if matches!(applied, wallet::Applied::New { .. }) {
        audit(
            &mut *tx,
            Some(admin),
            "creditWallet",
            Some(&user_id.to_string()),
            serde_json::json!({ "amount": amount.amount().to_string(), "reason": reason, "idempotencyKey": idempotency_key }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(applied)
}
