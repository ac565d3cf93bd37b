//! Invoices: one per completed session.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvoiceRecord {
    pub id: Uuid,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub amount: Decimal,
    pub cost_amount: Decimal,
    pub currency: String,
    pub energy_kwh: Decimal,
    pub duration_minutes: i32,
    pub covered_by_plan: bool,
    pub status: String,
    pub due_date: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub const COLUMNS: &str =
    "id, session_id, user_id, amount, cost_amount, currency::text AS currency, energy_kwh, \
    duration_minutes, covered_by_plan, status, due_date, paid_at, created_at";

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<InvoiceRecord>, StoreError> {
    Ok(
        sqlx::query_as::<_, InvoiceRecord>(&format!(
            "SELECT {COLUMNS} FROM invoices WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?,
    )
}

pub async fn for_session(
    pool: &PgPool,
    session_id: Uuid,
) -> Result<Option<InvoiceRecord>, StoreError> {
    Ok(sqlx::query_as::<_, InvoiceRecord>(&format!(
        "SELECT {COLUMNS} FROM invoices WHERE session_id = $1"
    ))
    .bind(session_id)
    .fetch_optional(pool)
    .await?)
}

/// The invoices of `sessions` that exist, by session (one statement).
pub async fn for_sessions(
    pool: &PgPool,
    sessions: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, InvoiceRecord>, StoreError> {
    let rows = sqlx::query_as::<_, InvoiceRecord>(&format!(
        "SELECT {COLUMNS} FROM invoices WHERE session_id = ANY($1)"
    ))
    .bind(sessions)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.session_id, r)).collect())
}

pub async fn list_for_user(
    pool: &PgPool,
    user_id: Uuid,
    status: Option<&str>,
) -> Result<Vec<InvoiceRecord>, StoreError> {
    Ok(sqlx::query_as::<_, InvoiceRecord>(&format!(
        "SELECT {COLUMNS} FROM invoices WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC LIMIT 500"
    ))
    .bind(user_id)
    .bind(status)
    .fetch_all(pool)
    .await?)
}
