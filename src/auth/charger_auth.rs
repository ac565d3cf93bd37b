//! HTTP Basic authentication of chargers at the WebSocket handshake (OCPP security profiles 1
//! and 2). Passwords are stored as argon2 hashes. A successful check is remembered for a while,
//! in this process and in Redis for every replica, as an HMAC (keyed by a server secret) of the
//! stored hash and the password: a charger that moves to another replica (a replica restarts, a
//! reconnect storm) is not verified with argon2 again, and a changed password (a new stored
//! hash) matches no remembered check.

use std::time::{Duration, Instant};

use crate::store::redis::Pool as RedisPool;
use base64::Engine;
use dashmap::DashMap;
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
    /// Too many failed attempts for this charger or from this address: come back after this
    /// many seconds (no password is checked meanwhile).
    Limited {
        retry_after_secs: u64,
    },
    /// Too many password checks are waiting: come back shortly.
    Busy,
}

/// How failed charger logins are limited (per charger id and per client address, in Redis so
/// every replica counts them together).
#[derive(Debug, Clone, Copy)]
pub struct FailureLimits {
    pub per_charger: u32,
    pub per_address: u32,
    pub window_secs: u64,
}

impl Default for FailureLimits {
    fn default() -> Self {
        Self {
            per_charger: 10,
            per_address: 50,
            window_secs: 300,
        }
    }
}

/// Password checks that may wait for an argon2 slot before handshakes are told to come back.
const MAX_WAITING_CHECKS: usize = 256;

/// Remembered checks kept in memory before expired ones are swept.
const MAX_REMEMBERED: usize = 200_000;

/// Remembers recently verified (stored hash, password) pairs.
pub struct ChargerAuthCache {
    key: Vec<u8>,
    /// Redis pool and the deployment's key prefix: checks shared by every replica.
    shared: Option<(RedisPool, String)>,
    /// Verified digests and when; the digest covers the stored hash, so it is the whole key.
    verified: DashMap<[u8; 32], Instant>,
    /// argon2 runs for charger checks: one core fewer than the process's argon2 slots, so a
    /// flood of charger logins never takes the capacity drivers' logins need. A storm of
    /// chargers sharing a password waits here and finds the first one's result instead of
    /// repeating it.
    verifying: tokio::sync::Semaphore,
    /// Checks waiting for `verifying` (bounded: beyond `MAX_WAITING_CHECKS`, `Busy`).
    waiting: std::sync::atomic::AtomicUsize,
    limits: FailureLimits,
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
                std::thread::available_parallelism()
                    .map_or(2, |n| n.get())
                    .saturating_sub(1)
                    .max(1),
            ),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            limits: FailureLimits::default(),
            checks,
        }
    }

    /// Password checks waiting for an argon2 slot right now.
    pub fn queued(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The failed-login limits to apply.
    pub fn with_limits(mut self, limits: FailureLimits) -> Self {
        self.limits = limits;
        self
    }

    fn failure_keys(prefix: &str, charger_id: &str, client: &str) -> [String; 2] {
        [
            format!("{prefix}:rl:charger-fail:id:{charger_id}"),
            format!("{prefix}:rl:charger-fail:addr:{client}"),
        ]
    }

    /// `Some(retry after)` while the charger or the address is over its failure limit. If Redis
    /// cannot say, the attempt is allowed (argon2's own bound still holds).
    async fn limited(&self, charger_id: &str, client: &str) -> Option<u64> {
        let (pool, prefix) = self.shared.as_ref()?;
        let mut conn = pool.get().await.ok()?;
        let [id_key, addr_key] = Self::failure_keys(prefix, charger_id, client);
        let (id_count, addr_count, id_ttl, addr_ttl): (Option<u64>, Option<u64>, i64, i64) =
            deadpool_redis::redis::pipe()
                .get(&id_key)
                .get(&addr_key)
                .ttl(&id_key)
                .ttl(&addr_key)
                .query_async(&mut conn)
                .await
                .ok()?;
        let over_id = id_count.unwrap_or(0) >= u64::from(self.limits.per_charger);
        let over_addr = addr_count.unwrap_or(0) >= u64::from(self.limits.per_address);
        let ttl = match (over_id, over_addr) {
            (false, false) => return None,
            (true, true) => id_ttl.max(addr_ttl),
            (true, false) => id_ttl,
            (false, true) => addr_ttl,
        };
        Some(ttl.max(1) as u64)
    }

    /// Counts a failed attempt for the charger and for the address. A counter's window starts
    /// at its first failure; each time it reaches a multiple of its limit the window doubles,
    /// up to an hour (backoff for whoever keeps guessing).
    async fn record_failure(&self, charger_id: &str, client: &str) {
        let Some((pool, prefix)) = &self.shared else {
            return;
        };
        let Ok(mut conn) = pool.get().await else {
            return;
        };
        let window = self.limits.window_secs.max(1);
        let keys = Self::failure_keys(prefix, charger_id, client);
        for (key, limit) in keys
            .iter()
            .zip([self.limits.per_charger, self.limits.per_address])
        {
            let limit = u64::from(limit.max(1));
            let counted: Result<(u64, i64), _> = deadpool_redis::redis::pipe()
                .atomic()
                .incr(key, 1u64)
                .cmd("EXPIRE")
                .arg(key)
                .arg(window)
                .arg("NX")
                .ignore()
                .ttl(key)
                .query_async(&mut conn)
                .await;
            if let Ok((count, ttl)) = counted {
                if count % limit == 0 {
                    let longer = (ttl.max(1) as u64).saturating_mul(2).clamp(window, 3600);
                    let _: Result<(), _> = deadpool_redis::redis::cmd("EXPIRE")
                        .arg(key)
                        .arg(longer)
                        .query_async(&mut conn)
                        .await;
                }
            }
        }
    }

    /// A charger that proved its password starts again with a clean record (its address's
    /// count stays: other ids may be guessed from it).
    async fn forget_failures(&self, charger_id: &str) {
        let Some((pool, prefix)) = &self.shared else {
            return;
        };
        if let Ok(mut conn) = pool.get().await {
            let _: Result<(), _> = deadpool_redis::redis::cmd("DEL")
                .arg(format!("{prefix}:rl:charger-fail:id:{charger_id}"))
                .query_async(&mut conn)
                .await;
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
        self.check_from(charger_id, header, phc, "unknown").await
    }

    /// Checks a handshake's credentials from `client` (its address). A credential verified
    /// before is recognised without argon2 and never limited; anything else is refused without
    /// argon2 while the charger or the address is over its failure limit.
    pub async fn check_from(
        &self,
        charger_id: &str,
        header: Option<&str>,
        phc: &str,
        client: &str,
    ) -> BasicAuth {
        self.check_against(charger_id, header, &[phc], client)
            .await
            .0
    }

    /// `check_from` against several stored hashes (the current password and one the server
    /// has just set on the charger): the verdict, and which hash matched when it is `Ok`. A
    /// failure is counted once, when none matches.
    pub async fn check_against(
        &self,
        charger_id: &str,
        header: Option<&str>,
        phcs: &[&str],
        client: &str,
    ) -> (BasicAuth, usize) {
        let Some((user, pass)) = header.and_then(decode_basic) else {
            self.count("missing");
            return (BasicAuth::Missing, 0);
        };
        if user != charger_id {
            self.count("wrong");
            self.record_failure(charger_id, client).await;
            return (BasicAuth::Wrong, 0);
        }
        let digests: Vec<[u8; 32]> = phcs.iter().map(|phc| self.digest(phc, &pass)).collect();
        for (i, digest) in digests.iter().enumerate() {
            if self.remembers(digest) {
                self.count("memory");
                return (BasicAuth::Ok, i);
            }
            if self.shared_has(digest).await {
                self.count("shared");
                self.remember(*digest);
                return (BasicAuth::Ok, i);
            }
        }
        if let Some(retry_after_secs) = self.limited(charger_id, client).await {
            self.count("limited");
            return (BasicAuth::Limited { retry_after_secs }, 0);
        }
        use std::sync::atomic::Ordering;
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING_CHECKS {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.count("busy");
            return (BasicAuth::Busy, 0);
        }
        let slot = self.verifying.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let Ok(_slot) = slot else {
            return (BasicAuth::Busy, 0);
        };
        for (i, (digest, phc)) in digests.iter().zip(phcs).enumerate() {
            if self.remembers(digest) {
                self.count("memory");
                return (BasicAuth::Ok, i);
            }
            if let Ok(true) = password::verify(pass.clone(), Some(phc.to_string())).await {
                self.count("argon2");
                self.remember(*digest);
                self.share(digest).await;
                self.forget_failures(charger_id).await;
                return (BasicAuth::Ok, i);
            }
        }
        self.count("wrong");
        self.record_failure(charger_id, client).await;
        (BasicAuth::Wrong, 0)
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

    /// A flood of charger password checks never holds every argon2 slot: a driver's login that
    /// starts behind four of them runs at once, beside the first (on two or more cores).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn charger_checks_leave_argon2_capacity_for_drivers() {
        let phc = password::hash("the right charger password".into())
            .await
            .unwrap_or_default();
        let cache = std::sync::Arc::new(ChargerAuthCache::new(b"secret", None, None));
        let wrong = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("CP-1:a wrong password")
        );
        let started = std::time::Instant::now();
        let chargers: Vec<_> = (0..4)
            .map(|_| {
                let (cache, phc, wrong) = (cache.clone(), phc.clone(), wrong.clone());
                tokio::spawn(async move {
                    let verdict = cache.check("CP-1", Some(&wrong), &phc).await;
                    (verdict, started.elapsed())
                })
            })
            .collect();
        // let the charger checks queue first
        while cache.queued() < 2 {
            tokio::task::yield_now().await;
        }
        let driver = password::verify("x".into(), Some(phc.clone())).await;
        let driver_done = started.elapsed();
        assert_eq!(driver.ok(), Some(false));
        let mut finished = Vec::new();
        for charger in chargers {
            let (verdict, done) = charger.await.unwrap_or((BasicAuth::Ok, Default::default()));
            assert_eq!(verdict, BasicAuth::Wrong);
            finished.push(done);
        }
        finished.sort();
        // the driver ran beside the first charger check, never behind one
        assert!(
            driver_done < finished[1],
            "the driver's check ({driver_done:?}) waited for charger checks ({finished:?})"
        );
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
