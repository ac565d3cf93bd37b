//! HTTP Basic authentication of chargers at the WebSocket handshake (OCPP security profiles 1
//! and 2). Passwords are stored as argon2 hashes. A successful check is remembered for a while,
//! in this process and in Redis for every replica, as an HMAC (keyed by a server secret) of the
//! stored hash and the password: a charger that moves to another replica (a replica restarts, a
//! reconnect storm) is not verified with argon2 again, and a changed password (a new stored
//! hash) matches no remembered check.

use std::time::{Duration, Instant};

use base64::Engine;
use dashmap::DashMap;
use deadpool_redis::Pool as RedisPool;
use hmac::{Hmac, Mac};
use prometheus::IntCounterVec;
use sha2::Sha256;

use super::password;

/// How long this process trusts a verified password without asking again.
const VERIFIED_TTL: Duration = Duration::from_secs(600);
/// How long a shared check lives in Redis after its last use. A remembered check is bound to
/// the stored hash, so it never outlives a password change; the expiry only bounds memory.
const SHARED_TTL: Duration = Duration::from_secs(24 * 3600);

/// The outcome of checking a charger's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicAuth {
    Ok,
    /// No `Authorization: Basic` header, or not decodable.
    Missing,
    /// Wrong user name or password.
    Wrong,
}

/// Remembered checks kept in memory before expired ones are swept.
const MAX_REMEMBERED: usize = 200_000;

/// Remembers recently verified (stored hash, password) pairs.
pub struct ChargerAuthCache {
    key: Vec<u8>,
    /// Redis pool and the deployment's key prefix: checks shared by every replica.
    shared: Option<(RedisPool, String)>,
    /// Verified digests and when; the digest covers the stored hash, so it is the whole key.
    verified: DashMap<[u8; 32], Instant>,
    /// argon2 runs for charger checks (one per core): a storm of chargers sharing a password
    /// waits here and finds the first one's result instead of repeating it.
    verifying: tokio::sync::Semaphore,
    /// Checks by how they were decided: `memory`, `shared`, `argon2`, `wrong`, `missing`.
    checks: Option<IntCounterVec>,
}

impl ChargerAuthCache {
    /// `secret` keys the remembered digests (the JWT secret: never stored in Redis).
    pub fn new(
        secret: &[u8],
        shared: Option<(RedisPool, String)>,
        checks: Option<IntCounterVec>,
    ) -> Self {
        let mut mac = hmac_of(b"chargegrid charger credential cache");
        mac.update(secret);
        Self {
            key: mac.finalize().into_bytes().to_vec(),
            shared,
            verified: DashMap::new(),
            verifying: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            checks,
        }
    }

    fn remembers(&self, digest: &[u8; 32]) -> bool {
        self.verified
            .get(digest)
            .is_some_and(|at| at.elapsed() < VERIFIED_TTL)
    }

    fn remember(&self, digest: [u8; 32]) {
        if self.verified.len() >= MAX_REMEMBERED {
            self.verified.retain(|_, at| at.elapsed() < VERIFIED_TTL);
            // all still fresh: start over rather than sweep again on every insert
            if self.verified.len() >= MAX_REMEMBERED {
                self.verified.clear();
            }
        }
        self.verified.insert(digest, Instant::now());
    }

    fn count(&self, how: &str) {
        if let Some(checks) = &self.checks {
            checks.with_label_values(&[how]).inc();
        }
    }

    /// HMAC of the stored hash and the offered password.
    fn digest(&self, phc: &str, password: &str) -> [u8; 32] {
        let mut mac = hmac_of(&self.key);
        mac.update(phc.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn shared_key(prefix: &str, digest: &[u8; 32]) -> String {
        format!("{prefix}:charger-auth:{}", hex::encode(digest))
    }

    async fn shared_has(&self, digest: &[u8; 32]) -> bool {
        let Some((pool, prefix)) = &self.shared else {
            return false;
        };
        let Ok(mut conn) = pool.get().await else {
            return false;
        };
        // PEXPIRE answers 1 when the key exists, and keeps it alive while it is used
        deadpool_redis::redis::cmd("PEXPIRE")
            .arg(Self::shared_key(prefix, digest))
            .arg(SHARED_TTL.as_millis() as u64)
            .query_async::<i64>(&mut conn)
            .await
            .map(|n| n == 1)
            .unwrap_or(false)
    }

    async fn share(&self, digest: &[u8; 32]) {
        let Some((pool, prefix)) = &self.shared else {
            return;
        };
        let Ok(mut conn) = pool.get().await else {
            return;
        };
        let stored: Result<(), _> = deadpool_redis::redis::cmd("SET")
            .arg(Self::shared_key(prefix, digest))
            .arg(1)
            .arg("PX")
            .arg(SHARED_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "could not share a verified charger credential");
        }
    }

    /// Checks an `Authorization` header value against the stored argon2 hash.
    pub async fn check(&self, charger_id: &str, header: Option<&str>, phc: &str) -> BasicAuth {
        let Some((user, pass)) = header.and_then(decode_basic) else {
            self.count("missing");
            return BasicAuth::Missing;
        };
        if user != charger_id {
            self.count("wrong");
            return BasicAuth::Wrong;
        }
        let digest = self.digest(phc, &pass);
        if self.remembers(&digest) {
            self.count("memory");
            return BasicAuth::Ok;
        }
        if self.shared_has(&digest).await {
            self.count("shared");
            self.remember(digest);
            return BasicAuth::Ok;
        }
        let Ok(_slot) = self.verifying.acquire().await else {
            return BasicAuth::Wrong;
        };
        // verified by another handshake while this one waited for a slot
        if self.remembers(&digest) {
            self.count("memory");
            return BasicAuth::Ok;
        }
        match password::verify(pass, Some(phc.to_string())).await {
            Ok(true) => {
                self.count("argon2");
                self.remember(digest);
                self.share(&digest).await;
                BasicAuth::Ok
            }
            _ => {
                self.count("wrong");
                BasicAuth::Wrong
            }
        }
    }
}

fn hmac_of(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// `Basic base64(user:password)` -> (user, password).
fn decode_basic(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic_credentials() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("CP-1:s3cret:with:colons")
        );
        assert_eq!(
            decode_basic(&header),
            Some(("CP-1".to_string(), "s3cret:with:colons".to_string()))
        );
        assert_eq!(decode_basic("Bearer x"), None);
        assert_eq!(decode_basic("Basic !!!"), None);
    }

    #[test]
    fn a_remembered_check_is_bound_to_the_stored_hash_the_password_and_the_secret() {
        let cache = ChargerAuthCache::new(b"secret one", None, None);
        let digest = cache.digest("$argon2id$hash-a", "pw");
        assert_eq!(digest, cache.digest("$argon2id$hash-a", "pw"));
        assert_ne!(digest, cache.digest("$argon2id$hash-b", "pw"));
        assert_ne!(digest, cache.digest("$argon2id$hash-a", "pw2"));
        // the separator keeps (hash, password) pairs apart
        assert_ne!(cache.digest("ab", "c"), cache.digest("a", "bc"));
        let other = ChargerAuthCache::new(b"secret two", None, None);
        assert_ne!(digest, other.digest("$argon2id$hash-a", "pw"));
    }
}
