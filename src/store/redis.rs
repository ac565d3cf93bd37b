//! The Redis pool (cache, rate limits, replica presence and charger ownership).

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, RecycleResult};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{self, RedisError};
use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use secrecy::ExposeSecret;

use crate::configuration::{mask_url, RedisSettings};

/// The pool every Redis user takes its connection from.
pub type Pool = managed::Pool<Manager, Connection>;

/// A connection used within this long is handed out again without a check.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("Redis at {url}: {reason}")]
pub struct RedisSetupError {
    pub url: String,
    pub reason: String,
}

/// deadpool-redis's manager, except that it checks a pooled connection (UNWATCH and PING, a
/// round trip) only when it has been idle for `CHECK_IDLE_AFTER`: it checked before every
/// use, which put a second round trip in front of each rate-limit count and ownership look-up
/// on the API's hot path (ADR 023 did the same for PostgreSQL). Nothing here uses WATCH, and
/// a connection that broke while in use fails its command, which its caller handles as any
/// Redis error; the next idle check drops it.
pub struct Manager(deadpool_redis::Manager);

impl managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.0.create().await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<RedisError> {
        if metrics.last_used() < CHECK_IDLE_AFTER {
            return Ok(());
        }
        self.0.recycle(conn, metrics).await
    }
}

/// A pooled connection; commands run on it as on the connection itself.
pub struct Connection(Object<Manager>);

impl From<Object<Manager>> for Connection {
    fn from(conn: Object<Manager>) -> Self {
        Self(conn)
    }
}

impl Deref for Connection {
    type Target = MultiplexedConnection;

    fn deref(&self) -> &MultiplexedConnection {
        &self.0
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.0
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.0.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// Builds the pool. Connections are made on demand, so a Redis that is down at startup shows up
/// in `/ready` rather than stopping the process.
pub fn pool(settings: &RedisSettings) -> Result<Pool, RedisSetupError> {
    let failed = |reason: String| RedisSetupError {
        url: mask_url(settings.url.expose_secret()),
        reason,
    };
    let manager = deadpool_redis::Manager::new(settings.url.expose_secret())
        .map_err(|e| failed(e.to_string()))?;
    let mut config = PoolConfig::new(settings.pool_size);
    config.timeouts = Timeouts {
        wait: Some(Duration::from_secs(2)),
        create: Some(Duration::from_secs(2)),
        recycle: Some(Duration::from_secs(2)),
    };
    Pool::builder(Manager(manager))
        .config(config)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| failed(e.to_string()))
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
