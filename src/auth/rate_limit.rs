//! Fixed-window rate limits in Redis (login attempts per email and per client address).
//! Keys carry a SHA-256 of the email, never the address itself.

use crate::store::redis::Pool;
use deadpool_redis::redis::AsyncCommands;
use sha2::{Digest, Sha256};

/// The outcome of counting one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit; retry after this many seconds.
    Limited {
        retry_after_secs: u64,
    },
}

/// Counts one hit on `key` and says whether it is within `limit` per `window_secs`.
/// If Redis is unavailable the attempt is allowed (logins keep working) and a warning is logged.
pub async fn hit(pool: &Pool, key: &str, limit: u32, window_secs: u64) -> Verdict {
    match try_hit(pool, key, window_secs).await {
        Ok((count, ttl)) if count > u64::from(limit) => Verdict::Limited {
            retry_after_secs: ttl.max(1),
        },
        Ok(_) => Verdict::Allowed,
        Err(err) => {
            tracing::warn!(error = %err, "rate limiter unavailable; allowing the attempt");
            Verdict::Allowed
        }
    }
}

/// Clears the counter of `key` (after a successful login).
pub async fn reset(pool: &Pool, key: &str) {
    if let Ok(mut conn) = pool.get().await {
        let _: Result<(), _> = conn.del(key).await;
    }
}

async fn try_hit(pool: &Pool, key: &str, window_secs: u64) -> Result<(u64, u64), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let (count, ttl): (u64, i64) = deadpool_redis::redis::pipe()
        .atomic()
        .incr(key, 1u64)
        .cmd("EXPIRE")
        .arg(key)
        .arg(window_secs)
        .arg("NX")
        .ignore()
        .ttl(key)
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok((count, ttl.max(0) as u64))
}

/// The key counting logins for one email.
pub fn email_key(prefix: &str, normalized_email: &str) -> String {
    let digest = Sha256::digest(normalized_email.as_bytes());
    format!("{prefix}:rl:login:email:{}", hex::encode(&digest[..16]))
}

/// The key counting logins from one client address.
pub fn client_key(prefix: &str, client: &str) -> String {
    format!("{prefix}:rl:login:client:{client}")
}
