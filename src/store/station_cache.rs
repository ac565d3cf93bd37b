//! The Redis copy of `station(id)`: JSON under `{prefix}:station:{generation}:{id}` with a TTL.
//! The generation is a counter the OCM sync bumps after writing stations; readers fetch it and
//! the entry in one script call, so an entry filled from an old row lands under an old
//! generation nobody reads any more (no invalidate-then-refill race). Redis being down only
//! costs the cache: lookups fall through to Postgres.

use crate::store::redis::Pool;
use deadpool_redis::redis;
use sqlx::PgPool;
use uuid::Uuid;

use super::stations::{self, StationDetails};
use super::StoreError;
use crate::ocm::cache_generation_key;

/// Reads the generation and the entry under it in one round trip.
const GET: &str = r#"
local generation = redis.call('GET', KEYS[1]) or '0'
return {generation, redis.call('GET', ARGV[1] .. generation .. ':' .. ARGV[2])}
"#;

/// Where and for how long station details are cached.
pub struct StationCache<'a> {
    pub redis: &'a Pool,
    pub key_prefix: &'a str,
    pub ttl_secs: u64,
}

impl StationCache<'_> {
    /// The cache key of `id` under `generation`.
    pub fn key(&self, generation: &str, id: Uuid) -> String {
        format!("{}:station:{generation}:{id}", self.key_prefix)
    }

    /// The station from Redis, else from Postgres (then cached).
    #[tracing::instrument(skip_all, fields(station_id = %id))]
    pub async fn get_or_load(
        &self,
        db: &PgPool,
        id: Uuid,
    ) -> Result<Option<StationDetails>, StoreError> {
        let cached = self.lookup(id).await;
        let generation = match cached {
            Ok((_, Some(json))) => match serde_json::from_str(&json) {
                Ok(station) => return Ok(Some(station)),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable cached station; reloading");
                    None
                }
            },
            Ok((generation, None)) => Some(generation),
            Err(reason) => {
                tracing::warn!(%reason, "station cache unavailable");
                None
            }
        };
        let station = stations::find(db, id).await?;
        if let (Some(generation), Some(station)) = (generation, &station) {
            if let Err(reason) = self.store(&generation, station).await {
                tracing::warn!(%reason, "could not cache the station");
            }
        }
        Ok(station)
    }

    async fn lookup(&self, id: Uuid) -> Result<(String, Option<String>), String> {
        let mut conn = self.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("EVAL")
            .arg(GET)
            .arg(1)
            .arg(cache_generation_key(self.key_prefix))
            .arg(format!("{}:station:", self.key_prefix))
            .arg(id.to_string())
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())
    }

    async fn store(&self, generation: &str, station: &StationDetails) -> Result<(), String> {
        let json = serde_json::to_string(station).map_err(|e| e.to_string())?;
        let mut conn = self.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("SET")
            .arg(self.key(generation, station.id))
            .arg(json)
            .arg("EX")
            .arg(self.ttl_secs.max(1))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    }
}
