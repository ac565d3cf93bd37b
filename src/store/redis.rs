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

/// A command unanswered this long fails (as an I/O error, so its connection counts as lost): a
/// connection gone silently (a half-open socket after a failover) must not hang its callers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("Redis at {url}: {reason}")]
pub struct RedisSetupError {
    pub url: String,
    pub reason: String,
}

/// deadpool-redis's manager, except that it checks a pooled connection (UNWATCH and PING, a
/// round trip) only when it has not been handed out for `CHECK_IDLE_AFTER`, or when a command
/// on it failed as a lost connection does: it checked before every use, which put a second
/// round trip in front of each rate-limit count and ownership look-up on the API's hot path
/// (ADR 023, amended). Nothing here uses WATCH. A connection that broke fails the command that
/// finds it out, which its caller handles as any Redis error, and is dropped when it is handed
/// out next (a multiplexed connection does not reconnect by itself).
pub struct Manager(deadpool_redis::Manager);

/// A pooled connection and whether a command on it failed as a lost connection does.
pub struct Pooled {
    conn: MultiplexedConnection,
    broken: bool,
}

impl managed::Manager for Manager {
    type Type = Pooled;
    type Error = RedisError;

    async fn create(&self) -> Result<Pooled, RedisError> {
        let mut conn = self.0.create().await?;
        conn.set_response_timeout(RESPONSE_TIMEOUT);
        Ok(Pooled {
            conn,
            broken: false,
        })
    }

    async fn recycle(&self, pooled: &mut Pooled, metrics: &Metrics) -> RecycleResult<RedisError> {
        if pooled.broken {
            return Err(managed::RecycleError::message("the connection was lost"));
        }
        if metrics.last_used() < CHECK_IDLE_AFTER {
            return Ok(());
        }
        self.0.recycle(&mut pooled.conn, metrics).await
    }
}

/// A connection taken from the pool; commands run on it as on the connection itself.
pub struct Connection(Object<Manager>);

impl From<Object<Manager>> for Connection {
    fn from(conn: Object<Manager>) -> Self {
        Self(conn)
    }
}

impl Deref for Connection {
    type Target = MultiplexedConnection;

    fn deref(&self) -> &MultiplexedConnection {
        &self.0.conn
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.0.conn
    }
}

/// Whether `error` says the connection itself is gone (not a refused or failed command).
fn lost(error: &RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error()
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let result = self.0.conn.req_packed_command(cmd).await;
            if result.as_ref().is_err_and(lost) {
                self.0.broken = true;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let result = self.0.conn.req_packed_commands(cmd, offset, count).await;
            if result.as_ref().is_err_and(lost) {
                self.0.broken = true;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.0.conn.get_db()
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
