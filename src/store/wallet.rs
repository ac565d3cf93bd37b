//! The wallet: an append-only ledger with the running balance on the user row, both written in one
//! transaction under a row lock. Idempotency keys make every credit and debit safe to retry.

use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use super::{StoreError, Tx};
use crate::domain::Money;

/// The outcome of an idempotent ledger write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// This call wrote the entry.
    New { balance: Decimal },
    /// An earlier call with the same key already did; nothing changed.
    Replayed { balance: Decimal },
}

impl Applied {
    pub fn balance(&self) -> Decimal {
        match self {
            Applied::New { balance } | Applied::Replayed { balance } => *balance,
        }
    }
}

/// Credits `amount` once per `(user, idempotency_key)`. Re-using a key for a different amount is
/// a `Conflict`.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn top_up(
    pool: &PgPool,
    user_id: Uuid,
    amount: Money,
    idempotency_key: &str,
) -> Result<Applied, StoreError> {
    let mut tx = pool.begin().await?;
    let applied = apply(
        &mut tx,
        user_id,
        amount.amount(),
        "TOP_UP",
        idempotency_key,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(applied)
}

/// Adds `delta` (negative for a debit) to the user's balance within `tx`, once per key.
/// A debit the balance cannot cover is `InsufficientFunds`.
pub async fn apply(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    delta: Decimal,
    kind: &str,
    idempotency_key: &str,
    reference_id: Option<Uuid>,
) -> Result<Applied, StoreError> {
    apply_in(
        tx,
        user_id,
        delta,
        None,
        kind,
        idempotency_key,
        reference_id,
    )
    .await
}

/// Like `apply`, for an amount in `currency`: money in another currency than the wallet's is
/// never moved 1:1 (`CurrencyMismatch`; there is no exchange rate here).
pub async fn apply_in(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    delta: Decimal,
    in_currency: Option<&str>,
    kind: &str,
    idempotency_key: &str,
    reference_id: Option<Uuid>,
) -> Result<Applied, StoreError> {
    // NO KEY UPDATE: excludes other wallet writers, not the foreign-key checks of the user's
    // new sessions (FOR UPDATE made them wait for billing's commit; ADR 012)
    let (balance, currency) = sqlx::query_as::<_, (Decimal, String)>(
        "SELECT wallet_balance, wallet_currency::text FROM users WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    if let Some(moved) = in_currency {
        if !moved.trim().eq_ignore_ascii_case(currency.trim()) {
            return Err(StoreError::CurrencyMismatch {
                amount: moved.trim().to_string(),
                wallet: currency.trim().to_string(),
            });
        }
    }

    let previous = sqlx::query_as::<_, (Decimal, String)>(
        "SELECT amount, kind FROM wallet_ledger WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(user_id)
    .bind(idempotency_key)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((amount, previous_kind)) = previous {
        if amount != delta || previous_kind != kind {
            return Err(StoreError::Conflict(
                "idempotency key was already used for a different operation".into(),
            ));
        }
        return Ok(Applied::Replayed { balance });
    }

    let new_balance = balance + delta;
    if new_balance < Decimal::ZERO {
        return Err(StoreError::InsufficientFunds);
    }
    sqlx::query(
        "INSERT INTO wallet_ledger (user_id, amount, currency, kind, idempotency_key, reference_id, balance_after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(user_id)
    .bind(delta)
    .bind(&currency)
    .bind(kind)
    .bind(idempotency_key)
    .bind(reference_id)
    .bind(new_balance)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE users SET wallet_balance = $2, updated_at = now() WHERE id = $1")
        .bind(user_id)
        .bind(new_balance)
        .execute(&mut **tx)
        .await?;
    Ok(Applied::New {
        balance: new_balance,
    })
}
