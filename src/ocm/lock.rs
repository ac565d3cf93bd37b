//! A Redis lock so that one replica syncs at a time: `SET key token NX PX ttl` with a random
//! token, renewed every third of the TTL while the holder works, and released by a
//! compare-and-delete script (never deleting a lock another holder took after ours expired).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::store::redis::Pool;
use deadpool_redis::redis;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Extends the TTL only while the lock still holds our token.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// Deletes the lock only while it still holds our token.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Why the lock could not be used.
#[derive(Debug, thiserror::Error)]
#[error("Redis (sync lock): {0}")]
pub struct LockError(String);

/// A held lock; renewed in the background until released or dropped.
pub struct SyncLock {
    pool: Pool,
    key: String,
    token: String,
    lost: Arc<AtomicBool>,
    renewer: JoinHandle<()>,
}

impl SyncLock {
    /// Takes the lock, or returns `None` when someone else holds it.
    pub async fn acquire(pool: &Pool, key: &str, ttl: Duration) -> Result<Option<Self>, LockError> {
        let token = uuid::Uuid::new_v4().to_string();
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let mut conn = pool.get().await.map_err(|e| LockError(e.to_string()))?;
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await
            .map_err(|e| LockError(e.to_string()))?;
        if set.is_none() {
            return Ok(None);
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew(
            pool.clone(),
            key.to_string(),
            token.clone(),
            ttl,
            lost.clone(),
        ));
        Ok(Some(Self {
            pool: pool.clone(),
            key: key.to_string(),
            token,
            lost,
            renewer,
        }))
    }

    /// True once the lock could not be renewed in time: another replica may hold it now, so
    /// the holder must stop writing.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops renewing and deletes the lock if it is still ours.
    pub async fn release(self) -> Result<(), LockError> {
        self.renewer.abort();
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| LockError(e.to_string()))?;
        let _: i64 = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&self.key)
            .arg(&self.token)
            .query_async(&mut conn)
            .await
            .map_err(|e| LockError(e.to_string()))?;
        Ok(())
    }
}

impl Drop for SyncLock {
    fn drop(&mut self) {
        // without an explicit release the lock simply expires after its TTL
        self.renewer.abort();
    }
}

async fn renew(pool: Pool, key: String, token: String, ttl: Duration, lost: Arc<AtomicBool>) {
    let ttl_ms = ttl.as_millis().max(1) as u64;
    let mut renewed_at = Instant::now();
    let mut tick = tokio::time::interval(ttl / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        let result: Result<i64, String> = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            redis::cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(&key)
                .arg(&token)
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(1) => renewed_at = Instant::now(),
            Ok(_) => {
                tracing::error!(key = %key, "the OCM sync lock was taken over; stopping");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(reason) if renewed_at.elapsed() >= ttl => {
                tracing::error!(%reason, "the OCM sync lock expired unrenewed; stopping");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(reason) => tracing::warn!(%reason, "could not renew the OCM sync lock; retrying"),
        }
    }
}
