//! Which replica holds which charger: Redis keys `<prefix>:owner:<chargerId>` = `<node>|<connection>`
//! with a lease the holder renews. A new connection overwrites the key (newest wins, across
//! replicas too) and learns the previous holder so it can tell it to close its stale socket.

use crate::store::redis::Pool;
use deadpool_redis::redis::{self, Script};
use uuid::Uuid;

/// The holder of a charger's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node_id: String,
    pub connection_id: Uuid,
}

impl Owner {
    fn encode(&self) -> String {
        format!("{}|{}", self.node_id, self.connection_id)
    }

    fn decode(raw: &str) -> Option<Self> {
        let (node, conn) = raw.rsplit_once('|')?;
        Some(Self {
            node_id: node.to_string(),
            connection_id: conn.parse().ok()?,
        })
    }
}

fn key(prefix: &str, charger_id: &str) -> String {
    format!("{prefix}:owner:{charger_id}")
}

/// Takes ownership of each (charger, owner) for `lease_ms` in one pipelined round trip (a
/// reconnect storm claims thousands at once); returns each previous holder other than the
/// claimant, in order.
pub async fn claim_many(
    pool: &Pool,
    prefix: &str,
    claims: &[(String, Owner)],
    lease_ms: u64,
) -> Result<Vec<Option<Owner>>, String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let mut pipe = redis::pipe();
    for (charger_id, owner) in claims {
        pipe.cmd("SET")
            .arg(key(prefix, charger_id))
            .arg(owner.encode())
            .arg("PX")
            .arg(lease_ms)
            .arg("GET");
    }
    let previous: Vec<Option<String>> = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(previous
        .into_iter()
        .zip(claims)
        .map(|(previous, (_, owner))| {
            previous
                .as_deref()
                .and_then(Owner::decode)
                .filter(|p| p != owner)
        })
        .collect())
}

/// Who holds `charger_id` now.
pub async fn owner_of(
    pool: &Pool,
    prefix: &str,
    charger_id: &str,
) -> Result<Option<Owner>, String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let raw: Option<String> = redis::cmd("GET")
        .arg(key(prefix, charger_id))
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(raw.as_deref().and_then(Owner::decode))
}

/// Renews the leases of `held` (charger id, owner). A key that expired is taken again (we still
/// hold the socket); a key someone else holds is reported back as lost.
pub async fn renew(
    pool: &Pool,
    prefix: &str,
    held: &[(String, Owner)],
    lease_ms: u64,
) -> Result<Vec<String>, String> {
    const RENEW: &str = r"
        local lost = {}
        local ttl = ARGV[#ARGV]
        for i, key in ipairs(KEYS) do
            local current = redis.call('GET', key)
            if current == ARGV[i] then
                redis.call('PEXPIRE', key, ttl)
            elseif not current then
                redis.call('SET', key, ARGV[i], 'PX', ttl)
            else
                table.insert(lost, i)
            end
        end
        return lost";
    let mut lost = Vec::new();
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    for chunk in held.chunks(500) {
        let script = Script::new(RENEW);
        let mut invocation = script.prepare_invoke();
        for (charger_id, owner) in chunk {
            invocation.key(key(prefix, charger_id));
            invocation.arg(owner.encode());
        }
        invocation.arg(lease_ms);
        let indexes: Vec<usize> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        lost.extend(
            indexes
                .into_iter()
                .filter_map(|i| chunk.get(i - 1).map(|(id, _)| id.clone())),
        );
    }
    Ok(lost)
}

/// Gives up ownership if it is still ours.
pub async fn release(
    pool: &Pool,
    prefix: &str,
    charger_id: &str,
    owner: &Owner,
) -> Result<bool, String> {
    const RELEASE: &str = r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('DEL', KEYS[1])
        end
        return 0";
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let deleted: i64 = Script::new(RELEASE)
        .key(key(prefix, charger_id))
        .arg(owner.encode())
        .invoke_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(deleted == 1)
}

/// Announces this replica as alive (for operators; expires with the lease).
pub async fn heartbeat_node(
    pool: &Pool,
    prefix: &str,
    node_id: &str,
    chargers: usize,
    lease_ms: u64,
) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    redis::cmd("SET")
        .arg(format!("{prefix}:node:{node_id}"))
        .arg(format!("{{\"chargers\":{chargers}}}"))
        .arg("PX")
        .arg(lease_ms)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

/// Takes or renews this node's lease on each of `names` (`<prefix>:lease:<name>`, e.g. a site's
/// controller); `true` for each lease now held by `node_id`.
pub async fn hold_leases(
    pool: &Pool,
    prefix: &str,
    node_id: &str,
    names: &[String],
    lease_ms: u64,
) -> Result<Vec<bool>, String> {
    const HOLD: &str = r"
        local held = {}
        local node, ttl = ARGV[1], ARGV[2]
        for i, key in ipairs(KEYS) do
            local current = redis.call('GET', key)
            if current == node then
                redis.call('PEXPIRE', key, ttl)
                held[i] = 1
            elseif not current then
                redis.call('SET', key, node, 'PX', ttl)
                held[i] = 1
            else
                held[i] = 0
            end
        end
        return held";
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(names.len());
    for chunk in names.chunks(500) {
        let script = Script::new(HOLD);
        let mut invocation = script.prepare_invoke();
        for name in chunk {
            invocation.key(format!("{prefix}:lease:{name}"));
        }
        invocation.arg(node_id).arg(lease_ms);
        let held: Vec<i64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        out.extend(held.into_iter().map(|h| h == 1));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip() {
        let owner = Owner {
            node_id: "chargegrid-0".into(),
            connection_id: Uuid::nil(),
        };
        assert_eq!(Owner::decode(&owner.encode()), Some(owner));
        assert_eq!(Owner::decode("garbage"), None);
    }
}
