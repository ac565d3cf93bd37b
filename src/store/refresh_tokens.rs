//! Refresh tokens: opaque random strings, stored as SHA-256 digests, rotated on every use.
//! Presenting a token that was already rotated revokes its whole family.

use base64::Engine;
use chrono::{Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgExecutor;
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Issues a token in `family_id` (a new login starts a new family), valid `ttl_secs`.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn issue<'e>(
    executor: impl PgExecutor<'e>,
    user_id: Uuid,
    family_id: Uuid,
    ttl_secs: u64,
) -> Result<String, StoreError> {
    issue_until(
        executor,
        user_id,
        family_id,
        Utc::now() + Duration::seconds(ttl_secs as i64),
    )
    .await
}

/// Issues a token in `family_id` that expires at `expires_at`.
async fn issue_until<'e>(
    executor: impl PgExecutor<'e>,
    user_id: Uuid,
    family_id: Uuid,
    expires_at: chrono::DateTime<Utc>,
) -> Result<String, StoreError> {
    let token = new_token();
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(family_id)
    .bind(digest(&token))
    .bind(expires_at)
    .execute(executor)
    .await?;
    Ok(token)
}

/// Why a refresh token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Unknown,
    Expired,
    Revoked,
    /// A rotated token came back: its family is now revoked.
    Reused,
}

/// Consumes `token` and issues its successor in the same family: (user, family, successor).
/// The successor expires when the sign-in does (the family's first token's lifetime): using a
/// refresh token never extends a sign-in.
#[tracing::instrument(skip_all)]
pub async fn rotate(
    pool: &PgPool,
    token: &str,
) -> Result<Result<(Uuid, Uuid, String), Rejected>, StoreError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query_as::<_, (Uuid, Uuid, Uuid, bool, bool, bool, chrono::DateTime<Utc>)>(
        "SELECT id, user_id, family_id, expires_at <= now(), used_at IS NOT NULL, revoked_at IS NOT NULL, \
             expires_at \
         FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(digest(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, user_id, family_id, expired, used, revoked, expires_at)) = row else {
        return Ok(Err(Rejected::Unknown));
    };
    if revoked {
        return Ok(Err(Rejected::Revoked));
    }
    if used {
        revoke_family(&mut *tx, family_id).await?;
        tx.commit().await?;
        return Ok(Err(Rejected::Reused));
    }
    if expired {
        return Ok(Err(Rejected::Expired));
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let next = issue_until(&mut *tx, user_id, family_id, expires_at).await?;
    tx.commit().await?;
    Ok(Ok((user_id, family_id, next)))
}

/// Revokes every token of the family `token` belongs to (logout). Unknown tokens are ignored.
#[tracing::instrument(skip_all)]
pub async fn revoke(pool: &PgPool, token: &str) -> Result<bool, StoreError> {
    let family: Option<Uuid> =
        sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(digest(token))
            .fetch_optional(pool)
            .await?;
    match family {
        Some(family_id) => {
            revoke_family(pool, family_id).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

async fn revoke_family<'e>(
    executor: impl PgExecutor<'e>,
    family_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .execute(executor)
    .await?;
    Ok(())
}
