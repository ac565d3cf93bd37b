//! The Redis pool (cache, rate limits, replica presence and charger ownership).

use std::time::Duration;

use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};
use secrecy::ExposeSecret;

use crate::configuration::{mask_url, RedisSettings};

#[derive(Debug, thiserror::Error)]
#[error("Redis at {url}: {reason}")]
pub struct RedisSetupError {
    pub url: String,
    pub reason: String,
}

/// Builds the pool. Connections are made on demand, so a Redis that is down at startup shows up
/// in `/ready` rather than stopping the process.
pub fn pool(settings: &RedisSettings) -> Result<Pool, RedisSetupError> {
    let mut config = Config::from_url(settings.url.expose_secret());
    let mut pool_config = PoolConfig::new(settings.pool_size);
    pool_config.timeouts = Timeouts {
        wait: Some(Duration::from_secs(2)),
        create: Some(Duration::from_secs(2)),
        recycle: Some(Duration::from_secs(2)),
    };
    config.pool = Some(pool_config);
    config
        .create_pool(Some(Runtime::Tokio1))
        .map_err(|e| RedisSetupError {
            url: mask_url(settings.url.expose_secret()),
            reason: e.to_string(),
        })
}

/// `PING`, for readiness.
pub async fn ping(pool: &Pool) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let pong: String = deadpool_redis::redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(format!("unexpected PING answer {pong:?}"))
    }
}
