//! Drivers' tokens (RFID cards, eMAIDs, key codes, the app token): registered, listed, grouped,
//! blocked. A token belongs to one driver; its group (1.6 parentIdTag, 2.0.1 groupIdToken) is
//! its own when an operator set one, else its owner's (see `users::TagDetails`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct IdTokenRecord {
    pub id_tag: String,
    pub token_type: String,
    pub user_id: Uuid,
    /// What an operator set; `effective_group` is what chargers are told.
    pub group_id_tag: Option<String>,
    pub effective_group: Option<String>,
    pub status: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl IdTokenRecord {
    pub fn blocked(&self) -> bool {
        self.status == "BLOCKED"
    }
}

const COLUMNS: &str = "t.id_tag, t.token_type, t.user_id, t.group_id_tag, \
     COALESCE(t.group_id_tag, (SELECT COALESCE(a.group_id_tag, a.id_tag) FROM id_tags a \
         WHERE a.user_id = t.user_id AND a.kind = 'APP' ORDER BY a.created_at LIMIT 1)) AS effective_group, \
     t.status, t.expires_at, t.created_at";

/// Why a token could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddRefusal {
    #[error("this token is already registered")]
    Taken,
    #[error("a driver may register at most {0} tokens")]
    TooMany(i64),
}

/// Registers `id_tag` to `user_id`. A token is registered once, to one driver.
pub async fn add(
    pool: &PgPool,
    user_id: Uuid,
    id_tag: &str,
    token_type: &str,
    expires_at: Option<DateTime<Utc>>,
    max_per_user: i64,
) -> Result<Result<IdTokenRecord, AddRefusal>, StoreError> {
    let mut tx = pool.begin().await?;
    // one driver's registrations one at a time, so the limit holds under concurrent calls
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM id_tags WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    if count >= max_per_user {
        return Ok(Err(AddRefusal::TooMany(max_per_user)));
    }
    let kind = if token_type == "EMAID" {
        "EMAID"
    } else {
        "RFID"
    };
    let inserted = sqlx::query(
        "INSERT INTO id_tags (id_tag, user_id, kind, token_type, expires_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id_tag) DO NOTHING",
    )
    .bind(id_tag)
    .bind(user_id)
    .bind(kind)
    .bind(token_type)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(Err(AddRefusal::Taken));
    }
    let record = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM id_tags t WHERE t.id_tag = $1"
    ))
    .bind(id_tag)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(record))
}

pub async fn find(pool: &PgPool, id_tag: &str) -> Result<Option<IdTokenRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM id_tags t WHERE t.id_tag = $1"
    ))
    .bind(id_tag)
    .fetch_optional(pool)
    .await?)
}

pub async fn of_user(pool: &PgPool, user_id: Uuid) -> Result<Vec<IdTokenRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM id_tags t WHERE t.user_id = $1 ORDER BY t.created_at"
    ))
    .bind(user_id)
    .fetch_all(pool)
    .await?)
}

/// Operators' search: by token prefix, owner or group; at most `first`, by token.
pub async fn search(
    pool: &PgPool,
    prefix: Option<&str>,
    user_id: Option<Uuid>,
    group: Option<&str>,
    first: i64,
) -> Result<Vec<IdTokenRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM id_tags t \
         WHERE ($1::text IS NULL OR t.id_tag LIKE replace(replace(replace($1, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%') \
           AND ($2::uuid IS NULL OR t.user_id = $2) \
           AND ($3::text IS NULL OR t.group_id_tag = $3) \
         ORDER BY t.id_tag LIMIT $4"
    ))
    .bind(prefix)
    .bind(user_id)
    .bind(group)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// Blocks a token; returns it, or None when it does not exist. Blocking twice changes nothing.
pub async fn block(pool: &PgPool, id_tag: &str) -> Result<Option<IdTokenRecord>, StoreError> {
    sqlx::query(
        "UPDATE id_tags SET status = 'BLOCKED', updated_at = now() WHERE id_tag = $1 AND status <> 'BLOCKED'",
    )
    .bind(id_tag)
    .execute(pool)
    .await?;
    find(pool, id_tag).await
}

/// Sets (or with None clears) a token's group.
pub async fn set_group(
    pool: &PgPool,
    id_tag: &str,
    group: Option<&str>,
) -> Result<Option<IdTokenRecord>, StoreError> {
    sqlx::query("UPDATE id_tags SET group_id_tag = $2, updated_at = now() WHERE id_tag = $1")
        .bind(id_tag)
        .bind(group)
        .execute(pool)
        .await?;
    find(pool, id_tag).await
}

/// The group a driver's reservations are held for: their app token's group, else the app
/// token itself (every card of theirs without a group of its own has the same).
pub async fn group_of_user(pool: &PgPool, user_id: Uuid) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(group_id_tag, id_tag) FROM id_tags WHERE user_id = $1 AND kind = 'APP' \
         ORDER BY created_at LIMIT 1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await?)
}

/// Online chargers that may hold `id_tag` in their authorization cache: where it started a
/// transaction in the last 90 days.
pub async fn chargers_that_saw(pool: &PgPool, id_tag: &str) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT x.charger_id FROM charger_transactions x JOIN chargers c ON c.id = x.charger_id \
         WHERE x.id_tag = $1 AND x.started_at > now() - interval '90 days' AND c.online",
    )
    .bind(id_tag)
    .fetch_all(pool)
    .await?)
}
